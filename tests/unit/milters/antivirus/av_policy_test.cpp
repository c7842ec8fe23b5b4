#include "milters/antivirus/av_policy.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "common/mime/spool.h"
#include "common/util/strings.h"
#include "tests/support/sanitized.h"

namespace sekimori::antivirus {
namespace {

using policy::Direction;
using Kind = Decision::Kind;
using Status = ScanResult::Status;

ScanResult result(Status s, std::string name = "") {
  ScanResult r;
  r.status = s;
  r.name = std::move(name);
  return r;
}

PartFinding part(std::vector<int> path, bool attachment, Status s, std::string name = "", std::string file = "") {
  PartFinding p;
  p.path = std::move(path);
  p.attachment = attachment;
  p.result = result(s, std::move(name));
  p.filename = std::move(file);
  return p;
}

Findings infectedAttachment() {
  Findings f;
  f.whole = result(Status::Infected, "Eicar-Signature");
  f.parts = {part({0}, false, Status::Clean), part({1}, true, Status::Infected, "Eicar-Signature", "eicar.com")};
  return f;
}

TEST(AvDecide, CleanIsDeliveredAndMarkedClean) {
  Findings f;
  f.whole = result(Status::Clean);
  const auto d = decide({}, {}, Direction::Inbound, f);
  EXPECT_EQ(d.kind, Kind::Deliver);
  EXPECT_EQ(d.status, "clean");
  EXPECT_FALSE(d.infected);
}

TEST(AvDecide, OutboundVirusIsRejectedWithItsName) {
  const auto d = decide({}, {}, Direction::Outbound, infectedAttachment());
  EXPECT_EQ(d.kind, Kind::Reject);
  EXPECT_EQ(d.reply.str(), "554 5.7.1 Virus found: Eicar-Signature");
  EXPECT_TRUE(d.infected);
  EXPECT_EQ(decide({}, {}, Direction::Internal, infectedAttachment()).kind, Kind::Reject);
}

TEST(AvDecide, InboundInfectedAttachmentIsRemoved) {
  const auto d = decide({}, {}, Direction::Inbound, infectedAttachment());
  ASSERT_EQ(d.kind, Kind::RemoveParts);
  ASSERT_EQ(d.remove.size(), 1u);
  EXPECT_EQ(d.remove[0].filename, "eicar.com");
  EXPECT_EQ(d.status, "removed: Eicar-Signature");
  EXPECT_TRUE(d.infected);
}

// Found in attachments inside an attached message that came encoded: the
// milter names that message's path for each; it is removed once, for all.
TEST(AvDecide, TwoFoundInOneAttachedMessageRemoveItOnce) {
  Findings f;
  f.whole = result(Status::Clean);
  PartFinding a = part({1}, true, Status::Infected, "Eicar-Signature", "fwd.eml");
  a.inside = {"eicar.com"};
  PartFinding b = part({1}, true, Status::Infected, "Other-Signature", "fwd.eml");
  b.inside = {"b.exe"};
  f.parts = {a, part({2}, true, Status::Infected, "Eicar-Signature", "c.com"), b};
  const auto d = decide({}, {}, Direction::Inbound, f);
  ASSERT_EQ(d.kind, Kind::RemoveParts);
  ASSERT_EQ(d.remove.size(), 2u);
  EXPECT_EQ(d.remove[0].path, (std::vector<int>{1}));
  EXPECT_EQ(d.remove[0].result.name, "Eicar-Signature, Other-Signature");
  EXPECT_EQ(d.remove[0].inside, (std::vector<std::string>{"eicar.com", "b.exe"}));
  EXPECT_FALSE(d.remove[0].text);
  EXPECT_EQ(d.remove[1].filename, "c.com");
  EXPECT_EQ(d.status, "removed: Eicar-Signature, Other-Signature");
  // One of them in its text instead: the removal says so, beside the name.
  f.parts[2].inside = {};
  f.parts[2].text = true;
  const auto mixed = decide({}, {}, Direction::Inbound, f);
  ASSERT_EQ(mixed.kind, Kind::RemoveParts);
  EXPECT_EQ(mixed.remove[0].inside, (std::vector<std::string>{"eicar.com"}));
  EXPECT_TRUE(mixed.remove[0].text);
  f.parts[2].inside = {"b.exe"};
  f.parts[2].text = false;
  // Found where nothing can go (the milter found no attached message
  // holding it either: the text of the message itself): refused.
  f.parts[2].attachment = false;
  EXPECT_EQ(decide({}, {}, Direction::Inbound, f).kind, Kind::Reject);
}

// An attached message that goes whole for what was found in its text,
// with an attachment found inside it too (which could go alone) and one
// inside a message within it: removed once, naming what was inside.
TEST(AvDecide, FoundInsideAnAttachedMessageThatGoesGoesWithIt) {
  Findings f;
  f.whole = result(Status::Infected, "Eicar-Signature");
  PartFinding text = part({1}, true, Status::Infected, "Eicar-Signature", "fwd.eml");
  text.message = text.text = true;
  PartFinding inner = part({1, 0, 2}, true, Status::Infected, "Inner-Signature");
  inner.message = true;
  inner.inside = {"x.exe", "y.exe"};
  inner.subject = "Re: 見積書";  // no filename: named by its Subject
  f.parts = {part({1, 0, 1}, true, Status::Infected, "Zip-Signature", "a.zip"), text, inner,
             part({2}, true, Status::Clean, "", "b.pdf"),
             part({3}, true, Status::Infected, "Eicar-Signature", "c.com")};
  const auto d = decide({}, {}, Direction::Inbound, f);
  ASSERT_EQ(d.kind, Kind::RemoveParts);
  ASSERT_EQ(d.remove.size(), 2u);
  EXPECT_EQ(d.remove[0].path, (std::vector<int>{1}));
  EXPECT_TRUE(d.remove[0].message);
  EXPECT_EQ(d.remove[0].result.name, "Eicar-Signature, Zip-Signature, Inner-Signature");
  EXPECT_EQ(d.remove[0].inside, (std::vector<std::string>{"a.zip", "(no name, subject: Re: 見積書) (x.exe, y.exe)"}));
  EXPECT_TRUE(d.remove[0].text);
  EXPECT_EQ(d.remove[1].path, (std::vector<int>{3}));
  EXPECT_EQ(d.status, "removed: Zip-Signature, Eicar-Signature, Inner-Signature");
}

// What notices and warnings call what is removed.
TEST(AvDecide, ShownNames) {
  PartFinding p = part({1}, true, Status::Infected, "Eicar-Signature", "a.zip");
  p.type = "application/zip";
  EXPECT_EQ(shownName(p), "a.zip");
  p.filename = "";
  EXPECT_EQ(shownName(p), "(no name, application/zip)");
  p.type = "";
  EXPECT_EQ(shownName(p), "(no name)");
  p.subject = "Re: 会議";  // only an attached message is named by its Subject
  EXPECT_EQ(shownName(p), "(no name)");
  p.message = true;
  EXPECT_EQ(shownName(p), "(no name, subject: Re: 会議)");
  p.filename = "fwd.eml";
  EXPECT_EQ(shownName(p), "fwd.eml");
  // The sender's name for it, on one line, without bidirectional tricks.
  p.filename = "a.exe\r\nscanned: clean";
  EXPECT_EQ(shownName(p), "a.exe\\x0d\\x0ascanned: clean");
  p.filename = "invoice\xE2\x80\xAE" "fdp.exe";
  EXPECT_EQ(shownName(p), "invoice\\xe2\\x80\\xaefdp.exe");
  EXPECT_EQ(shownName(std::string(300, 'a'), ""), std::string(200, 'a') + "...");
  EXPECT_EQ(quoted({"a.zip", "b \"c\".exe"}, "「", "」", ""), "「a.zip」「b \"c\".exe」");
  EXPECT_EQ(quoted({"a.zip", "b.exe"}, "\"", "\"", ", "), "\"a.zip\", \"b.exe\"");
  EXPECT_EQ(quoted({}, "\"", "\"", ", "), "");
}

TEST(AvDecide, InboundInfectionOutsideAttachmentsIsRejected) {
  Findings body;
  body.whole = result(Status::Infected, "Eicar-Signature");
  body.parts = {part({0}, false, Status::Infected, "Eicar-Signature")};
  EXPECT_EQ(decide({}, {}, Direction::Inbound, body).kind, Kind::Reject);
  // Found only in the whole message, in no part alone.
  Findings whole;
  whole.whole = result(Status::Infected, "Eicar-Signature");
  whole.parts = {part({0}, false, Status::Clean), part({1}, true, Status::Clean)};
  EXPECT_EQ(decide({}, {}, Direction::Inbound, whole).kind, Kind::Reject);
  // A single-part message that is the attachment.
  Findings single;
  single.whole = result(Status::Infected, "Eicar-Signature");
  single.parts = {part({}, true, Status::Infected, "Eicar-Signature")};
  EXPECT_EQ(decide({}, {}, Direction::Inbound, single).kind, Kind::Reject);
  // A part that failed to scan: removal would not be sure.
  Findings failed = infectedAttachment();
  failed.parts.push_back(part({2}, true, Status::Error));
  EXPECT_EQ(decide({}, {}, Direction::Inbound, failed).kind, Kind::Reject);
  ActionConfig discard;
  discard.inboundBody = InfectedAction::Discard;
  EXPECT_EQ(decide(discard, {}, Direction::Inbound, body).kind, Kind::Discard);
}

TEST(AvDecide, RemovalThatCannotBeDoneRefusesTheWhole) {
  Decision d = decide({}, {}, Direction::Inbound, infectedAttachment());
  ASSERT_EQ(d.kind, Kind::RemoveParts);
  refuseWhole(d, {}, {}, "Header.Exploit");
  EXPECT_EQ(d.kind, Kind::Reject);
  EXPECT_TRUE(d.remove.empty());
  EXPECT_EQ(d.reply.str(), "554 5.7.1 Virus found: Eicar-Signature, Header.Exploit");
  EXPECT_EQ(d.status, "infected: Eicar-Signature, Header.Exploit");
  ActionConfig discard;
  discard.inboundBody = InfectedAction::Discard;
  Decision d2 = decide(discard, {}, Direction::Inbound, infectedAttachment());
  refuseWhole(d2, discard, {});
  EXPECT_EQ(d2.kind, Kind::Discard);
  EXPECT_EQ(d2.status, "infected: Eicar-Signature");
}

TEST(AvDecide, LimitsExceededIsAVirusByDefault) {
  Findings f;
  f.whole = result(Status::LimitsExceeded, "Heuristics.Limits.Exceeded.MaxRecursion");
  const auto d = decide({}, {}, Direction::Outbound, f);
  EXPECT_EQ(d.kind, Kind::Reject);
  EXPECT_EQ(d.reply.str(), "554 5.7.1 Virus found: Heuristics.Limits.Exceeded.MaxRecursion");
  ActionConfig deliver;
  deliver.limitsExceeded = LimitsAction::Deliver;
  const auto d2 = decide(deliver, {}, Direction::Outbound, f);
  EXPECT_EQ(d2.kind, Kind::Deliver);
  EXPECT_EQ(d2.status, "unscanned: limits exceeded");
}

TEST(AvDecide, EncryptedIsMarkedOrRejected) {
  Findings f;
  f.whole = result(Status::Encrypted, "Heuristics.Encrypted.Zip");
  const auto d = decide({}, {}, Direction::Inbound, f);
  EXPECT_EQ(d.kind, Kind::Deliver);
  EXPECT_EQ(d.status, "unscanned: encrypted");
  EXPECT_FALSE(d.infected);
  ActionConfig reject;
  reject.encrypted = UnscannableAction::Reject;
  EXPECT_EQ(decide(reject, {}, Direction::Inbound, f).reply.str(), "554 5.7.1 Encrypted content cannot be scanned");
}

TEST(AvDecide, UnunpackableContainerIsMarkedOrRejectedNeverClean) {
  Findings f;
  f.whole = result(Status::Unscanned, "RAR archive, Zstandard data");
  const Decision d = decide({}, {}, Direction::Inbound, f);
  EXPECT_EQ(d.kind, Decision::Kind::Deliver);
  EXPECT_EQ(d.status, "unscanned: RAR archive, Zstandard data not unpacked");
  EXPECT_FALSE(d.infected);
  ActionConfig reject;
  reject.unscanned = UnscannableAction::Reject;
  const Decision r = decide(reject, {}, Direction::Outbound, f);
  EXPECT_EQ(r.kind, Decision::Kind::Reject);
  EXPECT_EQ(r.reply.str(), "554 5.7.1 Content that cannot be scanned: RAR archive, Zstandard data");
  // A virus found beside it wins.
  f.parts.push_back(part({1}, true, Status::Infected, "Eicar", "x.com"));
  EXPECT_TRUE(decide({}, {}, Direction::Inbound, f).infected);
}

TEST(AvDecide, ScanFailureTempfailsByDefault) {
  Findings f;
  f.whole = result(Status::Error);
  const auto d = decide({}, {}, Direction::Inbound, f);
  EXPECT_EQ(d.kind, Kind::Tempfail);
  EXPECT_EQ(d.reply.str(), "451 4.3.0 Virus scan failed, try again later");
  ActionConfig accept;
  accept.scanFailure = FailureAction::Accept;
  EXPECT_EQ(decide(accept, {}, Direction::Inbound, f).status, "unscanned: scan failed");
}

TEST(AvDecide, HtmlScriptIsMarkedOrRejected) {
  Findings f;
  f.whole = result(Status::Clean);
  f.htmlScript = true;
  const auto d = decide({}, {}, Direction::Inbound, f);
  EXPECT_EQ(d.kind, Kind::Deliver);
  EXPECT_EQ(d.status, "clean; suspicious: Heuristics.HTML.Script");
  ActionConfig reject;
  reject.htmlScript = HtmlScriptAction::Reject;
  EXPECT_EQ(decide(reject, {}, Direction::Inbound, f).kind, Kind::Reject);
}

TEST(AvDecide, HtmlScriptStripIsDeliveredStripped) {
  Findings f;
  f.whole = result(Status::Clean);
  f.htmlScript = true;
  ActionConfig strip;
  strip.htmlScript = HtmlScriptAction::Strip;
  const Decision d = decide(strip, {}, Direction::Inbound, f);
  EXPECT_EQ(d.kind, Kind::Deliver);
  EXPECT_TRUE(d.stripHtml);
  EXPECT_EQ(d.status, "clean; stripped: Heuristics.HTML.Script");
  EXPECT_FALSE(d.infected);
  EXPECT_FALSE(decide({}, {}, Direction::Inbound, f).stripHtml);
  // On top of a mark for what could not be scanned, not instead of it.
  f.whole = result(Status::Unscanned, "RAR archive");
  const Decision both = decide(strip, {}, Direction::Inbound, f);
  EXPECT_TRUE(both.stripHtml);
  EXPECT_EQ(both.status, "unscanned: RAR archive not unpacked; stripped: Heuristics.HTML.Script");
  f.whole = result(Status::Encrypted, "Heuristics.Encrypted.Zip");
  const Decision marked = decide({}, {}, Direction::Inbound, f);
  EXPECT_EQ(marked.kind, Kind::Deliver);
  EXPECT_EQ(marked.status, "unscanned: encrypted; suspicious: Heuristics.HTML.Script");
  EXPECT_EQ(marked.virus, "Heuristics.Encrypted.Zip, Heuristics.HTML.Script");
}

TEST(AvDecide, HtmlActionAppliesToWhatIsLeftAfterRemoval) {
  // Found by fuzz_antivirus: an infected attachment made the message skip
  // the HTML action, so adding one was a way past html_script_action.
  Findings f = infectedAttachment();
  f.htmlScript = true;
  const Decision marked = decide({}, {}, Direction::Inbound, f);
  EXPECT_EQ(marked.kind, Kind::RemoveParts);
  EXPECT_EQ(marked.status, "removed: Eicar-Signature; suspicious: Heuristics.HTML.Script");
  ActionConfig strip;
  strip.htmlScript = HtmlScriptAction::Strip;
  const Decision both = decide(strip, {}, Direction::Inbound, f);
  EXPECT_EQ(both.kind, Kind::RemoveParts);
  EXPECT_TRUE(both.stripHtml);
  EXPECT_EQ(both.remove.size(), 1u);
  EXPECT_EQ(both.status, "removed: Eicar-Signature; stripped: Heuristics.HTML.Script");
  ActionConfig reject;
  reject.htmlScript = HtmlScriptAction::Reject;
  const Decision refused = decide(reject, {}, Direction::Inbound, f);
  EXPECT_EQ(refused.kind, Kind::Reject);
  EXPECT_TRUE(refused.remove.empty());
  EXPECT_EQ(refused.reply.str(), "554 5.7.1 Virus found: Eicar-Signature, Heuristics.HTML.Script");
  EXPECT_TRUE(refused.infected);
  // Stripping that cannot be done refuses with the HTML reply.
  Decision unstrippable = both;
  refuseUnstrippable(unstrippable, {});
  EXPECT_EQ(unstrippable.kind, Kind::Reject);
  EXPECT_FALSE(unstrippable.stripHtml);
  EXPECT_TRUE(unstrippable.remove.empty());
  EXPECT_EQ(unstrippable.status, "removed: Eicar-Signature; suspicious: Heuristics.HTML.Script");
}

TEST(AvDecide, WhatIsLeftAfterRemovalIsMarkedOrRefusedAsWithoutTheVirus) {
  // Found in review: an encrypted zip beside a known virus was delivered as
  // "removed: ..." with no mark, and under encrypted_action = reject not
  // refused either: adding a virus was a way past both actions.
  struct Case {
    ScanResult leftover;
    std::string status;
  } cases[] = {
      {result(Status::Clean), "removed: Eicar-Signature"},
      {result(Status::Encrypted, "Heuristics.Encrypted.Zip"), "removed: Eicar-Signature; unscanned: encrypted"},
      {result(Status::Unscanned, "RAR archive"), "removed: Eicar-Signature; unscanned: RAR archive not unpacked"},
      // Under scan_failure_action = accept (the caller tempfails otherwise).
      {result(Status::Error, "x"), "removed: Eicar-Signature; unscanned: scan failed"},
  };
  for (const auto& c : cases) {
    Decision d = decide({}, {}, Direction::Inbound, infectedAttachment());
    markLeftover(d, {}, {}, c.leftover);
    EXPECT_EQ(d.kind, Kind::RemoveParts) << c.status;
    EXPECT_EQ(d.remove.size(), 1u) << c.status;
    EXPECT_EQ(d.status, c.status);
  }
  // A limit left over is marked under deliver (under infected it is a
  // threat: refuseWhole).
  ActionConfig deliver;
  deliver.limitsExceeded = LimitsAction::Deliver;
  Decision d = decide(deliver, {}, Direction::Inbound, infectedAttachment());
  markLeftover(d, deliver, {}, result(Status::LimitsExceeded, "Heuristics.Limits.Exceeded.MaxFiles"));
  EXPECT_EQ(d.status, "removed: Eicar-Signature; unscanned: limits exceeded");
  // The mark goes before what the HTML action added.
  Findings html = infectedAttachment();
  html.htmlScript = true;
  d = decide({}, {}, Direction::Inbound, html);
  markLeftover(d, {}, {}, result(Status::Encrypted, "Heuristics.Encrypted.Mail"));
  EXPECT_EQ(d.status, "removed: Eicar-Signature; unscanned: encrypted; suspicious: Heuristics.HTML.Script");
  // Each reject action refuses the whole message, naming both.
  ActionConfig reject;
  reject.encrypted = reject.unscanned = UnscannableAction::Reject;
  reject.limitsExceeded = LimitsAction::Reject;
  for (const auto& left : {result(Status::Encrypted, "Heuristics.Encrypted.Zip"), result(Status::Unscanned, "RAR archive"),
                           result(Status::LimitsExceeded, "Heuristics.Limits.Exceeded.MaxFiles")}) {
    Decision r = decide(reject, {}, Direction::Inbound, infectedAttachment());
    ASSERT_EQ(r.kind, Kind::RemoveParts);
    markLeftover(r, reject, {}, left);
    EXPECT_EQ(r.kind, Kind::Reject) << left.name;
    EXPECT_TRUE(r.remove.empty());
    EXPECT_TRUE(r.infected);
    EXPECT_EQ(r.reply.str(), "554 5.7.1 Virus found: Eicar-Signature, " + left.name);
  }
}

TEST(AvStreamFind, FindsTheStringAcrossEveryChunkEnd) {
  const std::string needle = "-----BEGIN PGP MESSAGE-----";
  const std::string text = "Hi,\r\n\r\n------BEGIN PGP MESSAGE-----\r\nhQEMA0\r\n";  // a dash more in front
  for (std::size_t chunk = 1; chunk <= text.size(); ++chunk) {
    StreamFind f(needle);
    for (std::size_t i = 0; i < text.size(); i += chunk) f.feed(std::string_view(text).substr(i, chunk));
    EXPECT_TRUE(f.found()) << chunk;
  }
  for (std::size_t cut = 0; cut <= text.size(); ++cut) {
    StreamFind f(needle);
    f.feed(std::string_view(text).substr(0, cut));
    f.feed("");
    f.feed(std::string_view(text).substr(cut));
    EXPECT_TRUE(f.found()) << cut;
  }
  // Not there: one byte short, or broken by a line end.
  for (const char* other : {"-----BEGIN PGP MESSAGE----", "-----BEGIN PGP\r\n MESSAGE-----",
                            "-----BEGIN PGP SIGNED MESSAGE-----"}) {
    for (std::size_t chunk = 1; chunk <= 8; ++chunk) {
      StreamFind f(needle);
      const std::string t = std::string("x") + other + "\r\n";
      for (std::size_t i = 0; i < t.size(); i += chunk) f.feed(std::string_view(t).substr(i, chunk));
      EXPECT_FALSE(f.found()) << other << " " << chunk;
    }
  }
}

// Each body fed in chunks of every size up to 17 and in one piece.
bool encodedFound(std::string_view needle, std::string_view body, std::size_t chunk) {
  EncodedFind f(needle);
  for (std::size_t i = 0; i < body.size(); i += chunk) f.feed(body.substr(i, chunk));
  return f.found();
}

TEST(AvEncodedFind, FindsTheStringAsItCameQuotedPrintableOrBase64) {
  const std::string needle = "-----BEGIN PGP MESSAGE-----";
  const std::string armor = needle + "\r\n\r\nhQEMA0\r\n-----END PGP MESSAGE-----\r\n";
  // Lines of `width` letters, and `junk` (which a decoder skips) after each.
  const auto base64 = [](std::string_view text, std::size_t width, std::string_view junk = "\r\n") {
    const std::string e = util::encodeBase64(text);
    std::string out;
    for (std::size_t i = 0; i < e.size(); i += width) out += e.substr(i, width) + std::string(junk);
    return out;
  };
  const std::string head = "--b\r\nContent-Transfer-Encoding: base64\r\n\r\n";
  std::vector<std::string> found = {
      "Hi,\r\n" + armor,
      "Hi,\r\n" + [&] {  // every dash escaped, in lower case
        std::string t;
        for (const char c : armor) t += c == '-' ? std::string("=2d") : std::string(1, c);
        return t;
      }(),
      "-----BEGIN=\r\n PGP=20MESSAGE-----\r\n",  // a soft line break, an escaped space
      "-----BEG=\nIN PGP MESSAGE=\r\n-----\r\n",
  };
  for (const std::string lead : {"", "x", "xy"}) {  // each byte offset in a group of three
    for (const std::size_t width : {76, 64, 5, 1}) {
      found.push_back(head + base64("\xE3\x81\x82\r\n" + lead + armor, width));
    }
    found.push_back(head + base64(lead + armor, 3, " \x80!"));
  }
  for (const std::string& body : found) {
    for (std::size_t chunk = 1; chunk <= 17; ++chunk) EXPECT_TRUE(encodedFound(needle, body, chunk)) << body << chunk;
    EXPECT_TRUE(encodedFound(needle, body, body.size())) << body;
  }
  // Not there: a clear-signed text, however encoded; a line end where no
  // soft line break is ("=\r" then a letter, "= " with transport padding);
  // base64 data ended by '=' inside the letters.
  const std::string signedText = "-----BEGIN PGP SIGNED MESSAGE-----\r\nHash: SHA256\r\n\r\nhi\r\n";
  std::string cut = util::encodeBase64(armor);
  cut.insert(20, "=");
  const std::string notFound[] = {
      signedText,
      head + base64(signedText, 76),
      head + base64("x" + signedText, 76),
      "-----BEGIN PGP=\rMESSAGE-----\r\n",
      "-----BEGIN PGP= \r\nMESSAGE-----\r\n",
      "-----BEGIN PGP MESSAGE----=\r\n",
      head + cut,
  };
  for (const std::string& body : notFound) {
    for (std::size_t chunk = 1; chunk <= 17; ++chunk) EXPECT_FALSE(encodedFound(needle, body, chunk)) << body << chunk;
  }
  // In the middle of a long base64 attachment, at each byte offset, fed in
  // the MTA's chunks; the attachment alone has none.
  std::string data;
  for (std::size_t i = 0; i < 60000; ++i) data += static_cast<char>((i * 7919 + i / 251) & 0xFF);
  EXPECT_FALSE(encodedFound(needle, head + base64(data, 76), 65535));
  for (std::size_t at = 30000; at < 30003; ++at) {
    const std::string body = head + base64(data.substr(0, at) + armor + data.substr(at), 76);
    EXPECT_TRUE(encodedFound(needle, body, 65535)) << at;
    EXPECT_TRUE(encodedFound(needle, body, 4096)) << at;
  }
}

TEST(AvHtml, StripRemovesWhatIsFoundAndKeepsTheRest) {
  struct Case {
    const char* in;
    const char* out;
  } cases[] = {
      {"<p>a</p><script>alert(1)</script><p>b</p>", "<p>a</p><p>b</p>"},
      {"<P>a</P><SCRIPT type=x>alert(1)</Script >b", "<P>a</P>b"},
      {"<p>a</p><script>never closed", "<p>a</p>"},
      {"x<applet code=A.class><param name=a></applet>y", "xy"},
      {"x<embed src=a.swf>y", "xy"},
      {"x<object classid=\"clsid:1\"><param></object>y", "xy"},
      {"x<object data=a.svg></object>y", "x<object data=a.svg></object>y"},
      {"<body onload=\"go()\" class=a>t</body>", "<body  class=a>t</body>"},
      {"<img src=a.png onerror=go()>", "<img src=a.png >"},
      {"<a href=x ONCLICK = 'go(\"1\")'>l</a>", "<a href=x >l</a>"},
      {"<a title=\"x onabc=y\">l</a>", "<a title=\"x \">l</a>"},
      {"<iframe src=\"data:text/html;base64,PHNjcmlwdD5nbygpPC9zY3JpcHQ+\" width=1></iframe>",
       "<iframe  width=1></iframe>"},
      // Removing one joins the pieces into another.
      {"<scr<script>x</script>ipt>alert(1)</script>ok", "ok"},
      {"no tags, one = two, online=yes", "no tags, one = two, online=yes"},
      // Japanese text around is kept byte for byte.
      {"<p>\xe4\xbc\x9a\xe8\xad\xb0</p><script>x</script>\xe3\x81\xa7\xe3\x81\x99",
       "<p>\xe4\xbc\x9a\xe8\xad\xb0</p>\xe3\x81\xa7\xe3\x81\x99"},
  };
  for (const auto& c : cases) {
    const auto got = stripActiveHtml(c.in);
    ASSERT_TRUE(got.has_value()) << c.in;
    EXPECT_EQ(*got, c.out) << c.in;
    EXPECT_FALSE(hasActiveHtml(*got)) << c.in;
  }
}

// Quadratic work would take minutes; ASan and UBSan slow this code 20-30 times.
constexpr long kLinearMs = support::kSanitized ? 20000 : 2000;

TEST(AvHtml, StripStaysLinearOnHostileInput) {
  std::string many;
  for (int i = 0; i < 200000; ++i) many += "<script <embed <object classid x onabc=\"";
  const auto t0 = std::chrono::steady_clock::now();
  const auto got = stripActiveHtml(many);
  EXPECT_TRUE(hasActiveHtml(many));
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(got->empty());
  EXPECT_LT(ms, kLinearMs) << "8 MB of hostile HTML took " << ms << " ms";
  // Tags, comments and text elements that never end, links with long references.
  for (const char* unit : {"<a href=\"&#000000", "<a b='", "<!--", "<textarea>", "<x y=1 z=2 ", "<a href=jav&colon;",
                           "<iframe srcdoc='", "<i srcdoc=&lt;i srcdoc=&amp;lt;", "<m content=\"0;url=",
                           "<a href=\"data:text/html,", "<a href=\"data:text/html,%3Ca href=%22data:text/html,"}) {
    std::string html;
    while (html.size() < (4u << 20)) html += unit;
    const auto t1 = std::chrono::steady_clock::now();
    hasActiveHtml(html);
    stripActiveHtml(html);
    const auto took =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t1).count();
    EXPECT_LT(took, kLinearMs) << "4 MB of " << unit << " took " << took << " ms";
  }
}

TEST(AvHtml, FindsActiveContent) {
  EXPECT_TRUE(hasActiveHtml("<p>hi</p><SCRIPT>alert(1)</script>"));
  EXPECT_TRUE(hasActiveHtml("<object data=x CLASSID=\"clsid:1234\"></object>"));
  EXPECT_TRUE(hasActiveHtml("<embed src=x.swf>"));
  EXPECT_TRUE(hasActiveHtml("<applet code=x>"));
  EXPECT_TRUE(hasActiveHtml("<img src=x onerror=\"go()\">"));
  EXPECT_TRUE(hasActiveHtml("<body\nonLoad = 'go()'>"));
  EXPECT_FALSE(hasActiveHtml("<p>Turn the light on = off? Read about onions.</p>"));
  EXPECT_FALSE(hasActiveHtml("<object data=movie.mp4></object>"));
  EXPECT_FALSE(hasActiveHtml("<p>javascript is a word</p>"));
  EXPECT_FALSE(hasActiveHtml(""));
}

TEST(AvHtml, ReadsTagsAsBrowsersDo) {
  // Each was missed before: attributes are split the way an HTML tokenizer
  // splits them, not by where the last '<' and '>' are.
  const char* active[] = {
      "<a title=\">\" onclick=\"x()\">t</a>",          // '>' inside a quoted value
      "<a title='a>b' onclick=x()>t</a>",
      "<img src=x\fonerror=go()>",                     // FORM FEED separates attributes
      "<p onclick\n=\"x()\">t</p>",                    // white space before '='
      "<a <img onerror=go()>",                          // "<img" is an attribute name of <a>
      "<style><x y='</style><a title=\">\" onclick=x>",  // <style> holds text, not tags
      "<textarea><b title='</textarea><a title=\">\" onclick=x>",
      "<style></styles><x y='</style><a title=\">\" onclick=x>",  // "</styles" ends nothing
      // Script URLs, as the browser reads the value: references decoded,
      // TAB/LF/CR dropped, leading blanks and controls skipped, any case.
      "<a href=\"javascript:alert(1)\">x</a>",
      "<a href=\" \x01JaVaScRiPt:go()\">x</a>",
      "<a href=\"jav&#x09;ascript:go()\">x</a>",
      "<a href=\"jav&Tab;ascript:go()\">x</a>",
      "<a href=\"&#106;avascript:go()\">x</a>",
      "<a href=\"&#0000106avascript:go()\">x</a>",
      "<a href=\"&#74;ava&#X53;cript:go()\">x</a>",  // 'J' and 'S' as references
      "<a href=\"javascript&colon;go()\">x</a>",
      "<a href=\"java\nscript:go()\">x</a>",
      "<iframe src=vbscript:msgbox(1)>",
      "<form action='javascript:go()'><button>go</button></form>",
      "<svg><a xlink:href=\"javascript:go()\"><text>x</text></a></svg>",
      "<svg><a><animate attributeName=href values=\"x;javascript:go()\"/><text>x</text></a></svg>",
      "<svg><a><set attributeName=href to=\"javascript:go()\"/><text>x</text></a></svg>",
      // A refresh to a script URL, with or without "url=", quoted or not.
      "<meta http-equiv=\"refresh\" content=\"0;url=javascript:go()\">",
      "<META HTTP-EQUIV=Refresh CONTENT=\"5 , URL = 'vbscript:go()'\">",
      "<meta http-equiv=refresh content=\"0; jav&#x09;ascript:go()\">",
      // A frame's srcdoc document holds active content, escaped once or twice.
      "<iframe srcdoc=\"&lt;script&gt;go()&lt;/script&gt;\"></iframe>",
      "<iframe srcdoc=\"<p onclick=go()>x</p>\"></iframe>",
      "<iframe srcdoc=\"&lt;&#83;cript&gt;go()&lt;/script&gt;\"></iframe>",
      "<iframe srcdoc='&lt;iframe srcdoc=&quot;&amp;lt;img src=x onerror=go()&amp;gt;&quot;&gt;'></iframe>",
      // A data: URL of a document with active content, where it is shown as
      // a document: base64 (read in its original case: lowercased, this is
      // no "<script>"), percent-encoded, its scheme a reference, split by a
      // line break, in a frame's srcdoc, in a data: document, in a refresh,
      // in SVG animation values.
      "<iframe src=\"data:text/html;base64,PHNjcmlwdD5nbygpPC9zY3JpcHQ+\"></iframe>",
      "<iframe src=\"data:text/html,%3Cimg src=x %6Fnerror=go()%3E\"></iframe>",
      "<object data=\"DATA:Text/HTML ; charset=utf-8 ;  BASE64 , PHNjcmlwdD5nbygpPC9zY3JpcHQ+\"></object>",
      "<a href=\"data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9Z28oKT4=\">x</a>",
      "<iframe src=\"&#100;ata:text/html;base64,PHNjcmlwdD5nbygpPC9zY3JpcHQ+\"></iframe>",
      "<iframe src=\"da\nta:text/html;base64,PHNj\ncmlwdD5nbygpPC9zY3JpcHQ+\"></iframe>",
      "<iframe srcdoc=\"&lt;iframe src=&quot;data:text/html;base64,PHNjcmlwdD5nbygpPC9zY3JpcHQ+&quot;&gt;\"></iframe>",
      "<iframe src=\"data:text/html;base64,PGlmcmFtZSBzcmM9ImRhdGE6dGV4dC9odG1sO2Jhc2U2NCxQSE5qY21sd2RENW5ieWdwUEM5"
      "elkzSnBjSFErIj48L2lmcmFtZT4=\"></iframe>",
      "<meta http-equiv=refresh content=\"0;url=data:text/html;base64,PHNjcmlwdD5nbygpPC9zY3JpcHQ+\">",
      "<svg><a><animate attributeName=href values=\"x;data:text/html,%3Cscript%3Ego()%3C/script%3E\"/></a></svg>",
  };
  for (const char* html : active) {
    EXPECT_TRUE(hasActiveHtml(html)) << html;
    const auto stripped = stripActiveHtml(html);
    ASSERT_TRUE(stripped) << html;
    EXPECT_FALSE(hasActiveHtml(*stripped)) << html << " -> " << *stripped;
  }
  const char* inert[] = {
      "<p title=\"javascript: the good parts\">x</p>",
      "<a href=\"https://example.jp/javascript:x\">x</a>",
      "<a href=\"javascript.html\">x</a>",
      "<p>a > b, onclick = no tag</p>",
      "<!-- <a title=\" --><p>onion=3</p>",
      "<td one-time=\"1\" only=yes>x</td>",
      "<meta http-equiv=refresh content=\"30;url=https://example.jp/javascript:x\">",
      "<meta name=description content=\"javascript: a guide\">",
      "<iframe srcdoc=\"&lt;p&gt;safe &amp;amp; sound&lt;/p&gt;\"></iframe>",
      // data: URLs of no document, of a document without active content, or
      // where an SVG is only an image (its script never runs).
      "<img src=\"data:image/png;base64,iVBORw0KGgo=\">",
      "<img src=\"data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9Z28oKT4=\">",
      "<video poster=\"data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9Z28oKT4=\"></video>",
      "<iframe src=\"data:text/html;base64,PHA+SGVsbG8gV29ybGQ8L3A+\"></iframe>",
      "<a href=\"data:text/plain,%3Cscript%3Ego()%3C/script%3E\">x</a>",
      "<a href=\"https://example.jp/?u=data:text/html,%3Cscript%3E\">x</a>",
  };
  for (const char* html : inert) EXPECT_FALSE(hasActiveHtml(html)) << html;
  // A stripped script URL leaves the link text.
  EXPECT_EQ(stripActiveHtml("<a class=x href=\"javascript:go()\">x</a>"), "<a class=x >x</a>");
}

constexpr unsigned kEncrypted = 1;

unsigned kinds(const MediaTypeSniffer& s) { return s.encrypted() ? kEncrypted : 0u; }

// What the sniffer says of `text` fed in chunks of `chunk` bytes.
unsigned sniff(std::string_view text, std::size_t chunk) {
  MediaTypeSniffer s;
  for (std::size_t i = 0; i < text.size(); i += chunk) s.feed(text.substr(i, chunk));
  return kinds(s);
}

// Every way to cut `text` in two, and every chunk size up to 12.
void expectSniffed(std::string_view text, unsigned expected) {
  for (std::size_t cut = 0; cut <= text.size(); ++cut) {
    MediaTypeSniffer s;
    s.feed(text.substr(0, cut));
    s.feed(text.substr(cut));
    EXPECT_EQ(kinds(s), expected) << "cut at " << cut << ": " << text;
  }
  for (std::size_t chunk = 1; chunk <= 12; ++chunk) EXPECT_EQ(sniff(text, chunk), expected) << chunk << ": " << text;
}

// HTML needs no sniffing (every message is walked for it); an attached
// message may hold encrypted mail, base64-encoded where no type shows.
TEST(AvMediaType, SniffsAttachedMessagesAsMaybeEncrypted) {
  const std::string before = "--b\r\nContent-Type: ", after = "; charset=utf-8\r\n\r\n<p>x</p>\r\n";
  for (const char* type : {"message/rfc822", "Message / Global", "message/(x)partial", "message/\r\n rfc822",
                           "mess\x80" "age/rfc822", "m\re\rssage/rfc822"}) {
    expectSniffed(before + type + after, kEncrypted);
  }
  for (const char* type : {"text/html", "text/plain", "image/png", "application/xhtml+xml", "texts/xml",
                           "xmessage/rfc822"}) {
    expectSniffed(before + type + after, 0);
  }
}

TEST(AvMediaType, SniffsTheTypesOfEncryptedMail) {
  const std::string before = "--b\r\nContent-Type: ", after = "; protocol=x\r\n\r\nx\r\n";
  for (const char* type : {"multipart/encrypted", "Multipart / Encrypted", "multipart/\r\n encrypted",
                           "application/pkcs7-mime", "APPLICATION/X-PKCS7-MIME", "application/(c)pgp-encrypted",
                           "application/pgp-encrypted", "appli\x80" "cation/pkcs\r7-mime"}) {
    expectSniffed(before + type + after, kEncrypted);
  }
  // Signed (the content shows), or merely alike.
  for (const char* type : {"multipart/signed", "application/pkcs7-signature", "application/pgp-signature",
                           "application/pkcs7", "application/pgp-keys", "xmultipart/encrypted",
                           "multipart/encrypte", "application/x-pkcs7"}) {
    expectSniffed(before + type + after, 0);
  }
  // After an HTML part too, in either order.
  expectSniffed(before + "multipart/encrypted" + after + before + "text/html" + after, kEncrypted);
  expectSniffed(before + "text/html" + after + before + "application/pkcs7-mime" + after, kEncrypted);
  expectSniffed(before + "text/html" + after + before + "message/rfc822" + after, kEncrypted);
  // A comment before the '/' could end any type.
  expectSniffed("see :-)/ there", kEncrypted);
}

TEST(AvMediaType, BodiesWithoutOneStayUnsniffed) {
  // base64 of bytes 0..255 repeated: '/' and letters in every position.
  std::string b64;
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (int i = 0; i < 64 * 1024; ++i) {
    b64 += kAlphabet[(i * 7 + i / 64) % 64];
    if (i % 76 == 75) b64 += "\r\n";
  }
  EXPECT_EQ(sniff(b64, 65535), 0u);
  EXPECT_EQ(sniff(b64, 1), 0u);
  EXPECT_EQ(sniff("see https://example.jp/index.html and a/b text\r\n", 7), 0u);
  EXPECT_EQ(sniff("--b\r\nContent-Type: application/pdf\r\n\r\nJVBERi0x/application/pgp\r\n", 5), 0u);
  MediaTypeSniffer s;
  s.feed("");
  EXPECT_EQ(kinds(s), 0u);
  s.feed("text/html");
  EXPECT_EQ(kinds(s), 0u);
  s.feed(" multipart/encrypted");
  EXPECT_EQ(kinds(s), kEncrypted);
  s.feed("anything");  // stays seen
  EXPECT_EQ(kinds(s), kEncrypted);
}

TEST(AvHtmlLeaf, TypesAndNamesABrowserRunsAsHtml) {
  for (const char* type : {"text/html", "application/xhtml+xml", "image/svg+xml"}) {
    EXPECT_TRUE(htmlLeaf(type, "")) << type;
  }
  for (const char* name : {"invoice.html", "INVOICE.HTM", "a.b.Shtml", "x.xhtml", "x.xht", "logo.svg", "setup.hta",
                           "invoice.html.", "invoice.html . ", "請求書.html"}) {
    EXPECT_TRUE(htmlLeaf("application/octet-stream", name)) << name;
  }
  for (const char* name : {"", "html", "invoice.html.pdf", "invoice.htmx", "invoice.svgz", "a.txt", ".", "notes.mht"}) {
    EXPECT_FALSE(htmlLeaf("application/octet-stream", name)) << name;
  }
  EXPECT_FALSE(htmlLeaf("text/plain", "readme.txt"));
  EXPECT_FALSE(htmlLeaf("text/xml", ""));
}

TEST(AvWebArchive, NamesAndTypeABrowserOpensAsAPage) {
  for (const char* name : {"page.mht", "PAGE.MHTML", "請求書.mht", "page.mht. ", "a.b.Mht"}) {
    EXPECT_TRUE(webArchiveLeaf("application/octet-stream", name)) << name;
  }
  EXPECT_TRUE(webArchiveLeaf("application/x-mimearchive", ""));
  for (const char* name : {"", "mht", "page.mht.pdf", "page.mhtx", "page.html", "page.eml"}) {
    EXPECT_FALSE(webArchiveLeaf("application/octet-stream", name)) << name;
  }
}

// A web archive as a browser saves one: a page and an image, the page
// quoted-printable ("=3D", soft line breaks), as `page` says.
std::string webArchive(const std::string& pageHeaders, const std::string& page) {
  return "From: <Saved by Blink>\r\nSnapshot-Content-Location: https://example.jp/\r\n"
         "Subject: =?utf-8?Q?=E8=AB=8B=E6=B1=82?=\r\nMIME-Version: 1.0\r\n"
         "Content-Type: multipart/related; type=\"text/html\"; boundary=\"----MultipartBoundary--x\"\r\n\r\n"
         "------MultipartBoundary--x\r\n" + pageHeaders + "Content-Location: https://example.jp/\r\n\r\n" + page +
         "\r\n------MultipartBoundary--x\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n"
         "Content-Location: https://example.jp/a.png\r\n\r\niVBORw0KGgo=\r\n------MultipartBoundary--x--\r\n";
}

bool archiveActive(const std::string& bytes, std::uint64_t memory = 1 << 20) {
  mime::Spool spool(memory);
  spool.append(bytes);
  return webArchiveHasActiveHtml(spool);
}

TEST(AvWebArchive, ItsPagesAreCheckedAsTheBrowserShowsThem) {
  const std::string qp = "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n";
  EXPECT_FALSE(archiveActive(webArchive(qp, "<html><body><p class=3D\"x\">=E8=AB=8B=E6=B1=82</p></body></html>")));
  // "<scr=\r\nipt>" is "<script>" once quoted-printable is undone.
  EXPECT_TRUE(archiveActive(webArchive(qp, "<html><body><scr=\r\nipt>go()</script></body></html>")));
  EXPECT_TRUE(archiveActive(webArchive(qp, "<img src=3Dx onerror=3D\"go()\">")));
  const std::string b64 = "Content-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n";
  EXPECT_TRUE(archiveActive(webArchive(b64, "PGJvZHkgb25sb2FkPWdvKCk+")));  // <body onload=go()>
  // In ISO-2022-JP an escape sequence inside "onclick" vanishes in decoding.
  const std::string jis = "Content-Type: text/html; charset=iso-2022-jp\r\n";
  EXPECT_TRUE(archiveActive(webArchive(jis, "<a href=# on\x1b(Bclick=\"go()\">x</a>")));
  // An SVG image saved with the page can hold script too; a PNG is not read.
  const std::string svg = webArchive(qp, "<p>hi</p>");
  EXPECT_FALSE(archiveActive(svg));
  std::string withSvg = svg;
  withSvg.insert(withSvg.rfind("------MultipartBoundary--x--"),
                 "------MultipartBoundary--x\r\nContent-Type: image/svg+xml\r\n\r\n<svg onload=\"go()\"/>\r\n");
  EXPECT_TRUE(archiveActive(withSvg));
  // Held in memory or spilled to a file, the same.
  EXPECT_TRUE(archiveActive(webArchive(qp, "<script>go()</script>"), 64));
  EXPECT_FALSE(archiveActive(webArchive(qp, "<p>hi</p>"), 64));
}

TEST(AvWebArchive, WhatCannotBeCheckedWholeCountsAsActive) {
  // Plain HTML named .mht (no MIME header block): read as HTML.
  EXPECT_TRUE(archiveActive("<html><body><script>go()</script></body></html>\r\n"));
  EXPECT_FALSE(archiveActive("<html><body><p>hi</p></body></html>\r\n"));
  // A page longer than the check reads: script after the padding.
  std::string padding;
  while (padding.size() <= kHtmlCheckMax) padding += "<p>" + std::string(1000, 'x') + "</p>\r\n";
  EXPECT_TRUE(archiveActive(webArchive("Content-Type: text/html\r\n", padding + "<script>go()</script>")));
  // MIME nested past the walk's limits: what is past them is not seen.
  std::string deep = "MIME-Version: 1.0\r\nContent-Type: multipart/related; boundary=b0\r\n\r\n";
  for (int i = 1; i <= 80; ++i) {
    deep += "--b" + std::to_string(i - 1) + "\r\nContent-Type: multipart/related; boundary=b" + std::to_string(i) +
            "\r\n\r\n";
  }
  deep += "--b80\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n--b80--\r\n";
  EXPECT_TRUE(archiveActive(deep));
}

}  // namespace
}  // namespace sekimori::antivirus
