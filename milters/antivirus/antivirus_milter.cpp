// milters/antivirus/antivirus_milter.cpp — see antivirus_milter.h.
#include "milters/antivirus/antivirus_milter.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <optional>
#include <sstream>

#include "common/config/schema.h"
#include "common/log/log.h"
#include "common/milter/daemon.h"
#include "common/mime/message.h"
#include "common/mime/replace.h"
#include "common/mime/spool.h"
#include "common/mime/text.h"
#include "common/notify/issued.h"
#include "common/notify/notify.h"
#include "common/notify/outbox.h"
#include "common/store/quarantine.h"
#include "common/util/files.h"
#include "common/util/strings.h"
#include "milters/antivirus/openpgp.h"

namespace sekimori::antivirus {
namespace {

using config::Bytes;
using config::Count;
using config::Duration;
using config::Option;
using config::Scope;
using milter::Verdict;
using policy::Direction;
using policy::Reply;

const Replies kDefaultReplies{};

const Option<std::string> kBackend{"engine.backend", "libclamav",
                                   "libclamav: scan in this milter's own isolated scanner processes (below). "
                                   "clamd: send each scan to a running clamd (INSTREAM) at clamd_address, with "
                                   "the same actions; clamd's own clamd.conf limits then apply (set "
                                   "AlertExceedsMax and AlertEncrypted yes there).",
                                   Scope::Global, {"libclamav", "clamd"}};
const Option<std::string> kClamdAddress{"engine.clamd_address", "/run/clamav/clamd.ctl",
                                        "clamd's socket: a unix socket path or IP:PORT (backend = clamd)."};
const Option<std::string> kDatabaseDir{"engine.database_dir", "/var/lib/clamav",
                                        "Directory of the ClamAV signature databases (*.cvd, *.cld, *.ndb, *.hdb "
                                        "...). With no loadable database the milter does not start."};
const Option<std::string> kTempDir{"engine.temp_dir", "",
                                   "Where libclamav writes a scan's temp files (decoded attachments, archive "
                                   "members), created and removed for every scan, each worker in a directory "
                                   "of its own (sekimori-av-scan-PID), removed when the worker ends with "
                                   "whatever a crashed or killed scan left in it. Empty: $TMPDIR if set, else "
                                   "/dev/shm when it is a tmpfs with room for twice what the workers may write "
                                   "at once (2 x workers x (max_scan_size + 1M)), else /tmp; the start log line "
                                   "says which. On a tmpfs a scan of small mail costs half the CPU it costs on "
                                   "ext4 (README, Performance). A directory set here must be writable by the "
                                   "milter and have room for max_scan_size and 1M more per worker."};
const Option<Count> kWorkers{"engine.workers", Count{4},
                             "Scanner processes. Each scans one message at a time; they share the compiled "
                             "engine copy-on-write. A crash or hang in one costs one message (tempfail)."};
const Option<Duration> kScanTimeout{"engine.scan_timeout", Duration{std::chrono::minutes(2)},
                                    "A scan running longer is killed with its worker (scan_failure_action). At "
                                    "least 1s, and longer than max_scan_time."};
const Option<Duration> kDbCheck{"engine.db_check_interval", Duration{std::chrono::minutes(1)},
                                "How often the database directory is checked for new signatures (also on "
                                "SIGUSR1). A new database is loaded beside the old one and swapped in "
                                "without dropping a scan; one that fails to load is logged and ignored."};
const Option<Bytes> kMaxScanSize{"engine.max_scan_size", Bytes{100 * 1024 * 1024},
                                 "Most data scanned per message (archives expanded included; what the "
                                 "scanner workers unpack themselves, libclamav cannot, gets one more of it). "
                                 "Over it: limits_exceeded_action. 1M to 2046M (libclamav scans no file of 2 GiB); "
                                 "0 is not \"no limit\" as in clamd.conf. A message longer than this is "
                                 "not scanned at all: keep it above Postfix's message_size_limit."};
const Option<Bytes> kMaxFileSize{"engine.max_file_size", Bytes{25 * 1024 * 1024},
                                 "Largest single file inside a message (attachment, archive member). A longer "
                                 "one is scanned whole all the same (up to max_scan_size) and makes the message "
                                 "limits_exceeded_action unless a virus is found in it; ZIP and CAB members also "
                                 "by the size their archive declares. 1K up to max_scan_size."};
const Option<Count> kMaxFiles{"engine.max_files", Count{10000},
                           "Most files scanned inside one message (at least 1; 0 is not \"no limit\"; "
                           "what the scanner workers unpack themselves gets one more of it)."};
const Option<Count> kMaxRecursion{"engine.max_recursion", Count{8},
                                  "Archives inside archives scanned this deep (R-AV-2); deeper is "
                                  "limits_exceeded_action, so nesting is no way through."};
const Option<Duration> kMaxScanTime{"engine.max_scan_time", Duration{std::chrono::minutes(1)},
                                    "libclamav's own time limit per scan (limits_exceeded_action when hit). "
                                    "At least 1s and shorter than scan_timeout, whose watchdog would "
                                    "otherwise end the scan first (a tempfail at every retry)."};
const Option<Bytes> kMaxScanMemory{"engine.max_scan_memory", Bytes{1024 * 1024 * 1024},
                                   "Most memory one scan may take in its scanner worker, on top of what the worker "
                                   "holds already (the shared engine). libclamav's memory grows with what it "
                                   "parses: its mail parser takes about 30 times the size of a message of empty "
                                   "lines, 4 times that of text in 40-character lines, 3 times that of a base64 "
                                   "attachment (keep it at 4 x max_scan_size or more); a zip member compressed with "
                                   "LZMA, the dictionary it declares (7-Zip writes up to 64 MiB, a crafted one 4 "
                                   "GiB). Past it the message is limits_exceeded_action "
                                   "(Heuristics.Limits.Exceeded.MaxScanMemory) and the worker is replaced; the "
                                   "other scans go on. A warning at start when workers x max_scan_memory is more "
                                   "than the machine's memory, or than its cgroup's memory.max. At least 64M (0 is "
                                   "not \"no limit\": without one the kernel's OOM killer picks its own victim, the "
                                   "milter or Postfix). libclamav backend only."};

const Option<std::string> kOutbound{"actions.outbound_infected", "reject",
                                    "Outbound or internal mail with a virus: reject (the virus reply) or "
                                    "discard.",
                                    Scope::Global, {"reject", "discard"}};
const Option<std::string> kInboundAttachment{
    "actions.inbound_infected_attachment", "remove",
    "Inbound mail whose infection is confined to attachments: remove them (a text notice in their place, the "
    "rest delivered unchanged; an attached message goes whole when what was found cannot go alone: its own "
    "text, or an attachment inside one sent base64 or quoted-printable) or reject.",
    Scope::Global, {"remove", "reject"}};
const Option<std::string> kInboundBody{"actions.inbound_infected_body", "reject",
                                       "Inbound mail infected elsewhere (the body, the whole message): reject "
                                       "or discard.",
                                       Scope::Global, {"reject", "discard"}};
const Option<std::string> kLimits{"actions.limits_exceeded_action", "infected",
                                  "A scan that hit a limit (size, files, recursion, time): infected (as a virus "
                                  "named Heuristics.Limits.Exceeded), deliver (marked unscanned) or reject.",
                                  Scope::Global, {"infected", "deliver", "reject"}};
const Option<std::string> kEncrypted{"actions.encrypted_action", "mark",
                                     "Encrypted archives or documents, and encrypted mail (S/MIME, PGP/MIME, "
                                     "an OpenPGP message in a part's text, an attached .asc, .gpg or .pgp "
                                     "file), at the top or as a part, cannot be scanned: mark (deliver, "
                                     "X-Virus-Status: unscanned: encrypted) or reject.",
                                     Scope::Global, {"mark", "reject"}};
const Option<std::string> kUnscanned{"actions.unscanned_action", "mark",
                                     "A container neither libclamav nor the scanner workers can unpack "
                                     "(the workers unpack RAR, Zstandard, LZ4, lzip, .lzma, .Z, and zip and "
                                     "7-Zip methods libclamav skips, with libarchive, OpenPGP compressed "
                                     "data as gpg --sign writes it, and zisofs-compressed files of ISO images; "
                                     "left: ACE, ZPAQ, StuffIt, lzop, damaged archives) was scanned only as "
                                     "opaque bytes, or a zip holds members its "
                                     "central directory does not list (a streaming unzipper extracts them, "
                                     "libclamav 1.4 does not look at them): mark (deliver, X-Virus-Status: "
                                     "unscanned: WHAT not unpacked; logged) or reject. Never reported clean. "
                                     "libclamav backend only.",
                                     Scope::Global, {"mark", "reject"}};
const Option<std::string> kHtmlScript{
    "actions.html_script_action", "mark",
    "HTML parts (text/html, XHTML and SVG parts, and attachments named .htm, .html, .shtml, .xht, "
    ".xhtml, .svg or .hta whatever their type, and those inside a web archive: an attachment named .mht or "
    ".mhtml, or sent as application/x-mimearchive) with script or plug-ins (<script, <object classid, <embed, "
    "<applet, on*= handlers, "
    "javascript:/vbscript: links, sources and refreshes, <iframe srcdoc> documents and data: URL documents "
    "(HTML, SVG, XML; not images) holding any of these), "
    "looked at as mail readers show them (charset decoded); also such files inside archives and "
    "compressed files (invoice.html in a zip; libclamav backend): mark "
    "(header and log), strip (those elements and attributes are cut out; the part, converted to UTF-8 and "
    "base64, keeps its other header fields; the rest of the message is unchanged; an attachment holding such "
    "a file in an archive, a web archive holding such a page, or an attached message holding such a part "
    "that cannot be rewritten where it is "
    "(sent base64 or quoted-printable, or the HTML is its whole body), is "
    "removed, a notice in its place; if that cannot be done safely, the message is rejected with "
    "replies.html_script) or reject.",
    Scope::Global, {"mark", "strip", "reject"}};
const Option<std::string> kScanFailure{"actions.scan_failure_action", "tempfail",
                                       "A scan that failed or timed out: tempfail (the failure reply; the sender "
                                       "retries) or accept (delivered, marked unscanned).",
                                       Scope::Global, {"tempfail", "accept"}};

const Option<bool> kNotify{"notify.enabled", true,
                           "Warning mails when a virus is found: to the sender for outbound mail, to each "
                           "recipient for inbound mail, and to the admin; a mail of its own for each, a "
                           "recipient's naming that recipient alone (no Bcc disclosed). Never to the null "
                           "sender. R-AV-6.",
                           Scope::Overridable};
const Option<std::string> kNotifyOptOut{"notify.opt_out", "",
                                        "Addresses or domains that never receive warning mails."};
const Option<std::string> kNotifyAdmin{"notify.admin", "",
                                       "Admin address warned of every virus, one address (empty: none)."};
const Option<std::string> kNotifyFrom{"notify.from", "postmaster@localhost",
                                      "From: of warning mails. The envelope sender is always the null sender, so "
                                      "a warning never bounces."};
const Option<std::string> kNotifyMethod{"notify.method", "smtp",
                                        "How warnings are submitted: smtp (to smtp_url, e.g. Postfix on "
                                        "loopback) or sendmail.",
                                        Scope::Global, {"smtp", "sendmail"}};
const Option<std::string> kNotifyUrl{"notify.smtp_url", "smtp://127.0.0.1:25", "SMTP relay for warnings."};
const Option<std::string> kNotifySendmail{"notify.sendmail_path", "/usr/sbin/sendmail", "sendmail program."};
const Option<std::string> kNotifyTemplates{"notify.template_dir", "",
                                           "Directory of the antivirus-warning.LANGUAGE.txt templates. Empty: the "
                                           "directory of this conf file (where they are installed)."};
const Option<std::string> kNotifyLanguage{"notify.language", "ja", "Template language: ja or en.", Scope::Global,
                                          {"ja", "en"}};
const Option<Duration> kNotifyTimeout{"notify.timeout", Duration{std::chrono::seconds(10)},
                                      "Time to submit one warning mail; also the longest wait for any one SMTP reply "
                                      "(in whole seconds), the QUIT that ends the session included."};
const Option<Duration> kNotifyRetryAfter{"notify.retry_after", Duration{std::chrono::minutes(1)},
                                         "A warning the relay refused for the time being (4xx), or could not take "
                                         "(down, silent; sendmail's exit status 75), is tried again after this; "
                                         "each further retry after twice the wait before, at most 15 minutes "
                                         "apart. At least 1s. Waiting warnings are kept in spool_dir; each try "
                                         "uses [notify] as it is then, and a reload (SIGUSR1) tries them at once: "
                                         "fix smtp_url, reload, and they go."};
const Option<Duration> kNotifyRetryFor{"notify.retry_for", Duration{std::chrono::hours(1)},
                                       "No retry later than this after the first try; the warning is then logged "
                                       "as failed. 0: a warning is tried once."};

const Option<std::string> kNotifySpool{"notify.spool_dir", "/var/lib/sekimori/outbox",
                                       "Warnings not yet sent are kept here too (mode 0600 files, one per "
                                       "infected message, written before the message's reply), so that a "
                                       "restart or a crash loses none: a start sends those it finds, each when "
                                       "due. Empty: in memory only (a stop tries those waiting for a retry once "
                                       "more, a killed daemon loses them). Changes take effect at restart."};

const Option<std::string> kQuarantineDir{"quarantine.dir", "/var/lib/sekimori/quarantine",
                                         "Every infected original is kept here (mode 0600 files, index.tsv), for "
                                         "administrators only. Empty: keep nothing. R-AV-7. When an original cannot "
                                         "be stored (a full disk, the directory gone), one whose attachments were to "
                                         "be removed is a fault ([milter] on_error, tempfail by default) and one to "
                                         "be discarded is rejected instead: nothing is lost for want of its copy."};
const Option<Duration> kQuarantineKeep{"quarantine.keep", Duration{std::chrono::hours(30 * 24)},
                                       "Entries older than this are removed, their files and index lines "
                                       "(checked at start, on reload and every hour). 0: kept for ever."};
const Option<Bytes> kQuarantineMaxSize{"quarantine.max_size", Bytes{1024ULL * 1024 * 1024},
                                       "When the held files take more than this together (checked with keep, and "
                                       "as soon as a stored message takes it past), the oldest entries are removed "
                                       "until 90% of it is left: an outbreak cannot fill the disk. 0: no cap."};

const Option<Bytes> kSpoolMemory{"mime.spool_memory", Bytes{1024 * 1024},
                                 "A message is held in memory up to this size, then in a private temp file."};
const Option<std::string> kSpoolDir{"mime.spool_dir", "/tmp", "Directory of the private temp files."};

const Option<Reply> kReplyVirus{"replies.virus", kDefaultReplies.virus,
                                "A virus; the names found are appended to the text."};
const Option<Reply> kReplyEncrypted{"replies.encrypted", kDefaultReplies.encrypted, "encrypted_action = reject."};
const Option<Reply> kReplyUnscanned{"replies.unscanned", kDefaultReplies.unscanned,
                                    "unscanned_action = reject; what was not unpacked is appended."};
const Option<Reply> kReplyHtml{"replies.html_script", kDefaultReplies.htmlScript,
                               "html_script_action = reject (or strip, when stripping is not possible)."};
const Option<Reply> kReplyFailure{"replies.scan_failure", kDefaultReplies.failure,
                                  "scan_failure_action = tempfail."};

constexpr std::string_view kScannedHeader = "X-Virus-Scanned";
constexpr std::string_view kStatusHeader = "X-Virus-Status";
constexpr std::string_view kNoticeHeader = "X-Sekimori-Notice";

// The armor line that opens an OpenPGP message (RFC 4880 6.2): encrypted
// (or signed and compressed) data, written into a part's text ("inline
// PGP") or attached as a .asc file. A clear-signed text opens with "BEGIN
// PGP SIGNED MESSAGE" and stays readable.
constexpr std::string_view kPgpArmor = "-----BEGIN PGP MESSAGE-----";

// Whether decoded content is an OpenPGP message: that line at the start
// of a line, or a binary encrypted one (openpgp.h: a .gpg or .pgp file).
bool holdsPgpMessage(mime::Content& c) {
  StreamFind armor("\n" + std::string(kPgpArmor));
  armor.feed("\n");
  std::string head;  // the first kOpenPgpHeadMax bytes
  std::array<std::byte, 16 * 1024> buf{};
  for (std::size_t n; !armor.found() && (n = c.read(buf)) > 0;) {
    const std::string_view bytes(reinterpret_cast<const char*>(buf.data()), n);
    if (head.size() < kOpenPgpHeadMax) {
      head.append(bytes.substr(0, kOpenPgpHeadMax - head.size()));
      if (head.size() == kOpenPgpHeadMax && openPgpEncrypted(head)) return true;
    }
    armor.feed(bytes);
  }
  return armor.found() || (head.size() < kOpenPgpHeadMax && openPgpEncrypted(head));
}

struct AvMessage {
  std::shared_ptr<const AvConfig> cfg;
  std::optional<mime::Spool> spool;
  int scannedHeaders = 0;  // X-Virus-Scanned copies that arrived
  int statusHeaders = 0;   // X-Virus-Status copies that arrived
  bool noticeHeader = false;  // claims to be one of our warning mails (issued_ tells)
  std::string messageId;      // the first Message-ID field
  std::uint64_t headerBytes = 0;  // the spool's top-level header block and its empty line
  std::string subject;
  // What the top-level Content-Type fields declare, as GMime reads them
  // (mime::mediaType): a message that declares two is judged by both.
  bool topEncrypted = false;       // S/MIME or PGP/MIME
  bool topMaybeEncrypted = false;  // what MediaTypeSniffer says of the fields
  // A part of encrypted mail may be in the body: only then is a clean
  // message walked for one.
  MediaTypeSniffer types;
  // An OpenPGP message may be in the body (as it came, quoted-printable or
  // base64-decoded): then the message is walked for one.
  EncodedFind pgp{kPgpArmor};
  // A part may open with a binary OpenPGP session-key packet: then too.
  OpenPgpStartSniffer pgpStart;
};

// A media type ("type/subtype", lowercased) of encrypted mail, which
// cannot be scanned: S/MIME (also when only signed inside, opaque to a
// scanner all the same) or PGP/MIME.
bool encryptedMailType(std::string_view t) {
  return t == "multipart/encrypted" || t == "application/pkcs7-mime" || t == "application/x-pkcs7-mime" ||
         t == "application/pgp-encrypted";
}

// Whether the part at `path` is the one at `ancestor` or inside it.
bool within(const std::vector<int>& ancestor, const std::vector<int>& path) {
  return path == ancestor || mime::isInside(ancestor, path);
}

// An attached message: a message/* part, sent as it is or encoded.
struct AttachedMessage {
  std::vector<int> path;
  std::string filename;
  std::string subject;       // as a notice shows it (util::displayText)
  bool encoded = false;      // with a transfer encoding (mime::PartInfo::encodedMessage)
  bool inMultipart = false;  // directly inside a multipart: mime::replaceParts can remove it
};

// What is removed when a part goes alone: it, by the name and the media
// type (log-safe) the sender gave it.
PartFinding removedAlone(const mime::PartInfo& p, bool attachment) {
  PartFinding pf;
  pf.path = p.path;
  pf.filename = p.filename;
  pf.type = util::sanitize(p.contentType, 100);
  pf.attachment = attachment;
  return pf;
}

// What is removed when an attached message goes whole: it, named by its
// filename or Subject (PartFinding::message); what was found in it is the
// caller's to add.
PartFinding removedWhole(const AttachedMessage& m) {
  PartFinding p;
  p.path = m.path;
  p.filename = m.filename;
  p.subject = m.subject;
  p.attachment = p.message = true;
  return p;
}

// The containers a walk has passed (it visits each before what is inside
// it), and what can be removed for a part below them. The messages it
// returns are valid until the next add().
class Containers {
 public:
  // Every entity the walk reports, in its order.
  void add(const mime::PartInfo& p, bool leaf) {
    if (leaf) return;
    if (p.contentType.starts_with("multipart/")) multiparts_.push_back(p.path);
    if (p.contentType.starts_with("message/")) {
      // The Subject is the sender's text: kept to one readable line of
      // 200 bytes before a notice or a warning shows it.
      messages_.push_back(
          {p.path, p.filename, util::displayText(p.subject, 200), p.encodedMessage, inMultipart(p.path)});
    }
  }

