// tests/unit/common/notify/notify_test.cpp — templates, MIME building, and
// submission to a real Postfix smtp-sink and to a fake sendmail script.
#include "common/notify/notify.h"
#include "common/notify/issued.h"
#include "common/notify/outbox.h"
#include "common/notify/spoolfile.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "common/util/strings.h"
#include "tests/support/net.h"

namespace sekimori::notify {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const std::string kJapaneseSubject = "ウイルス検出のお知らせ";
const std::string kJapaneseBody =
    "お客様宛てのメールからウイルスが検出されました。\n差出人: ${from}\nウイルス名: ${virus}\n";

// ---- helpers: decoding what buildMessage encodes, written independently ----

std::string decodeBase64(std::string_view in) {
  std::string out;
  unsigned buf = 0;
  int bits = 0;
  for (char c : in) {
    int v;
    if (c >= 'A' && c <= 'Z')
      v = c - 'A';
    else if (c >= 'a' && c <= 'z')
      v = c - 'a' + 26;
    else if (c >= '0' && c <= '9')
      v = c - '0' + 52;
    else if (c == '+')
      v = 62;
    else if (c == '/')
      v = 63;
    else
      continue;  // '=', CR, LF
    buf = buf << 6 | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>(buf >> bits & 0xFF);
    }
  }
  return out;
}

// RFC 2047 decoding of an unfolded header value (B encoding, UTF-8 only);
// white space between two encoded words is dropped.
std::string decodeWords(const std::string& value) {
  static const std::regex word(R"(=\?UTF-8\?B\?([A-Za-z0-9+/=]*)\?=)", std::regex::icase);
  std::string out;
  std::size_t pos = 0;
  bool lastWasWord = false;
  for (auto it = std::sregex_iterator(value.begin(), value.end(), word); it != std::sregex_iterator(); ++it) {
    const std::string between = value.substr(pos, static_cast<std::size_t>(it->position()) - pos);
    if (!(lastWasWord && between.find_first_not_of(" \t") == std::string::npos)) out += between;
    out += decodeBase64((*it)[1].str());
    pos = static_cast<std::size_t>(it->position() + it->length());
    lastWasWord = true;
  }
  out += value.substr(pos);
  return out;
}

struct Parsed {
  std::vector<std::pair<std::string, std::string>> headers;  // unfolded
  std::vector<std::string> rawHeaderLines;
  std::string body;
};

Parsed parse(const std::string& msg) {
  Parsed p;
  const auto split = msg.find("\r\n\r\n");
  EXPECT_NE(split, std::string::npos);
  std::string head = msg.substr(0, split + 2);
  p.body = msg.substr(split + 4);
  std::size_t pos = 0;
  while (pos < head.size()) {
    const auto eol = head.find("\r\n", pos);
    const std::string line = head.substr(pos, eol - pos);
    p.rawHeaderLines.push_back(line);
    if (!line.empty() && (line[0] == ' ' || line[0] == '\t')) {
      p.headers.back().second += line;  // unfold: CRLF removed, WSP kept
    } else {
      const auto colon = line.find(':');
      p.headers.emplace_back(line.substr(0, colon), line.substr(colon + 1));
    }
    pos = eol + 2;
  }
  for (auto& [name, value] : p.headers) {
    if (!value.empty() && value[0] == ' ') value.erase(0, 1);
  }
  return p;
}

std::string header(const Parsed& p, const std::string& name) {
  for (const auto& [n, v] : p.headers) {
    if (n == name) return v;
  }
  return "<missing " + name + ">";
}

int headerCount(const Parsed& p, const std::string& name) {
  int n = 0;
  for (const auto& h : p.headers) n += h.first == name;
  return n;
}

// Every line ends in CRLF (no bare CR or LF) and is at most 78 characters.
void expectWellFormedLines(const std::string& msg) {
  ASSERT_GE(msg.size(), 2u);
  EXPECT_EQ(msg.substr(msg.size() - 2), "\r\n");
  std::size_t start = 0;
  for (std::size_t i = 0; i < msg.size(); ++i) {
    if (msg[i] == '\n') {
      ASSERT_GT(i, 0u);
      EXPECT_EQ(msg[i - 1], '\r') << "bare LF at " << i;
      EXPECT_LE(i - 1 - start, 78u) << msg.substr(start, i - 1 - start);
      start = i + 1;
    } else if (msg[i] == '\r') {
      EXPECT_TRUE(i + 1 < msg.size() && msg[i + 1] == '\n') << "bare CR at " << i;
    }
  }
}

std::string readFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void writeFile(const fs::path& p, const std::string& text) { std::ofstream(p, std::ios::binary) << text; }

fs::path makeTempDir() {
  std::string tmpl = (fs::temp_directory_path() / "notify_test.XXXXXX").string();
  if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  return tmpl;
}

