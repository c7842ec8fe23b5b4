// common/notify/notify.cpp — see notify.h.
#include "common/notify/notify.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <mutex>
#include <random>
#include <thread>

#include "common/util/strings.h"

namespace sekimori::notify {
namespace {

constexpr std::size_t kMaxLine = 78;         // RFC 5322 2.1.1 "SHOULD"
constexpr std::size_t kMaxEncodedWord = 75;  // RFC 2047 2
constexpr std::size_t kBase64Line = 76;      // RFC 2045 6.8
constexpr std::size_t kMaxAddress = 254;
constexpr std::string_view kCrlf = "\r\n";

void setError(std::string* error, std::string text) {
  if (error) *error = std::move(text);
}

void setTemporary(bool* temporary, bool value) {
  if (temporary) *temporary = value;
}

// ---- text helpers ---------------------------------------------------------

// Header text: controls (CR, LF, TAB, NUL, DEL) become spaces — a header
// value can never start a new header line.
std::string blankControls(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (util::isControl(c)) c = ' ';
  }
  return out;
}

// Joins tokens after "Name:" with single spaces, folding (CRLF SP) before a
// token that would push the line past 78 characters — also before the first
// one ("Name:" alone on its line is valid FWS). A token longer than a line
// stays whole (the hard limit is 998).
std::string foldTokens(std::string_view name, const std::vector<std::string>& tokens) {
  std::string out(name);
  out += ':';
  std::size_t lineLength = out.size();
  for (const auto& token : tokens) {
    if (lineLength > 0 && lineLength + 1 + token.size() > kMaxLine) {
      out += kCrlf;
      lineLength = 0;
    }
    out += ' ';
    out += token;
    lineLength += 1 + token.size();
  }
  out += kCrlf;
  return out;
}

// RFC 2047 B-encoded words for `text` (valid UTF-8), split on character
// boundaries. The first word is shortened so that "Name: " plus it fits a
// line; each word is at most 75 characters.
std::vector<std::string> encodedWords(std::string_view text, std::size_t firstLineUsed) {
  constexpr std::string_view kPrefix = "=?UTF-8?B?", kSuffix = "?=";
  constexpr std::size_t kOverhead = kPrefix.size() + kSuffix.size();
  const auto bytesFor = [&](std::size_t room) {
    const std::size_t chars = std::min(room, kMaxEncodedWord) - kOverhead;
    return chars / 4 * 3;
  };
  std::vector<std::string> words;
  // " " before the first word; after a header name so long that not even one
  // 4-byte character fits, foldTokens starts the first word on a new line.
  std::size_t budget =
      (firstLineUsed + 1 + kOverhead + 8 <= kMaxLine) ? bytesFor(kMaxLine - firstLineUsed - 1) : bytesFor(kMaxLine - 1);
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t end = i;
    while (end < text.size()) {
      std::size_t n = util::utf8Length(text, end);
      if (n == 0) n = 1;  // callers pass valid UTF-8; never loop forever
      if (end + n - i > budget) break;
      end += n;
    }
    words.push_back(std::string(kPrefix) + util::encodeBase64(text.substr(i, end - i)) + std::string(kSuffix));
    i = end;
    budget = bytesFor(kMaxLine - 1);
  }
  return words;
}

// An unstructured header (Subject, extra headers), runs of white space
// collapsed: plain and folded at spaces when it is ASCII and every word fits a
// line; RFC 2047 words otherwise. Text that merely looks like an encoded word
// ("=?") is encoded too, so a reader shows it as written.
std::string unstructuredHeader(std::string_view name, std::string_view rawValue) {
  const auto words = util::split(util::repairUtf8(blankControls(rawValue)), ' ');
  std::string value;
  for (const auto& w : words) value += (value.empty() ? "" : " ") + w;
  if (util::isAscii(value) && value.find("=?") == std::string::npos &&
      std::all_of(words.begin(), words.end(), [](const std::string& w) { return w.size() + 1 <= kMaxLine; })) {
    return foldTokens(name, words);
  }
  return foldTokens(name, encodedWords(value, name.size() + 1));
}

// ---- addresses --------------------------------------------------------------

}  // namespace

