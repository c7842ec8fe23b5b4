// milters/antivirus/active_html.h — HTML a browser would run script or
// plug-ins from: what html_script_action acts on. The milter checks each
// HTML part of a message and each web archive (.mht) attached to it
// (antivirus_milter.cpp); the scanner workers check the HTML files and web
// archives libclamav or they unpack from archives (scanner.cpp).
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace sekimori::mime {
class Content;
class Spool;
}

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

// Appends a chunk of an HTML part's content to `text`, up to
// kHtmlCheckMax bytes in all; false (and nothing more kept) once the
// content is longer.
bool keepHtmlText(std::string& text, std::span<const std::byte> chunk);
// Reads `content` into `text` as keepHtmlText() keeps it, up to the first
// byte past kHtmlCheckMax: whether that was all of it.
bool readHtmlText(mime::Content& content, std::string& text);

// An HTML part's text (its first kHtmlCheckMax bytes, transfer encoding
// undone; `complete`: all of it) checked as the reader's program shows it:
// decoded from its charset (in ISO-2022-JP an escape sequence can sit
// inside "onclick" or "<script" and vanish in decoding), and as the bytes
// came, for a reader that takes them as ASCII. Text not checked whole (cut,
// or longer than kHtmlCheckMax in UTF-8) counts as active: script after
// 8 MiB of padding is no way past html_script_action.
struct HtmlCheck {
  std::string utf8;  // the text in UTF-8
  bool whole;        // all of it was checked
  bool active;
};
HtmlCheck checkHtmlText(const std::string& text, std::string_view charset, bool complete);

// Whether a part is a web archive (MHTML: a page saved with its images and
// scripts as one MIME message) that a browser opens as a page: named
// .mht or .mhtml (any case; trailing dots and spaces dropped, as for
// htmlLeaf), or sent as application/x-mimearchive. One sent as
// message/rfc822 is an attached message, walked as one by the milter.
bool webArchiveLeaf(std::string_view contentType, std::string_view filename);

// Whether a web archive (its decoded bytes in `archive`) holds HTML with
// active content: each part in it a browser shows as a page (htmlLeaf) is
// checked as checkHtmlText does. One that cannot be checked whole counts
// as holding it: an HTML part longer than kHtmlCheckMax, MIME past the
// walk's limits (message.h), a spool that failed. An archive in which the
// walk finds no HTML part (plain HTML named .mht: no MIME header block) is
// checked as HTML, as the browser sniffs it (longer than kHtmlCheckMax: it
// counts as holding active content).
bool webArchiveHasActiveHtml(mime::Spool& archive);

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