// What a Subject reads as: runs of white space collapsed, trimmed.
std::string collapseSpaces(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == ' ' && (out.empty() || out.back() == ' ')) continue;
    out += c;
  }
  if (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

Mail sampleMail() {
  Mail m;
  m.from = "postmaster@example.jp";
  m.to = {"admin@example.jp"};
  m.subject = "Virus found";
  m.body = "A message was quarantined.\n";
  m.extraHeaders = {{"X-Sekimori-Notice", "antivirus"}};
  return m;
}

// ---- templates ---------------------------------------------------------------

TEST(NotifyTemplate, ParsesSubjectAndBodyInJapanese) {
  std::string error;
  const auto t = parseTemplate("Subject: " + kJapaneseSubject + " (${virus})\r\n\r\n" + kJapaneseBody, &error);
  ASSERT_TRUE(t) << error;
  EXPECT_EQ(t->subject, kJapaneseSubject + " (${virus})");
  EXPECT_EQ(t->body, kJapaneseBody);
  const std::map<std::string, std::string> values = {{"from", "<田中@example.jp>"}, {"virus", "Eicar-Signature"}};
  EXPECT_EQ(expand(t->subject, values), kJapaneseSubject + " (Eicar-Signature)");
  EXPECT_EQ(
      expand(t->body, values),
      "お客様宛てのメールからウイルスが検出されました。\n差出人: <田中@example.jp>\nウイルス名: Eicar-Signature\n");
}

TEST(NotifyTemplate, ParseCases) {
  struct Case {
    const char* label;
    std::string text;
    bool ok;
    std::string subject, body;
  };
  const Case cases[] = {
      {"LF", "Subject: hi\n\nbody\n", true, "hi", "body\n"},
      {"case-insensitive name", "subject:hi\n\nb", true, "hi", "b"},
      {"subject only", "Subject: hi", true, "hi", ""},
      {"subject and blank line", "Subject: hi\n\n", true, "hi", ""},
      {"UTF-8 BOM", "\xEF\xBB\xBFSubject: hi\n\nb\n", true, "hi", "b\n"},
      {"no subject", "Hello\n\nbody", false, "", ""},
      {"empty", "", false, "", ""},
      {"subject not first", "\nSubject: hi\n\nbody", false, "", ""},
      {"no blank line", "Subject: hi\nbody\n", false, "", ""},
  };
  for (const auto& c : cases) {
    std::string error;
    const auto t = parseTemplate(c.text, &error);
    ASSERT_EQ(t.has_value(), c.ok) << c.label;
    if (c.ok) {
      EXPECT_EQ(t->subject, c.subject) << c.label;
      EXPECT_EQ(t->body, c.body) << c.label;
    } else {
      EXPECT_FALSE(error.empty()) << c.label;
    }
  }
}

TEST(NotifyTemplate, ExpandCases) {
  const std::map<std::string, std::string> v = {{"a", "1"}, {"b", "${a}"}, {"名前", "値"}};
  struct Case {
    const char* label;
    const char* text;
    const char* want;
  };
  const Case cases[] = {
      {"plain", "no placeholders", "no placeholders"},
      {"one", "x=${a}.", "x=1."},
      {"repeated", "${a}${a}", "11"},
      {"unknown kept", "${zzz} ${a}", "${zzz} 1"},
      {"unterminated kept", "${a", "${a"},
      {"value not re-expanded", "${b}", "${a}"},
      {"UTF-8 name", "${名前}です", "値です"},
      {"dollar alone", "$a $ {a}", "$a $ {a}"},
      {"empty name", "${}", "${}"},
  };
  for (const auto& c : cases) EXPECT_EQ(expand(c.text, v), c.want) << c.label;
}

// ---- buildMessage ------------------------------------------------------------

TEST(NotifyBuild, AsciiSubjectStaysPlainAndBodyIs7bit) {
  std::string error;
  const auto msg = buildMessage(sampleMail(), "", &error);
  ASSERT_TRUE(msg) << error;
  expectWellFormedLines(msg->data);
  const auto p = parse(msg->data);
  EXPECT_EQ(header(p, "Subject"), "Virus found");
  EXPECT_EQ(header(p, "From"), "<postmaster@example.jp>");
  EXPECT_EQ(header(p, "To"), "admin@example.jp");
  EXPECT_EQ(header(p, "MIME-Version"), "1.0");
  EXPECT_EQ(header(p, "Content-Type"), "text/plain; charset=UTF-8");
  EXPECT_EQ(header(p, "Content-Transfer-Encoding"), "7bit");
  EXPECT_EQ(header(p, "Auto-Submitted"), "auto-generated");
  EXPECT_EQ(header(p, "X-Sekimori-Notice"), "antivirus");
  EXPECT_TRUE(std::regex_match(
      header(p, "Date"),
      std::regex(
          R"((Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d [+-]\d{4})")))
      << header(p, "Date");
  EXPECT_EQ(header(p, "Message-ID"), msg->messageId);
  EXPECT_TRUE(std::regex_match(msg->messageId, std::regex(R"(<[0-9a-z.]+@example\.jp>)"))) << msg->messageId;
  EXPECT_EQ(p.body, "A message was quarantined.\r\n");
}

TEST(NotifyBuild, JapaneseSubjectIsEncodedWordsAndBodyBase64) {
  Mail m = sampleMail();
  m.subject = kJapaneseSubject;
  m.body = "本文の一行目\n二行目\r\n" + std::string(200, 'x') + "\n";
  m.fromName = "ウイルス検査";
  std::string error;
  const auto msg = buildMessage(m, "mail.example.jp", &error);
  ASSERT_TRUE(msg) << error;
  expectWellFormedLines(msg->data);
  const auto p = parse(msg->data);
  const std::string subject = header(p, "Subject");
  EXPECT_EQ(subject.rfind("=?UTF-8?B?", 0), 0u) << subject;
  EXPECT_EQ(decodeWords(subject), kJapaneseSubject);
  static const std::regex word(R"(=\?[^?]+\?B\?[^?]*\?=)");
  for (auto it = std::sregex_iterator(subject.begin(), subject.end(), word); it != std::sregex_iterator(); ++it) {
    EXPECT_LE(it->length(), 75);
  }
  EXPECT_EQ(decodeWords(header(p, "From")), "ウイルス検査 <postmaster@example.jp>");
  EXPECT_TRUE(std::regex_match(msg->messageId, std::regex(R"(<[0-9a-z.]+@mail\.example\.jp>)"))) << msg->messageId;
  EXPECT_EQ(header(p, "Content-Transfer-Encoding"), "base64");
  EXPECT_EQ(decodeBase64(p.body), "本文の一行目\r\n二行目\r\n" + std::string(200, 'x') + "\r\n");
  // base64 lines of 76 characters, the last one shorter.
  std::istringstream lines(p.body);
  std::vector<std::string> bodyLines;
  for (std::string l; std::getline(lines, l);) bodyLines.push_back(l);
  ASSERT_GE(bodyLines.size(), 2u);
  for (std::size_t i = 0; i + 1 < bodyLines.size(); ++i) EXPECT_EQ(bodyLines[i].size(), 77u);  // 76 + CR
  EXPECT_LE(bodyLines.back().size(), 77u);
}

TEST(NotifyBuild, LongSubjectsFoldWithinLineLimit) {
  struct Case {
    const char* label;
    std::string subject;
    bool encoded;
  };
  std::string longJapanese;
  for (int i = 0; i < 12; ++i) longJapanese += kJapaneseSubject;
  std::string longAscii;
  for (int i = 0; i < 30; ++i) longAscii += "word" + std::to_string(i) + " ";
  const Case cases[] = {
      {"long Japanese", longJapanese, true},
      {"long ASCII folds at spaces", longAscii, false},
      {"ASCII word longer than a line", std::string(120, 'a'), true},
      {"mixed", "[sekimori] " + kJapaneseSubject + " Eicar-Signature " + kJapaneseSubject, true},
      {"4-byte characters",
       std::string(40, 'a') + "\xF0\x9F\x98\x80\xF0\x9F\x98\x80\xF0\x9F\x98\x80" + std::string(40, 'b'), true},
      {"looks encoded", "=?UTF-8?B?Zm9v?=", true},
  };
  for (const auto& c : cases) {
    Mail m = sampleMail();
    m.subject = c.subject;
    const auto msg = buildMessage(m, "");
    ASSERT_TRUE(msg) << c.label;
    expectWellFormedLines(msg->data);
    const auto p = parse(msg->data);
    const std::string subject = header(p, "Subject");
    EXPECT_EQ(subject.find("=?UTF-8?B?") != std::string::npos, c.encoded) << c.label << ": " << subject;
    EXPECT_EQ(decodeWords(subject), collapseSpaces(c.subject)) << c.label;
  }
}

// Found by fuzz_notify: a long ASCII display name went out as one atom or
// quoted string, a From line of over 998 octets.
TEST(NotifyBuild, LongDisplayNamesFoldWithinLineLimit) {
  struct Case {
    const char* label;
    std::string name;
    std::string reads;  // the From header, decoded
  };
  const std::string quotedWord = "\"" + std::string(100, 'q') + "\"";
  const Case cases[] = {
      {"short atoms stay plain", "Virus Check", "Virus Check <postmaster@example.jp>"},
      {"short quoted stays quoted", "Check, Virus", "\"Check, Virus\" <postmaster@example.jp>"},
      {"atom longer than a line", std::string(1200, 'w'), std::string(1200, 'w') + " <postmaster@example.jp>"},
      {"quoted string longer than a line", std::string(1200, ','), std::string(1200, ',') + " <postmaster@example.jp>"},
      {"quotes inside", quotedWord, quotedWord + " <postmaster@example.jp>"},
  };
  for (const auto& c : cases) {
    Mail m = sampleMail();
    m.fromName = c.name;
    std::string error;
    const auto msg = buildMessage(m, "", &error);
    ASSERT_TRUE(msg) << c.label << ": " << error;
    expectWellFormedLines(msg->data);
    EXPECT_EQ(decodeWords(header(parse(msg->data), "From")), c.reads) << c.label;
  }
}

TEST(NotifyBuild, HeaderInjectionIsBlankedOrRefused) {
  {
    Mail m = sampleMail();
    m.subject = expand("Virus ${v}", {{"v", "x\r\nBcc: victim@example.com\r\n\r\nbody"}});
    const auto msg = buildMessage(m, "");
    ASSERT_TRUE(msg);
    expectWellFormedLines(msg->data);
    const auto p = parse(msg->data);
    EXPECT_EQ(header(p, "Subject"), "Virus x Bcc: victim@example.com body");
    EXPECT_EQ(headerCount(p, "Bcc"), 0);
  }
  struct Case {
    const char* label;
    void (*edit)(Mail&);
  };
  const Case refused[] = {
      {"CRLF in From", [](Mail& m) { m.from = "a@example.jp\r\nBcc: x@example.com"; }},
      {"space in From", [](Mail& m) { m.from = "a b@example.jp"; }},
      {"empty From", [](Mail& m) { m.from = ""; }},
      {"LF in To", [](Mail& m) { m.to = {"b@example.jp\nBcc: x@example.com"}; }},
      {"comma in To", [](Mail& m) { m.to = {"b@example.jp, c@example.com"}; }},
      {"invalid UTF-8 in To", [](Mail& m) { m.to = {"\xFF@example.jp"}; }},
      {"cut UTF-8 in To", [](Mail& m) { m.to = {"\xE7\x94@example.jp"}; }},
      {"C1 control (NEL) in To", [](Mail& m) { m.to = {"a\xC2\x85@example.jp"}; }},
      {"only null recipients",
       [](Mail& m) {
         m.to = {"", "<>"};
       }},
      {"no recipients", [](Mail& m) { m.to.clear(); }},
      {"CR in extra header", [](Mail& m) { m.extraHeaders["X-A"] = "a\rB: c"; }},
      {"colon in header name", [](Mail& m) { m.extraHeaders["X-A: b"] = "c"; }},
      {"reserved header", [](Mail& m) { m.extraHeaders["bcc"] = "x@example.com"; }},
      {"Content- header", [](Mail& m) { m.extraHeaders["Content-Type"] = "text/html"; }},
      {"From without domain, no domain given", [](Mail& m) { m.from = "root"; }},
  };
  for (const auto& c : refused) {
    Mail m = sampleMail();
    c.edit(m);
    std::string error;
    EXPECT_FALSE(buildMessage(m, "", &error)) << c.label;
    EXPECT_FALSE(error.empty()) << c.label;
  }
  const std::string longDomain = "mail-gateway-01.tokyo.internal.example.co.jp";
  const auto longId = buildMessage(sampleMail(), longDomain);
  ASSERT_TRUE(longId);
  expectWellFormedLines(longId->data);
  EXPECT_EQ(header(parse(longId->data), "Message-ID"), longId->messageId);
  std::string error;
  EXPECT_FALSE(buildMessage(sampleMail(), "bad domain", &error));
  EXPECT_NE(error.find("Message-ID"), std::string::npos) << error;
}

TEST(NotifyBuild, RecipientsAndHeadersDetails) {
  Mail m = sampleMail();
  m.to = {"<>", "<a@example.jp>", "", "b@example.jp"};
  for (int i = 0; i < 6; ++i) m.to.push_back("recipient-number-" + std::to_string(i) + "@example.jp");
  m.extraHeaders["Auto-Submitted"] = "auto-replied";
  m.extraHeaders["X-Note"] = "注意";
  m.date = std::chrono::system_clock::from_time_t(0);
  const auto msg = buildMessage(m, "");
  ASSERT_TRUE(msg);
  expectWellFormedLines(msg->data);
  const auto p = parse(msg->data);
  std::string to = header(p, "To");
  EXPECT_EQ(to.rfind("a@example.jp, b@example.jp, recipient-number-0@example.jp,", 0), 0u) << to;
  EXPECT_EQ(headerCount(p, "Auto-Submitted"), 1);
  EXPECT_EQ(header(p, "Auto-Submitted"), "auto-replied");
  EXPECT_EQ(decodeWords(header(p, "X-Note")), "注意");
  EXPECT_TRUE(std::regex_search(header(p, "Date"), std::regex(" (1970|1969) "))) << header(p, "Date");
}

TEST(NotifyBuild, Utf8AddressesGoIntoTheHeaderAsTheyAre) {
  // SMTPUTF8 (RFC 6531/6532): an addr-spec is never RFC 2047-encoded.
  Mail m = sampleMail();
  m.to = {"<山田@example.jp>"};
  const auto msg = buildMessage(m, "");
  ASSERT_TRUE(msg);
  expectWellFormedLines(msg->data);
  EXPECT_EQ(header(parse(msg->data), "To"), "山田@example.jp");
  EXPECT_EQ(cleanAddress(" <山田@例え.jp> "), "山田@例え.jp");
  EXPECT_EQ(cleanAddress("user@example.jp"), "user@example.jp");
  std::string error;
  EXPECT_FALSE(cleanAddress("a@example.jp, b@example.jp", &error));
  EXPECT_EQ(error, "invalid address <a@example.jp, b@example.jp>");
  EXPECT_FALSE(cleanAddress(std::string(250, 'a') + "@x.jp"));
}

TEST(NotifyBuild, MessageIdsAreUnique) {
  std::set<std::string> ids;
  for (int i = 0; i < 1000; ++i) ids.insert(buildMessage(sampleMail(), "")->messageId);
  EXPECT_EQ(ids.size(), 1000u);
}

TEST(NotifyBuild, InvalidUtf8BecomesReplacementCharacter) {
  Mail m = sampleMail();
  m.subject = "bad \xFF byte";
  m.body = "bad \xC3 byte\n";
  const auto msg = buildMessage(m, "");
  ASSERT_TRUE(msg);
  const auto p = parse(msg->data);
  EXPECT_EQ(decodeWords(header(p, "Subject")), "bad \xEF\xBF\xBD byte");
  EXPECT_EQ(decodeBase64(p.body), "bad \xEF\xBF\xBD byte\r\n");
}

// ---- submit: fixtures ----------------------------------------------------------

class TempDir {
 public:
  TempDir() : path_(makeTempDir()) {}
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

using testsupport::freeLoopbackPort;

// A listening socket on 127.0.0.1, a port of the kernel's choice; throws
// (naming `who`) when it cannot be had.
int listenLoopback(const char* who, int* port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 8) != 0) {
    throw std::runtime_error(std::string(who) + ": bind/listen");
  }
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

bool portOpen(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// Ends a child started by a test: SIGTERM, then SIGKILL after 5 s.
void stopChild(pid_t pid) {
  if (pid <= 0) return;
  ::kill(pid, SIGTERM);
  for (int i = 0; i < 500; ++i) {
    if (::waitpid(pid, nullptr, WNOHANG) == pid) return;
    std::this_thread::sleep_for(10ms);
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
}

// Postfix's smtp-sink: one file per mail transaction, headed by the envelope
// (X-Mail-Args, X-Rcpt-Args), LF line ends, dot-stuffing undone.
class SmtpSink {
 public:
  explicit SmtpSink(const fs::path& workdir) : dir_(workdir / "sink"), port_(freeLoopbackPort()) {
    fs::create_directory(dir_);
    // smtp-sink writes as nobody: the mkdtemp parent is 0700.
    ::chmod(workdir.c_str(), 0755);
    ::chmod(dir_.c_str(), 0777);
    std::vector<std::string> args = {"/usr/sbin/smtp-sink",
                                     "-u",
                                     "nobody",
                                     "-d",
                                     (dir_ / "%M.").string(),
                                     "127.0.0.1:" + std::to_string(port_),
                                     "100"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      const int null = ::open("/dev/null", O_RDWR);
      ::dup2(null, 0);
      ::dup2(null, 1);
      ::dup2(null, 2);
      ::execv(argv[0], argv.data());
      _exit(127);
    }
    for (int i = 0; i < 500 && !portOpen(port_); ++i) std::this_thread::sleep_for(10ms);
  }
  SmtpSink(const SmtpSink&) = delete;
  SmtpSink& operator=(const SmtpSink&) = delete;
  ~SmtpSink() { stopChild(pid_); }

  bool running() const { return pid_ > 0 && portOpen(port_); }
  std::string url() const { return "smtp://127.0.0.1:" + std::to_string(port_); }

  // The dumps once `count` have arrived (5 s at most).
  std::vector<std::string> waitFor(std::size_t count) const {
    std::vector<std::string> out;
    for (int i = 0; i < 500; ++i) {
      out.clear();
      for (const auto& e : fs::directory_iterator(dir_)) out.push_back(readFile(e.path()));
      if (out.size() >= count) break;
      std::this_thread::sleep_for(10ms);
    }
    return out;
  }

 private:
  fs::path dir_;
  int port_;
  pid_t pid_ = -1;
};

bool canRunSink() { return ::geteuid() == 0 && ::access("/usr/sbin/smtp-sink", X_OK) == 0; }

std::string lfLines(std::string s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') continue;
    out += s[i];
  }
  return out;
}

std::string builtMessage(const std::string& subject, const std::string& body) {
  Mail m = sampleMail();
  m.subject = subject;
  m.body = body;
  return buildMessage(m, "")->data;
}

// ---- submit: SMTP ----------------------------------------------------------------

TEST(NotifySubmit, SmtpDeliversWithNullSenderToEveryRecipient) {
  if (!canRunSink()) GTEST_SKIP() << "smtp-sink needs root (-u nobody)";
  TempDir tmp;
  SmtpSink sink(tmp.path());
  ASSERT_TRUE(sink.running());
  const std::string message = builtMessage(kJapaneseSubject, kJapaneseBody);
  SubmitSettings s;
  s.smtpUrl = sink.url();
  std::string error;
  ASSERT_TRUE(submit(s, {"admin@example.jp", "<>", "", "<security@example.jp>"}, message, &error)) << error;
  const auto dumps = sink.waitFor(1);
  ASSERT_EQ(dumps.size(), 1u);
  const std::string& d = dumps[0];
  EXPECT_NE(d.find("X-Mail-Args: <>\n"), std::string::npos) << d;
  EXPECT_NE(d.find("X-Rcpt-Args: <admin@example.jp>\n"), std::string::npos) << d;
  EXPECT_NE(d.find("X-Rcpt-Args: <security@example.jp>\n"), std::string::npos) << d;
  EXPECT_EQ(d.find("X-Rcpt-Args: <>"), std::string::npos) << d;
  EXPECT_NE(d.find(lfLines(message)), std::string::npos) << d;
}

TEST(NotifySubmit, SmtpDotLinesAndExplicitEnvelopeSender) {
  if (!canRunSink()) GTEST_SKIP() << "smtp-sink needs root (-u nobody)";
  TempDir tmp;
  SmtpSink sink(tmp.path());
  ASSERT_TRUE(sink.running());
  // A line of "." would end DATA early if libcurl did not dot-stuff it.
  const std::string message = builtMessage("Digest", "first\n.\n..two dots\nlast\n");
  SubmitSettings s;
  s.smtpUrl = sink.url();
  s.envelopeFrom = "bounces@example.jp";
  std::string error;
  ASSERT_TRUE(submit(s, {"admin@example.jp"}, message, &error)) << error;
  const auto dumps = sink.waitFor(1);
  ASSERT_EQ(dumps.size(), 1u);
  EXPECT_NE(dumps[0].find("X-Mail-Args: <bounces@example.jp>\n"), std::string::npos) << dumps[0];
  EXPECT_NE(dumps[0].find("\n\nfirst\n.\n..two dots\nlast\n"), std::string::npos) << dumps[0];
}

// SMTP sessions by script on a loopback port, one after the other: greets,
// offers `ehlo` extensions, accepts everything but the `refused` recipients
// (550), answers QUIT unless told not to, and keeps each command line it got.
class ScriptedSmtpServer {
 public:
  struct Script {
    std::vector<std::string> extensions;
    std::vector<std::string> refused;  // "RCPT TO:<...>" lines answered 550
    bool answerQuit = true;
    std::string endOfData = "250 2.0.0 queued";  // the reply to the final "."
    int refuseSessions = 0;  // the first ones are greeted with `refusal` and closed
    std::string refusal = "421 4.3.2 service not available, try again later";
  };
  explicit ScriptedSmtpServer(std::vector<std::string> extensions)
      : ScriptedSmtpServer(Script{.extensions = std::move(extensions), .refused = {}}) {}
  explicit ScriptedSmtpServer(Script script) : script_(std::move(script)) {
    fd_ = listenLoopback("ScriptedSmtpServer", &port_);
    thread_ = std::thread([this] {
      for (;;) {
        const int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0) return;
        sessions_.emplace_back();
        if (static_cast<int>(sessions_.size()) <= script_.refuseSessions) {
          const std::string line = script_.refusal + "\r\n";
          (void)!::send(c, line.data(), line.size(), MSG_NOSIGNAL);
        } else {
          serve(c, sessions_.back());
        }
        ::close(c);
      }
    });
  }
  ScriptedSmtpServer(const ScriptedSmtpServer&) = delete;
  ScriptedSmtpServer& operator=(const ScriptedSmtpServer&) = delete;
  ~ScriptedSmtpServer() {
    stop();
    ::close(fd_);
  }
  std::string url() const { return "smtp://127.0.0.1:" + std::to_string(port_); }
  // The command lines of each session, once the client is done with them.
  std::vector<std::vector<std::string>> sessions() {
    stop();
    return sessions_;
  }
  // The command lines of all sessions.
  std::vector<std::string> commands() {
    std::vector<std::string> all;
    for (const auto& s : sessions()) all.insert(all.end(), s.begin(), s.end());
    return all;
  }

 private:
  void stop() {
    ::shutdown(fd_, SHUT_RDWR);  // wakes an accept() still waiting
    if (thread_.joinable()) thread_.join();
  }

  void serve(int c, std::vector<std::string>& commands) const {
    timeval tv{5, 0};
    ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    const auto say = [c](const std::string& s) { (void)!::send(c, s.data(), s.size(), MSG_NOSIGNAL); };
    say("220 scripted ESMTP\r\n");
    std::string buf;
    bool inData = false;
    for (;;) {
      const auto eol = buf.find("\r\n");
      if (eol == std::string::npos) {
        char chunk[4096];
        const ssize_t n = ::recv(c, chunk, sizeof chunk, 0);
        if (n <= 0) return;
        buf.append(chunk, static_cast<std::size_t>(n));
        continue;
      }
      const std::string line = buf.substr(0, eol);
      buf.erase(0, eol + 2);
      if (inData) {
        if (line == ".") {
          inData = false;
          say(script_.endOfData + "\r\n");
        }
        continue;
      }
      commands.push_back(line);
      const std::string verb = util::toLowerAscii(line.substr(0, 4));
      if (verb == "ehlo") {
        std::string reply = "250-scripted\r\n";
        for (const auto& e : script_.extensions) reply += "250-" + e + "\r\n";
        say(reply + "250 ENHANCEDSTATUSCODES\r\n");
      } else if (verb == "data") {
        inData = true;
        say("354 go ahead\r\n");
      } else if (verb == "quit") {
        if (!script_.answerQuit) continue;  // silent until the client gives up
        say("221 2.0.0 bye\r\n");
        return;
      } else if (std::find(script_.refused.begin(), script_.refused.end(), line) != script_.refused.end()) {
        say("550 5.1.1 no such user\r\n");
      } else {
        say("250 2.0.0 ok\r\n");
      }
    }
  }

  Script script_;
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::vector<std::vector<std::string>> sessions_;
};

std::size_t countPrefix(const std::vector<std::string>& lines, std::string_view prefix) {
  return static_cast<std::size_t>(std::count_if(
      lines.begin(), lines.end(), [&](const std::string& l) { return l.compare(0, prefix.size(), prefix) == 0; }));
}

TEST(NotifySubmitter, SeriesOfMailsShareOneSession) {
  ScriptedSmtpServer server({"8BITMIME"});
  {
    SubmitSettings s;
    s.smtpUrl = server.url();
    Submitter out(s);
    std::string error;
    for (const char* to : {"a@example.jp", "b@example.jp", "山田@example.jp"}) {
      ASSERT_TRUE(out.submit({to}, builtMessage("x", "y"), &error)) << to << ": " << error;
    }
  }
  const auto sessions = server.sessions();
  ASSERT_EQ(sessions.size(), 1u) << ::testing::PrintToString(sessions);
  const auto& cmds = sessions[0];
  EXPECT_EQ(countPrefix(cmds, "EHLO"), 1u) << ::testing::PrintToString(cmds);
  EXPECT_EQ(countPrefix(cmds, "MAIL FROM:<>"), 3u) << ::testing::PrintToString(cmds);
  EXPECT_EQ(countPrefix(cmds, "DATA"), 3u) << ::testing::PrintToString(cmds);
  EXPECT_EQ(cmds.back(), "QUIT") << ::testing::PrintToString(cmds);
}

TEST(NotifySubmitter, RefusedRecipientCostsOnlyItsOwnMail) {
  ScriptedSmtpServer server(ScriptedSmtpServer::Script{.extensions = {}, .refused = {"RCPT TO:<gone@example.jp>"}});
  {
    SubmitSettings s;
    s.smtpUrl = server.url();
    Submitter out(s);
    std::string error;
    bool temporary = true;
    ASSERT_TRUE(out.submit({"a@example.jp"}, builtMessage("x", "y"), &error)) << error;
    EXPECT_FALSE(out.submit({"gone@example.jp"}, builtMessage("x", "y"), &error, &temporary));
    EXPECT_NE(error.find("(server: 550 5.1.1 no such user)"), std::string::npos) << error;
    EXPECT_FALSE(temporary);
    error.clear();
    EXPECT_TRUE(out.submit({"b@example.jp"}, builtMessage("x", "y"), &error)) << error;
  }
  const auto cmds = server.commands();
  EXPECT_EQ(countPrefix(cmds, "DATA"), 2u) << ::testing::PrintToString(cmds);
  EXPECT_EQ(countPrefix(cmds, "RCPT TO:<b@example.jp>"), 1u) << ::testing::PrintToString(cmds);
}

// One mail submitted to a scripted relay that answers its final "." with
// `reply`: the error text and whether it was called temporary.
struct Refusal {
  std::string error;
  bool temporary;
};
Refusal refusedAtEndOfData(const std::string& reply) {
  ScriptedSmtpServer server(
      ScriptedSmtpServer::Script{.extensions = {}, .refused = {}, .answerQuit = true, .endOfData = reply});
  SubmitSettings s;
  s.smtpUrl = server.url();
  // Preset to the opposite of the right answer: only submit() can set it right.
  Refusal r{"", reply.front() != '4'};
  EXPECT_FALSE(submit(s, {"a@example.jp"}, builtMessage("x", "y"), &r.error, &r.temporary));
  return r;
}

TEST(NotifySubmit, AMessageRefusedAfterDataIsReportedWithTheServersWords) {
  const auto r = refusedAtEndOfData("554 5.7.1 Virus found: Test.Sig");
  EXPECT_NE(r.error.find("(server: 554 5.7.1 Virus found: Test.Sig)"), std::string::npos) << r.error;
  EXPECT_FALSE(r.temporary);
}

TEST(NotifySubmit, FourHundredRepliesAreTemporaryFailures) {
  {
    const auto r = refusedAtEndOfData("451 4.3.0 queue file write error");
    EXPECT_NE(r.error.find("(server: 451 4.3.0 queue file write error)"), std::string::npos) << r.error;
    EXPECT_TRUE(r.temporary) << r.error;
  }
  {
    ScriptedSmtpServer server(ScriptedSmtpServer::Script{.extensions = {}, .refused = {}, .refuseSessions = 1});
    SubmitSettings s;
    s.smtpUrl = server.url();
    std::string error;
    bool temporary = false;
    EXPECT_FALSE(submit(s, {"a@example.jp"}, builtMessage("x", "y"), &error, &temporary));
    EXPECT_NE(error.find("421 4.3.2"), std::string::npos) << error;
    EXPECT_TRUE(temporary) << error;
  }
}

TEST(NotifySubmitter, ServerSilentAfterQuitDoesNotHoldTheCaller) {
  // libcurl waits for the reply to QUIT up to its own response timeout
  // (120 s unless set): the submission timeout must bound it too.
  ScriptedSmtpServer server(ScriptedSmtpServer::Script{.extensions = {}, .refused = {}, .answerQuit = false});
  SubmitSettings s;
  s.smtpUrl = server.url();
  s.timeout = 1000ms;
  const auto start = std::chrono::steady_clock::now();
  std::string error;
  EXPECT_TRUE(submit(s, {"a@example.jp"}, builtMessage("x", "y"), &error)) << error;
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_LT(took, 3s);  // the scripted server itself gives up after 5 s
  EXPECT_EQ(server.commands().back(), "QUIT");
}

TEST(NotifySubmit, SmtpUtf8AddressesUseTheExtensionWhenOffered) {
  Mail m = sampleMail();
  m.to = {"山田@example.jp"};
  const auto msg = buildMessage(m, "");
  ASSERT_TRUE(msg);
  std::string error;
  {
    ScriptedSmtpServer server({"8BITMIME", "SMTPUTF8"});
    SubmitSettings s;
    s.smtpUrl = server.url();
    ASSERT_TRUE(submit(s, m.to, msg->data, &error)) << error;
    const auto cmds = server.commands();
    EXPECT_NE(std::find(cmds.begin(), cmds.end(), "MAIL FROM:<> SMTPUTF8"), cmds.end()) << ::testing::PrintToString(cmds);
    EXPECT_NE(std::find(cmds.begin(), cmds.end(), "RCPT TO:<山田@example.jp>"), cmds.end())
        << ::testing::PrintToString(cmds);
  }
  {
    // An ASCII mail does not ask for the extension even where it is offered.
    ScriptedSmtpServer server({"SMTPUTF8"});
    SubmitSettings s;
    s.smtpUrl = server.url();
    ASSERT_TRUE(submit(s, {"admin@example.jp"}, builtMessage("x", "y"), &error)) << error;
    const auto cmds = server.commands();
    EXPECT_NE(std::find(cmds.begin(), cmds.end(), "MAIL FROM:<>"), cmds.end()) << ::testing::PrintToString(cmds);
  }
}

// Listening, so the kernel completes the handshake, but never accepted:
// no 220 banner ever comes.
class SilentServer {
 public:
  SilentServer() { fd_ = listenLoopback("SilentServer", &port_); }
  SilentServer(const SilentServer&) = delete;
  SilentServer& operator=(const SilentServer&) = delete;
  ~SilentServer() { ::close(fd_); }
  std::string url() const { return "smtp://127.0.0.1:" + std::to_string(port_); }

 private:
  int fd_ = -1;
  int port_ = 0;
};

TEST(NotifySubmit, SmtpTimesOutOnServerThatNeverGreets) {
  SilentServer silent;
  SubmitSettings s;
  s.smtpUrl = silent.url();
  s.timeout = 1000ms;
  std::string error;
  bool temporary = false;
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(submit(s, {"admin@example.jp"}, builtMessage("x", "y"), &error, &temporary));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_LT(elapsed, 2000ms);
  EXPECT_GE(elapsed, 900ms);
  EXPECT_NE(error.find("smtp: "), std::string::npos) << error;
  EXPECT_TRUE(temporary);
}

TEST(NotifySubmit, SmtpConnectionRefusedFails) {
  SubmitSettings s;
  s.smtpUrl = "smtp://127.0.0.1:" + std::to_string(freeLoopbackPort());
  std::string error;
  bool temporary = false;
  EXPECT_FALSE(submit(s, {"admin@example.jp"}, builtMessage("x", "y"), &error, &temporary));
  EXPECT_FALSE(error.empty());
  EXPECT_TRUE(temporary) << error;
}

TEST(NotifySubmit, RefusesBeforeAnyConnection) {
  struct Case {
    const char* label;
    std::string method, url;
    std::vector<std::string> to;
    std::string envelopeFrom;
    std::string want;
  };
  // The URL points nowhere: a case that tried to connect would fail with a
  // connection error instead of the expected one.
  const std::string nowhere = "smtp://127.0.0.1:" + std::to_string(freeLoopbackPort());
  const Case cases[] = {
      {"only null recipients", "smtp", nowhere, {"", "<>", " <> "}, "", "no recipient"},
      {"no recipients", "smtp", nowhere, {}, "", "no recipient"},
      {"no recipients, sendmail", "sendmail", nowhere, {"<>"}, "", "no recipient"},
      {"CRLF in recipient", "smtp", nowhere, {"a@example.jp>\r\nDATA"}, "", "invalid address"},
      {"space in recipient", "smtp", nowhere, {"a b@example.jp"}, "", "invalid address"},
      {"CRLF in envelope sender", "smtp", nowhere, {"a@example.jp"}, "x@example.jp\r\nRSET", "envelope sender"},
      {"not an SMTP URL", "smtp", "http://127.0.0.1/", {"a@example.jp"}, "", "smtp://"},
      {"unknown method", "lmtp", nowhere, {"a@example.jp"}, "", "unknown submit method"},
  };
  for (const auto& c : cases) {
    SubmitSettings s;
    s.method = c.method;
    s.smtpUrl = c.url;
    s.envelopeFrom = c.envelopeFrom;
    std::string error;
    bool temporary = true;
    EXPECT_FALSE(submit(s, c.to, "Subject: x\r\n\r\ny\r\n", &error, &temporary)) << c.label;
    EXPECT_NE(error.find(c.want), std::string::npos) << c.label << ": " << error;
    EXPECT_FALSE(temporary) << c.label;
  }
}

// ---- submit: sendmail --------------------------------------------------------------

fs::path writeScript(const fs::path& dir, const std::string& body) {
  const fs::path p = dir / "sendmail";
  writeFile(p, "#!/bin/sh\n" + body);
  ::chmod(p.c_str(), 0755);
  return p;
}

TEST(NotifySubmit, SendmailGetsArgumentsAndMessage) {
  TempDir tmp;
  SubmitSettings s;
  s.method = "sendmail";
  s.sendmailPath = writeScript(tmp.path(),
                               "d=$(dirname \"$0\")\n"
                               "for a in \"$@\"; do printf '%s\\n' \"$a\"; done > \"$d/args\"\n"
                               "cat > \"$d/stdin\"\n")
                       .string();
  // Big enough to need several writes into the socket.
  std::string body;
  for (int i = 0; i < 20000; ++i) body += kJapaneseSubject + "\n";
  const std::string message = builtMessage(kJapaneseSubject, body);
  std::string error;
  ASSERT_TRUE(submit(s, {"admin@example.jp", "<>", "-oQ/tmp@example.jp"}, message, &error)) << error;
  EXPECT_EQ(readFile(tmp.path() / "args"), "-i\n-f\n<>\n--\nadmin@example.jp\n-oQ/tmp@example.jp\n");
  EXPECT_EQ(readFile(tmp.path() / "stdin"), message);

  s.envelopeFrom = "<bounces@example.jp>";
  ASSERT_TRUE(submit(s, {"admin@example.jp"}, message, &error)) << error;
  EXPECT_EQ(readFile(tmp.path() / "args"), "-i\n-f\nbounces@example.jp\n--\nadmin@example.jp\n");
}

TEST(NotifySubmit, SendmailFailureReportsStatusAndStderr) {
  TempDir tmp;
  SubmitSettings s;
  s.method = "sendmail";
  s.sendmailPath = writeScript(tmp.path(), "echo 'sendmail: fatal: queue file write error' >&2\nexit 75\n").string();
  std::string error;
  bool temporary = false;
  EXPECT_FALSE(submit(s, {"admin@example.jp"}, builtMessage("x", "y"), &error, &temporary));
  EXPECT_NE(error.find("exit status 75"), std::string::npos) << error;
  EXPECT_NE(error.find("queue file write error"), std::string::npos) << error;
  EXPECT_TRUE(temporary);  // EX_TEMPFAIL

  s.sendmailPath = writeScript(tmp.path(), "echo 'sendmail: fatal: bad address syntax' >&2\nexit 65\n").string();
  EXPECT_FALSE(submit(s, {"admin@example.jp"}, builtMessage("x", "y"), &error, &temporary));
  EXPECT_NE(error.find("exit status 65"), std::string::npos) << error;
  EXPECT_FALSE(temporary);

  s.sendmailPath = (tmp.path() / "missing").string();
  temporary = true;
  EXPECT_FALSE(submit(s, {"admin@example.jp"}, builtMessage("x", "y"), &error, &temporary));
  EXPECT_NE(error.find("not an executable"), std::string::npos) << error;
  EXPECT_FALSE(temporary);
}

bool processGone(pid_t pid) {
  // Gone, or a zombie waiting for a container's init to reap it.
  const std::string stat = readFile("/proc/" + std::to_string(pid) + "/stat");
  if (stat.empty()) return true;
  const auto close = stat.rfind(')');
  return close != std::string::npos && stat.compare(close + 2, 1, "Z") == 0;
}

TEST(NotifySubmit, SendmailTimeoutKillsItsProcessGroup) {
  TempDir tmp;
  SubmitSettings s;
  s.method = "sendmail";
  s.timeout = 500ms;
  // A helper in the background, like postdrop, must die with it.
  s.sendmailPath = writeScript(tmp.path(), "sleep 30 &\necho $! > \"$(dirname \"$0\")/helper\"\nwait\n").string();
  std::string error;
  bool temporary = false;
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(submit(s, {"admin@example.jp"}, builtMessage("x", "y"), &error, &temporary));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1500ms);
  EXPECT_NE(error.find("timed out"), std::string::npos) << error;
  EXPECT_TRUE(temporary);
  const std::string helper = readFile(tmp.path() / "helper");
  ASSERT_FALSE(helper.empty());
  const pid_t helperPid = std::stoi(helper);
  for (int i = 0; i < 100 && !processGone(helperPid); ++i) std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(processGone(helperPid));
  if (!processGone(helperPid)) ::kill(helperPid, SIGKILL);
}