// (notify.h) Non-ASCII must be valid UTF-8 without C1 controls (0xC2 0x80..0x9F).
// XXX: quoted local parts with spaces ("john doe"@example.jp) are refused.
std::optional<std::string> cleanAddress(std::string_view raw, std::string* error) {
  std::string_view a = util::trim(raw);
  if (a.size() >= 2 && a.front() == '<' && a.back() == '>') a = a.substr(1, a.size() - 2);
  const auto invalid = [&] {
    setError(error, "invalid address <" + util::sanitizeText(raw) + ">");
    return std::nullopt;
  };
  if (a.empty() || a.size() > kMaxAddress) return invalid();
  for (std::size_t i = 0; i < a.size();) {
    const auto u = static_cast<unsigned char>(a[i]);
    if (u >= 0x80) {
      const std::size_t n = util::utf8Length(a, i);
      if (n == 0 || (u == 0xC2 && static_cast<unsigned char>(a[i + 1]) < 0xA0)) return invalid();
      i += n;
      continue;
    }
    if (u <= 0x20 || u == 0x7F || std::string_view("<>,;()\\").find(a[i]) != std::string_view::npos) {
      return invalid();
    }
    ++i;
  }
  return std::string(a);
}

namespace {

bool isNullAddress(std::string_view a) {
  a = util::trim(a);
  return a.empty() || a == "<>";
}

// Recipients with "" and "<>" dropped; nullopt on an invalid one or none left.
std::optional<std::vector<std::string>> cleanRecipients(const std::vector<std::string>& raw, std::string* error) {
  std::vector<std::string> out;
  for (const auto& r : raw) {
    if (isNullAddress(r)) continue;
    auto a = cleanAddress(r, error);
    if (!a) return std::nullopt;
    out.push_back(std::move(*a));
  }
  if (out.empty()) {
    setError(error, "no recipient");
    return std::nullopt;
  }
  return out;
}

bool validDomain(std::string_view d) {
  if (d.empty() || d.size() > 253 || d.front() == '.' || d.back() == '.') return false;
  return std::all_of(d.begin(), d.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
  });
}

// A display name as a phrase: atoms when it is plain ASCII words, a quoted
// string for other ASCII, encoded words for UTF-8 — and for ASCII whose
// atoms or quoted string would not fit a folded line (foldTokens never
// splits a token; encoded words are split to fit).
std::vector<std::string> phraseTokens(std::string_view rawName, std::size_t firstLineUsed) {
  const std::string name = util::repairUtf8(blankControls(util::trim(rawName)));
  if (name.empty()) return {};
  const auto fit = [](const std::vector<std::string>& tokens) {
    return std::all_of(tokens.begin(), tokens.end(), [](const std::string& t) { return t.size() + 1 <= kMaxLine; });
  };
  if (util::isAscii(name) && name.find("=?") == std::string::npos) {
    const bool atoms = std::all_of(name.begin(), name.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) ||
             std::string_view(" !#$%&'*+-/=?^_`{|}~").find(c) != std::string_view::npos;
    });
    if (atoms) {
      if (auto words = util::split(name, ' '); fit(words)) return words;
    } else {
      std::string quoted = "\"";
      for (char c : name) {
        if (c == '"' || c == '\\') quoted += '\\';
        quoted += c;
      }
      quoted += '"';
      if (std::vector<std::string> tokens{quoted}; fit(tokens)) return tokens;
    }
  }
  return encodedWords(name, firstLineUsed);
}

// ---- dates and ids ------------------------------------------------------------

// RFC 5322 3.3 date in local time, English names whatever the locale:
// "Tue, 05 Mar 2024 14:03:09 +0900".
std::string rfc5322Date(std::chrono::system_clock::time_point when) {
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const std::time_t t = std::chrono::system_clock::to_time_t(when);
  std::tm tm{};
  localtime_r(&t, &tm);
  const long off = tm.tm_gmtoff / 60;
  const long absOff = off < 0 ? -off : off;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d %c%02ld%02ld", kDays[tm.tm_wday % 7], tm.tm_mday,
                kMonths[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec, off < 0 ? '-' : '+',
                absOff / 60, absOff % 60);
  return buf;
}

std::string base36(std::uint64_t v) {
  std::string out;
  do {
    out += "0123456789abcdefghijklmnopqrstuvwxyz"[v % 36];
    v /= 36;
  } while (v != 0);
  return {out.rbegin(), out.rend()};
}