  // Whether the part at `path` is directly inside a multipart.
  bool inMultipart(const std::vector<int>& path) const {
    if (path.empty()) return false;
    const std::vector<int> parent(path.begin(), path.end() - 1);
    return std::find(multiparts_.begin(), multiparts_.end(), parent) != multiparts_.end();
  }

  // The outermost attached message sent encoded that holds the part at
  // `path`, or nullptr: nothing inside it can be cut out without
  // re-encoding it.
  const AttachedMessage* encodedAbove(const std::vector<int>& path) const {
    for (const auto& m : messages_) {  // outer ones first
      if (m.encoded && mime::isInside(m.path, path)) return &m;
    }
    return nullptr;
  }

  // The attached message to remove whole for a part at `path` that cannot
  // go alone (the text of an attached message, anything inside one sent
  // encoded): the innermost holding it that is directly inside a
  // multipart, but none inside one sent encoded. nullptr: none (the
  // message's own body).
  const AttachedMessage* holderOf(const std::vector<int>& path) const {
    const AttachedMessage* encoded = encodedAbove(path);
    const AttachedMessage* found = nullptr;
    for (const auto& m : messages_) {
      if (!mime::isInside(m.path, path)) continue;
      if (encoded != nullptr && mime::isInside(encoded->path, m.path)) break;
      if (m.inMultipart) found = &m;
    }
    return found;
  }