// ---- Outbox ----------------------------------------------------------------------

// What an Outbox reported, from whichever thread.
struct Reports {
  struct One {
    std::string to;
    bool sent;
    std::string error;
    std::thread::id thread;
    Outbox::Result result;
    std::chrono::steady_clock::time_point when;
  };
  std::mutex mutex;
  std::vector<One> got;
  Outbox::Report report() {
    return [this](const Outbox::Item& i, const Outbox::Result& r) {
      std::lock_guard lock(mutex);
      got.push_back({i.to.empty() ? "" : i.to[0], r.outcome == Outbox::Outcome::Sent, r.error,
                     std::this_thread::get_id(), r, std::chrono::steady_clock::now()});
    };
  }
  std::vector<One> waitFor(std::size_t n, std::chrono::milliseconds limit = 5000ms) {
    const auto end = std::chrono::steady_clock::now() + limit;
    for (;;) {
      {
        std::lock_guard lock(mutex);
        if (got.size() >= n || std::chrono::steady_clock::now() >= end) return got;
      }
      std::this_thread::sleep_for(5ms);
    }
  }
};

// No retries unless `retry` says so.
Outbox::Batch batchTo(const std::string& url, std::initializer_list<const char*> to, Reports& r,
                      std::chrono::milliseconds timeout = 5000ms, Outbox::Retry retry = {.after = 100ms, .within = 0ms}) {
  Outbox::Batch b;
  b.settings.smtpUrl = url;
  b.settings.timeout = timeout;
  b.retry = retry;
  for (const char* a : to) b.items.push_back({{a}, builtMessage("x", "y"), "<id@example.jp>"});
  b.report = r.report();
  return b;
}