// Unique without coordination: 64 random bits drawn once per process, the
// pid (a process forked after the first id shares the random bits) and a
// process-wide counter. Base 36 and no timestamp keep the left part near 20
// characters, so the line stays within 78 for domains up to about 55.
std::string newMessageId(std::string_view domain) {
  static const std::uint64_t processRandom = [] {
    std::random_device rd;
    return (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  }();
  static std::atomic<std::uint64_t> counter{0};
  // Appended piece by piece: GCC 12's -Wrestrict misfires on "<" + string
  // in optimised builds (GCC bug 105651).
  std::string id = "<";
  for (const std::uint64_t part : {processRandom, static_cast<std::uint64_t>(getpid())}) {
    id += base36(part);
    id += '.';
  }
  id += base36(counter.fetch_add(1) + 1);
  id += '@';
  id += domain;
  id += '>';
  return id;
}

// ---- body -----------------------------------------------------------------------

// Any mix of CRLF, LF and bare CR becomes CRLF; the body ends with CRLF.
std::string crlfLines(std::string_view s) {
  std::string out;
  out.reserve(s.size() + s.size() / 16 + 2);
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r') {
      if (i + 1 < s.size() && s[i + 1] == '\n') ++i;
      out += kCrlf;
    } else if (s[i] == '\n') {
      out += kCrlf;
    } else {
      out += s[i];
    }
  }
  if (out.size() < 2 || out.compare(out.size() - 2, 2, kCrlf) != 0) out += kCrlf;
  return out;
}

// 7bit is allowed for ASCII without NUL and with lines of at most 998 octets.
bool fitsSevenBit(std::string_view crlfText) {
  std::size_t lineLength = 0;
  for (char c : crlfText) {
    const auto u = static_cast<unsigned char>(c);
    if (u == 0 || u >= 0x80) return false;
    if (c == '\n') {
      lineLength = 0;
    } else if (c != '\r' && ++lineLength > 998) {
      return false;
    }
  }
  return true;
}

bool reservedHeader(std::string_view name) {
  static constexpr std::string_view kBuilt[] = {"Date",         "From",   "To", "Subject", "Message-ID",
                                                "MIME-Version", "Sender", "Cc", "Bcc",     "Reply-To"};
  for (auto r : kBuilt) {
    if (util::iequals(name, r)) return true;
  }
  return util::istartsWith(name, "Content-");
}

bool validHeaderName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u >= 33 && u <= 126 && c != ':';
  });
}

// ---- submission: SMTP via libcurl ---------------------------------------------------

using CurlPtr = std::unique_ptr<CURL, decltype(&curl_easy_cleanup)>;
using SlistPtr = std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)>;

std::once_flag curlInitOnce;
CURLcode curlInitResult = CURLE_OK;

struct Upload {
  std::string_view data;
  std::size_t pos = 0;
};

std::size_t readCallback(char* buffer, std::size_t size, std::size_t nitems, void* userdata) {
  auto* up = static_cast<Upload*>(userdata);
  const std::size_t n = std::min(size * nitems, up->data.size() - up->pos);
  std::memcpy(buffer, up->data.data() + up->pos, n);
  up->pos += n;
  return n;
}

// The server's last refusal (a 4xx or 5xx reply line), for the error text:
// libcurl itself says no more than "Weird server reply (last reply 554)" of
// a message refused after DATA, and a refused RCPT is followed by other
// commands. libcurl hands reply lines to the debug function only.
struct LastReply {
  std::string line;
};

int debugCallback(CURL* /*h*/, curl_infotype type, char* data, std::size_t size, void* userdata) {
  if (type != CURLINFO_HEADER_IN || userdata == nullptr) return 0;
  std::string_view v(data, size);
  while (!v.empty() && (v.back() == '\n' || v.back() == '\r')) v.remove_suffix(1);
  if (!v.empty() && (v[0] == '4' || v[0] == '5')) static_cast<LastReply*>(userdata)->line = util::sanitize(v, 300);
  return 0;
}

// Whether a later try may succeed: the server answered 4xx, or it could not
// be reached or did not answer in time. A 5xx, a bad URL, a refused login
// or a certificate that does not verify need the admin, not another try.
bool temporaryCurlFailure(CURLcode rc, const std::string& lastRefusal, long code) {
  if (!lastRefusal.empty()) return lastRefusal[0] == '4';
  if (code >= 400 && code < 600) return code < 500;
  switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_WEIRD_SERVER_REPLY:  // e.g. a greeting cut short
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_AGAIN:
      return true;
    default:
      return false;
  }
}

