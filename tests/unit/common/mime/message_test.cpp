// tests/unit/common/mime/message_test.cpp — common/mime/message.cpp: the
// walk over GMime's tree, decoded content, limits, broken and hostile MIME,
// memory on a 20 MiB message.
#include "common/mime/message.h"

#include <gtest/gtest.h>
#include <malloc.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/sanitized.h"

namespace sekimori::mime {
namespace {

using support::kSanitized;

struct Seen {
  PartInfo info;
  bool hasContent = false;
  std::string content;
};

std::unique_ptr<Spool> spoolOf(std::string_view msg, std::uint64_t memoryLimit = 1 << 20) {
  auto s = std::make_unique<Spool>(memoryLimit);
  EXPECT_TRUE(s->append(msg));
  return s;
}

std::string readContent(Content& c, std::size_t chunk = 4096) {
  std::string out;
  std::vector<std::byte> buf(chunk);
  for (std::size_t n; (n = c.read(buf)) > 0;) out.append(reinterpret_cast<const char*>(buf.data()), n);
  return out;
}

std::vector<Seen> walkAll(Spool& spool, WalkResult* result = nullptr, const WalkLimits& limits = {}) {
  std::vector<Seen> seen;
  const WalkResult r = walk(spool, limits, [&](const PartInfo& p, Content* c) {
    Seen s{p, c != nullptr, {}};
    if (c) s.content = readContent(*c, 3);  // tiny chunks on purpose
    seen.push_back(std::move(s));
    return true;
  });
  if (result) *result = r;
  return seen;
}

// Line endings as libmilter delivers the body: CRLF.
std::string crlf(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '\n') out += '\r';
    out += c;
  }
  return out;
}