TEST(NotifyOutbox, BatchesGoOutInOrderEachOverOneSessionFromItsOwnThread) {
  ScriptedSmtpServer server({"8BITMIME"});
  Reports r;
  Outbox outbox;
  outbox.start();
  outbox.post(batchTo(server.url(), {"a1@example.jp", "a2@example.jp"}, r));
  outbox.post(batchTo(server.url(), {"b1@example.jp"}, r));
  outbox.post(batchTo(server.url(), {"c1@example.jp", "c2@example.jp", "c3@example.jp"}, r));
  const auto got = r.waitFor(6);
  outbox.stop(1000ms);
  ASSERT_EQ(got.size(), 6u);
  const std::vector<std::string> order = {"a1@example.jp", "a2@example.jp", "b1@example.jp",
                                          "c1@example.jp", "c2@example.jp", "c3@example.jp"};
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].to, order[i]);
    EXPECT_TRUE(got[i].sent) << got[i].error;
    EXPECT_NE(got[i].thread, std::this_thread::get_id());
  }
  const auto sessions = server.sessions();
  ASSERT_EQ(sessions.size(), 3u);
  EXPECT_EQ(countPrefix(sessions[0], "MAIL FROM"), 2u);
  EXPECT_EQ(countPrefix(sessions[1], "MAIL FROM"), 1u);
  EXPECT_EQ(countPrefix(sessions[2], "MAIL FROM"), 3u);
}