bool curlReady(std::string* error) {
  std::call_once(curlInitOnce, [] { curlInitResult = curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (curlInitResult != CURLE_OK) {
    setError(error, std::string("smtp: curl_global_init: ") + curl_easy_strerror(curlInitResult));
    return false;
  }
  return true;
}

// One message over `h`, which may hold an open session from the message
// before (libcurl reuses it for the same URL, or connects anew).
bool submitSmtp(CURL* h, const SubmitSettings& s, const std::string& sender, const std::vector<std::string>& rcpts,
                const std::string& message, std::string* error, bool* temporary) {
  SlistPtr rcptList(nullptr, &curl_slist_free_all);
  for (const auto& r : rcpts) {
    curl_slist* next = curl_slist_append(rcptList.get(), ("<" + r + ">").c_str());
    if (!next) {
      setError(error, "smtp: out of memory");
      return false;
    }
    rcptList.release();
    rcptList.reset(next);
  }
  Upload upload{message};
  char errbuf[CURL_ERROR_SIZE] = {};
  // A timeout of 0 would mean "none" to libcurl.
  const long timeoutMs = static_cast<long>(std::max<std::chrono::milliseconds::rep>(s.timeout.count(), 1));
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(h, CURLOPT_URL, s.smtpUrl.c_str());
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);  // threads of a milter: no SIGALRM for DNS timeouts
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeoutMs);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeoutMs);
  // Bounds each reply, and so the QUIT at the end of the session, which
  // CURLOPT_TIMEOUT_MS does not cover (libcurl's default: 120 s). Seconds:
  // CURLOPT_SERVER_RESPONSE_TIMEOUT_MS is newer than Debian 12's libcurl.
  curl_easy_setopt(h, CURLOPT_SERVER_RESPONSE_TIMEOUT, std::max(1L, (timeoutMs + 999) / 1000));
  // "<>" is sent as MAIL FROM:<> (the null sender).
  const std::string mailFrom = "<" + sender + ">";
  curl_easy_setopt(h, CURLOPT_MAIL_FROM, mailFrom.c_str());
  curl_easy_setopt(h, CURLOPT_MAIL_RCPT, rcptList.get());
  curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(h, CURLOPT_READFUNCTION, &readCallback);
  curl_easy_setopt(h, CURLOPT_READDATA, &upload);
  curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(message.size()));
  LastReply last;
  curl_easy_setopt(h, CURLOPT_DEBUGFUNCTION, &debugCallback);
  curl_easy_setopt(h, CURLOPT_DEBUGDATA, &last);
  curl_easy_setopt(h, CURLOPT_VERBOSE, 1L);  // to the debug function, not stderr
  const CURLcode rc = curl_easy_perform(h);
  // Nothing of this call's may outlive it in the handle (the QUIT at the end
  // of the session runs without them).
  curl_easy_setopt(h, CURLOPT_VERBOSE, 0L);
  curl_easy_setopt(h, CURLOPT_DEBUGDATA, static_cast<void*>(nullptr));
  curl_easy_setopt(h, CURLOPT_MAIL_RCPT, static_cast<curl_slist*>(nullptr));
  curl_easy_setopt(h, CURLOPT_READDATA, static_cast<void*>(nullptr));
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, static_cast<char*>(nullptr));
  if (rc != CURLE_OK) {
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    std::string text = std::string("smtp: ") + curl_easy_strerror(rc);
    if (errbuf[0] != '\0') text += std::string(": ") + util::sanitize(errbuf);
    if (!last.line.empty()) {
      text += " (server: " + last.line + ")";
    } else if (code != 0) {
      text += " (last reply " + std::to_string(code) + ")";
    }
    setError(error, std::move(text));
    setTemporary(temporary, temporaryCurlFailure(rc, last.line, code));
    return false;
  }
  return true;
}

// ---- submission: sendmail(1) -------------------------------------------------------

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

using Clock = std::chrono::steady_clock;

int remainingMs(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<long long>(left, 1000));
}

// Waits for the child until the deadline; kills its process group after it.
// Returns the wait status, or nullopt on timeout.
std::optional<int> reap(pid_t pid, Clock::time_point deadline) {
  while (true) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 && errno != EINTR) return 0x7f00;  // not ours any more: report as exit 127
    if (Clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ::kill(-pid, SIGKILL);
  ::kill(pid, SIGKILL);
  while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
  return std::nullopt;
}