const std::string kTree = crlf(R"(From: a@example.jp
Subject: test
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

preamble
--outer
Content-Type: multipart/alternative; boundary="inner"

--inner
Content-Type: text/plain; charset=ISO-2022-JP
Content-Transfer-Encoding: 7bit

hello
--inner
Content-Type: text/html; charset="UTF-8"
Content-Transfer-Encoding: quoted-printable

<p>caf=C3=A9</p>
--inner--
--outer
Content-Type: application/octet-stream; name="a.bin"
Content-Disposition: attachment; filename="report.pdf"
Content-Transfer-Encoding: Base64

aGVsbG8gd29y
bGQ=
--outer
Content-Type: message/rfc822

Subject: inner
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="x"

--x
Content-Type: text/plain

inner body
--x
Content-Type: application/octet-stream
Content-Disposition: inline; filename*=UTF-8''%E6%97%A5.txt
Content-Transfer-Encoding: x-uuencode

begin 644 a.txt
#86)C
`
end
--x--
--outer--
)");

TEST(Message, WalksEveryEntityDepthFirstWithDecodedContent) {
  for (const std::uint64_t memoryLimit : {std::uint64_t{1} << 20, std::uint64_t{64}}) {
    SCOPED_TRACE(memoryLimit);
    auto spool = spoolOf(kTree, memoryLimit);
    ASSERT_EQ(spool->inMemory(), memoryLimit > kTree.size());
    WalkResult r;
    const auto seen = walkAll(*spool, &r);
    EXPECT_TRUE(r.parsed);
    EXPECT_FALSE(r.depthExceeded);
    EXPECT_FALSE(r.partsExceeded);
    EXPECT_FALSE(r.stopped);
    EXPECT_FALSE(r.malformed);
    ASSERT_EQ(seen.size(), 9u);
    EXPECT_EQ(r.parts, 9u);

    struct Want {
      const char* type;
      int depth;
      std::vector<int> path;
      bool attachment;
      bool content;
    };
    const Want want[] = {
        {"multipart/mixed", 0, {}, false, false},
        {"multipart/alternative", 1, {0}, false, false},
        {"text/plain", 2, {0, 0}, false, true},
        {"text/html", 2, {0, 1}, false, true},
        {"application/octet-stream", 1, {1}, true, true},
        {"message/rfc822", 1, {2}, false, false},
        {"multipart/mixed", 2, {2, 0}, false, false},
        {"text/plain", 3, {2, 0, 0}, false, true},
        {"application/octet-stream", 3, {2, 0, 1}, true, true},
    };
    for (std::size_t i = 0; i < seen.size(); ++i) {
      SCOPED_TRACE(i);
      EXPECT_EQ(seen[i].info.contentType, want[i].type);
      EXPECT_EQ(seen[i].info.depth, want[i].depth);
      EXPECT_EQ(seen[i].info.path, want[i].path);
      EXPECT_EQ(seen[i].info.isAttachment, want[i].attachment);
      EXPECT_EQ(seen[i].hasContent, want[i].content);
      EXPECT_FALSE(seen[i].info.encodedMessage);  // message/rfc822 as RFC 2046 wants it
      EXPECT_EQ(seen[i].info.subject, i == 5 ? "inner" : "");  // the attached message's, no other
    }
    EXPECT_EQ(seen[2].info.charset, "iso-2022-jp");
    EXPECT_EQ(seen[2].info.transferEncoding, "7bit");
    EXPECT_EQ(seen[2].content, "hello");
    EXPECT_EQ(seen[3].info.charset, "utf-8");
    EXPECT_EQ(seen[3].info.transferEncoding, "quoted-printable");
    EXPECT_EQ(seen[3].content, "<p>café</p>");
    EXPECT_EQ(seen[4].info.filename, "report.pdf");  // disposition wins over name
    EXPECT_EQ(seen[4].info.transferEncoding, "base64");
    EXPECT_EQ(seen[4].content, "hello world");
    EXPECT_EQ(seen[7].content, "inner body");
    EXPECT_EQ(seen[8].info.filename, "日.txt");   // inline, but it has a filename
    EXPECT_EQ(seen[8].info.transferEncoding, "x-uuencode");
    EXPECT_EQ(seen[8].content, "abc");
  }
}

TEST(Message, JapaneseFilenames) {
  const std::string msg = crlf(
      "Content-Type: multipart/mixed; boundary=b\n\n"
      "--b\n"
      "Content-Type: application/octet-stream\n"
      "Content-Disposition: attachment;\n"
      " filename=\"=?ISO-2022-JP?B?GyRCMnE1RC0hJE4kKkNOJGkkOxsoQg==?=.doc\"\n\nx\n"
      "--b\n"
      "Content-Type: application/octet-stream\n"
      "Content-Disposition: attachment; filename*=ISO-2022-JP''%1B%24B8%2B%40Q%3Dq-%21%21A%1B%28B.xlsx\n\nx\n"
      "--b\n"
      "Content-Type: application/octet-stream\n"
      "Content-Disposition: attachment; filename=\"\x8C\xA9\x90\xCF\x8F\x91\x87@\x81`.xlsx\"\n\nx\n"
      "--b\n"
      "Content-Type: application/pdf; name=\"=?Shift_JIS?B?jKmQz4+Rh0CBYC54bHN4?=\"\n\nx\n"
      "--b\n"
      "Content-Type: text/plain\n"
      "Content-Disposition: attachment\n\nno name\n"
      "--b--\n");
  auto spool = spoolOf(msg);
  const auto seen = walkAll(*spool);
  ASSERT_EQ(seen.size(), 6u);
  EXPECT_EQ(seen[1].info.filename, "会議①のお知らせ.doc");
  EXPECT_EQ(seen[2].info.filename, "見積書①～.xlsx");
  EXPECT_EQ(seen[3].info.filename, "見積書①～.xlsx");
  EXPECT_EQ(seen[4].info.filename, "見積書①～.xlsx");  // Content-Type name only
  EXPECT_TRUE(seen[4].info.isAttachment);
  EXPECT_EQ(seen[5].info.filename, "");
  EXPECT_TRUE(seen[5].info.isAttachment);  // disposition alone
  EXPECT_FALSE(seen[0].info.isAttachment);
}