 private:
  std::vector<std::vector<int>> multiparts_;
  std::vector<AttachedMessage> messages_;
};

AvMessage& state(milter::Session& s, const config::Snapshot<AvConfig>& current) {
  auto& m = s.message<AvMessage>();
  if (!m.cfg) {
    m.cfg = current.get();
    m.spool.emplace(m.cfg->spoolMemory, m.cfg->spoolDir, m.cfg->maxScanSize + 1);
  }
  return m;
}

// Scans what `fill` writes (fill(f) is false on a write error) as one
// sealed ScanFile.
template <typename Fill>
ScanResult scanWritten(Scanner& pool, Fill fill) {
  ScanFile f;
  if (f.fd() < 0) return ScanResult::failure(std::string("memfd: ") + std::strerror(errno));
  if (!fill(f)) return ScanResult::failure(std::string("memfd write: ") + std::strerror(errno));
  if (!f.seal()) return ScanResult::failure(std::string("memfd seal: ") + std::strerror(errno));
  return pool.scan(f.fd());
}

// Scans the spooled message; with `newBody`, its first `headerBytes` (the
// top-level header block) followed by that body instead of its own.
ScanResult scanSpool(Scanner& pool, const mime::Spool& spool, std::optional<std::string_view> newBody = std::nullopt,
                     std::uint64_t headerBytes = 0) {
  return scanWritten(pool, [&](ScanFile& f) {
    std::array<std::byte, 64 * 1024> buf{};
    const std::uint64_t end = newBody ? headerBytes : spool.size();
    for (std::uint64_t off = 0; off < end;) {
      const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), end - off));
      const std::size_t n = spool.read(off, std::span(buf).first(want));
      if (n == 0) break;
      if (!f.write(buf.data(), n)) return false;
      off += n;
    }
    return !newBody || f.write(newBody->data(), newBody->size());
  });
}

// A part's content, read through to a copy (when set) as it is read:
// drain() reads what the reader left.
class CopiedContent final : public mime::Content {
 public:
  CopiedContent(mime::Content& in, mime::Spool* copy) : in_(in), copy_(copy) {}
  std::size_t read(std::span<std::byte> buf) override {
    const std::size_t n = in_.read(buf);
    if (copy_ != nullptr && n > 0) copy_->append(buf.first(n));
    return n;
  }
  void drain() {
    std::array<std::byte, 64 * 1024> buf{};
    while (read(buf) > 0) {
    }
  }

 private:
  mime::Content& in_;
  mime::Spool* copy_;
};

// Scans one part's content; what keepHtmlText() keeps of it also goes to
// htmlOut (when set), *complete saying whether that was all of it.
ScanResult scanContent(Scanner& pool, mime::Content& content, std::string* htmlOut, bool* complete) {
  return scanWritten(pool, [&](ScanFile& f) {
    std::array<std::byte, 64 * 1024> buf{};
    for (std::size_t n; (n = content.read(buf)) > 0;) {
      if (htmlOut && !keepHtmlText(*htmlOut, std::span(buf).first(n))) *complete = false;
      if (!f.write(buf.data(), n)) return false;
    }
    return true;
  });
}

// An attachment replaced by a text notice that names it and says why, in
// English and Japanese: "The attachment "a.zip" WHY and was removed ...";
// for an attached message (PartFinding::message), "The attachment
// "fwd.eml" (an attached message) WHY and was removed ...", or, without a
// filename, "The attached message with the subject "Re: 会議" WHY ...";
// naming what was found inside it (PartFinding::inside), "... held
// "a.zip", "b.exe", which WHY, and was removed ...", or when its text had
// some of it too, "... WHY in its text and in "a.zip" and was removed ...".
mime::Replacement removalNotice(const PartFinding& p, const std::string& why, const std::string& whyJa) {
  std::string en, ja;
  if (p.message && p.filename.empty() && !p.subject.empty()) {
    en = "The attached message with the subject \"" + p.subject + "\" ";
    ja = "件名「" + p.subject + "」の添付されたメール";
  } else {
    const std::string file = shownName(p.filename, p.type);
    en = "The attachment \"" + file + "\" " + (p.message ? "(an attached message) " : "");
    ja = "添付ファイル「" + file + "」" + (p.message ? "（添付されたメール）" : "");
  }
  // Only an attached message holds what was found inside it.
  if (p.inside.empty()) {
    en += why;
    ja += whyJa;
  } else if (!p.text) {
    en += "held " + quoted(p.inside, "\"", "\"", ", ") + ", which " + why + ",";
    ja += "の中の" + quoted(p.inside, "「", "」", "") + whyJa;
  } else {
    en += why + " in its text and in " + quoted(p.inside, "\"", "\"", ", ");
    ja += "の本文と" + quoted(p.inside, "「", "」", "") + whyJa;
  }
  mime::Replacement r;
  r.path = p.path;
  r.noticeText = en + " and was removed by sekimori-antivirus.\r\n" + ja + "ため、削除しました。\r\n";
  return r;
}