// Temporary (worth another try): no socket, process or time to run it, a
// crash, or sendmail's own EX_TEMPFAIL (75). Any other exit status, and a
// path that is not an executable, are not.
bool submitSendmail(const SubmitSettings& s, const std::string& sender, const std::vector<std::string>& rcpts,
                    const std::string& message, std::string* error, bool* temporary) {
  const std::string what = "sendmail " + util::sanitize(s.sendmailPath);
  if (s.sendmailPath.empty() || s.sendmailPath.front() != '/' || ::access(s.sendmailPath.c_str(), X_OK) != 0) {
    setError(error, what + ": not an executable absolute path");
    return false;
  }
  // Everything the child needs is prepared before fork: after it, in a
  // threaded process, only async-signal-safe calls are allowed.
  std::vector<std::string> args = {s.sendmailPath, "-i", "-f", sender.empty() ? "<>" : sender, "--"};
  args.insert(args.end(), rcpts.begin(), rcpts.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  // Sockets rather than pipes: send(MSG_NOSIGNAL) to a sendmail that already
  // exited gives EPIPE instead of a SIGPIPE to the whole milter.
  int in[2], err[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in) != 0) {
    setTemporary(temporary, true);
    setError(error, what + ": socketpair: " + std::strerror(errno));
    return false;
  }
  Fd inParent(in[0]), inChild(in[1]);
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, err) != 0) {
    setTemporary(temporary, true);
    setError(error, what + ": socketpair: " + std::strerror(errno));
    return false;
  }
  Fd errParent(err[0]), errChild(err[1]);
  Fd devNull(::open("/dev/null", O_WRONLY | O_CLOEXEC));
  if (devNull.get() < 0) {
    setTemporary(temporary, true);
    setError(error, what + ": /dev/null: " + std::strerror(errno));
    return false;
  }

  const auto deadline = Clock::now() + std::max(s.timeout, std::chrono::milliseconds(1));
  const pid_t pid = ::fork();
  if (pid < 0) {
    setTemporary(temporary, true);
    setError(error, what + ": fork: " + std::strerror(errno));
    return false;
  }
  if (pid == 0) {
    // Own process group, so a timeout also kills what sendmail started
    // (postdrop); default signals and mask, as a shell would give.
    ::setpgid(0, 0);
    ::signal(SIGPIPE, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (::dup2(inChild.get(), 0) < 0 || ::dup2(devNull.get(), 1) < 0 || ::dup2(errChild.get(), 2) < 0) _exit(127);
    ::close_range(3, ~0U, 0);
    ::execv(argv[0], argv.data());
    _exit(127);
  }
  ::setpgid(pid, pid);  // also here: no race with a kill before the child ran
  inChild.reset();
  errChild.reset();
  devNull.reset();
  ::fcntl(inParent.get(), F_SETFL, O_NONBLOCK);
  ::fcntl(errParent.get(), F_SETFL, O_NONBLOCK);

  // Write the message and collect stderr (for the error text) together, so a
  // sendmail that complains at length cannot block on a full stderr.
  std::size_t written = 0;
  std::string stderrText;
  bool stdinOpen = true, stderrOpen = true, timedOut = false;
  if (message.empty()) {
    inParent.reset();
    stdinOpen = false;
  }
  while (stdinOpen || stderrOpen) {
    pollfd fds[2];
    nfds_t n = 0;
    int inIdx = -1, errIdx = -1;
    if (stdinOpen) {
      inIdx = static_cast<int>(n);
      fds[n++] = {inParent.get(), POLLOUT, 0};
    }
    if (stderrOpen) {
      errIdx = static_cast<int>(n);
      fds[n++] = {errParent.get(), POLLIN, 0};
    }
    const int wait = remainingMs(deadline);
    if (wait == 0) {
      timedOut = true;
      break;
    }
    const int pr = ::poll(fds, n, wait);
    if (pr < 0 && errno != EINTR) break;
    if (pr <= 0) continue;
    if (inIdx >= 0 && fds[inIdx].revents != 0) {
      const ssize_t w =
          ::send(inParent.get(), message.data() + written, message.size() - written, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w > 0) written += static_cast<std::size_t>(w);
      if ((w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) || written == message.size()) {
        inParent.reset();  // EOF for sendmail (or it is gone)
        stdinOpen = false;
      }
    }
    if (errIdx >= 0 && fds[errIdx].revents != 0) {
      char buf[512];
      const ssize_t r = ::read(errParent.get(), buf, sizeof buf);
      if (r > 0) {
        if (stderrText.size() < 1024) stderrText.append(buf, static_cast<std::size_t>(r));
      } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
        stderrOpen = false;
      }
    }
  }
  // Past the deadline reap() kills at once; a status that arrives just then
  // still counts as a timeout.
  auto status = reap(pid, timedOut ? Clock::now() : deadline);
  if (timedOut) status.reset();
  const std::string detail = stderrText.empty() ? "" : ": " + util::sanitize(util::trim(stderrText));
  if (!status) {
    setTemporary(temporary, true);
    setError(error, what + ": timed out after " + std::to_string(s.timeout.count()) + " ms, killed" + detail);
    return false;
  }
  if (WIFSIGNALED(*status)) {
    setTemporary(temporary, true);
    setError(error, what + ": killed by signal " + std::to_string(WTERMSIG(*status)) + detail);
    return false;
  }
  if (!WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
    setTemporary(temporary, WIFEXITED(*status) && WEXITSTATUS(*status) == 75);  // EX_TEMPFAIL
    setError(error, what + ": exit status " + std::to_string(WEXITSTATUS(*status)) + detail);
    return false;
  }
  if (written != message.size()) {
    setError(error, what + ": exited before reading the whole message" + detail);
    return false;
  }
  return true;
}

}  // namespace

