// tests/unit/common/mime/replace_test.cpp — common/mime/replace.cpp:
// attachments swapped for notices with every other byte kept, checked by
// walking the result; the refusals.
#include "common/mime/replace.h"

#include <glib.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

namespace sekimori::mime {
namespace {

std::string crlf(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '\n') out += '\r';
    out += c;
  }
  return out;
}

std::unique_ptr<Spool> spoolOf(std::string_view msg, std::uint64_t memoryLimit = 1 << 20) {
  auto s = std::make_unique<Spool>(memoryLimit);
  EXPECT_TRUE(s->append(msg));
  return s;
}

struct Seen {
  PartInfo info;
  std::string content;
};

std::vector<Seen> walkAll(Spool& spool, WalkResult* result = nullptr) {
  std::vector<Seen> seen;
  const WalkResult r = walk(spool, {}, [&](const PartInfo& p, Content* c) {
    Seen s{p, {}};
    if (c) {
      std::vector<std::byte> buf(4096);
      for (std::size_t n; (n = c->read(buf)) > 0;) s.content.append(reinterpret_cast<const char*>(buf.data()), n);
    }
    seen.push_back(std::move(s));
    return true;
  });
  if (result) *result = r;
  return seen;
}

std::vector<int> pathOf(Spool& spool, const std::string& filename) {
  for (const auto& s : walkAll(spool)) {
    if (s.info.filename == filename) return s.info.path;
  }
  ADD_FAILURE() << "no part named " << filename;
  return {};
}

std::string bodyOf(const std::string& msg) { return msg.substr(msg.find("\r\n\r\n") + 4); }
std::string headOf(const std::string& msg) { return msg.substr(0, msg.find("\r\n\r\n") + 4); }

// The new message as the milter would hand it on: old headers, new body.
std::unique_ptr<Spool> resultSpool(const std::string& msg, const ReplaceResult& r) {
  return spoolOf(headOf(msg) + r.body);
}

// "こんにちは" in ISO-2022-JP, raw on the wire (7bit with ESC sequences).
const std::string kJis = "\x1b$B$3$s$K$A$O\x1b(B";
// "日本語のテキスト" in UTF-8, sent 8bit.
const std::string kUtf8 =
    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9\xe3\x83\x88";
const std::string kNotice = "添付ファイル report.zip は削除されました。\nThe attachment was removed.";

// Preface, transport padding after a boundary, an epilogue: all must survive.
const std::string kMixed = crlf(
    "From: a@example.jp\n"
    "Subject: =?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?=\n"
    "MIME-Version: 1.0\n"
    "Content-Type: multipart/mixed; boundary=\"=_outer\"\n"
    "\n"
    "This is a multi-part message in MIME format.\n"
    "--=_outer\n"
    "Content-Type: text/plain; charset=us-ascii\n"
    "\n"
    "plain text\n"
    "\n"
    "--=_outer \t \n"
    "Content-Type: text/plain; charset=ISO-2022-JP\n"
    "Content-Transfer-Encoding: 7bit\n"
    "\n" +
    kJis + "\n" + kJis +
    "\n"
    "--=_outer\n"
    "Content-Type: application/zip; name=\"report.zip\"\n"
    "Content-Disposition: attachment; filename=\"report.zip\"\n"
    "Content-Transfer-Encoding: base64\n"
    "\n"
    "UEsDBBQAAAAIAAAAIQBleGFtcGxlIHppcCBjb250ZW50IGZvciB0aGUgdGVzdHMgb2YgcmVwbGFj\n"
    "ZS5jcHAgLS0gbm90IGEgcmVhbCB6aXA=\n"
    "--=_outer\n"
    "Content-Type: text/plain; charset=UTF-8\n"
    "Content-Transfer-Encoding: 8bit\n"
    "\n" +
    kUtf8 +
    "\n"
    "--=_outer--\n"
    "epilogue\n");