// An HTML part with active content, kept for html_script_action = strip.
struct ActiveHtml {
  std::vector<int> path;
  std::string type;  // the part's media type, kept (an SVG image stays one)
  std::string utf8;  // the part's text, transfer encoding and charset decoded
  bool complete;     // all of it (not cut at kHtmlCheckMax)
  // Set: what holds the active content, which no stripping can reach, is
  // replaced by this notice instead, as an infected attachment is.
  std::optional<mime::Replacement> notice = std::nullopt;
  std::string unstrippable = {};  // not empty: it cannot be stripped, and why

  // Active content that cannot be stripped, for the reason given.
  static ActiveHtml cannotStrip(std::string why) { return {{}, {}, {}, false, std::nullopt, std::move(why)}; }
  // An attachment (a zip, a compressed file) holding an HTML file with active content.
  static ActiveHtml inArchive(const PartFinding& p) {
    return {p.path, {}, {}, true,
            removalNotice(p, "held an HTML file with active content (script or plug-ins)",
                          "にスクリプト等を含む HTML ファイルが含まれていた")};
  }
  // A web archive (an .mht attachment) holding a page with active content.
  static ActiveHtml inWebArchive(const mime::PartInfo& p) {
    return {p.path, {}, {}, true,
            removalNotice(removedAlone(p, true),
                          "was a web archive (MHTML) holding a page with active content (script or plug-ins)",
                          "はスクリプト等を含むページを保存したウェブアーカイブ（MHTML）だった")};
  }
  // An HTML part that cannot be rewritten where it is (inside an attached
  // message sent encoded, or the body of an attached message: its content
  // fields are the message's), in an attached message that can go whole.
  static ActiveHtml inAttachedMessage(const AttachedMessage& m) {
    return {m.path, {}, {}, true,
            removalNotice(removedWhole(m), "held HTML with active content (script or plug-ins)",
                          "にスクリプト等を含む HTML が含まれていた")};
  }
};

// html_script_action = strip: each HTML part (but those in a part already
// in `repl`: being replaced by a notice) rewritten without its active
// content, in UTF-8 (a charset such as ISO-2022-JP can hold "<" inside its
// two-byte characters; UTF-8 cannot), added to `repl`. False, with why,
// when that cannot be done safely.
bool addStrippedHtml(const std::vector<ActiveHtml>& html, std::vector<mime::Replacement>& repl, std::string* why) {
  for (const auto& h : html) {
    if (!h.unstrippable.empty()) {
      *why = h.unstrippable;
      return false;
    }
    if (std::any_of(repl.begin(), repl.end(), [&](const mime::Replacement& r) { return within(r.path, h.path); })) {
      continue;
    }
    if (h.notice) {
      repl.push_back(*h.notice);
      continue;
    }
    if (!h.complete) {
      *why = "an HTML part could not be checked whole (longer than " +
             std::to_string(kHtmlCheckMax / (1024 * 1024)) + " MiB)";
      return false;
    }
    auto stripped = stripActiveHtml(h.utf8);
    if (!stripped) {
      *why = "active content remains after stripping";
      return false;
    }
    mime::Replacement r;
    r.path = h.path;
    r.content = mime::NewContent{h.type, "UTF-8", std::move(*stripped)};
    repl.push_back(std::move(r));
  }
  return true;
}

std::string clientText(milter::Session& s) {
  return s.clientName + "[" + (s.clientAddr ? s.clientAddr->str() : std::string("unknown")) + "]";
}

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return in ? ss.str() : std::string();
}

// The outcome of one try of one warning, one log line.
void logWarning(const std::string& qid, const std::string& to, const std::string& messageId,
                const notify::Outbox::Result& r) {
  using Outcome = notify::Outbox::Outcome;
  log::Line line(qid);
  line.kv("milter", "antivirus");
  line.kv("warning", r.outcome == Outcome::Sent ? "sent" : r.outcome == Outcome::Deferred ? "deferred" : "failed");
  if (!messageId.empty()) line.kv("message_id", messageId);
  line.kv("to", to);
  if (r.tries > 1 || r.outcome == Outcome::Deferred) line.kv("tries", std::to_string(r.tries));
  if (r.outcome == Outcome::Deferred) line.kv("retry_in", config::formatDuration(config::Duration{r.retryIn}));
  if (r.outcome != Outcome::Sent) line.kv("error", r.error);
  line.emit(r.outcome == Outcome::Sent ? log::Level::Info : log::Level::Warning);
}

// How warnings are submitted, as [notify] says now.
notify::SubmitSettings submitSettings(const NotifyConfig& n) {
  notify::SubmitSettings s;
  s.method = n.method;
  s.smtpUrl = n.smtpUrl;
  s.sendmailPath = n.sendmailPath;
  s.timeout = n.timeout;
  return s;
}

// What the outbox reports for a batch of warnings about message `qid`, from
// whichever thread made the try.
notify::Outbox::Report warningReport(const std::string& qid) {
  return [qid](const notify::Outbox::Item& i, const notify::Outbox::Result& r) {
    logWarning(qid, i.to.empty() ? "" : i.to[0], i.messageId, r);
  };
}

// Warning mails (R-AV-6): to the sender for mail from inside, to the
// recipients for mail from outside, and to the admin; never to <>. Every
// addressee gets a mail of their own: a recipient's names that recipient
// alone (the others may have been Bcc), the sender's and the admin's name
// every recipient; and one addressee's failure (a relay refusing a UTF-8
// address, say) costs no other one theirs. They share one SMTP session,
// in the outbox's thread: end of message does not wait for the relay.
void sendWarnings(milter::Session& s, const AvConfig& cfg, Direction dir, const Decision& d,
                  const std::string& subject, notify::Outbox& outbox, notify::IssuedIds& issued) {
  const NotifyConfig& n = cfg.notify;
  auto& t = s.txn();
  // What the mail shows of the sender's text (addresses, Subject, file
  // names) is on one line each and without bidirectional tricks.
  const auto shown = [](const std::string& text) { return util::displayText(text, 1000); };
  std::string everyone;
  for (const auto& r : t.recipients) everyone += (everyone.empty() ? "" : ", ") + shown(r.str());
  struct Notice {
    std::string to;          // one address
    std::string recipients;  // ${recipients} in this one's mail
  };
  std::vector<Notice> notices;
  const auto add = [&](const std::string& to, const std::string& recipients) {
    const auto same = std::find_if(notices.begin(), notices.end(), [&](const Notice& x) { return x.to == to; });
    if (same == notices.end()) {
      notices.push_back({to, recipients});
    } else {
      same->recipients = recipients;  // the admin's copy, which names everyone, wins
    }
  };
  const auto wanted = [&](const policy::Address& a, std::string_view domain) {
    return !a.isNull() && !n.optOut.find(a).found() && n.enabled.get(dir, domain);
  };
  if (dir == Direction::Inbound) {
    for (const auto& r : t.recipients) {
      if (wanted(r, r.domain)) add(r.str(), shown(r.str()));
    }
  } else if (wanted(t.sender, t.sender.domain)) {
    add(t.sender.str(), everyone);
  }
  if (!n.admin.empty()) add(n.admin, everyone);
  if (notices.empty()) return;

  std::string why;
  const std::string path = n.templateDir + "/antivirus-warning." + n.language + ".txt";
  const auto tpl = notify::parseTemplate(readFile(path), &why);
  if (!tpl) {
    log::message(log::Level::Error, "warning mail not sent: template " + path + ": " + why);
    return;
  }
  std::string action;
  switch (d.kind) {
    case Decision::Kind::RemoveParts: action = n.language == "ja" ? "ウイルスを含む添付ファイルを削除して配送しました" : "the infected attachment was removed, the rest delivered"; break;
    case Decision::Kind::Discard: action = n.language == "ja" ? "メールを破棄しました" : "the message was discarded"; break;
    default: action = n.language == "ja" ? "メールの受け付けを拒否しました" : "the message was refused"; break;
  }
  std::string files;
  for (const auto& p : d.remove) files += (files.empty() ? "" : ", ") + listedName(p);
  std::map<std::string, std::string> values = {
      {"virus", d.virus},
      {"sender", t.sender.isNull() ? "<>" : shown(t.sender.str())},
      {"subject", util::displayText(subject, 200)},  // as an attached message's (Containers)
      {"queue_id", s.queueId()},
      {"direction", std::string(policy::toString(dir))},
      {"action", action},
      {"files", files.empty() ? "-" : files},
  };
  const std::string domain = n.from.find('@') != std::string::npos ? n.from.substr(n.from.find('@') + 1) : "localhost";
  using Outbox = notify::Outbox;
  Outbox::Batch batch;
  batch.origin = s.queueId();
  batch.settings = submitSettings(n);
  batch.retry = n.retry;
  batch.report = warningReport(s.queueId());
  for (const auto& notice : notices) {
    values["recipients"] = notice.recipients;
    notify::Mail mail;
    mail.from = n.from;
    mail.to = {notice.to};
    mail.subject = notify::expand(tpl->subject, values);
    mail.body = notify::expand(tpl->body, values);
    mail.extraHeaders = {{"Auto-Submitted", "auto-generated"}, {std::string(kNoticeHeader), "antivirus"}};
    auto msg = notify::buildMessage(mail, domain, &why);
    if (!msg) {
      logWarning(s.queueId(), notice.to, "", {Outbox::Outcome::Failed, why, 1, {}});
      continue;
    }
    issued.add(msg->messageId);  // before it can come back through this milter
    batch.items.push_back({mail.to, std::move(msg->data), msg->messageId});
  }
  // Sent by the outbox's thread, one SMTP session for the batch; this
  // message's reply does not wait for them.
  if (!batch.items.empty()) outbox.post(std::move(batch));
}

}  // namespace