TEST(NotifyOutbox, PostDoesNotWaitForASlowRelay) {
  SilentServer silent;
  Reports r;
  Outbox outbox;
  outbox.start();
  const auto start = std::chrono::steady_clock::now();
  outbox.post(batchTo(silent.url(), {"a@example.jp"}, r, 1000ms));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 200ms);
  const auto got = r.waitFor(1);
  outbox.stop(0ms);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_FALSE(got[0].sent);
  EXPECT_NE(got[0].error.find("smtp: "), std::string::npos) << got[0].error;
}

TEST(NotifyOutbox, AFullOrStoppedOutboxSendsInTheCallerAndLosesNothing) {
  SilentServer silent;
  ScriptedSmtpServer server({"8BITMIME"});
  Reports r;
  const std::size_t one = builtMessage("x", "y").size();
  Outbox outbox(2 * one + one / 2);  // room for two mails (one under way, one queued), not three
  // Not started: the caller sends.
  outbox.post(batchTo(server.url(), {"before@example.jp"}, r));
  ASSERT_EQ(r.waitFor(1, 0ms).size(), 1u);
  EXPECT_EQ(r.got[0].thread, std::this_thread::get_id());
  outbox.start();
  // The thread busy on a relay that never answers, one batch waiting: the
  // next one is sent by its caller, at once.
  outbox.post(batchTo(silent.url(), {"stuck@example.jp"}, r, 1500ms));
  for (int i = 0; i < 2000 && outbox.queued() > 0; ++i) std::this_thread::sleep_for(5ms);
  outbox.post(batchTo(server.url(), {"queued@example.jp"}, r));
  EXPECT_EQ(outbox.queued(), 1u);
  outbox.post(batchTo(server.url(), {"caller@example.jp"}, r));
  {
    std::lock_guard lock(r.mutex);
    ASSERT_EQ(r.got.size(), 2u);
    EXPECT_EQ(r.got[1].to, "caller@example.jp");
    EXPECT_TRUE(r.got[1].sent) << r.got[1].error;
    EXPECT_EQ(r.got[1].thread, std::this_thread::get_id());
  }
  // stop() lets the queued one go out once the stuck one has timed out.
  outbox.stop(5000ms);
  const auto got = r.waitFor(4, 0ms);
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[2].to, "stuck@example.jp");
  EXPECT_FALSE(got[2].sent);
  EXPECT_EQ(got[3].to, "queued@example.jp");
  EXPECT_TRUE(got[3].sent) << got[3].error;
  // Stopped: the caller sends again.
  outbox.post(batchTo(server.url(), {"after@example.jp"}, r));
  EXPECT_EQ(r.waitFor(5, 0ms).size(), 5u);
}

TEST(NotifyOutbox, WhatIsStillQueuedAtTheDeadlineIsReportedNotSent) {
  SilentServer silent;
  Reports r;
  Outbox outbox;
  outbox.start();
  // A batch of three under way on a relay that never answers, one more queued.
  outbox.post(batchTo(silent.url(), {"stuck@example.jp", "next1@example.jp", "next2@example.jp"}, r, 1000ms));
  for (int i = 0; i < 2000 && outbox.queued() > 0; ++i) std::this_thread::sleep_for(5ms);
  outbox.post(batchTo(silent.url(), {"late1@example.jp", "late2@example.jp"}, r, 1000ms));
  const auto start = std::chrono::steady_clock::now();
  outbox.stop(100ms);  // the stuck submission ends within its 1 s; nothing after it is tried
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1800ms);
  const auto got = r.waitFor(5, 0ms);
  ASSERT_EQ(got.size(), 5u);
  EXPECT_EQ(got[0].to, "stuck@example.jp");
  EXPECT_NE(got[0].error.find("smtp: "), std::string::npos) << got[0].error;
  for (std::size_t i = 1; i < 5; ++i) {
    EXPECT_FALSE(got[i].sent);
    EXPECT_EQ(got[i].error, "not sent: still queued when the milter stopped") << got[i].to;
  }
}

TEST(NotifyOutbox, RetryWaitsDoubleUpToFifteenMinutes) {
  const Outbox::Retry r{.after = 1min, .within = 1h};
  EXPECT_EQ(r.delay(1), 1min);
  EXPECT_EQ(r.delay(2), 2min);
  EXPECT_EQ(r.delay(3), 4min);
  EXPECT_EQ(r.delay(4), 8min);
  EXPECT_EQ(r.delay(5), 15min);
  EXPECT_EQ(r.delay(50), 15min);
  EXPECT_EQ((Outbox::Retry{.after = 30min, .within = 1h}).delay(3), 30min);  // longer than the cap: as set
  EXPECT_EQ((Outbox::Retry{.after = 0ms, .within = 1h}).delay(1), 10ms);     // never a busy loop
}

TEST(NotifyOutbox, TemporaryFailuresAreRetriedTogetherUntilTheRelayTakesThem) {
  // The relay turns the first two sessions away with a 421 (one per mail:
  // libcurl connects anew after a failed one), then takes mail.
  ScriptedSmtpServer server(ScriptedSmtpServer::Script{.extensions = {}, .refused = {}, .refuseSessions = 2});
  Reports r;
  Outbox outbox;
  outbox.start();
  const auto start = std::chrono::steady_clock::now();
  outbox.post(batchTo(server.url(), {"a@example.jp", "b@example.jp"}, r, 5000ms, {.after = 300ms, .within = 1h}));
  const auto got = r.waitFor(4);
  EXPECT_EQ(outbox.deferred(), 0u);
  outbox.stop(1000ms);
  ASSERT_EQ(got.size(), 4u);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(got[i].to, i == 0 ? "a@example.jp" : "b@example.jp");
    EXPECT_EQ(got[i].result.outcome, Outbox::Outcome::Deferred) << got[i].error;
    EXPECT_EQ(got[i].result.tries, 1);
    EXPECT_EQ(got[i].result.retryIn, 300ms);
    EXPECT_NE(got[i].error.find("421 4.3.2"), std::string::npos) << got[i].error;
  }
  for (std::size_t i = 2; i < 4; ++i) {
    EXPECT_EQ(got[i].to, i == 2 ? "a@example.jp" : "b@example.jp");
    EXPECT_TRUE(got[i].sent) << got[i].error;
    EXPECT_EQ(got[i].result.tries, 2);
    EXPECT_GE(got[i].when - start, 300ms);  // not before the wait
  }
  const auto sessions = server.sessions();
  ASSERT_EQ(sessions.size(), 3u);
  EXPECT_EQ(countPrefix(sessions[2], "MAIL FROM"), 2u);  // the retried mails share a session
}

TEST(NotifyOutbox, PermanentFailuresAreNotRetriedAndTheLastTryIsWithinTheLimit) {
  ScriptedSmtpServer server(ScriptedSmtpServer::Script{.extensions = {}, .refused = {"RCPT TO:<gone@example.jp>"}});
  const std::string nowhere = "smtp://127.0.0.1:" + std::to_string(freeLoopbackPort());  // connection refused
  Reports refused, down;
  Outbox outbox;
  outbox.start();
  const auto start = std::chrono::steady_clock::now();
  outbox.post(batchTo(server.url(), {"gone@example.jp"}, refused, 5000ms, {.after = 100ms, .within = 1h}));
  outbox.post(batchTo(nowhere, {"a@example.jp"}, down, 5000ms, {.after = 100ms, .within = 600ms}));
  // Tries at about 0, 0.1, 0.3 s (waits 100, 200 ms), the last at 0.6 s
  // (the 400 ms wait cut to what is left of 600 ms).
  for (int i = 0; i < 400; ++i) {
    {
      std::lock_guard lock(down.mutex);
      if (!down.got.empty() && down.got.back().result.outcome == Outbox::Outcome::Failed) break;
    }
    std::this_thread::sleep_for(10ms);
  }
  const auto last = std::chrono::steady_clock::now();
  EXPECT_EQ(outbox.deferred(), 0u);
  outbox.stop(1000ms);
  ASSERT_EQ(refused.got.size(), 1u);
  EXPECT_EQ(refused.got[0].result.outcome, Outbox::Outcome::Failed);
  EXPECT_EQ(refused.got[0].result.tries, 1);
  ASSERT_EQ(down.got.size(), 4u) << ::testing::PrintToString(down.got.size());
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(down.got[i].result.tries, static_cast<int>(i) + 1);
    EXPECT_EQ(down.got[i].result.outcome, i < 3 ? Outbox::Outcome::Deferred : Outbox::Outcome::Failed);
  }
  EXPECT_EQ(down.got[0].result.retryIn, 100ms);
  EXPECT_EQ(down.got[1].result.retryIn, 200ms);
  EXPECT_LE(down.got[2].result.retryIn, 300ms);  // cut to the limit
  EXPECT_GE(down.got[3].when - start, 590ms);
  EXPECT_LT(last - start, 3s);
}

// Posts a mail that `server` (refusing its first session) turns away, and
// waits until its batch waits for a retry an hour away.
void postDeferredForAnHour(Outbox& outbox, const ScriptedSmtpServer& server, Reports& r) {
  outbox.post(batchTo(server.url(), {"a@example.jp"}, r, 5000ms, {.after = 1h, .within = 2h}));
  ASSERT_EQ(r.waitFor(1).size(), 1u);
  for (int i = 0; i < 200 && outbox.deferred() == 0; ++i) std::this_thread::sleep_for(5ms);
}