TEST(ReplaceParts, ZipBecomesNoticeAndEveryOtherByteStays) {
  // In memory, and spooled to a file (memory limit below the message size).
  for (const std::uint64_t memoryLimit : {std::uint64_t{1} << 20, std::uint64_t{64}}) {
    SCOPED_TRACE(memoryLimit);
    auto spool = spoolOf(kMixed, memoryLimit);
    ASSERT_EQ(spool->inMemory(), memoryLimit > kMixed.size());
    const std::vector<int> path = pathOf(*spool, "report.zip");
    ASSERT_EQ(path, (std::vector<int>{2}));

    const ReplaceResult r = replaceParts(*spool, {{path, kNotice, ""}});
    ASSERT_TRUE(r.ok) << r.error;
    EXPECT_FALSE(r.topLevelChanged);

    // Byte for byte: everything before the zip part's headers and from the
    // line end before the next boundary on.
    const std::string body = bodyOf(kMixed);
    const std::size_t partBegin = body.find("Content-Type: application/zip");
    const std::size_t partEnd = body.find("\r\n--=_outer\r\nContent-Type: text/plain; charset=UTF-8");
    ASSERT_NE(partBegin, std::string::npos);
    ASSERT_NE(partEnd, std::string::npos);
    EXPECT_EQ(r.body.substr(0, partBegin), body.substr(0, partBegin));
    EXPECT_EQ(r.body.substr(r.body.size() - (body.size() - partEnd)), body.substr(partEnd));
    EXPECT_NE(r.body.find(kJis + "\r\n" + kJis + "\r\n--=_outer"), std::string::npos);
    EXPECT_NE(r.body.find("--=_outer \t \r\n"), std::string::npos);
    EXPECT_EQ(r.body.find("UEsDBBQ"), std::string::npos);

    // The notice part, exactly.
    const std::string middle = r.body.substr(partBegin, r.body.size() - (body.size() - partEnd) - partBegin);
    EXPECT_EQ(middle.substr(0, middle.find("\r\n\r\n") + 4),
              "Content-Type: text/plain; charset=UTF-8\r\n"
              "Content-Transfer-Encoding: base64\r\n"
              "Content-Disposition: inline\r\n\r\n");

    WalkResult wr;
    auto after = resultSpool(kMixed, r);
    const auto seen = walkAll(*after, &wr);
    EXPECT_FALSE(wr.malformed);
    ASSERT_EQ(seen.size(), 5u);
    EXPECT_EQ(seen[1].content, "plain text\r\n");
    EXPECT_EQ(seen[2].info.charset, "iso-2022-jp");
    EXPECT_EQ(seen[2].content, kJis + "\r\n" + kJis);
    EXPECT_EQ(seen[3].info.path, path);
    EXPECT_EQ(seen[3].info.contentType, "text/plain");
    EXPECT_EQ(seen[3].info.charset, "utf-8");
    EXPECT_FALSE(seen[3].info.isAttachment);
    EXPECT_EQ(seen[3].content, crlf(kNotice));
    EXPECT_EQ(seen[4].content, kUtf8);
  }
}

TEST(ReplaceParts, NoticeFilenameIsRfc2231) {
  auto spool = spoolOf(kMixed);
  const ReplaceResult r = replaceParts(*spool, {{{2}, "removed", "削除済み.txt"}});
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_NE(r.body.find("Content-Disposition: inline;\r\n"
                        " filename*=UTF-8''%E5%89%8A%E9%99%A4%E6%B8%88%E3%81%BF.txt\r\n"),
            std::string::npos);
  auto after = resultSpool(kMixed, r);
  const auto seen = walkAll(*after);
  ASSERT_EQ(seen.size(), 5u);
  EXPECT_EQ(seen[3].info.filename, "削除済み.txt");
  EXPECT_TRUE(seen[3].info.isAttachment);
}

const std::string kNested = crlf(
    "From: a@example.jp\n"
    "Content-Type: multipart/alternative; boundary=alt\n"
    "\n"
    "--alt\n"
    "Content-Type: text/plain\n"
    "\n"
    "see html\n"
    "--alt\n"
    "Content-Type: multipart/mixed; boundary=mix\n"
    "\n"
    "--mix\n"
    "Content-Type: text/html; charset=UTF-8\n"
    "\n"
    "<p>hi</p>\n"
    "--mix\n"
    "Content-Type: image/png\n"
    "Content-Disposition: attachment; filename=a.png\n"
    "Content-Transfer-Encoding: base64\n"
    "\n"
    "iVBORw0KGgo=\n"
    "--mix\n"
    "Content-Type: application/pdf\n"
    "Content-Disposition: attachment; filename=b.pdf\n"
    "Content-Transfer-Encoding: base64\n"
    "\n"
    "JVBERi0xLjQ=\n"
    "--mix--\n"
    "--alt--\n");

