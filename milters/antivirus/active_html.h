// milters/antivirus/active_html.h — HTML a browser would run script or
// plug-ins from: what html_script_action acts on. The milter checks each
// HTML part of a message (antivirus_milter.cpp); the scanner workers check
// the HTML files libclamav or they unpack from archives (scanner.cpp).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace sekimori::antivirus {

// HTML that invokes script or plug-ins: <script, <object ... classid,
// <embed, <applet, on*= event handlers, javascript: and vbscript: URLs in
// href, src, action and the like, SVG animation values included, and in a
// <meta http-equiv=refresh> content (character references decoded as a
// browser does); an <iframe srcdoc> document, or a data: URL of an HTML,
// XHTML, SVG or XML document (percent- or base64-encoded; not where it is
// only an image or media source), that holds any of these.
// Attributes are read as an HTML5 tokenizer splits them.
// `html` is text as the reader sees it: decode its charset first.
// Case-insensitive, linear; only the first kHtmlCheckMax bytes are read
// (a caller treats a longer part as unchecked).
constexpr std::size_t kHtmlCheckMax = 8 * 1024 * 1024;
bool hasActiveHtml(std::string_view html);

// Whether a part is one a browser may run as HTML, and so one
// html_script_action looks at: its media type (lowercased, as
// mime::PartInfo has it) is text/html, application/xhtml+xml or
// image/svg+xml, or its filename ends (any case) in .htm, .html, .shtml,
// .xht, .xhtml, .svg or .hta, whatever type the sender gave it: an
// attachment opened from a mail program goes by its name ("HTML
// smuggling": invoice.html sent as application/octet-stream).
bool htmlLeaf(std::string_view contentType, std::string_view filename);

// `html` without what hasActiveHtml() finds: <script> and <applet>
// elements with their content (to the end of the text when unclosed),
// <embed> tags, <object classid> elements, on*=, script-URL, refresh,
// srcdoc and data:-document attributes with their values. Everything else
// is kept byte for byte. Repeated while removing one thing joins the
// pieces into another ("<scr<script></script>ipt>");
// nullopt if active content is still found after that (the caller must
// not deliver it as stripped).
std::optional<std::string> stripActiveHtml(std::string_view html);

}  // namespace sekimori::antivirus