TEST(NotifyOutbox, AStopTriesTheDeferredAtOnce) {
  ScriptedSmtpServer server(ScriptedSmtpServer::Script{.extensions = {}, .refused = {}, .refuseSessions = 1});
  Reports r;
  Outbox outbox;
  outbox.start();
  ASSERT_NO_FATAL_FAILURE(postDeferredForAnHour(outbox, server, r));
  EXPECT_EQ(outbox.deferred(), 1u);
  const auto start = std::chrono::steady_clock::now();
  outbox.stop(2000ms);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1500ms);
  const auto got = r.waitFor(2, 0ms);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].result.outcome, Outbox::Outcome::Deferred);
  EXPECT_TRUE(got[1].sent) << got[1].error;
  EXPECT_EQ(got[1].result.tries, 2);
}

TEST(NotifyOutbox, RetryNowTriesTheDeferredAtOnce) {
  ScriptedSmtpServer server(ScriptedSmtpServer::Script{.extensions = {}, .refused = {}, .refuseSessions = 1});
  Reports r;
  Outbox outbox;
  outbox.start();
  ASSERT_NO_FATAL_FAILURE(postDeferredForAnHour(outbox, server, r));
  EXPECT_EQ(r.got[0].result.outcome, Outbox::Outcome::Deferred);
  const auto start = std::chrono::steady_clock::now();
  outbox.retryNow();
  const auto got = r.waitFor(2);
  outbox.stop(0ms);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_TRUE(got[1].sent) << got[1].error;
  EXPECT_EQ(got[1].result.tries, 2);
  EXPECT_LT(got[1].when - start, 3000ms);
}

TEST(NotifyOutbox, RetryNowDuringATryRetriesItsRestAtOnce) {
  // The relay fixed (and retryNow() called) while a try on the old one is
  // still under way: what that try could not send goes at once, not after
  // its hour.
  SilentServer silent;
  ScriptedSmtpServer server({"8BITMIME"});
  std::atomic<int> refreshes{0};
  Reports r;
  Outbox outbox;
  outbox.start({}, [&](SubmitSettings& s, Outbox::Retry&) { s.smtpUrl = refreshes++ == 0 ? silent.url() : server.url(); });
  outbox.post(batchTo(silent.url(), {"a@example.jp"}, r, 1000ms, {.after = 1h, .within = 2h}));
  for (int i = 0; i < 400 && refreshes == 0; ++i) std::this_thread::sleep_for(5ms);
  ASSERT_EQ(refreshes, 1) << "the try did not begin";
  outbox.retryNow();
  const auto got = r.waitFor(2);
  outbox.stop(0ms);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].result.outcome, Outbox::Outcome::Deferred) << got[0].error;
  EXPECT_TRUE(got[1].sent) << got[1].error;
  EXPECT_EQ(got[1].result.tries, 2);
}

TEST(NotifyOutbox, FullOfMailsWaitingForARetryTheCallerDoesNotTry) {
  // A relay that is down for long: deferred warnings fill the outbox. A new
  // batch is then reported failed at once instead of costing its caller a
  // try (up to a timeout per mail) that would fail too.
  const std::string nowhere = "smtp://127.0.0.1:" + std::to_string(freeLoopbackPort());
  ScriptedSmtpServer server({"8BITMIME"});
  Reports r;
  const std::size_t one = builtMessage("x", "y").size();
  Outbox outbox(one + one / 2);
  outbox.start();
  outbox.post(batchTo(nowhere, {"a@example.jp"}, r, 5000ms, {.after = 1h, .within = 2h}));
  ASSERT_EQ(r.waitFor(1).size(), 1u);
  for (int i = 0; i < 200 && outbox.deferred() == 0; ++i) std::this_thread::sleep_for(5ms);
  ASSERT_EQ(outbox.deferred(), 1u);
  outbox.post(batchTo(server.url(), {"b@example.jp"}, r));
  {
    std::lock_guard lock(r.mutex);
    ASSERT_EQ(r.got.size(), 2u);
    EXPECT_EQ(r.got[1].to, "b@example.jp");
    EXPECT_EQ(r.got[1].result.outcome, Outbox::Outcome::Failed);
    EXPECT_EQ(r.got[1].result.tries, 0);
    EXPECT_EQ(r.got[1].error, "not sent: the outbox is full of mails waiting for a retry");
  }
  outbox.stop(1000ms);
  EXPECT_TRUE(server.sessions().empty());  // not tried
}

TEST(NotifyOutbox, NoRetryFromTheCallersThreadOrWhileStopping) {
  const std::string nowhere = "smtp://127.0.0.1:" + std::to_string(freeLoopbackPort());
  Reports r;
  Outbox outbox;  // not started: the caller sends, once
  outbox.post(batchTo(nowhere, {"a@example.jp"}, r, 5000ms, {.after = 100ms, .within = 1h}));
  ASSERT_EQ(r.got.size(), 1u);
  EXPECT_EQ(r.got[0].result.outcome, Outbox::Outcome::Failed);
  EXPECT_NE(r.got[0].error.find("(not retried: the outbox is not running)"), std::string::npos) << r.got[0].error;

  // Deferred, then turned away again by the try a stop makes: not deferred again.
  ScriptedSmtpServer server(ScriptedSmtpServer::Script{.extensions = {}, .refused = {}, .refuseSessions = 9});
  Reports s;
  outbox.start();
  outbox.post(batchTo(server.url(), {"b@example.jp"}, s, 5000ms, {.after = 1h, .within = 2h}));
  ASSERT_EQ(s.waitFor(1).size(), 1u);
  outbox.stop(2000ms);
  const auto got = s.waitFor(2, 0ms);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].result.outcome, Outbox::Outcome::Deferred);
  EXPECT_EQ(got[1].result.outcome, Outbox::Outcome::Failed);
  EXPECT_EQ(got[1].result.tries, 2);
  EXPECT_NE(got[1].error.find("(not retried: the milter is stopping)"), std::string::npos) << got[1].error;
  EXPECT_EQ(outbox.deferred(), 0u);
}

// ---- Spool files -----------------------------------------------------------------

TEST(NotifySpoolFile, EveryFieldAndAnyBytesComeBackAsWritten) {
  SpooledBatch b;
  b.batch.origin = "4XyZ1abc";
  b.batch.settings = {.method = "sendmail", .smtpUrl = "smtps://relay.example.jp:465/ehlo.example.jp",
                      .sendmailPath = "/opt/sendmail", .timeout = 7000ms, .envelopeFrom = "bounce@example.jp"};
  b.batch.retry = {.after = 90s, .within = 3h};
  b.batch.items = {{{"a@example.jp", "b@example.jp"}, "Subject: x\r\n\r\nitem 3\nto 9\n", "<1@example.jp>"},
                   {{"利用者@例え.jp"}, std::string("\0\xff\n\n", 4), ""}};
  b.tries = 3;
  b.first = 1795000000000;
  b.due = 1795000060000;
  const std::string text = encodeSpooled(b);
  SpooledBatch got;
  std::string why;
  ASSERT_TRUE(decodeSpooled(text, &got, &why)) << why;
  EXPECT_EQ(got.batch.origin, "4XyZ1abc");
  EXPECT_EQ(got.batch.settings.method, "sendmail");
  EXPECT_EQ(got.batch.settings.smtpUrl, "smtps://relay.example.jp:465/ehlo.example.jp");
  EXPECT_EQ(got.batch.settings.sendmailPath, "/opt/sendmail");
  EXPECT_EQ(got.batch.settings.timeout, 7000ms);
  EXPECT_EQ(got.batch.settings.envelopeFrom, "bounce@example.jp");
  EXPECT_EQ(got.batch.retry.after, 90s);
  EXPECT_EQ(got.batch.retry.within, 3h);
  EXPECT_EQ(got.tries, 3);
  EXPECT_EQ(got.first, 1795000000000);
  EXPECT_EQ(got.due, 1795000060000);
  ASSERT_EQ(got.batch.items.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(got.batch.items[i].to, b.batch.items[i].to);
    EXPECT_EQ(got.batch.items[i].data, b.batch.items[i].data);
    EXPECT_EQ(got.batch.items[i].messageId, b.batch.items[i].messageId);
  }
  EXPECT_EQ(encodeSpooled(got), text);
}

TEST(NotifySpoolFile, AnythingElseIsRefusedWithAReason) {
  SpooledBatch b;
  b.batch.items = {{{"a@example.jp"}, "Subject: x\r\n\r\ny\r\n", "<1@example.jp>"}};
  const std::string good = encodeSpooled(b);
  const auto refused = [](const std::string& text) {
    SpooledBatch got;
    std::string why;
    return decodeSpooled(text, &got, &why) ? std::string("accepted") : why;
  };
  EXPECT_EQ(refused(""), "not a spooled batch (no \"sekimori-outbox 1\" first line)");
  EXPECT_EQ(refused("sekimori-outbox 2\n" + good.substr(18)), "not a spooled batch (no \"sekimori-outbox 1\" first line)");
  EXPECT_EQ(refused(good.substr(0, good.size() - 1)), "damaged or cut short");
  EXPECT_EQ(refused(good + "x"), "damaged or cut short");
  EXPECT_EQ(refused(good + "origin 99\nshort\n"), "damaged or cut short");
  EXPECT_EQ(refused(good + "origin -1\n\n"), "damaged or cut short");
  EXPECT_EQ(refused(good + "priority 1\n9\n"), "unexpected field 'priority'");
  EXPECT_EQ(refused(good + "tries 2\n-1\n"), "bad number in tries");
  EXPECT_EQ(refused(good + "tries 7\n1000001\n"), "bad number in tries");
  EXPECT_EQ(refused(good + "retry_after 19\n9999999999999999999\n"), "bad number in retry_after");
  EXPECT_EQ(refused(good + "due 14\n99999999999999\n"), "bad number in due");  // past the year 2286
  EXPECT_EQ(refused(good + "item 0\n\n"), "a mail without recipients or content");
  EXPECT_EQ(refused(good + "item 0\n\nitem 0\n\n"), "a mail without content");
  EXPECT_EQ(refused(good + "to 1\nx\n"), "unexpected field 'to'");  // after its mail's data
  const std::string noTimeout = good.substr(0, good.find("timeout")) + good.substr(good.find("envelope_from"));
  EXPECT_EQ(refused(noTimeout), "no timeout");
  EXPECT_EQ(refused(good.substr(0, good.find("item"))), "a mail without recipients or content");
  EXPECT_EQ(refused(good), "accepted");
}

// ---- Outbox with a spool ----------------------------------------------------------

// What the spool of an Outbox reported: the batches it recovered at start
// (their reports go to `reports`) and its problems.
struct SpoolLog {
  std::mutex mutex;
  std::vector<Outbox::Batch> recovered;
  std::vector<std::string> problems;
  Reports reports;
  Outbox::Spool spool(const fs::path& dir) {
    Outbox::Spool s;
    s.dir = dir.string();
    s.recovered = [this](const Outbox::Batch& b) {
      std::lock_guard lock(mutex);
      recovered.push_back(b);
      return reports.report();
    };
    s.problem = [this](const std::string& what) {
      std::lock_guard lock(mutex);
      problems.push_back(what);
    };
    return s;
  }
};

// Its files but the lock.
std::vector<std::string> filesIn(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().filename() != ".lock") names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

bool waitForFiles(const fs::path& dir, std::size_t n) {
  for (int i = 0; i < 1000; ++i) {
    if (filesIn(dir).size() == n) return true;
    std::this_thread::sleep_for(5ms);
  }
  return false;
}