TEST(ReplaceParts, MixedNestedInAlternative) {
  auto spool = spoolOf(kNested);
  const std::vector<int> path = pathOf(*spool, "a.png");
  ASSERT_EQ(path, (std::vector<int>{1, 1}));
  const ReplaceResult r = replaceParts(*spool, {{path, "png removed", ""}});
  ASSERT_TRUE(r.ok) << r.error;
  auto after = resultSpool(kNested, r);
  const auto seen = walkAll(*after);
  ASSERT_EQ(seen.size(), 6u);
  EXPECT_EQ(seen[3].content, "<p>hi</p>");
  EXPECT_EQ(seen[4].info.path, path);
  EXPECT_EQ(seen[4].content, "png removed");
  EXPECT_EQ(seen[5].info.filename, "b.pdf");
  EXPECT_EQ(seen[5].content, "%PDF-1.4");
  EXPECT_NE(r.body.find("\r\n--mix\r\nContent-Type: application/pdf\r\n"), std::string::npos);
}

TEST(ReplaceParts, TwoAttachmentsAtOnceInAnyOrder) {
  auto spool = spoolOf(kNested);
  const ReplaceResult r = replaceParts(*spool, {{{1, 2}, "pdf removed", ""}, {{1, 1}, "png removed", ""}});
  ASSERT_TRUE(r.ok) << r.error;
  auto after = resultSpool(kNested, r);
  const auto seen = walkAll(*after);
  ASSERT_EQ(seen.size(), 6u);
  EXPECT_EQ(seen[4].content, "png removed");
  EXPECT_EQ(seen[5].content, "pdf removed");
  EXPECT_EQ(seen[5].info.contentType, "text/plain");
  // The closing delimiters and what lies between them are as they were.
  EXPECT_TRUE(r.body.ends_with("\r\n--mix--\r\n--alt--\r\n"));
  EXPECT_TRUE(r.body.starts_with(bodyOf(kNested).substr(0, bodyOf(kNested).find("Content-Type: image/png"))));
}

const std::string kForwarded = crlf(
    "From: a@example.jp\n"
    "Content-Type: multipart/mixed; boundary=outer\n"
    "\n"
    "--outer\n"
    "Content-Type: text/plain\n"
    "\n"
    "forwarding\n"
    "--outer\n"
    "Content-Type: message/rfc822\n"
    "\n"
    "From: b@example.jp\n"
    "Subject: inner\n"
    "Content-Type: multipart/mixed; boundary=inner\n"
    "\n"
    "--inner\n"
    "Content-Type: text/plain\n"
    "\n"
    "inner body\n"
    "--inner\n"
    "Content-Type: application/x-msdownload; name=evil.exe\n"
    "Content-Transfer-Encoding: base64\n"
    "\n"
    "TVqQAAMAAAAEAAAA\n"
    "--inner--\n"
    "--outer--\n");

TEST(ReplaceParts, AttachmentInsideAttachedMessage) {
  auto spool = spoolOf(kForwarded);
  const std::vector<int> path = pathOf(*spool, "evil.exe");
  ASSERT_EQ(path, (std::vector<int>{1, 0, 1}));
  const ReplaceResult r = replaceParts(*spool, {{path, "exe removed", ""}});
  ASSERT_TRUE(r.ok) << r.error;
  auto after = resultSpool(kForwarded, r);
  const auto seen = walkAll(*after);
  ASSERT_EQ(seen.size(), 6u);
  EXPECT_EQ(seen[4].content, "inner body");
  EXPECT_EQ(seen[5].info.path, path);
  EXPECT_EQ(seen[5].content, "exe removed");
  EXPECT_NE(r.body.find("Subject: inner\r\nContent-Type: multipart/mixed; boundary=inner\r\n"), std::string::npos);
  EXPECT_TRUE(r.body.ends_with("\r\n--inner--\r\n--outer--\r\n"));
}

// An attached message sent as it is (not encoded) goes whole too, when it
// is the one to go: its header block, its headers and all inside it.
TEST(ReplaceParts, AttachedMessageGoesWhole) {
  auto spool = spoolOf(kForwarded);
  ASSERT_EQ(walkAll(*spool).size(), 6u);
  const ReplaceResult r = replaceParts(*spool, {{{1}, kNotice, "fwd.eml"}});
  ASSERT_TRUE(r.ok) << r.error;
  const auto seen = walkAll(*resultSpool(kForwarded, r));
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[1].content, "forwarding");
  EXPECT_EQ(seen[2].info.path, (std::vector<int>{1}));
  EXPECT_EQ(seen[2].info.contentType, "text/plain");
  EXPECT_EQ(seen[2].info.filename, "fwd.eml");
  EXPECT_EQ(seen[2].content, crlf(kNotice));
  EXPECT_EQ(r.body.find("inner"), std::string::npos);
  const std::string body = bodyOf(kForwarded);
  EXPECT_TRUE(r.body.starts_with(body.substr(0, body.find("--outer\r\nContent-Type: message"))));
  EXPECT_TRUE(r.body.ends_with("\r\n--outer--\r\n"));
}