// base64 on a message/rfc822 part is against RFC 2046; GMime then leaves it
// a leaf. The walk decodes it and goes inside anyway: that is where a
// sender would hide an attachment or a message/partial.
TEST(Message, EncodedMessageRfc822IsWalkedInto) {
  const std::string inner = crlf(
      "Subject: inner\nContent-Type: multipart/mixed; boundary=x\n\n"
      "--x\nContent-Type: application/zip\nContent-Disposition: attachment; filename=evil.zip\n\nPK...\n"
      "--x\nContent-Type: message/partial; id=\"a\"; number=1; total=2\n\npart\n--x--\n");
  // base64 of `inner`, 76 columns.
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string b64;
  for (std::size_t i = 0; i < inner.size(); i += 3) {
    const unsigned char a = inner[i], b = i + 1 < inner.size() ? inner[i + 1] : 0,
                        c = i + 2 < inner.size() ? inner[i + 2] : 0;
    b64 += kAlphabet[a >> 2];
    b64 += kAlphabet[((a & 3) << 4) | (b >> 4)];
    b64 += i + 1 < inner.size() ? kAlphabet[((b & 15) << 2) | (c >> 6)] : '=';
    b64 += i + 2 < inner.size() ? kAlphabet[c & 63] : '=';
    if (b64.size() % 78 == 76) b64 += "\r\n";
  }
  const std::string msg = crlf("Content-Type: multipart/mixed; boundary=o\n\n--o\n"
                               "Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n") +
                          b64 + "\r\n--o--\r\n";
  for (const std::uint64_t memoryLimit : {std::uint64_t{1} << 20, std::uint64_t{16}}) {
    SCOPED_TRACE(memoryLimit);
    auto spool = spoolOf(msg, memoryLimit);
    WalkResult r;
    const auto seen = walkAll(*spool, &r);
    EXPECT_FALSE(r.malformed);
    ASSERT_EQ(seen.size(), 5u);
    EXPECT_EQ(seen[1].info.contentType, "message/rfc822");
    EXPECT_FALSE(seen[1].hasContent);
    EXPECT_FALSE(seen[1].info.isAttachment);
    for (std::size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i].info.encodedMessage, i == 1) << i;
    EXPECT_EQ(seen[1].info.subject, "inner");  // read from the decoded message before it is visited
    EXPECT_EQ(seen[2].info.contentType, "multipart/mixed");
    EXPECT_EQ(seen[2].info.path, (std::vector<int>{0, 0}));
    EXPECT_EQ(seen[3].info.filename, "evil.zip");
    EXPECT_EQ(seen[3].info.depth, 3);
    EXPECT_EQ(seen[3].info.path, (std::vector<int>{0, 0, 0}));
    EXPECT_EQ(seen[3].content, "PK...");
    EXPECT_EQ(seen[4].info.contentType, "message/partial");
  }
  // The same as the whole message: its top-level entity is the encoded one.
  auto top = spoolOf(crlf("Subject: fwd\nContent-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n") + b64 +
                     "\r\n");
  const auto seen = walkAll(*top);
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_TRUE(seen[0].info.encodedMessage);
  EXPECT_EQ(seen[0].info.path, std::vector<int>{});
  EXPECT_EQ(seen[0].info.subject, "inner");  // the attached message's, not the mail's ("fwd")
  EXPECT_EQ(seen[2].info.filename, "evil.zip");
  EXPECT_EQ(seen[2].info.path, (std::vector<int>{0, 0}));
  EXPECT_FALSE(seen[2].info.encodedMessage);
}