void AntivirusMilter::declareOptions(config::Schema& schema) const {
  schema.section("engine",
                 "The libclamav engine, loaded once at start into isolated scanner processes. Changes here take "
                 "effect at restart.");
  schema.add(kBackend);
  schema.add(kClamdAddress);
  schema.add(kDatabaseDir);
  schema.add(kTempDir);
  schema.add(kWorkers);
  schema.add(kScanTimeout);
  schema.add(kDbCheck);
  schema.add(kMaxScanSize);
  schema.add(kMaxFileSize);
  schema.add(kMaxFiles);
  schema.add(kMaxRecursion);
  schema.add(kMaxScanTime);
  schema.add(kMaxScanMemory);
  schema.section("actions", "What is done with a finding, by direction (R-DIR-1).");
  for (const auto* o : {&kOutbound, &kInboundAttachment, &kInboundBody, &kLimits, &kEncrypted, &kUnscanned,
                        &kHtmlScript, &kScanFailure}) {
    schema.add(*o);
  }
  schema.section("notify", "Warning mails (R-AV-6). Templates: antivirus-warning.ja.txt / .en.txt.");
  schema.add(kNotify);
  schema.add(kNotifyOptOut);
  schema.add(kNotifyAdmin);
  schema.add(kNotifyFrom);
  schema.add(kNotifyMethod);
  schema.add(kNotifyUrl);
  schema.add(kNotifySendmail);
  schema.add(kNotifyTemplates);
  schema.add(kNotifyLanguage);
  schema.add(kNotifyTimeout);
  schema.add(kNotifyRetryAfter);
  schema.add(kNotifyRetryFor);
  schema.add(kNotifySpool);
  schema.section("quarantine", "The admin-only store of infected originals (R-AV-7).");
  schema.add(kQuarantineDir);
  schema.add(kQuarantineKeep);
  schema.add(kQuarantineMaxSize);
  schema.section("mime", "How a message is held while it is scanned.");
  schema.add(kSpoolMemory);
  schema.add(kSpoolDir);
  schema.section("replies", "SMTP replies: code, enhanced code, text.");
  for (const auto* o : {&kReplyVirus, &kReplyEncrypted, &kReplyUnscanned, &kReplyHtml, &kReplyFailure}) schema.add(*o);
  schema.footer(
      "# Overrides: notify.enabled may be set per direction in [inbound],\n"
      "# [outbound], [internal] and per domain in [domain NAME] (the recipient's\n"
      "# domain for inbound mail, the sender's otherwise).\n"
      "#\n"
      "#[domain quiet.example.jp]\n"
      "#enabled = no\n");
}

QuarantineSettings quarantineSettings(const config::Values& v) {
  return {v.get(kQuarantineDir), std::chrono::duration_cast<std::chrono::seconds>(v.get(kQuarantineKeep).value),
          v.get(kQuarantineMaxSize).value};
}

std::string notifySpoolDir(const config::Values& v) { return v.get(kNotifySpool); }

bool AntivirusMilter::configure(const config::Values& v, config::Errors& errors, bool apply) {
  auto cfg = std::make_shared<AvConfig>();
  const std::size_t before = errors.list().size();
  const auto error = [&](const std::string& key, const std::string& why) {
    errors.add(v.file(), v.line(key), key.substr(key.find('.') + 1) + ": " + why);
  };
  ActionConfig& a = cfg->actions;
  a.outboundInfected = v.get(kOutbound) == "discard" ? InfectedAction::Discard : InfectedAction::Reject;
  a.inboundAttachment = v.get(kInboundAttachment) == "reject" ? AttachmentAction::Reject : AttachmentAction::Remove;
  a.inboundBody = v.get(kInboundBody) == "discard" ? InfectedAction::Discard : InfectedAction::Reject;
  const std::string limits = v.get(kLimits);
  a.limitsExceeded = limits == "deliver" ? LimitsAction::Deliver
                     : limits == "reject" ? LimitsAction::Reject
                                          : LimitsAction::Infected;
  a.encrypted = v.get(kEncrypted) == "reject" ? UnscannableAction::Reject : UnscannableAction::Mark;
  a.unscanned = v.get(kUnscanned) == "reject" ? UnscannableAction::Reject : UnscannableAction::Mark;
  const std::string html = v.get(kHtmlScript);
  a.htmlScript = html == "reject"  ? HtmlScriptAction::Reject
                 : html == "strip" ? HtmlScriptAction::Strip
                                   : HtmlScriptAction::Mark;
  a.scanFailure = v.get(kScanFailure) == "accept" ? FailureAction::Accept : FailureAction::Tempfail;

  cfg->replies.virus = v.get(kReplyVirus);
  cfg->replies.encrypted = v.get(kReplyEncrypted);
  cfg->replies.unscanned = v.get(kReplyUnscanned);
  cfg->replies.htmlScript = v.get(kReplyHtml);
  cfg->replies.failure = v.get(kReplyFailure);
  if (!cfg->replies.failure.temporary()) error(kReplyFailure.key, "must be a 4xx reply");

  NotifyConfig& n = cfg->notify;
  n.enabled = v.layered(kNotify);
  for (const auto& e : util::splitList(v.get(kNotifyOptOut))) {
    std::string why;
    if (!n.optOut.add(e, &why)) error(kNotifyOptOut.key, why);
  }
  n.admin = v.get(kNotifyAdmin);
  n.from = v.get(kNotifyFrom);
  n.method = v.get(kNotifyMethod);
  n.smtpUrl = v.get(kNotifyUrl);
  n.sendmailPath = v.get(kNotifySendmail);
  n.templateDir = v.get(kNotifyTemplates);
  if (n.templateDir.empty()) {
    const auto slash = v.file().rfind('/');
    n.templateDir = slash == std::string::npos ? "." : v.file().substr(0, slash == 0 ? 1 : slash);
  }
  n.language = v.get(kNotifyLanguage);
  n.timeout = v.get(kNotifyTimeout).value;
  n.retry.after = v.get(kNotifyRetryAfter).value;
  n.retry.within = v.get(kNotifyRetryFor).value;
  if (n.retry.after < std::chrono::seconds(1)) error(kNotifyRetryAfter.key, "must be at least 1s");
  const std::string outboxDir = notifySpoolDir(v);
  if (!outboxDir.empty() && outboxDir[0] != '/') error(kNotifySpool.key, "must be an absolute path");
  for (std::string* addr : {&n.admin, &n.from}) {
    if (addr == &n.admin && addr->empty()) continue;
    std::string why;
    if (auto clean = notify::cleanAddress(*addr, &why)) {
      *addr = std::move(*clean);
    } else {
      error(addr == &n.admin ? kNotifyAdmin.key : kNotifyFrom.key, why);
    }
  }
  std::string why;
  const std::string tpl = n.templateDir + "/antivirus-warning." + n.language + ".txt";
  if (access(tpl.c_str(), R_OK) != 0) {
    error(kNotifyTemplates.key, "cannot read template " + tpl + ": " + std::strerror(errno));
  } else if (!notify::parseTemplate(readFile(tpl), &why)) {
    error(kNotifyTemplates.key, "template " + tpl + ": " + why);
  }

  cfg->quarantine = quarantineSettings(v);
  if (!cfg->quarantine.dir.empty() && cfg->quarantine.dir[0] != '/') error(kQuarantineDir.key, "must be an absolute path");
  cfg->spoolMemory = v.get(kSpoolMemory).value;
  cfg->spoolDir = v.get(kSpoolDir);
  if (cfg->spoolDir.empty() || cfg->spoolDir[0] != '/') error(kSpoolDir.key, "must be an absolute path");
  cfg->maxScanSize = v.get(kMaxScanSize).value;

  ScannerOptions so;
  so.engine.databaseDir = v.get(kDatabaseDir);
  so.engine.tempDir = v.get(kTempDir);
  if (!so.engine.tempDir.empty() && so.engine.tempDir[0] != '/') error(kTempDir.key, "must be an absolute path");
  so.workers = static_cast<int>(v.get(kWorkers).value);
  if (so.workers < 1 || so.workers > 256) error(kWorkers.key, "must be between 1 and 256");
  so.scanTimeout = v.get(kScanTimeout).value;
  so.dbCheckInterval = v.get(kDbCheck).value;
  so.engine.limits.maxScanSize = cfg->maxScanSize;
  so.engine.limits.maxFileSize = v.get(kMaxFileSize).value;
  so.engine.limits.maxFiles = static_cast<std::uint32_t>(v.get(kMaxFiles).value);
  // The whole message is scanned as a mail: libclamav counts the mail and
  // its decoded attachment as levels of their own before the first archive,
  // so "archives 8 deep" needs one more level here (the pool adds the one
  // for the scanned file itself). A part scanned on its own then gets one
  // level more than a message; either way a deeper nest is a verdict.
  so.engine.limits.maxRecursion = static_cast<std::uint32_t>(v.get(kMaxRecursion).value) + 1;
  so.engine.limits.maxScanTime = v.get(kMaxScanTime).value;
  so.engine.limits.maxScanMemory = v.get(kMaxScanMemory).value;
  if (v.get(kMaxRecursion).value < 1 || v.get(kMaxRecursion).value > 64) {
    error(kMaxRecursion.key, "must be between 1 and 64");
  }
  // No limit is "0 = none" as in clamd.conf: a size of 0 would make every
  // message limits_exceeded_action, a time of 0 would leave it to the watchdog.
  const EngineLimits& l = so.engine.limits;
  if (l.maxScanSize < (1ULL << 20) || l.maxScanSize > kLargestScanSize) {
    error(kMaxScanSize.key, "must be between 1M and " + config::formatBytes(Bytes{kLargestScanSize}) +
                                " (libclamav scans no file of 2 GiB)");
  }
  if (l.maxFileSize < 1024 || l.maxFileSize > l.maxScanSize) {
    error(kMaxFileSize.key, "must be between 1K and max_scan_size (" + config::formatBytes(Bytes{l.maxScanSize}) + ")");
  }
  if (l.maxFiles < 1) error(kMaxFiles.key, "must be at least 1");
  if (l.maxScanMemory < (64ULL << 20)) error(kMaxScanMemory.key, "must be at least 64M");
  if (so.scanTimeout < std::chrono::seconds(1)) error(kScanTimeout.key, "must be at least 1s");
  // Past scan_timeout the watchdog kills the scan first: scan_failure_action
  // (a tempfail, again at every retry) instead of limits_exceeded_action.
  if (l.maxScanTime < std::chrono::seconds(1) || l.maxScanTime >= so.scanTimeout) {
    error(kMaxScanTime.key, "must be at least 1s and shorter than scan_timeout (" +
                                config::formatDuration(Duration{so.scanTimeout}) + ")");
  }

  const std::string clamd = v.get(kClamdAddress);
  if (!validClamdAddress(clamd)) error(kClamdAddress.key, "not a socket path or IP:PORT: '" + clamd + "'");

  if (errors.list().size() != before) return false;
  if (!apply) return true;
  if (!config_.get()) {  // engine settings: at start only
    scannerOptions_ = so;
    backend_ = v.get(kBackend);
    clamdAddress_ = clamd;
    outboxDir_ = outboxDir;
  }
  if (pool_) pool_->reload();                 // a reload also rechecks the signatures
  const bool reload = config_.get() != nullptr;
  config_.set(std::move(cfg));
  housekeeping_.kick();  // and applies quarantine.keep and max_size (once start() has run)
  // And tries the warnings waiting for a retry at once, with [notify] as it
  // is now: the admin who fixed the relay has just said so.
  if (reload) outbox_.retryNow();
  return true;
}