// In a multipart/digest a part without header fields is a message/rfc822
// (RFC 2046 5.1.5): its empty header block goes with it.
TEST(ReplaceParts, DigestEntryGoesWhole) {
  const std::string msg = crlf(
      "Content-Type: multipart/digest; boundary=d\n"
      "\n"
      "--d\n"
      "\n"
      "Subject: first\n"
      "\n"
      "first entry\n"
      "--d\n"
      "\n"
      "Subject: second\n"
      "Content-Type: text/plain; charset=ISO-2022-JP\n"
      "\n" + kJis + "\n"
      "--d--\n");
  auto spool = spoolOf(msg);
  const auto before = walkAll(*spool);
  ASSERT_EQ(before.size(), 5u);
  EXPECT_EQ(before[1].info.contentType, "message/rfc822");
  const ReplaceResult r = replaceParts(*spool, {{{0}, kNotice, ""}});
  ASSERT_TRUE(r.ok) << r.error;
  const auto seen = walkAll(*resultSpool(msg, r));
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[1].info.contentType, "text/plain");
  EXPECT_EQ(seen[1].content, crlf(kNotice));
  EXPECT_EQ(seen[2].info.contentType, "message/rfc822");
  EXPECT_EQ(seen[3].content, kJis);
  EXPECT_EQ(r.body.find("first entry"), std::string::npos);
  EXPECT_TRUE(r.body.ends_with("--d\r\n\r\nSubject: second\r\nContent-Type: text/plain; charset=ISO-2022-JP\r\n\r\n" +
                               kJis + "\r\n--d--\r\n"));
}

TEST(ReplaceParts, AttachedMessageRefusals) {
  auto spool = spoolOf(kForwarded);
  const ReplaceResult r = replaceParts(*spool, {{{1}, "", "", NewContent{"text/html", "UTF-8", "<p>x</p>"}}});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("only be replaced by a notice"), std::string::npos) << r.error;

  // A boundary inside the attached message that a reader could take for
  // the enclosing one (with and without its closing line): where the
  // message ends is unclear, so it is not cut out. A distinct one is.
  struct Case {
    std::string outer, inner;
    bool closed;
    const char* error;  // nullptr: replaced
  };
  const Case cases[] = {
      {"b", "b--", true, "after the closing delimiter"}, {"b", "b", true, "after the closing delimiter"},
      {"b--", "b", true, "GMime sees 3 parts"},          {"b--", "b", false, "GMime sees 2 parts"},
      {"b", "b--", false, "after the closing delimiter"}, {"b", "b", false, "GMime sees 2 parts"},
      {"b", "c", true, nullptr},                          {"b", "b---", false, nullptr},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.outer + " / " + c.inner);
    const std::string msg = crlf(
        "Content-Type: multipart/mixed; boundary=\"" + c.outer + "\"\n"
        "\n"
        "--" + c.outer + "\n"
        "Content-Type: text/plain\n"
        "\n"
        "text\n"
        "--" + c.outer + "\n"
        "Content-Type: message/rfc822\n"
        "\n"
        "Subject: inner\n"
        "Content-Type: multipart/mixed; boundary=\"" + c.inner + "\"\n"
        "\n"
        "--" + c.inner + "\n"
        "Content-Type: text/plain\n"
        "\n"
        "one\n"
        "--" + c.inner + "\n"
        "Content-Type: text/plain\n"
        "\n"
        "two\n" + (c.closed ? "--" + c.inner + "--\n" : std::string()) +
        "--" + c.outer + "\n"
        "Content-Type: text/plain\n"
        "\n"
        "last\n"
        "--" + c.outer + "--\n");
    auto s = spoolOf(msg);
    const ReplaceResult res = replaceParts(*s, {{{1}, "removed", ""}});
    if (c.error == nullptr) {
      ASSERT_TRUE(res.ok) << res.error;
      const auto seen = walkAll(*resultSpool(msg, res));
      ASSERT_EQ(seen.size(), 4u);
      EXPECT_EQ(seen[2].content, "removed");
      EXPECT_EQ(seen[3].content, "last");
    } else {
      EXPECT_FALSE(res.ok);
      EXPECT_NE(res.error.find(c.error), std::string::npos) << res.error;
    }
  }
}