// What a notice can call an attached message that has no filename (a
// forward from mutt, a digest entry): its Subject, decoded as any header.
TEST(Message, AttachedMessageSubjects) {
  const std::string msg = crlf(
      "Subject: outer\nContent-Type: multipart/mixed; boundary=b\n\n"
      "--b\nContent-Type: message/rfc822\n\n"
      "Subject: =?ISO-2022-JP?B?GyRCMnE1RBsoQg==?=\n =?UTF-8?B?44Gu5qGI5YaF?=\n\nbody\n"
      "--b\nContent-Type: message/rfc822\n\nFrom: a@example.jp\n\nno subject\n"
      "--b\nContent-Type: multipart/digest; boundary=d\n\n"
      "--d\n\nSubject: Re: =?Shift_JIS?B?jKmQz4+R?=\n\nentry\n--d--\n"
      "--b--\n");
  auto spool = spoolOf(msg);
  WalkResult r;
  const auto seen = walkAll(*spool, &r);
  EXPECT_FALSE(r.malformed);
  ASSERT_EQ(seen.size(), 8u);
  EXPECT_EQ(seen[1].info.contentType, "message/rfc822");
  EXPECT_EQ(seen[1].info.subject, "会議の案内");  // folded, two encoded words in two charsets
  EXPECT_EQ(seen[3].info.contentType, "message/rfc822");
  EXPECT_EQ(seen[3].info.subject, "");
  EXPECT_EQ(seen[6].info.contentType, "message/rfc822");  // a digest entry, by default
  EXPECT_EQ(seen[6].info.subject, "Re: 見積書");
  for (const std::size_t i : {0, 2, 4, 5, 7}) EXPECT_EQ(seen[i].info.subject, "") << i;
}

TEST(Message, SinglePartAttachmentAtTheTop) {
  auto spool = spoolOf(crlf("Subject: scan\nContent-Type: application/pdf; name=\"n.pdf\"\n"
                            "Content-Disposition: attachment; filename=\"scan.pdf\"\n"
                            "Content-Transfer-Encoding: base64\n\nJVBERi0=\n"));
  const auto seen = walkAll(*spool);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].info.contentType, "application/pdf");
  EXPECT_EQ(seen[0].info.filename, "scan.pdf");
  EXPECT_TRUE(seen[0].info.isAttachment);
  EXPECT_EQ(seen[0].content, "%PDF-");
}