bool AntivirusMilter::prepare(std::string* error) {
  const auto cfg = config_.get();
  if (cfg && !cfg->quarantine.dir.empty()) {
    if (!store::Quarantine(cfg->quarantine.dir).prepare(error)) return false;
  }
  if (!outboxDir_.empty() && !util::preparePrivateDir(outboxDir_, "notify spool_dir", error)) return false;
  if (pool_) return true;
  if (backend_ == "clamd") {
    ClamdOptions o;
    o.address = clamdAddress_;
    o.timeout = scannerOptions_.scanTimeout;
    auto clamd = std::make_shared<ClamdScanner>(o);
    std::string why;
    if (!clamd->ping(&why)) {
      // Not fatal: clamd may start after us; scans fail (scan_failure_action) until it answers.
      log::message(log::Level::Warning, "clamd not reachable yet: " + why);
    }
    pool_ = std::move(clamd);
    log::message(log::Level::Notice, "scanning through clamd at " + clamdAddress_);
    return true;
  }
  auto pool = std::make_shared<ScannerPool>();
  if (!pool->start(scannerOptions_, error)) return false;
  pool_ = std::move(pool);  // its supervisor logged what it loaded
  return true;
}

void AntivirusMilter::start() {
  // Without its scanner processes the daemon could only tempfail every
  // message: exit instead, for the service manager to start it afresh.
  if (auto* pool = dynamic_cast<ScannerPool*>(pool_.get())) {
    pool->watch([] { milter::stopFailed("the scanner processes are gone"); });
  }
  housekeeping_.start(std::chrono::hours(1), [this] { expireQuarantine(); });
  notify::Outbox::Spool spool;
  spool.dir = outboxDir_;
  spool.recovered = [this](const notify::Outbox::Batch& b) {
    // Known as ours when it comes back through this milter, as it was
    // before the restart.
    for (const auto& i : b.items) issued_.add(i.messageId);
    log::message(log::Level::Notice, b.origin + ": " + std::to_string(b.items.size()) +
                                         " warning mails not yet sent taken from " + outboxDir_);
    return warningReport(b.origin);
  };
  spool.problem = [](const std::string& what) { log::message(log::Level::Error, "warning mail spool: " + what); };
  // Each try follows [notify] as it is now: a relay fixed by a reload or
  // a restart takes the warnings waiting for a retry too.
  outbox_.start(std::move(spool), [this](notify::SubmitSettings& s, notify::Outbox::Retry& r) {
    const auto cfg = config_.get();
    s = submitSettings(cfg->notify);
    r = cfg->notify.retry;
  });
}

void AntivirusMilter::stop() {
  housekeeping_.stop();
  // Warnings still queued get a few seconds (a submission under way ends
  // within notify.timeout); any left then, and those waiting for a retry,
  // stay in notify.spool_dir for the next start (without one: the waiting
  // ones are tried once more, and what is left is logged as not sent).
  outbox_.stop(std::chrono::seconds(10));
  if (pool_) pool_->stop();
}

void AntivirusMilter::expireQuarantine() {
  const auto cfg = config_.get();
  if (!cfg || cfg->quarantine.dir.empty()) return;
  const store::Quarantine q(cfg->quarantine.dir);
  const auto removedLog = [&](std::size_t n, const std::string& why) {
    log::message(log::Level::Notice, "quarantine: removed " + std::to_string(n) + (n == 1 ? " entry " : " entries ") +
                                         why + " from " + cfg->quarantine.dir);
  };
  std::string why;
  if (cfg->quarantine.keep.count() > 0) {
    const auto removed = q.expire(cfg->quarantine.keep, std::time(nullptr), &why);
    if (!removed) {
      log::message(log::Level::Warning, "quarantine expiry: " + why);
    } else if (*removed > 0) {
      removedLog(*removed, "older than " + config::formatDuration(config::Duration{cfg->quarantine.keep}));
    }
  }
  const std::uint64_t max = cfg->quarantine.maxSize;
  if (max == 0) return;
  const auto trimmed = q.trim(max, cfg->quarantine.trimTo(), &why);
  if (!trimmed) {
    log::message(log::Level::Warning, "quarantine size cap: " + why);
    return;
  }
  quarantineBytes_ = trimmed->bytesLeft;
  if (trimmed->removed > 0) {
    removedLog(trimmed->removed, "to stay under max_size " + config::formatBytes(config::Bytes{max}) + " (" +
                                     std::to_string(trimmed->bytesLeft) + " bytes left)");
  }
}

Verdict AntivirusMilter::onMail(milter::Session& s) {
  state(s, config_);
  return Verdict::next();
}