// An attached message sent in base64 cannot be edited inside without
// re-encoding it, but it is a leaf of the enclosing multipart: it goes
// whole, with the parts walk() reported inside it.
TEST(ReplaceParts, EncodedAttachedMessageGoesWhole) {
  const std::string inner = crlf(
      "Subject: inner\n"
      "Content-Type: multipart/mixed; boundary=c\n"
      "\n"
      "--c\n"
      "Content-Type: text/plain\n"
      "\n"
      "inner body\n"
      "--c\n"
      "Content-Type: application/zip; name=z.zip\n"
      "\n"
      "PK\n"
      "--c--\n");
  gchar* encoded = g_base64_encode(reinterpret_cast<const guchar*>(inner.data()), inner.size());
  const std::string b64 = encoded;
  g_free(encoded);
  const std::string msg = crlf(
      "Content-Type: multipart/mixed; boundary=b\n"
      "\n"
      "--b\n"
      "Content-Type: text/plain; charset=ISO-2022-JP\n"
      "\n" + kJis + "\n"
      "--b\n"
      "Content-Type: message/rfc822; name=fwd.eml\n"
      "Content-Transfer-Encoding: base64\n"
      "\n" + b64 + "\n"
      "--b\n"
      "Content-Type: text/plain; charset=UTF-8\n"
      "\n" + kUtf8 + "\n"
      "--b--\n");
  auto spool = spoolOf(msg);
  const auto before = walkAll(*spool);
  ASSERT_EQ(before.size(), 7u);  // the multipart, 3 parts, and 3 entries inside the attached message
  EXPECT_EQ(before[2].info.path, (std::vector<int>{1}));
  EXPECT_TRUE(before[2].info.encodedMessage);
  EXPECT_EQ(pathOf(*spool, "z.zip"), (std::vector<int>{1, 0, 1}));

  const ReplaceResult r = replaceParts(*spool, {{{1}, kNotice, "fwd.eml"}});
  ASSERT_TRUE(r.ok) << r.error;
  const auto seen = walkAll(*resultSpool(msg, r));
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[1].content, kJis);
  EXPECT_EQ(seen[2].info.path, (std::vector<int>{1}));
  EXPECT_EQ(seen[2].info.filename, "fwd.eml");
  EXPECT_EQ(seen[2].content, crlf(kNotice));
  EXPECT_EQ(seen[3].content, kUtf8);
  EXPECT_EQ(r.body.find(b64.substr(0, 40)), std::string::npos);
  // The parts before and after byte-identical.
  EXPECT_TRUE(r.body.starts_with("--b\r\nContent-Type: text/plain; charset=ISO-2022-JP\r\n\r\n" + kJis +
                                 "\r\n--b\r\n"));
  EXPECT_TRUE(r.body.ends_with("\r\n--b\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n" + kUtf8 +
                               "\r\n--b--\r\n"));
}

// Handled, not refused: GMime and the scanner agree the part runs to the
// end of the message (or of the enclosing multipart), and the result is
// left without a closing delimiter just like the original.
TEST(ReplaceParts, LastPartWithoutClosingDelimiter) {
  const std::string msg = crlf(
      "Content-Type: multipart/mixed; boundary=b\n"
      "\n"
      "--b\n"
      "\n"
      "text\n"
      "--b\n"
      "Content-Type: application/zip; name=x.zip\n"
      "Content-Transfer-Encoding: base64\n"
      "\n"
      "UEsDBA==\n");
  auto spool = spoolOf(msg);
  const ReplaceResult r = replaceParts(*spool, {{{1}, "zip removed", ""}});
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_TRUE(r.body.starts_with("--b\r\n\r\ntext\r\n--b\r\nContent-Type: text/plain; charset=UTF-8\r\n"));
  EXPECT_TRUE(r.body.ends_with("\r\n"));
  auto after = resultSpool(msg, r);
  const auto seen = walkAll(*after);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[1].content, "text");
  EXPECT_EQ(seen[2].content, "zip removed");

  // Inside an unclosed inner multipart the part ends at the outer boundary.
  const std::string nested = crlf(
      "Content-Type: multipart/mixed; boundary=b\n"
      "\n"
      "--b\n"
      "Content-Type: multipart/mixed; boundary=c\n"
      "\n"
      "--c\n"
      "Content-Type: application/zip; name=y.zip\n"
      "\n"
      "PK\n"
      "--b\n"
      "\n"
      "after\n"
      "--b--\n");
  auto spool2 = spoolOf(nested);
  const ReplaceResult r2 = replaceParts(*spool2, {{{0, 0}, "y removed", ""}});
  ASSERT_TRUE(r2.ok) << r2.error;
  EXPECT_TRUE(r2.body.ends_with("\r\n--b\r\n\r\nafter\r\n--b--\r\n"));
  auto after2 = resultSpool(nested, r2);
  const auto seen2 = walkAll(*after2);
  ASSERT_EQ(seen2.size(), 4u);
  EXPECT_EQ(seen2[2].content, "y removed");
  EXPECT_EQ(seen2[3].content, "after");
}