// ---- public ---------------------------------------------------------------------------

std::optional<Template> parseTemplate(std::string_view text, std::string* error) {
  const auto lineEnd = [&](std::size_t from) { return text.find('\n', from); };
  const auto line = [&](std::size_t from, std::size_t end) {
    std::string_view l = text.substr(from, end == std::string_view::npos ? std::string_view::npos : end - from);
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    return l;
  };
  if (text.size() >= 3 && text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);  // editors' UTF-8 BOM
  const std::size_t e1 = lineEnd(0);
  const std::string_view first = line(0, e1);
  if (!util::istartsWith(first, "Subject:")) {
    setError(error, "line 1: expected \"Subject: ...\"");
    return std::nullopt;
  }
  Template t;
  t.subject = std::string(util::trim(first.substr(8)));
  if (e1 == std::string_view::npos) return t;
  const std::size_t e2 = lineEnd(e1 + 1);
  if (!line(e1 + 1, e2).empty()) {
    setError(error, "line 2: expected an empty line after the Subject line");
    return std::nullopt;
  }
  if (e2 == std::string_view::npos) return t;
  // The body with "\n" line ends.
  const std::string_view body = text.substr(e2 + 1);
  t.body.reserve(body.size());
  for (std::size_t i = 0; i < body.size(); ++i) {
    if (body[i] == '\r' && i + 1 < body.size() && body[i + 1] == '\n') continue;
    t.body += body[i];
  }
  return t;
}

std::string expand(std::string_view text, const std::map<std::string, std::string>& values) {
  std::string out;
  out.reserve(text.size());
  std::size_t i = 0;
  while (i < text.size()) {
    const std::size_t open = text.find("${", i);
    if (open == std::string_view::npos) break;
    const std::size_t close = text.find('}', open + 2);
    if (close == std::string_view::npos) break;
    out.append(text.substr(i, open - i));
    const auto it = values.find(std::string(text.substr(open + 2, close - open - 2)));
    if (it != values.end()) {
      out += it->second;
      i = close + 1;
    } else {
      out += "${";  // unknown: kept, and scanning resumes inside it
      i = open + 2;
    }
  }
  out.append(text.substr(i));
  return out;
}

