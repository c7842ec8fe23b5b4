// common/notify/notify.h — warning and digest mails: templates, MIME, submission.
//
// A notice (virus found, message quarantined, daily digest) is an ordinary
// mail built here and handed to the MTA:
//   - template: "Subject: ..." line, blank line, UTF-8 body, with ${name}
//     placeholders filled from a map;
//   - message: RFC 5322 + MIME. A non-ASCII Subject (or From display name or
//     extra header) becomes RFC 2047 "=?UTF-8?B?...?=" words, each at most
//     75 characters, header lines folded at 78; a non-ASCII body goes out as
//     base64 (76-character lines), an ASCII one as 7bit; CRLF line ends;
//     "Auto-Submitted: auto-generated" (RFC 3834) unless the caller sets it;
//   - submission: SMTP through libcurl or the sendmail(1) command, always
//     bounded by a timeout; a series of mails (one per addressee) over one
//     SMTP connection with Submitter.
//
// Security: every value that reaches a header is checked — addresses with
// CR/LF, controls, spaces, '<', '>' or ',' are refused (UTF-8 ones, valid
// and without controls, are allowed: SMTPUTF8); Subject text has its
// controls turned into spaces, so a ${name} from the wire cannot add a header.
// The envelope sender defaults to the null sender <> so that a bounce of a
// warning never produces another warning (no mail loops), and nothing is ever
// sent *to* the null sender: recipients "" and "<>" are dropped. The sendmail
// method runs the program directly (fork/exec, no shell) with "--" before the
// recipients, so an address cannot become an option.
//
// Signals: libcurl runs with CURLOPT_NOSIGNAL (no SIGALRM in threads); plain
// smtp:// writes use MSG_NOSIGNAL, but an smtps:// (OpenSSL) write to a peer
// that went away can raise SIGPIPE, which the milter daemon ignores
// process-wide (common/milter/daemon.cpp). The sendmail child gets SIGPIPE
// back at its default. The sendmail method needs its exit status: a process
// with SIGCHLD set to SIG_IGN gets "exit status 127" instead.
//
//   std::string err;
//   auto t = notify::parseTemplate(fileText, &err);
//   notify::Mail m{.from = "postmaster@example.jp", .to = {"admin@example.jp"},
//                  .subject = notify::expand(t->subject, vars),
//                  .body = notify::expand(t->body, vars),
//                  .extraHeaders = {{"X-Sekimori-Notice", "antivirus"}}};
//   auto msg = notify::buildMessage(m, "", &err);
//   if (!msg || !notify::submit(settings, m.to, msg->data, &err)) log(err);
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sekimori::notify {

// A notice template: subject and body, UTF-8, line ends "\n".
struct Template {
  std::string subject;
  std::string body;
};

// Parses template file text: first line "Subject: ..." (name case-insensitive),
// then an empty line (or the end), then the body. LF or CRLF line ends.
// Returns nullopt and sets *error when the Subject line is missing or not
// followed by an empty line.
std::optional<Template> parseTemplate(std::string_view text, std::string* error = nullptr);

// Replaces each ${name} with values[name]; an unknown name or a "${" without
// "}" is left as is; values are not expanded again. Values are inserted
// byte-for-byte: header safety is buildMessage's job (it blanks CR/LF in the
// Subject), so one expand serves subject and body.
std::string expand(std::string_view text, const std::map<std::string, std::string>& values);

struct Mail {
  std::string from;             // addr-spec, "postmaster@example.jp" (enclosing <> allowed)
  std::string fromName;         // optional display name, UTF-8: "ウイルス検査" <postmaster@...>
  std::vector<std::string> to;  // addr-specs; "" and "<>" are dropped
  std::string subject;          // UTF-8; controls (CR, LF, TAB...) become spaces
  std::string body;             // UTF-8; any line ends; invalid UTF-8 becomes U+FFFD
  // Added after the MIME headers. Names: printable ASCII without ':'; values
  // without CR/LF (non-ASCII values are RFC 2047-encoded). Must not repeat a
  // header built here (Date, From, To, Subject, Message-ID, MIME-Version,
  // Content-*). "Auto-Submitted" replaces the default "auto-generated".
  std::map<std::string, std::string> extraHeaders;
  // Date header; nullopt = now (tests pin it).
  std::optional<std::chrono::system_clock::time_point> date;
};

struct Message {
  std::string messageId;  // "<...@domain>", for the log line
  std::string data;       // the whole message, CRLF line ends
};

// The RFC 5322 message for `m`. The Message-ID is unique (time, random,
// process-wide counter) "@messageIdDomain", or "@" the From domain when that
// is empty. Returns nullopt and sets *error on an invalid address, header or
// domain, or when no recipient is left.
std::optional<Message> buildMessage(const Mail& m, std::string_view messageIdDomain, std::string* error = nullptr);

// The addr-spec that buildMessage and submit use for `raw`: enclosing <> and
// surrounding blanks removed. nullopt, and *error set, when it is empty,
// longer than 254 bytes or holds a control, a space, one of <>,;()\ or
// invalid UTF-8. Non-ASCII UTF-8 is allowed (SMTPUTF8, RFC 6531: it goes
// into the header as it is, and libcurl adds MAIL FROM's SMTPUTF8 parameter
// when the server offers it). For checking configured addresses up front.
std::optional<std::string> cleanAddress(std::string_view raw, std::string* error = nullptr);

struct SubmitSettings {
  std::string method = "smtp";                  // "smtp" (libcurl) | "sendmail"
  std::string smtpUrl = "smtp://127.0.0.1:25";  // smtp:// or smtps://; a path sets the EHLO name
  std::string sendmailPath = "/usr/sbin/sendmail";
  std::chrono::milliseconds timeout{10000};  // whole submission, connect to final reply / exit
  std::string envelopeFrom;                  // "" = the null sender <>
};

// Submits `message` to `envelopeTo` ("" and "<>" dropped; an invalid address
// fails the whole submission). Returns false and sets *error on failure
// ("no recipient" when none is left), and *temporary to whether another try
// later may succeed — the caller decides whether to make one: true for a
// 4xx reply, a relay that cannot be reached or does not answer in time, a
// timed-out or crashed sendmail and its exit status 75 (EX_TEMPFAIL); false
// for a 5xx reply, an invalid address or setting, any other exit status.
// Thread-safe; returns within about `timeout` (a sendmail still running then
// is killed with its process group).
bool submit(const SubmitSettings& s, const std::vector<std::string>& envelopeTo, const std::string& message,
            std::string* error = nullptr, bool* temporary = nullptr);

// Submits several messages one after the other, as submit() does each, but
// over one SMTP connection: libcurl keeps it open between them (a new
// MAIL FROM on the same session) and opens a new one when the server has
// closed it or a transaction failed. Ends the session (QUIT) when destroyed.
// The sendmail method runs one process per message, as submit() does. One
// thread at a time; `timeout` bounds each message, not the series.
//
//   notify::Submitter out(settings);
//   for (const auto& [to, msg] : notices) ok = out.submit({to}, msg.data, &err);
class Submitter {
 public:
  explicit Submitter(SubmitSettings s);
  ~Submitter();
  Submitter(const Submitter&) = delete;
  Submitter& operator=(const Submitter&) = delete;

  // As notify::submit().
  bool submit(const std::vector<std::string>& envelopeTo, const std::string& message, std::string* error = nullptr,
              bool* temporary = nullptr);

 private:
  struct Connection;
  SubmitSettings settings_;
  std::unique_ptr<Connection> smtp_;  // the libcurl handle that holds the open session
};

}  // namespace sekimori::notify