TEST(ReplaceParts, EmptyPartsAndBareBoundaries) {
  // A part whose content is empty, and one whose header block runs into the
  // next boundary line without an empty line of its own.
  const std::string msg = crlf(
      "Content-Type: multipart/mixed; boundary=b\n"
      "\n"
      "--b\n"
      "Content-Type: application/octet-stream; name=empty.bin\n"
      "\n"
      "\n"
      "--b\n"
      "Content-Type: application/octet-stream; name=short.bin\n"
      "\n"
      "--b\n"
      "\n"
      "end\n"
      "--b--\n");
  auto spool = spoolOf(msg);
  const ReplaceResult r = replaceParts(*spool, {{{0}, "one", ""}, {{1}, "two", ""}});
  ASSERT_TRUE(r.ok) << r.error;
  auto after = resultSpool(msg, r);
  const auto seen = walkAll(*after);
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[1].content, "one");
  EXPECT_EQ(seen[2].content, "two");
  EXPECT_EQ(seen[3].content, "end");
}

TEST(ReplaceParts, BareLineFeedsAreKeptAsTheyCame) {
  // Not what libmilter delivers, but it must not break: the scanner takes a
  // bare LF before a boundary line as that line's end, as GMime does.
  const std::string msg =
      "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
      "--b\n\nunix text\n--b\nContent-Type: application/zip; name=x.zip\n\nPK\n--b--\n";
  auto spool = spoolOf(msg);
  const ReplaceResult r = replaceParts(*spool, {{{1}, "removed", ""}});
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_TRUE(r.body.starts_with("--b\n\nunix text\n--b\nContent-Type: text/plain"));
  EXPECT_TRUE(r.body.ends_with("\n--b--\n"));
  auto after = spoolOf("Content-Type: multipart/mixed; boundary=b\r\n\r\n" + r.body);
  const auto seen = walkAll(*after);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[1].content, "unix text");
  EXPECT_EQ(seen[2].content, "removed");
}

// New content for a part (html_script_action = strip): the part keeps its
// other header fields (Content-ID, folded ones), gets base64 UTF-8; every
// other byte stays.
const std::string kAlternative = crlf(
    "From: a@example.jp\n"
    "MIME-Version: 1.0\n"
    "Content-Type: multipart/alternative; boundary=alt\n"
    "\n"
    "--alt\n"
    "Content-Type: text/plain; charset=ISO-2022-JP\n"
    "\n" +
    kJis +
    "\n"
    "--alt\n"
    "Content-Type: text/html;\n"
    "\tcharset=\"iso-2022-jp\"\n"
    "Content-ID: <html-1@example.jp>\n"
    "Content-Transfer-Encoding: quoted-printable\n"
    "X-Extra: kept\n"
    "\n"
    "<p onclick=3D\"x()\">" + kJis + "</p>\n"
    "--alt--\n");

TEST(ReplaceParts, NewContentKeepsTheOtherFieldsAndEveryOtherByte) {
  auto spool = spoolOf(kAlternative);
  Replacement rep;
  rep.path = {1};
  rep.content = NewContent{"text/html", "UTF-8", "<p>" + kUtf8 + "</p>"};
  const ReplaceResult r = replaceParts(*spool, {rep});
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_FALSE(r.topLevelChanged);
  EXPECT_TRUE(r.topLevelHeaders.empty());

  const std::string body = bodyOf(kAlternative);
  const std::size_t partBegin = body.find("Content-Type: text/html");
  EXPECT_EQ(r.body.substr(0, partBegin), body.substr(0, partBegin));
  EXPECT_TRUE(r.body.ends_with("\r\n--alt--\r\n")) << r.body;
  const std::string part = r.body.substr(partBegin, r.body.find("\r\n\r\n", partBegin) + 4 - partBegin);
  EXPECT_EQ(part,
            "Content-ID: <html-1@example.jp>\r\n"
            "X-Extra: kept\r\n"
            "Content-Type: text/html; charset=UTF-8\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n");

  WalkResult wr;
  auto after = resultSpool(kAlternative, r);
  const auto seen = walkAll(*after, &wr);
  EXPECT_FALSE(wr.malformed);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[1].content, kJis);
  EXPECT_EQ(seen[2].info.contentType, "text/html");
  EXPECT_EQ(seen[2].info.charset, "utf-8");
  EXPECT_EQ(seen[2].content, "<p>" + kUtf8 + "</p>");
}