Verdict AntivirusMilter::onHeader(milter::Session& s, std::string_view name, std::string_view value) {
  auto& m = state(s, config_);
  if (util::iequals(name, kScannedHeader)) ++m.scannedHeaders;
  if (util::iequals(name, kStatusHeader)) ++m.statusHeaders;
  if (util::iequals(name, kNoticeHeader)) m.noticeHeader = true;
  if (util::iequals(name, "Message-ID") && m.messageId.empty()) m.messageId = std::string(util::trim(value.substr(0, 998)));
  if (util::iequals(name, "Subject") && m.subject.empty()) m.subject = mime::decodeHeader(util::trim(value.substr(0, 998)));
  if (util::iequals(name, "Content-Type")) {
    const std::string t = mime::mediaType(value.substr(0, 4096));
    // What the walk's parser may read as encrypted (it drops a lone CR
    // from a header line, mediaType does not): the sniffer says so.
    MediaTypeSniffer sniffer;
    sniffer.feed(value.substr(0, 4096));
    m.topEncrypted = m.topEncrypted || encryptedMailType(t);
    m.topMaybeEncrypted = m.topMaybeEncrypted || sniffer.encrypted();  // as GMime may read it
  }
  m.spool->append(name);
  m.spool->append(":");
  m.spool->append(value);
  m.spool->append("\r\n");
  return Verdict::next();
}

Verdict AntivirusMilter::onEoh(milter::Session& s) {
  auto& m = state(s, config_);
  m.spool->append("\r\n");
  m.headerBytes = m.spool->size();
  return Verdict::next();
}

Verdict AntivirusMilter::onBody(milter::Session& s, std::span<const std::byte> chunk) {
  auto& m = state(s, config_);
  m.spool->append(chunk);
  const std::string_view bytes(reinterpret_cast<const char*>(chunk.data()), chunk.size());
  m.types.feed(bytes);
  m.pgp.feed(bytes);
  m.pgpStart.feed(bytes);
  return Verdict::next();
}