TEST(NotifyOutboxSpool, DeferredMailsOutliveARestartAndGoOutWhenDue) {
  // Two sessions turned away with a 421 (one per mail), then mail is taken:
  // by the outbox of the next start, from the spool.
  ScriptedSmtpServer server(ScriptedSmtpServer::Script{.extensions = {}, .refused = {}, .refuseSessions = 2});
  TempDir dir;
  SpoolLog first;
  Reports r;
  Outbox::Batch b = batchTo(server.url(), {"a@example.jp", "b@example.jp"}, r, 5000ms, {.after = 1s, .within = 1h});
  b.origin = "4XyZ1abc";
  b.items[1].data = builtMessage("x", "item 3\nto 99\n\nsekimori-outbox 1\n");  // our own field lines, as content
  const std::vector<Outbox::Item> posted = b.items;
  {
    Outbox outbox;
    outbox.start(first.spool(dir.path()));
    const auto start = std::chrono::steady_clock::now();
    outbox.post(std::move(b));
    ASSERT_EQ(r.waitFor(2).size(), 2u);
    ASSERT_TRUE(waitForFiles(dir.path(), 1));
    outbox.stop(1000ms);  // well before the retry is due: no try at the stop
    ASSERT_LT(std::chrono::steady_clock::now() - start, 900ms) << "too slow a machine for this test";
  }
  EXPECT_EQ(r.waitFor(3, 0ms).size(), 2u);
  const auto kept = filesIn(dir.path());
  ASSERT_EQ(kept.size(), 1u);
  EXPECT_TRUE(kept[0].ends_with(".batch")) << kept[0];
  EXPECT_EQ(fs::status(dir.path() / kept[0]).permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);

  SpoolLog second;
  Outbox outbox;
  outbox.start(second.spool(dir.path()));
  EXPECT_EQ(outbox.deferred(), 1u);
  {
    std::lock_guard lock(second.mutex);
    ASSERT_EQ(second.recovered.size(), 1u);
    const Outbox::Batch& got = second.recovered[0];
    EXPECT_EQ(got.origin, "4XyZ1abc");
    EXPECT_EQ(got.settings.smtpUrl, server.url());
    EXPECT_EQ(got.settings.timeout, 5000ms);
    EXPECT_EQ(got.retry.after, 1s);
    EXPECT_EQ(got.retry.within, 1h);
    ASSERT_EQ(got.items.size(), 2u);
    for (std::size_t i = 0; i < 2; ++i) {
      EXPECT_EQ(got.items[i].to, posted[i].to);
      EXPECT_EQ(got.items[i].messageId, posted[i].messageId);
      EXPECT_EQ(got.items[i].data, posted[i].data);
    }
    EXPECT_TRUE(second.problems.empty());
  }
  const auto sent = second.reports.waitFor(2);
  ASSERT_EQ(sent.size(), 2u);
  for (const auto& one : sent) {
    EXPECT_TRUE(one.sent) << one.error;
    EXPECT_EQ(one.result.tries, 2);
  }
  EXPECT_TRUE(waitForFiles(dir.path(), 0));  // nothing left to keep
  outbox.stop(1000ms);
  const auto sessions = server.sessions();
  ASSERT_EQ(sessions.size(), 3u);
  EXPECT_EQ(countPrefix(sessions[2], "MAIL FROM"), 2u);
}

TEST(NotifyOutboxSpool, AStopKeepsWhatItCouldNotSendForTheNextStart) {
  SilentServer silent;
  ScriptedSmtpServer server({"8BITMIME"});
  TempDir dir;
  SpoolLog first;
  Reports stuck, queued;
  {
    Outbox outbox;
    outbox.start(first.spool(dir.path()));
    outbox.post(batchTo(silent.url(), {"stuck@example.jp"}, stuck, 1000ms, {.after = 1h, .within = 2h}));
    for (int i = 0; i < 400 && outbox.queued() > 0; ++i) std::this_thread::sleep_for(5ms);
    outbox.post(batchTo(server.url(), {"queued@example.jp"}, queued, 5000ms, {.after = 1h, .within = 2h}));
    outbox.stop(0ms);  // the silent relay's timeout ends the try under way; the queued one is not tried
  }
  ASSERT_EQ(stuck.got.size(), 1u);
  EXPECT_EQ(stuck.got[0].result.outcome, Outbox::Outcome::Deferred) << stuck.got[0].error;
  ASSERT_EQ(queued.got.size(), 1u);
  EXPECT_EQ(queued.got[0].result.outcome, Outbox::Outcome::Deferred);
  EXPECT_EQ(queued.got[0].error, "not sent before the milter stopped; kept in the spool for its next start");
  EXPECT_EQ(queued.got[0].result.tries, 0);  // none made
  EXPECT_EQ(filesIn(dir.path()).size(), 2u);
  EXPECT_TRUE(first.problems.empty());

  SpoolLog second;
  Outbox outbox;
  outbox.start(second.spool(dir.path()));
  {
    std::lock_guard lock(second.mutex);
    ASSERT_EQ(second.recovered.size(), 2u);
    EXPECT_EQ(second.recovered[0].items[0].to, std::vector<std::string>{"stuck@example.jp"});  // oldest first
    EXPECT_EQ(second.recovered[1].items[0].to, std::vector<std::string>{"queued@example.jp"});
  }
  // The one the stop left untried goes at once; the other waits for its hour.
  const auto got = second.reports.waitFor(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].to, "queued@example.jp");
  EXPECT_TRUE(got[0].sent) << got[0].error;
  EXPECT_EQ(got[0].result.tries, 1);
  EXPECT_TRUE(waitForFiles(dir.path(), 1));
  EXPECT_EQ(outbox.deferred(), 1u);
  outbox.stop(0ms);
  EXPECT_EQ(second.reports.waitFor(2, 0ms).size(), 1u);
  EXPECT_EQ(filesIn(dir.path()).size(), 1u);  // the stuck one's, kept as it was
  EXPECT_EQ(server.sessions().size(), 1u);
}

TEST(NotifyOutboxSpool, EveryPostedBatchIsOnDiskBeforePostReturns) {
  // The outbox's thread is held by a silent relay; a batch posted behind
  // it is queued, never tried — and already in its file, so that a kill
  // now would not lose it. A copy of the spool, as a killed process would
  // leave it, is sent by the next outbox.
  SilentServer silent;
  ScriptedSmtpServer server({"8BITMIME"});
  TempDir dir, copy;
  SpoolLog first;
  Reports stuck, queued;
  Outbox outbox;
  outbox.start(first.spool(dir.path()));
  outbox.post(batchTo(silent.url(), {"stuck@example.jp"}, stuck, 1000ms, {.after = 1h, .within = 2h}));
  EXPECT_EQ(filesIn(dir.path()).size(), 1u);
  for (int i = 0; i < 400 && outbox.queued() > 0; ++i) std::this_thread::sleep_for(5ms);
  ASSERT_EQ(outbox.queued(), 0u) << "the first batch's try did not begin";
  Outbox::Batch b = batchTo(server.url(), {"queued@example.jp"}, queued, 5000ms, {.after = 1h, .within = 2h});
  b.origin = "4XyZ2def";
  outbox.post(std::move(b));
  const auto files = filesIn(dir.path());
  ASSERT_EQ(files.size(), 2u);  // no wait: post() wrote it
  EXPECT_EQ(outbox.queued(), 1u);
  for (const auto& name : files) fs::copy_file(dir.path() / name, copy.path() / name);
  SpooledBatch st;
  std::string why;
  ASSERT_TRUE(readSpooled((dir.path() / files[1]).string(), 1 << 20, &st, &why)) << why;
  EXPECT_EQ(st.batch.origin, "4XyZ2def");
  EXPECT_EQ(st.tries, 0);
  EXPECT_TRUE(queued.got.empty());
  outbox.stop(0ms);  // (it keeps the queued one untried, in its own spool)

  SpoolLog second;
  Outbox next;
  next.start(second.spool(copy.path()));
  // Oldest first: the stuck one (its first try, deferred after the
  // relay's silence), then the queued one.
  const auto got = second.reports.waitFor(2);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].to, "stuck@example.jp");
  EXPECT_EQ(got[0].result.outcome, Outbox::Outcome::Deferred) << got[0].error;
  EXPECT_EQ(got[0].result.tries, 1);
  EXPECT_EQ(got[1].to, "queued@example.jp");
  EXPECT_TRUE(got[1].sent) << got[1].error;
  EXPECT_EQ(got[1].result.tries, 1);
  EXPECT_TRUE(waitForFiles(copy.path(), 1));  // only the deferred one's
  next.stop(0ms);
  EXPECT_EQ(server.sessions().size(), 1u);
}

TEST(NotifyOutboxSpool, PostsFromManyThreadsEachGetAFileOfTheirOwnAndAllGoOut) {
  // Milter threads post at once while the outbox's thread is held by a
  // silent relay: every batch is in a file of its own (none overwrote
  // another's). The next outbox, sent to a relay that works, sends every
  // mail once and leaves nothing behind.
  SilentServer silent;
  ScriptedSmtpServer server({"8BITMIME"});
  TempDir dir;
  constexpr int kThreads = 4, kEach = 25;
  {
    SpoolLog log;
    Outbox outbox;
    outbox.start(log.spool(dir.path()));
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kEach; ++i) {
          const std::string to = "t" + std::to_string(t) + "-" + std::to_string(i) + "@example.jp";
          outbox.post(batchTo(silent.url(), {to.c_str()}, log.reports, 1000ms, {.after = 1h, .within = 2h}));
        }
      });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(filesIn(dir.path()).size(), static_cast<std::size_t>(kThreads * kEach));
    outbox.stop(0ms);
    std::lock_guard lock(log.mutex);
    EXPECT_TRUE(log.problems.empty());
  }
  SpoolLog log;
  Outbox outbox;
  // (The batch whose try the stop cut short was deferred for an hour; the
  // retry policy of now says 100 ms.)
  outbox.start(log.spool(dir.path()), [&](SubmitSettings& s, Outbox::Retry& r) {
    s.smtpUrl = server.url();
    r = {.after = 100ms, .within = 1h};
  });
  const auto got = log.reports.waitFor(kThreads * kEach, 20000ms);
  ASSERT_EQ(got.size(), static_cast<std::size_t>(kThreads * kEach));
  std::set<std::string> addressees;
  for (const auto& one : got) {
    EXPECT_TRUE(one.sent) << one.error;
    addressees.insert(one.to);
  }
  EXPECT_EQ(addressees.size(), got.size());
  EXPECT_TRUE(waitForFiles(dir.path(), 0));
  outbox.stop(1000ms);
  EXPECT_EQ(server.sessions().size(), static_cast<std::size_t>(kThreads * kEach));
}