TEST(ReplaceParts, NewContentForAWholeSinglePartMessage) {
  const std::string msg = crlf(
      "From: a@example.jp\n"
      "Content-Type: text/html; charset=us-ascii\n"
      "Subject: hello\n"
      "\n"
      "<body onload=\"x()\">hi</body>\n");
  auto spool = spoolOf(msg);
  Replacement rep;
  rep.content = NewContent{"text/html", "UTF-8", "<body>hi</body>\r\n"};
  const ReplaceResult r = replaceParts(*spool, {rep});
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_TRUE(r.topLevelChanged);
  ASSERT_EQ(r.topLevelHeaders.size(), 2u);
  EXPECT_EQ(r.topLevelHeaders[0], (std::pair<std::string, std::string>{"Content-Type", "text/html; charset=UTF-8"}));
  EXPECT_EQ(r.topLevelHeaders[1], (std::pair<std::string, std::string>{"Content-Transfer-Encoding", "base64"}));
  // As the MTA applies it: the fields changed in place, the new body.
  auto after = spoolOf(crlf("From: a@example.jp\n"
                            "Content-Type: text/html; charset=UTF-8\n"
                            "Subject: hello\n"
                            "Content-Transfer-Encoding: base64\n"
                            "\n") +
                       r.body);
  const auto seen = walkAll(*after);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].info.charset, "utf-8");
  EXPECT_EQ(seen[0].content, "<body>hi</body>\r\n");

  // Only new content, only on its own, only for a leaf.
  EXPECT_FALSE(replaceParts(*spool, {{{}, "notice", ""}}).ok);
  Replacement other = rep;
  other.path = {0};
  EXPECT_FALSE(replaceParts(*spool, {rep, other}).ok);
  auto multipart = spoolOf(kAlternative);
  const ReplaceResult m = replaceParts(*multipart, {rep});
  EXPECT_FALSE(m.ok);
  EXPECT_NE(m.error.find("not a single part"), std::string::npos) << m.error;
  Replacement badType = rep;
  badType.content->charset = "UTF-8\r\nX-Injected: 1";
  EXPECT_FALSE(replaceParts(*spool, {badType}).ok);

  // Found by fuzz_mime: a content field given twice (even with the same
  // value) would survive the MTA's change of the first one and tell a
  // reader the old type or encoding.
  for (const char* twice : {"Content-Type: text/html\nContent-Type: text/html\n",
                            "Content-Type: text/html\nContent-Transfer-Encoding: 7bit\n"
                            "Content-Transfer-Encoding: 7bit\n"}) {
    SCOPED_TRACE(twice);
    auto dup = spoolOf(crlf(std::string("Subject: x\n") + twice + "\n<body onload=\"x()\">hi</body>\n"));
    const ReplaceResult d = replaceParts(*dup, {rep});
    EXPECT_FALSE(d.ok);
    EXPECT_NE(d.error.find("more than one content field"), std::string::npos) << d.error;
  }
}