// The milter walks messages on many threads at once.
TEST(Message, WalksRunConcurrently) {
  std::vector<std::thread> threads;
  std::atomic<int> good{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        Spool spool(i % 2 ? 64 : 1 << 20);
        spool.append(kTree);
        std::size_t parts = 0;
        std::string attachment;
        walk(spool, {}, [&](const PartInfo& p, Content* c) {
          ++parts;
          if (c && p.filename == "report.pdf") attachment = readContent(*c);
          return true;
        });
        if (parts == 9 && attachment == "hello world" && decodeHeader("=?UTF-8?B?5pel?=") == "日") ++good;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(good.load(), 200);
}

TEST(Message, DefaultsWhenHeadersAreMissing) {
  {
    auto spool = spoolOf(crlf("Subject: no type\n\nbody\n"));
    const auto seen = walkAll(*spool);
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(seen[0].info.contentType, "text/plain");
    EXPECT_EQ(seen[0].info.charset, "");
    EXPECT_EQ(seen[0].info.transferEncoding, "");
    EXPECT_EQ(seen[0].info.depth, 0);
    EXPECT_TRUE(seen[0].info.path.empty());
    EXPECT_EQ(seen[0].content, "body\r\n");
  }
  {
    // Inside multipart/digest a part without Content-Type is message/rfc822.
    auto spool = spoolOf(crlf("Content-Type: multipart/digest; boundary=d\n\n"
                              "--d\n\nSubject: one\n\nfirst\n"
                              "--d--\n"));
    const auto seen = walkAll(*spool);
    ASSERT_EQ(seen.size(), 3u);
    EXPECT_EQ(seen[1].info.contentType, "message/rfc822");
    EXPECT_EQ(seen[2].info.contentType, "text/plain");
    EXPECT_EQ(seen[2].info.path, (std::vector<int>{0, 0}));
  }
}

TEST(Message, DecodesWhatItCanOfBadBase64) {
  auto spool = spoolOf(crlf("Content-Type: application/octet-stream\n"
                            "Content-Transfer-Encoding: base64\n\n"
                            "aGVs!!bG8g\x01\xff"
                            "d29y*bGQ\n====\nQUJD\n"));
  const auto seen = walkAll(*spool);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_TRUE(seen[0].content.starts_with("hello world")) << seen[0].content;
}

// Broken or hostile input: a verdict, never a crash, a hang or an exception.
TEST(Message, BrokenMimeNeverFails) {
  std::string binary;
  for (int i = 0; i < 70000; ++i) binary += static_cast<char>((i * 7919) % 256);
  const struct {
    const char* label;
    std::string msg;
    bool malformed;
  } cases[] = {
      {"closing boundary missing",
       crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nunterminated\n"), false},
      {"boundary never appears", crlf("Content-Type: multipart/mixed; boundary=b\n\njust text\n"), true},
      {"multipart without boundary", crlf("Content-Type: multipart/mixed\n\n--b\n\nx\n--b--\n"), true},
      {"nul bytes", std::string("Subject: a\0b\r\nContent-Type: text/plain\r\n\r\nx\0y\r\n", 45), false},
      {"bare lf", "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nlf\n--b--\n", false},
      {"headers only", "Subject: x\r\n", false},
      {"header without colon", crlf("Subject: x\nthis is not a header\n\nbody\n"), false},
      {"binary body", "Content-Type: application/octet-stream\r\n\r\n" + binary, false},
      {"one 256 KiB header line", "Subject: " + std::string(1 << 18, 'a') + "\r\n\r\nbody\r\n", false},
      {"boundary inside boundary", crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\n"
                                        "Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--b--\n--b--\n"),
       false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    auto spool = spoolOf(c.msg);
    WalkResult r;
    const auto seen = walkAll(*spool, &r);
    EXPECT_TRUE(r.parsed);
    EXPECT_GE(seen.size(), 1u);
    if (c.malformed) {
      EXPECT_TRUE(r.malformed);
    }
  }
}

TEST(Message, NoHeadersIsNotAMessage) {
  std::string binary;
  for (int i = 0; i < 70000; ++i) binary += static_cast<char>((i * 7919) % 256);
  for (const std::string& input : {std::string(), binary}) {
    Spool spool(1024);
    spool.append(input);
    bool called = false;
    const WalkResult r = walk(spool, {}, [&](const PartInfo&, Content*) { return called = true; });
    EXPECT_FALSE(r.parsed);
    EXPECT_FALSE(r.error.empty());
    EXPECT_FALSE(called);
  }
}

std::size_t heapInUse() {
  const struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

// Runs `walk` and returns the largest heap growth seen from the visitor
// (GMime's tree is complete by then).
std::size_t walkHeapGrowth(Spool& spool, const WalkLimits& limits, WalkResult& r, std::vector<Seen>* seen = nullptr) {
  const std::size_t before = heapInUse();
  std::size_t peak = before;
  std::size_t calls = 0;
  r = walk(spool, limits, [&](const PartInfo& p, Content* c) {
    // GMime's tree is complete at the first call; mallinfo2 is slow on a
    // fragmented heap, so later calls are sampled.
    if (calls++ % 256 == 0) peak = std::max(peak, heapInUse());
    if (seen && seen->size() < 100) seen->push_back({p, c != nullptr, c ? readContent(*c) : ""});
    return true;
  });
  return peak - before;
}

// GMime spends ~0.5 KB on every header field: 100 000 of them are parsed
// only up to maxHeaders (20 000 by default).
TEST(Message, HundredThousandTinyHeaders) {
  Spool spool(1 << 20);
  for (int i = 0; i < 100000; ++i) ASSERT_TRUE(spool.append("X-H: " + std::to_string(i) + "\r\n"));
  ASSERT_TRUE(spool.append("Content-Type: text/plain\r\n\r\nbody\r\n"));
  {
    WalkResult r;
    const auto start = std::chrono::steady_clock::now();
    const std::size_t growth = walkHeapGrowth(spool, {}, r);
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
    EXPECT_TRUE(r.parsed);
    EXPECT_TRUE(r.headersExceeded);
    if (!kSanitized) {
      EXPECT_LT(growth, std::size_t{16} << 20);
    }
  }
  {
    // With the limits raised, all of it.
    WalkLimits big;
    big.maxHeaders = 200000;
    big.maxHeaderBytes = 8 << 20;
    WalkResult r;
    const auto seen = walkAll(spool, &r, big);
    EXPECT_FALSE(r.headersExceeded);
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(seen[0].content, "body\r\n");
  }
}

// A million parts without headers: 10 MB that GMime would turn into 1.3 GB.
TEST(Message, MillionEmptyPartsAreParsedOnlyUpToMaxParts) {
  Spool spool(1 << 20);
  spool.append("Content-Type: multipart/mixed; boundary=b\r\n\r\n");
  std::string chunk;
  for (int i = 0; i < 10000; ++i) chunk += "--b\r\n\r\nx\r\n";
  for (int i = 0; i < 100; ++i) spool.append(chunk);
  spool.append("--b--\r\n");
  WalkResult r;
  const auto start = std::chrono::steady_clock::now();
  const std::size_t growth = walkHeapGrowth(spool, {}, r);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(kSanitized ? 60 : 10));
  EXPECT_TRUE(r.parsed);
  EXPECT_TRUE(r.partsExceeded);
  EXPECT_LE(r.parts, 10000u);
  if (!kSanitized) {
    EXPECT_LT(growth, std::size_t{32} << 20);
  }
}

// GMime copies multipart prefaces and epilogues, and the whole body of a
// multipart without boundary, into memory.
TEST(Message, HugePrefacesAreNotCopied) {
  const std::string line(76, 'x');
  const struct {
    const char* label;
    std::string head, tail;
  } cases[] = {
      {"preface", "Content-Type: multipart/mixed; boundary=b\r\n\r\n",
       "--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--\r\n"},
      {"epilogue", "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n", ""},
      {"no boundary", "Content-Type: multipart/mixed\r\n\r\n", ""},
      {"unterminated headers", "Subject: x\r\n", ""},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    Spool spool(1 << 20);
    spool.append(c.head);
    const std::string filler = std::string_view(c.label) == "unterminated headers" ? "X-A: " + line : line;
    std::string chunk;
    for (int i = 0; i < 1000; ++i) chunk += filler + "\r\n";
    for (int i = 0; i < 270; ++i) spool.append(chunk);  // ~21 MB
    spool.append(c.tail);
    WalkResult r;
    const std::size_t growth = walkHeapGrowth(spool, {}, r);
    EXPECT_TRUE(r.headersExceeded);
    if (!kSanitized) {
      EXPECT_LT(growth, std::size_t{16} << 20);
    }
  }
}

// The same limits must not cut an ordinary large message: a 20 MB text
// attachment full of "-----" lines and a message with 2000 attachments.
TEST(Message, LimitsLeaveOrdinaryMessagesAlone) {
  {
    Spool spool(1 << 20);
    spool.append("Content-Type: multipart/mixed; boundary=\"=_sep\"\r\n\r\nThis is MIME.\r\n"
                 "--=_sep\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=log.txt\r\n\r\n");
    std::string chunk;
    for (int i = 0; i < 1000; ++i) chunk += i % 2 ? "--------------------------------------------\r\n" : "-- \r\n";
    for (int i = 0; i < 250; ++i) spool.append(chunk);
    spool.append("--=_sep--\r\n");
    WalkResult r;
    const auto seen = walkAll(spool, &r);
    EXPECT_FALSE(r.partsExceeded);
    EXPECT_FALSE(r.headersExceeded);
    ASSERT_EQ(seen.size(), 2u);
    EXPECT_GT(seen[1].content.size(), 5u << 20);
  }
  {
    Spool spool(1 << 20);
    spool.append("Content-Type: multipart/mixed; boundary=b\r\n\r\n");
    for (int i = 0; i < 2000; ++i) {
      spool.append("--b\r\nContent-Type: application/pdf; name=\"f" + std::to_string(i) +
                   ".pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n");
    }
    spool.append("--b--\r\n");
    WalkResult r;
    const auto seen = walkAll(spool, &r);
    EXPECT_FALSE(r.partsExceeded);
    EXPECT_FALSE(r.headersExceeded);
    EXPECT_EQ(seen.size(), 2001u);
  }
}

// `levels` multiparts nested in each other, the innermost holding a text
// part; a sibling text part follows the chain at depth 1.
std::unique_ptr<Spool> nestedMultiparts(int levels) {
  auto spool = std::make_unique<Spool>(1 << 16);
  spool->append("Content-Type: multipart/mixed; boundary=top\r\n\r\n--top\r\n");
  for (int i = 0; i < levels - 1; ++i) {
    spool->append("Content-Type: multipart/mixed; boundary=b" + std::to_string(i) + "\r\n\r\n--b" + std::to_string(i) +
                  "\r\n");
  }
  spool->append("Content-Type: text/plain\r\n\r\ndeep\r\n");
  for (int i = levels - 2; i >= 0; --i) spool->append("--b" + std::to_string(i) + "--\r\n");
  spool->append("--top\r\nContent-Type: text/plain\r\n\r\nsibling\r\n--top--\r\n");
  return spool;
}

TEST(Message, NestingBeyondMaxDepthIsReportedAndNotDescended) {
  auto spool = nestedMultiparts(1000);
  WalkResult r;
  const auto seen = walkAll(*spool, &r);
  EXPECT_TRUE(r.parsed);
  EXPECT_TRUE(r.depthExceeded);
  int deepest = 0;
  for (const Seen& s : seen) deepest = std::max(deepest, s.info.depth);
  EXPECT_EQ(deepest, 64);
  EXPECT_EQ(seen.back().content, "sibling");  // the walk went on beside it
  EXPECT_EQ(seen.back().info.path, (std::vector<int>{1}));
}

// GMime's parser and finalizer recurse once per level, and so does the
// walk. 1000 levels run here on the ordinary main-thread stack (8 MiB, as a
// libmilter thread gets by default); GMime itself refuses to build a tree
// deeper than ~1000 levels (GMIME_CRIT_NESTING_OVERFLOW), which the walk
// reports as depthExceeded.
TEST(Message, ThousandLevelsDoNotBlowTheStack) {
  const WalkLimits unlimited{100000, 100000};
  {
    auto spool = nestedMultiparts(1000);
    WalkResult r;
    const auto seen = walkAll(*spool, &r, unlimited);
    EXPECT_FALSE(r.depthExceeded);
    ASSERT_GE(seen.size(), 2u);
    EXPECT_EQ(seen[seen.size() - 2].content, "deep");
    EXPECT_EQ(seen[seen.size() - 2].info.depth, 1000);
  }
  {
    auto spool = nestedMultiparts(5000);
    WalkResult r;
    walkAll(*spool, &r, unlimited);
    EXPECT_TRUE(r.parsed);
    EXPECT_TRUE(r.depthExceeded);
  }
  {
    // message/rfc822 inside message/rfc822, 5000 deep.
    auto spool = std::make_unique<Spool>(1 << 16);
    for (int i = 0; i < 5000; ++i) spool->append("Content-Type: message/rfc822\r\n\r\n");
    spool->append("Content-Type: text/plain\r\n\r\nx\r\n");
    WalkResult r;
    walkAll(*spool, &r, unlimited);
    EXPECT_TRUE(r.parsed);
    EXPECT_TRUE(r.depthExceeded);
  }
}

TEST(Message, VisitorCanStopTheWalk) {
  auto spool = spoolOf(kTree);
  int calls = 0;
  const WalkResult r = walk(*spool, {}, [&](const PartInfo&, Content*) { return ++calls < 3; });
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(r.parts, 3u);
}

TEST(Message, PartCountLimitStopsTheWalk) {
  std::string msg = "Content-Type: multipart/mixed; boundary=b\r\n\r\n";
  for (int i = 0; i < 50; ++i) msg += "--b\r\nContent-Type: text/plain\r\n\r\nx\r\n";
  msg += "--b--\r\n";
  auto spool = spoolOf(msg);
  WalkResult r;
  const auto seen = walkAll(*spool, &r, WalkLimits{64, 10});
  EXPECT_TRUE(r.partsExceeded);
  EXPECT_EQ(r.parts, 10u);
  EXPECT_EQ(seen.size(), 10u);
}

// A 20 MiB message spooled to disk: parsing keeps offsets into the file and
// the attachment is decoded chunk by chunk, so the heap stays near
// memoryLimit (1 MiB) plus GMime's bookkeeping, far from the message size.
TEST(Message, TwentyMiBMessageIsReadWithBoundedMemory) {
  constexpr std::size_t kLines = 280000;  // 76 base64 chars = 57 bytes a line
  const std::size_t before = heapInUse();
  Spool spool(1 << 20);
  spool.append(crlf("From: a@example.jp\nContent-Type: multipart/mixed; boundary=b\n\n--b\n"
                    "Content-Type: text/plain\n\nsee attachment\n--b\n"
                    "Content-Type: application/octet-stream\n"
                    "Content-Disposition: attachment; filename=big.bin\n"
                    "Content-Transfer-Encoding: base64\n\n"));
  // 57 bytes 0x00..0x38 per line, base64 encoded.
  const std::string line = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4\r\n";
  std::string chunk;  // body chunks as libmilter hands them over (up to 64 KB)
  for (int i = 0; i < 800; ++i) chunk += line;
  for (std::size_t i = 0; i < kLines / 800; ++i) ASSERT_TRUE(spool.append(chunk));
  spool.append("--b--\r\n");
  ASSERT_FALSE(spool.inMemory());
  ASSERT_GT(spool.size(), 20u << 20);

  std::size_t peak = 0, decoded = 0, reads = 0;
  bool sequenceOk = true;
  const WalkResult r = walk(spool, {}, [&](const PartInfo& p, Content* c) {
    if (!c || !p.isAttachment) return true;
    std::vector<std::byte> buf(65536);
    for (std::size_t n; (n = c->read(buf)) > 0;) {
      for (std::size_t i = 0; i < n; ++i) {
        if (static_cast<std::size_t>(buf[i]) != (decoded + i) % 57) sequenceOk = false;
      }
      decoded += n;
      if (reads++ % 64 == 0) peak = std::max(peak, heapInUse());  // mallinfo2 is slow
    }
    return true;
  });
  EXPECT_TRUE(r.parsed);
  EXPECT_EQ(decoded, kLines * 57);
  EXPECT_TRUE(sequenceOk);
  if (!kSanitized) {
    EXPECT_LT(peak - std::min(peak, before), std::size_t{4} << 20) << "heap grew by " << (peak - before);
  }
}

TEST(Message, MediaTypeIsReadAsTheWalkReadsIt) {
  struct Case {
    const char* value;
    const char* type;
  };
  for (const Case& c : {Case{" text/html; charset=utf-8", "text/html"}, Case{" TEXT/HTML", "text/html"},
                        Case{" text / html", "text/html"}, Case{" text/(comment) html", "text/html"},
                        Case{" text/\r\n html", "text/html"}, Case{" Multipart/Mixed; boundary=x", "multipart/mixed"},
                        Case{" application/pkcs7-mime; smime-type=enveloped-data", "application/pkcs7-mime"}}) {
    EXPECT_EQ(mediaType(c.value), c.type) << c.value;
    // The same value in a message: walk() reports the same type.
    Spool spool(1 << 20);
    spool.append(std::string("Subject: x\r\nContent-Type:") + c.value + "\r\n\r\nbody\r\n");
    std::string walked;
    walk(spool, {}, [&](const PartInfo& p, Content*) {
      if (walked.empty()) walked = p.contentType;
      return true;
    });
    EXPECT_EQ(walked, c.type) << c.value;
  }
}

TEST(Message, IsInsideComparesPaths) {
  EXPECT_TRUE(isInside({}, {0}));
  EXPECT_TRUE(isInside({1}, {1, 0, 2}));
  EXPECT_FALSE(isInside({1}, {1}));  // not inside itself
  EXPECT_FALSE(isInside({1}, {2, 0}));
  EXPECT_FALSE(isInside({1, 0}, {1}));
}

}  // namespace
}  // namespace sekimori::mime