TEST(NotifyOutboxSpool, EachTryFollowsTheSettingsOfNow) {
  // Mails waiting for a retry on a relay that is down go to the one the
  // configuration names now: in the running outbox (a reload), and in the
  // next one, whose shorter retry wait applies at once (a restart).
  ScriptedSmtpServer server({"8BITMIME"});
  const std::string nowhere = "smtp://127.0.0.1:" + std::to_string(freeLoopbackPort());
  std::mutex mutex;
  std::string url = nowhere;
  const auto refresh = [&](SubmitSettings& s, Outbox::Retry& r) {
    std::lock_guard lock(mutex);
    s.smtpUrl = url;
    r = {.after = 100ms, .within = 1h};
  };
  {
    Reports r;
    Outbox outbox;
    outbox.start({}, refresh);
    outbox.post(batchTo(nowhere, {"reload@example.jp"}, r, 5000ms, {.after = 1h, .within = 2h}));
    ASSERT_EQ(r.waitFor(1).size(), 1u);
    EXPECT_EQ(r.got[0].result.outcome, Outbox::Outcome::Deferred) << r.got[0].error;
    EXPECT_EQ(r.got[0].result.retryIn, 100ms);  // the policy of now, not the batch's hour
    {
      std::lock_guard lock(mutex);
      url = server.url();
    }
    const auto got = r.waitFor(2);
    outbox.stop(0ms);
    ASSERT_EQ(got.size(), 2u);
    EXPECT_TRUE(got[1].sent) << got[1].error;
    EXPECT_EQ(got[1].result.tries, 2);
  }

  TempDir dir;
  {
    SpoolLog first;
    Outbox outbox;
    outbox.start(first.spool(dir.path()));  // no refresh: the batch's own hour
    outbox.post(batchTo(nowhere, {"restart@example.jp"}, first.reports, 5000ms, {.after = 1h, .within = 2h}));
    ASSERT_EQ(first.reports.waitFor(1).size(), 1u);
    ASSERT_TRUE(waitForFiles(dir.path(), 1));
    outbox.stop(0ms);
  }
  SpoolLog second;
  Outbox outbox;
  outbox.start(second.spool(dir.path()), refresh);
  const auto got = second.reports.waitFor(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(got[0].sent) << got[0].error;
  EXPECT_EQ(got[0].result.tries, 2);
  EXPECT_TRUE(waitForFiles(dir.path(), 0));
  outbox.stop(0ms);
  EXPECT_EQ(server.sessions().size(), 2u);
}

TEST(NotifyOutboxSpool, DamagedFilesAreSetAsideAndStrayTempFilesRemoved) {
  TempDir dir;
  // A good batch, spooled by an outbox whose relay is down.
  {
    SpoolLog log;
    Reports r;
    Outbox outbox;
    outbox.start(log.spool(dir.path()));
    const std::string nowhere = "smtp://127.0.0.1:" + std::to_string(freeLoopbackPort());
    outbox.post(batchTo(nowhere, {"a@example.jp"}, r, 5000ms, {.after = 1h, .within = 2h}));
    ASSERT_TRUE(waitForFiles(dir.path(), 1));
    outbox.stop(0ms);
  }
  const std::string good = filesIn(dir.path())[0];
  const std::string text = readFile(dir.path() / good);
  writeFile(dir.path() / "0000000000001-1-1.batch", "not a batch\n");
  writeFile(dir.path() / "0000000000002-1-2.batch", text.substr(0, text.size() - 20));  // cut short
  writeFile(dir.path() / "0000000000003-1-3.batch", text + "colour 1\nx\n");  // a field we do not know
  writeFile(dir.path() / ".0000000000004-1-4.batch.tmp", text);  // a write a crash cut short

  SpoolLog log;
  Outbox outbox;
  outbox.start(log.spool(dir.path()));
  // The batch may be due at once (the first outbox may have stopped before
  // trying it): while its try to `nowhere` is under way it is not deferred.
  for (int i = 0; i < 200 && outbox.deferred() == 0; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(outbox.deferred(), 1u);
  outbox.stop(0ms);
  std::lock_guard lock(log.mutex);
  ASSERT_EQ(log.recovered.size(), 1u);
  ASSERT_EQ(log.problems.size(), 3u);
  EXPECT_NE(log.problems[0].find("0000000000001-1-1.batch: not a spooled batch"), std::string::npos) << log.problems[0];
  EXPECT_NE(log.problems[1].find("damaged or cut short; renamed to "), std::string::npos) << log.problems[1];
  EXPECT_NE(log.problems[2].find("unexpected field 'colour'"), std::string::npos) << log.problems[2];
  EXPECT_EQ(filesIn(dir.path()), (std::vector<std::string>{"0000000000001-1-1.batch.bad", "0000000000002-1-2.batch.bad",
                                                            "0000000000003-1-3.batch.bad", good}));
}

TEST(NotifyOutboxSpool, ALoadStaysWithinTheBoundAndLeavesTheRestOnDisk) {
  TempDir dir;
  const std::string nowhere = "smtp://127.0.0.1:" + std::to_string(freeLoopbackPort());
  {
    SpoolLog log;
    Reports r;
    Outbox outbox;
    outbox.start(log.spool(dir.path()));
    outbox.post(batchTo(nowhere, {"a@example.jp"}, r, 5000ms, {.after = 1h, .within = 2h}));
    outbox.post(batchTo(nowhere, {"b@example.jp"}, r, 5000ms, {.after = 1h, .within = 2h}));
    ASSERT_TRUE(waitForFiles(dir.path(), 2));
    outbox.stop(0ms);
  }
  const std::size_t one = builtMessage("x", "y").size();
  // And a file no outbox with this bound could have written, however it got there.
  writeFile(dir.path() / "9999999999999-1-1.batch", std::string(one + one / 2 + 65537, 'x'));
  SpoolLog log;
  Outbox outbox(one + one / 2);
  outbox.start(log.spool(dir.path()));
  for (int i = 0; i < 200 && outbox.deferred() == 0; ++i) std::this_thread::sleep_for(5ms);  // as above
  EXPECT_EQ(outbox.deferred(), 1u);
  outbox.stop(0ms);
  std::lock_guard lock(log.mutex);
  ASSERT_EQ(log.recovered.size(), 1u);
  EXPECT_EQ(log.recovered[0].items[0].to, std::vector<std::string>{"a@example.jp"});
  ASSERT_EQ(log.problems.size(), 2u);
  EXPECT_NE(log.problems[0].find("9999999999999-1-1.batch: larger than the outbox can hold; renamed to"),
            std::string::npos)
      << log.problems[0];
  EXPECT_NE(log.problems[1].find("1 spooled batches of warning mails in " + dir.path().string() +
                                 " are left for a later start"),
            std::string::npos)
      << log.problems[1];
  EXPECT_EQ(filesIn(dir.path()).size(), 3u);  // the two batches, the .bad one
}

TEST(NotifyOutboxSpool, TwoOutboxesDoNotShareASpool) {
  TempDir dir;
  SpoolLog first, second, third;
  Outbox a, b;
  a.start(first.spool(dir.path()));
  b.start(second.spool(dir.path()));  // another daemon with the same conf, say
  {
    std::lock_guard lock(second.mutex);
    ASSERT_EQ(second.problems.size(), 1u);
    EXPECT_EQ(second.problems[0], dir.path().string() +
                                      " is in use by another process; warning mails not yet sent are kept in "
                                      "memory only");
  }
  // b keeps its deferred mails in memory, out of a's spool.
  const std::string nowhere = "smtp://127.0.0.1:" + std::to_string(freeLoopbackPort());
  b.post(batchTo(nowhere, {"b@example.jp"}, second.reports, 5000ms, {.after = 1h, .within = 2h}));
  ASSERT_EQ(second.reports.waitFor(1).size(), 1u);
  for (int i = 0; i < 200 && b.deferred() == 0; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(b.deferred(), 1u);
  EXPECT_TRUE(filesIn(dir.path()).empty());
  b.stop(0ms);
  a.stop(0ms);
  Outbox c;  // the spool is free again
  c.start(third.spool(dir.path()));
  c.stop(0ms);
  std::lock_guard lock(third.mutex);
  EXPECT_TRUE(third.problems.empty());
}

TEST(NotifyOutboxSpool, ASpoolThatCannotBeUsedLeavesMailsInMemoryAndSaysSo) {
  TempDir dir;
  for (const bool vanishes : {false, true}) {
    SCOPED_TRACE(vanishes ? "the spool removed under the running outbox" : "no spool directory at start");
    ScriptedSmtpServer server(ScriptedSmtpServer::Script{.extensions = {}, .refused = {}, .refuseSessions = 1});
    SpoolLog log;
    Outbox outbox;
    outbox.start(log.spool(dir.path() / "spool"));
    if (vanishes) fs::remove_all(dir.path() / "spool");
    outbox.post(batchTo(server.url(), {"a@example.jp"}, log.reports, 5000ms, {.after = 200ms, .within = 1h}));
    const auto got = log.reports.waitFor(2);
    outbox.stop(1000ms);
    ASSERT_EQ(got.size(), 2u);
    EXPECT_EQ(got[0].result.outcome, Outbox::Outcome::Deferred);
    EXPECT_TRUE(got[1].sent) << got[1].error;  // retried from memory
    std::lock_guard lock(log.mutex);
    // A vanished spool: the file cannot be written when the batch is
    // posted, nor after its deferred try; each failure is said.
    ASSERT_EQ(log.problems.size(), vanishes ? 2u : 1u);
    for (const auto& problem : log.problems) {
      EXPECT_NE(problem.find(vanishes ? "(the warning mails wait in memory only)"
                                      : "spool/.lock: No such file or directory; warning mails not yet "
                                        "sent are kept in memory only"),
                std::string::npos)
          << problem;
    }
    fs::create_directory(dir.path() / "spool");
  }
}

// ---- IssuedIds -------------------------------------------------------------------

TEST(NotifyIssuedIds, AnIdCountsOnceAndOnlyIfIssued) {
  IssuedIds ids;
  const auto msg = buildMessage(sampleMail(), "example.jp");
  ASSERT_TRUE(msg);
  EXPECT_FALSE(ids.take(msg->messageId));  // not issued (yet): a forged notice header
  ids.add(msg->messageId);
  EXPECT_FALSE(ids.take("<other@example.jp>"));
  EXPECT_FALSE(ids.take(""));
  EXPECT_TRUE(ids.take(" " + msg->messageId + "\t"));  // as a header value has it
  EXPECT_FALSE(ids.take(msg->messageId));             // a replay of the same id
  EXPECT_EQ(ids.size(), 0u);
}

TEST(NotifyIssuedIds, OldOnesGoByAgeAndByCount) {
  using namespace std::chrono;
  const auto t0 = IssuedIds::Clock::time_point{} + hours(100);
  IssuedIds ids(3, seconds(60));
  ids.add("<a@x>", t0);
  ids.add("<b@x>", t0 + seconds(30));
  EXPECT_FALSE(ids.take("<a@x>", t0 + seconds(61)));  // older than the ttl
  EXPECT_TRUE(ids.take("<b@x>", t0 + seconds(61)));
  for (const char* id : {"<c@x>", "<d@x>", "<e@x>", "<f@x>"}) ids.add(id, t0 + seconds(70));
  EXPECT_EQ(ids.size(), 3u);
  EXPECT_FALSE(ids.take("<c@x>", t0 + seconds(70)));  // pushed out by the fourth
  EXPECT_TRUE(ids.take("<f@x>", t0 + seconds(70)));
  // Ids taken at once leave nothing that grows, and push no live one out.
  ids.add("<keep@x>", t0 + seconds(75));
  for (int i = 0; i < 1000; ++i) {
    const std::string id = "<n" + std::to_string(i) + "@x>";
    ids.add(id, t0 + seconds(80));
    EXPECT_TRUE(ids.take(id, t0 + seconds(80)));
  }
  EXPECT_LE(ids.bookkeeping(), 2u * 3 + 16 + 1);
  EXPECT_TRUE(ids.take("<keep@x>", t0 + seconds(80)));
}

}  // namespace
}  // namespace sekimori::notify