TEST(ReplaceParts, Refusals) {
  const std::string single = crlf(
      "Content-Type: application/zip; name=x.zip\n"
      "Content-Transfer-Encoding: base64\n"
      "\n"
      "UEsDBA==\n");
  const std::string encodedMessage = crlf(
      "Content-Type: multipart/mixed; boundary=b\n"
      "\n"
      "--b\n"
      "Content-Type: message/rfc822\n"
      "Content-Transfer-Encoding: base64\n"
      "\n"
      "Q29udGVudC1UeXBlOiBtdWx0aXBhcnQvbWl4ZWQ7IGJvdW5kYXJ5PWMNCg0KLS1jDQpDb250ZW50\n"
      "LVR5cGU6IGFwcGxpY2F0aW9uL3ppcDsgbmFtZT16LnppcA0KDQpQSw0KLS1jLS0NCg==\n"
      "--b--\n");
  const std::string sameBoundary = crlf(
      "Content-Type: multipart/mixed; boundary=b\n"
      "\n"
      "--b\n"
      "Content-Type: multipart/mixed; boundary=b\n"
      "\n"
      "--b\n"
      "Content-Type: application/zip; name=x.zip\n"
      "\n"
      "PK\n"
      "--b--\n"
      "--b--\n");
  const std::string afterClose = crlf(
      "Content-Type: multipart/mixed; boundary=b\n"
      "\n"
      "--b\n"
      "Content-Type: application/zip; name=x.zip\n"
      "\n"
      "PK\n"
      "--b--\n"
      "--b\n"
      "Content-Type: application/zip; name=hidden.zip\n"
      "\n"
      "PK\n"
      "--b--\n");
  const std::string twoContentTypes = crlf(
      "Content-Type: multipart/mixed; boundary=b\n"
      "Content-Type: multipart/mixed; boundary=c\n"
      "\n"
      "--c\n"
      "Content-Type: application/zip; name=x.zip\n"
      "\n"
      "PK\n"
      "--c--\n");
  struct Case {
    const char* label;
    const std::string& msg;
    std::vector<std::vector<int>> paths;
    const char* error;  // a substring of the reason
  };
  const Case cases[] = {
      {"single-part message", single, {{}}, "only be replaced by new content"},
      {"path not found", kMixed, {{9}}, "no such part"},
      {"path below a leaf", kMixed, {{2, 0}}, "no such part"},
      {"a multipart", kNested, {{1}}, "not a leaf part"},
      {"an attached message and a part inside it", kForwarded, {{1}, {1, 0, 1}}, "parts overlap"},
      {"the body of an attached message", kForwarded, {{1, 0}}, "not inside a multipart"},
      {"inside a base64 message/rfc822", encodedMessage, {{0, 0, 0}}, "re-encoding"},
      {"the same part twice", kMixed, {{2}, {2}}, "named twice"},
      {"nothing to do", kMixed, {}, "no parts"},
      {"boundary equal to the enclosing one", sameBoundary, {{0, 0}}, ""},  // (seen as lines after "--b--")
      {"boundary lines after the closing one", afterClose, {{0}}, "after the closing delimiter"},
      {"two Content-Type headers", twoContentTypes, {{0}}, "conflicting header"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.label);
    auto spool = spoolOf(c.msg);
    std::vector<Replacement> parts;
    for (const auto& p : c.paths) parts.push_back({p, "removed", ""});
    const ReplaceResult r = replaceParts(*spool, parts);
    EXPECT_FALSE(r.ok);
    EXPECT_TRUE(r.body.empty());
    EXPECT_NE(r.error.find(c.error), std::string::npos) << r.error;
    EXPECT_FALSE(r.error.empty());
  }
}

TEST(ReplaceParts, TruncatedSpoolIsRefused) {
  Spool spool(1 << 20, "/tmp", 100);
  spool.append(kMixed);
  ASSERT_TRUE(spool.truncated());
  EXPECT_FALSE(replaceParts(spool, {{{2}, "removed", ""}}).ok);
}

TEST(ReplaceParts, LargeMessageSpooledToFile) {
  // ~6 MiB of base64 between two text parts, with a 64 KiB memory limit.
  std::string b64;
  for (int i = 0; i < 80000; ++i) b64 += "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAx\r\n";
  const std::string msg = crlf(
                              "From: a@example.jp\n"
                              "Content-Type: multipart/mixed; boundary=big\n"
                              "\n"
                              "--big\n"
                              "Content-Type: text/plain; charset=ISO-2022-JP\n"
                              "\n") +
                          kJis +
                          crlf("\n--big\nContent-Type: application/zip; name=big.zip\n"
                               "Content-Transfer-Encoding: base64\n\n") +
                          b64 + crlf("--big\nContent-Type: text/plain; charset=UTF-8\n\n") + kUtf8 +
                          crlf("\n--big--\n");
  auto spool = spoolOf(msg, 64 * 1024);
  ASSERT_FALSE(spool->inMemory());
  const ReplaceResult r = replaceParts(*spool, {{pathOf(*spool, "big.zip"), "too big, removed", ""}});
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_LT(r.body.size(), 1000u);
  auto after = resultSpool(msg, r);
  const auto seen = walkAll(*after);
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[1].content, kJis);
  EXPECT_EQ(seen[2].content, "too big, removed");
  EXPECT_EQ(seen[3].content, kUtf8);
}

}  // namespace
}  // namespace sekimori::mime