Verdict AntivirusMilter::onEom(milter::Session& s, milter::MtaActions& mta) {
  auto& m = state(s, config_);
  const AvConfig& cfg = *m.cfg;
  auto& t = s.txn();
  // One of our own warnings (its header, and a Message-ID we issued, taken
  // on first sight so that a copy of it cannot claim the same later)?
  const bool isNotice = m.noticeHeader && issued_.take(m.messageId);
  if (!pool_) return Verdict::fault("no scanner pool");
  if (m.spool->failed()) return Verdict::fault("cannot spool the message: " + std::string(std::strerror(errno)));

  Findings f;
  if (m.spool->truncated()) {
    f.whole.status = ScanResult::Status::LimitsExceeded;
    f.whole.name = "Heuristics.Limits.Exceeded.MaxScanSize";
  } else {
    f.whole = scanSpool(*pool_, *m.spool);
  }
  // Encrypted mail (S/MIME, PGP/MIME, inline PGP) cannot be scanned: say
  // so, never "clean". Also where it is a part further down: PGP/MIME
  // inside a mailing list's multipart/mixed, a forwarded encrypted message
  // (also base64-encoded as a whole), an attached smime.p7m, .asc (also
  // in base64) or binary .gpg file. Where they are (their paths) matters
  // when infected attachments beside them are cut out: they stay.
  std::vector<std::vector<int>> encryptedParts;
  if (m.topEncrypted) encryptedParts.emplace_back();
  if (m.topMaybeEncrypted || m.types.encrypted() || m.pgp.found() || m.pgpStart.found()) {
    const mime::WalkResult walked = mime::walk(*m.spool, {}, [&](const mime::PartInfo& p, mime::Content* c) {
      if (encryptedMailType(p.contentType) || (c != nullptr && holdsPgpMessage(*c))) {
        encryptedParts.push_back(p.path);
      }
      return true;
    });
    // Parts past the walk's limits were not looked at: what may be there counts as there.
    if (walked.depthExceeded || walked.partsExceeded || walked.headersExceeded) encryptedParts.emplace_back();
  }
  const auto markEncrypted = [](ScanResult& r) {
    r.status = ScanResult::Status::Encrypted;
    r.name = "Heuristics.Encrypted.Mail";
  };
  if (f.whole.status == ScanResult::Status::Clean && !encryptedParts.empty()) markEncrypted(f.whole);
  const bool suspicious = f.whole.status != ScanResult::Status::Clean && f.whole.status != ScanResult::Status::Error;
  const bool wholeClean = f.whole.status == ScanResult::Status::Clean;
  std::vector<ActiveHtml> activeHtml;  // kept only for html_script_action = strip
  // An HTML file with active content inside an archive somewhere in a clean
  // message, to be stripped: the attachments are scanned one by one to find
  // those that hold it (a second scan, for such messages only; found in no
  // attachment, it cannot be removed and the message is refused).
  const bool stripArchived = f.whole.activeHtml && cfg.actions.htmlScript == HtmlScriptAction::Strip;
  // Every message is walked for HTML a browser may run (mime::walk reads
  // the structure; only such parts, and those to scan, are decoded): an
  // HTML attachment's name may come RFC 2047- or RFC 2231-encoded, with
  // bytes GMime drops, or escaped in a quoted string, which no cheap look
  // at the raw body rules out (0.25 ms for a 100 KB message with a zip
  // attachment; most mail carries an HTML part and was walked before).
  //
  // The walk also sees the attached messages (Containers), which go whole
  // when what was found cannot go alone; and those sent with a transfer
  // encoding (mime::PartInfo::encodedMessage): libclamav 1.4 does not
  // decode one at the top of the message (measured: EICAR attached inside
  // a top-level message/rfc822 in base64 or quoted-printable came back
  // clean), while GMime, and the mail programs built on it, show what is
  // inside: the parts below one are scanned one by one too.
  {
    Containers seen;
    const mime::WalkResult walked = mime::walk(*m.spool, {}, [&](const mime::PartInfo& p, mime::Content* c) {
      seen.add(p, c != nullptr);
      if (c == nullptr) return true;
      const bool html = htmlLeaf(p.contentType, p.filename);
      const bool webArchive = !html && webArchiveLeaf(p.contentType, p.filename);
      const AttachedMessage* inEncoded = seen.encodedAbove(p.path);
      const bool scan = suspicious || (wholeClean && ((stripArchived && p.isAttachment) || inEncoded != nullptr));
      if (!scan && !html && !webArchive) return true;
      std::string text;
      bool complete = true;
      // A web archive is kept whole (spooled as the message is) to be walked
      // for its pages once read.
      std::optional<mime::Spool> archive;
      if (webArchive) archive.emplace(cfg.spoolMemory, cfg.spoolDir);
      CopiedContent content(*c, archive ? &*archive : nullptr);
      if (scan) {
        // What goes for this part if it is to go: itself (an attachment
        // directly inside a multipart), else the attached message holding
        // it, whole (an attachment inside an attached message that came
        // encoded cannot be cut out alone: mime::replaceParts would have to
        // re-encode that message; the text of an attached message is not an
        // attachment of its own), else nothing (the message's own body:
        // refused).
        const bool alone = inEncoded == nullptr && p.isAttachment && seen.inMultipart(p.path);
        const AttachedMessage* holder = alone ? nullptr : seen.holderOf(p.path);
        PartFinding pf;
        if (holder != nullptr) {
          pf = removedWhole(*holder);
          if (p.isAttachment) pf.inside = {shownName(removedAlone(p, true))};
          pf.text = !p.isAttachment;
        } else {
          pf = removedAlone(p, alone);
        }
        pf.result = scanContent(*pool_, content, html ? &text : nullptr, &complete);
        f.parts.push_back(std::move(pf));
      } else if (html) {
        complete = readHtmlText(content, text);
      }
      if (!html && !webArchive) return true;
      // A part too long to be checked whole counts as one with active
      // content (strip cannot rewrite it: the message is refused).
      HtmlCheck check{};
      if (html) {
        check = checkHtmlText(text, p.charset, complete);
      } else {
        content.drain();
        check.active = webArchiveHasActiveHtml(*archive);
      }
      if (check.active) {
        f.htmlScript = true;
        if (cfg.actions.htmlScript == HtmlScriptAction::Strip) {
          // Rewritten where it is (the whole message, or a part directly
          // inside a multipart; a web archive cannot be: it is removed, a
          // notice in its place, as an archive holding such a page is),
          // else the attached message holding it goes.
          const bool inPlace = inEncoded == nullptr && (p.path.empty() || seen.inMultipart(p.path));
          const AttachedMessage* holder = inPlace ? nullptr : seen.holderOf(p.path);
          if (holder != nullptr) {
            activeHtml.push_back(ActiveHtml::inAttachedMessage(*holder));
          } else if (inPlace && html) {
            activeHtml.push_back({p.path, p.contentType, std::move(check.utf8), check.whole});
          } else if (inPlace && !p.path.empty()) {
            activeHtml.push_back(ActiveHtml::inWebArchive(p));
          } else if (inPlace) {
            activeHtml.push_back(ActiveHtml::cannotStrip("a web archive with active content is the whole message"));
          } else {
            activeHtml.push_back(ActiveHtml::cannotStrip("HTML in an attached message that cannot be removed"));
          }
        }
      }
      return true;
    });
    // A walk that stopped at one of its limits (depth, parts, header bytes)
    // left the parts after it unchecked: an HTML part there counts as one
    // with active content, as a part too long to check does (found in
    // review: 1 MiB of part header fields before an HTML part with a script
    // passed as clean; libclamav's own limits catch the deep and the many).
    // So does an HTML file with active content inside an archive or
    // compressed file (invoice.html in a zip), which the scanner workers
    // look for. Neither can be stripped: with strip, an attachment found to
    // hold such a file is removed (a notice in its place); anything else
    // (parts past the walk's limits, such a file found only in the whole
    // message, a top-level zip) makes the message refused.
    const bool pastLimits = walked.depthExceeded || walked.partsExceeded || walked.headersExceeded;
    const bool inParts =
        std::any_of(f.parts.begin(), f.parts.end(), [](const PartFinding& p) { return p.result.activeHtml; });
    if (pastLimits || f.whole.activeHtml || inParts) {
      f.htmlScript = true;
      if (cfg.actions.htmlScript == HtmlScriptAction::Strip) {
        if (pastLimits) activeHtml.push_back(ActiveHtml::cannotStrip("parts past the MIME walk's limits"));
        if (!inParts && f.whole.activeHtml) {
          activeHtml.push_back(ActiveHtml::cannotStrip("an archive holding active HTML found in no part alone"));
        }
        for (const auto& p : f.parts) {
          if (!p.result.activeHtml) continue;
          const bool removable = p.attachment && !p.path.empty();
          activeHtml.push_back(removable ? ActiveHtml::inArchive(p)
                                         : ActiveHtml::cannotStrip("an archive holding active HTML is not an "
                                                                   "attachment"));
        }
      }
    }
  }

  // A part scanned on its own that libclamav could not see in the whole
  // message: what it was found to be, the message is (a failed scan first).
  if (wholeClean) {
    for (const auto& p : f.parts) {
      if (p.result.status == ScanResult::Status::Error) {
        f.whole = p.result;
        break;
      }
      if (f.whole.status == ScanResult::Status::Clean && p.result.status != ScanResult::Status::Clean) {
        f.whole = p.result;
      }
    }
  }

  const Direction dir = s.direction();
  Decision d = decide(cfg.actions, cfg.replies, dir, f);
  // The message rewritten: infected attachments replaced by notices, the
  // active content cut out of the HTML parts, in one pass.
  if (d.kind == Decision::Kind::RemoveParts || d.stripHtml) {
    const bool removing = d.kind == Decision::Kind::RemoveParts;
    std::vector<mime::Replacement> repl;
    for (const auto& p : d.remove) {
      repl.push_back(removalNotice(p, "contained a virus (" + p.result.name + ")",
                                   "からウイルス（" + p.result.name + "）が検出された"));
    }
    std::string why;
    mime::ReplaceResult res;
    if (d.stripHtml && !addStrippedHtml(activeHtml, repl, &why)) {
      // Not delivered with the active content the admin asked to remove.
      log::message(log::Level::Warning,
                   s.queueId() + ": cannot strip the active HTML (" + why + "); refusing the message instead");
      refuseUnstrippable(d, cfg.replies);
    } else if (res = mime::replaceParts(*m.spool, repl); !res.ok) {
      log::message(log::Level::Warning, s.queueId() + ": cannot rewrite the message (" +
                                            util::sanitize(res.error, 300) + "); refusing the message instead");
      if (removing) {
        refuseWhole(d, cfg.actions, cfg.replies);
      } else {
        refuseUnstrippable(d, cfg.replies);
      }
    } else {
      if (removing) {
        // What is left is scanned again: the parts found are not always all
        // of what the whole message was found for (a signature may match a
        // part's header lines, which no part's content holds).
        ScanResult again = scanSpool(*pool_, *m.spool, res.body, m.headerBytes);
        if (isThreat(again, cfg.actions.limitsExceeded)) {
          log::message(log::Level::Warning, s.queueId() + ": still infected (" + again.name +
                                                ") with the infected parts removed; refusing the message instead");
          refuseWhole(d, cfg.actions, cfg.replies, again.name);
        } else if (again.status == ScanResult::Status::Error && cfg.actions.scanFailure == FailureAction::Tempfail) {
          return Verdict::refuse(cfg.replies.failure);
        } else {
          // What is left and could not be scanned is marked, or refused,
          // as it would be without a virus beside it.
          const auto removed = [&](const std::vector<int>& path) {
            return std::any_of(d.remove.begin(), d.remove.end(),
                               [&](const PartFinding& p) { return within(p.path, path); });
          };
          if (again.status == ScanResult::Status::Clean &&
              !std::all_of(encryptedParts.begin(), encryptedParts.end(), removed)) {
            markEncrypted(again);
          }
          markLeftover(d, cfg.actions, cfg.replies, again);
        }
      }
      if (d.kind == Decision::Kind::RemoveParts || d.stripHtml) {  // still to be delivered as rewritten
        for (const auto& [name, value] : res.topLevelHeaders) {
          if (!mta.changeHeader(name, 1, value)) return Verdict::fault("the MTA refused to change " + name);
        }
        if (!mta.replaceBody(std::as_bytes(std::span(res.body)))) return Verdict::fault("the MTA refused the new body");
      }
    }
  }

  // Quarantine, log (with the entry's id), warn.
  std::optional<std::string> held;
  if (d.infected && !cfg.quarantine.dir.empty()) {
    store::QuarantineEntry e;
    e.queueId = s.queueId();
    e.direction = std::string(policy::toString(dir));
    e.reason = d.virus;
    e.sender = t.sender.str();
    for (const auto& r : t.recipients) e.recipients.push_back(r.str());
    std::string why;
    held = store::Quarantine(cfg.quarantine.dir).store(*m.spool, e, &why);
    if (!held) {
      log::message(log::Level::Error, s.queueId() + ": quarantine failed: " + why);
      // Nothing of the original may be lost for want of its copy (R-AV-7):
      // the infected attachments cut out of it are a fault (on_error:
      // tempfail by default, and the sender's MTA tries again); one to be
      // discarded is refused instead, as reject would (the sender keeps it).
      if (d.kind == Decision::Kind::RemoveParts) {
        return Verdict::fault("quarantine failed (" + why + "), the infected original (" + d.virus +
                              ") would be lost with the parts removed");
      }
      if (d.kind == Decision::Kind::Discard) refuseInfected(d, cfg.replies, InfectedAction::Reject);
    }
    // Past the cap: the housekeeping thread trims at once, not within the hour.
    if (held && cfg.quarantine.maxSize > 0 && (quarantineBytes_ += m.spool->size()) > cfg.quarantine.maxSize) {
      housekeeping_.kick();
    }
  }
  {
    const bool refused = d.kind == Decision::Kind::Reject || d.kind == Decision::Kind::Tempfail;
    const char* action = d.kind == Decision::Kind::Reject      ? "reject"
                         : d.kind == Decision::Kind::Tempfail  ? "tempfail"
                         : d.kind == Decision::Kind::Discard   ? "discard"
                         : d.kind == Decision::Kind::RemoveParts ? "remove"
                         : d.stripHtml                           ? "strip"
                                                                 : "accept";
    log::Line line(s.queueId());
    line.kv("milter", "antivirus").kv("action", action).kv("status", d.status);
    if (!d.virus.empty()) line.kv("virus", d.virus);
    if (f.whole.status == ScanResult::Status::Error) line.kv("error", f.whole.error);
    line.kv("from", t.sender.bracketed())
        .kv("direction", policy::toString(dir))
        .kv("client", clientText(s));
    if (refused) line.kv("reply", d.reply.str());
    if (held) line.kv("quarantine", *held);
    // Plain clean mail at debug; anything marked (unscanned, suspicious HTML) or acted on at info.
    line.emit(d.kind == Decision::Kind::Deliver && !d.infected && d.status == "clean" ? log::Level::Debug
                                                                                      : log::Level::Info);
  }
  if (d.infected && !isNotice) sendWarnings(s, cfg, dir, d, m.subject, outbox_, issued_);

  switch (d.kind) {
    case Decision::Kind::Reject:
    case Decision::Kind::Tempfail: return Verdict::refuse(d.reply);
    case Decision::Kind::Discard: return Verdict::discard();
    case Decision::Kind::Deliver:
    case Decision::Kind::RemoveParts: break;
  }
  // Headers: forged copies out (last first, indexes stay valid), ours in.
  for (int i = m.scannedHeaders; i >= 1; --i) mta.changeHeader(kScannedHeader, i, "");
  for (int i = m.statusHeaders; i >= 1; --i) mta.changeHeader(kStatusHeader, i, "");
  const std::string versions = f.whole.versions.empty() ? pool_->versions() : f.whole.versions;
  mta.addHeader(kScannedHeader, "sekimori-antivirus " + versions);
  mta.addHeader(kStatusHeader, d.status);
  return Verdict::next();
}

}  // namespace sekimori::antivirus