std::optional<Message> buildMessage(const Mail& m, std::string_view messageIdDomain, std::string* error) {
  const auto from = cleanAddress(m.from, error);
  if (!from) {
    if (error) *error = "From: " + *error;
    return std::nullopt;
  }
  const auto to = cleanRecipients(m.to, error);
  if (!to) {
    if (error) *error = "To: " + *error;
    return std::nullopt;
  }
  std::string domain(messageIdDomain);
  if (domain.empty()) {
    const auto at = from->rfind('@');
    if (at != std::string::npos) domain = from->substr(at + 1);
  }
  if (!validDomain(domain)) {
    setError(error, "Message-ID: invalid domain \"" + util::sanitize(domain) + "\"");
    return std::nullopt;
  }
  for (const auto& [name, value] : m.extraHeaders) {
    if (!validHeaderName(name) || reservedHeader(name)) {
      setError(error, "extra header \"" + util::sanitize(name) + "\": invalid or reserved name");
      return std::nullopt;
    }
    if (value.find_first_of("\r\n") != std::string::npos) {
      setError(error, "extra header " + name + ": CR or LF in value");
      return std::nullopt;
    }
  }

  Message msg;
  msg.messageId = newMessageId(domain);
  std::string& out = msg.data;
  out += "Date: " + rfc5322Date(m.date.value_or(std::chrono::system_clock::now())) + std::string(kCrlf);
  {
    auto tokens = phraseTokens(m.fromName, 5);
    tokens.push_back("<" + *from + ">");
    out += foldTokens("From", tokens);
  }
  {
    std::vector<std::string> tokens;
    for (std::size_t i = 0; i < to->size(); ++i) tokens.push_back((*to)[i] + (i + 1 < to->size() ? "," : ""));
    out += foldTokens("To", tokens);
  }
  out += unstructuredHeader("Subject", m.subject);
  out += foldTokens("Message-ID", {msg.messageId});  // on a line of its own when long
  out += "MIME-Version: 1.0\r\n";
  out += "Content-Type: text/plain; charset=UTF-8\r\n";
  const std::string body = crlfLines(util::repairUtf8(m.body));
  const bool sevenBit = fitsSevenBit(body);
  out += sevenBit ? "Content-Transfer-Encoding: 7bit\r\n" : "Content-Transfer-Encoding: base64\r\n";
  if (!std::any_of(m.extraHeaders.begin(), m.extraHeaders.end(),
                   [](const auto& h) { return util::iequals(h.first, "Auto-Submitted"); })) {
    out += "Auto-Submitted: auto-generated\r\n";
  }
  for (const auto& [name, value] : m.extraHeaders) out += unstructuredHeader(name, value);
  out += kCrlf;
  if (sevenBit) {
    out += body;
  } else {
    const std::string b64 = util::encodeBase64(body);
    for (std::size_t i = 0; i < b64.size(); i += kBase64Line) {
      out.append(b64, i, kBase64Line);
      out += kCrlf;
    }
  }
  return msg;
}

struct Submitter::Connection {
  CurlPtr curl{nullptr, &curl_easy_cleanup};
};

Submitter::Submitter(SubmitSettings s) : settings_(std::move(s)) {}

Submitter::~Submitter() = default;  // curl_easy_cleanup sends QUIT on an open session

bool Submitter::submit(const std::vector<std::string>& envelopeTo, const std::string& message, std::string* error,
                       bool* temporary) {
  setTemporary(temporary, false);
  const SubmitSettings& s = settings_;
  const auto rcpts = cleanRecipients(envelopeTo, error);
  if (!rcpts) return false;
  std::string sender;
  if (!isNullAddress(s.envelopeFrom)) {
    const auto a = cleanAddress(s.envelopeFrom, error);
    if (!a) {
      if (error) *error = "envelope sender: " + *error;
      return false;
    }
    sender = *a;
  }
  if (s.method == "sendmail") return submitSendmail(s, sender, *rcpts, message, error, temporary);
  if (s.method != "smtp") {
    setError(error, "unknown submit method \"" + util::sanitize(s.method) + "\" (smtp, sendmail)");
    return false;
  }
  if (!util::istartsWith(s.smtpUrl, "smtp://") && !util::istartsWith(s.smtpUrl, "smtps://")) {
    setError(error, "smtp: URL must start with smtp:// or smtps://: " + util::sanitize(s.smtpUrl));
    return false;
  }
  if (!smtp_) {
    if (!curlReady(error)) return false;
    auto c = std::make_unique<Connection>();
    c->curl.reset(curl_easy_init());
    if (!c->curl) {
      setError(error, "smtp: curl_easy_init failed");
      return false;
    }
    smtp_ = std::move(c);
  }
  return submitSmtp(smtp_->curl.get(), s, sender, *rcpts, message, error, temporary);
}

bool submit(const SubmitSettings& s, const std::vector<std::string>& envelopeTo, const std::string& message,
            std::string* error, bool* temporary) {
  return Submitter(s).submit(envelopeTo, message, error, temporary);
}

}  // namespace sekimori::notify
