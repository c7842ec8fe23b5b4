// milters/sizelimit/sizelimit_milter.cpp — see sizelimit_milter.h.
#include "milters/sizelimit/sizelimit_milter.h"

#include <optional>

#include "common/config/schema.h"
#include "common/log/log.h"
#include "common/mime/archive.h"
#include "common/mime/message.h"
#include "common/mime/spool.h"
#include "common/util/strings.h"

namespace sekimori::sizelimit {
namespace {

using config::Bytes;
using config::Count;
using config::Option;
using config::Scope;
using milter::Verdict;
using policy::Direction;
using policy::Reply;

const Replies kDefaultReplies{};

const Option<Bytes> kMaxSize{
    "limits.max_message_size", Bytes{20 * 1024 * 1024},
    "Largest message accepted, headers and body as received (0 = no limit). Checked at MAIL FROM against "
    "a declared SIZE= and always against the bytes actually received. Set Postfix's own message_size_limit "
    "at least this high, or Postfix refuses first with its own reply. R-SIZE-1.",
    Scope::Overridable};
const Option<Count> kMaxReceived{
    "limits.max_received_headers", Count{50},
    "Most Received: headers a message may arrive with; more is a mail loop (0 = no limit). Postfix does not "
    "show milters the Received: header it adds itself, so this counts what the client sent. Postfix's own "
    "hopcount_limit (default 50) does count that header and refuses first unless it is at least this value "
    "plus 2. R-SIZE-4."};
const Option<bool> kRejectPartial{"limits.reject_partial", true,
                                  "Refuse message/partial (split mail) anywhere in the MIME tree. R-SIZE-3."};
const Option<Count> kMaxRecipients{
    "limits.max_recipients", Count{0},
    "Most recipients of one message; later RCPTs get the recipients reply and the client sends them in "
    "another transaction (0 = no limit). R-SIZE-6.",
    Scope::Overridable};
const Option<Count> kMaxAttachments{"limits.max_attachments", Count{0},
                                    "Most attachments in one message (0 = no limit). R-SIZE-6.", Scope::Overridable};
const Option<Bytes> kMaxExpansion{
    "limits.max_archive_expansion", Bytes{100 * 1024 * 1024},
    "Largest total uncompressed size of an attached archive (zip, tar, gz, bz2, xz, 7z, rar, lzh, cab, ...), "
    "archives inside it included; measured by streaming, never extracted to disk (0 = do not look into "
    "archives). An archive that cannot be read is not refused for that alone. R-SIZE-5.",
    Scope::Overridable};
const Option<Count> kMaxArchiveDepth{"limits.max_archive_depth", Count{8},
                                     "How many levels of archives inside archives are followed; also how many "
                                     "compressions one inside another, where one is .xz or .lzma. R-SIZE-5."};
const Option<bool> kRejectDeep{"limits.reject_deep_archives", true,
                               "Refuse (archive reply) an archive nested deeper than max_archive_depth, whose "
                               "size therefore cannot be known."};
const Option<Count> kMaxMimeDepth{"limits.max_mime_depth", Count{32},
                                  "Deepest MIME nesting read; deeper is refused with the structure reply."};
const Option<Count> kMaxMimeParts{"limits.max_mime_parts", Count{1000},
                                  "Most MIME parts read; more is refused with the structure reply."};
const Option<Bytes> kSpoolMemory{"mime.spool_memory", Bytes{1024 * 1024},
                                 "A message that must be read as MIME is held in memory up to this size per "
                                 "message, then in a private temp file that is always removed."};
const Option<std::string> kSpoolDir{"mime.spool_dir", "/tmp", "Directory of the private temp files."};
const Option<Reply> kReplySize{"replies.size", kDefaultReplies.size, "Message over max_message_size."};
const Option<Reply> kReplyPartial{"replies.partial", kDefaultReplies.partial, "A message/partial part."};
const Option<Reply> kReplyHops{"replies.hops", kDefaultReplies.hops, "More than max_received_headers."};
const Option<Reply> kReplyArchive{"replies.archive", kDefaultReplies.archive,
                                  "An archive over max_archive_expansion or too deep."};
const Option<Reply> kReplyRecipients{"replies.recipients", kDefaultReplies.recipients,
                                     "A recipient over max_recipients (a 4xx, so the client sends it later)."};
const Option<Reply> kReplyAttachments{"replies.attachments", kDefaultReplies.attachments,
                                      "More than max_attachments."};
const Option<Reply> kReplyStructure{"replies.structure", kDefaultReplies.structure,
                                    "MIME nesting or part count over the limits, or MIME that cannot be read "
                                    "whole (over 1 MiB of part headers, prefaces and epilogues, as a multipart "
                                    "whose boundary never comes is)."};

constexpr const char* kFooter =
    "# Overrides. Keys marked \"Overridable\" may be set again per direction in\n"
    "# [inbound], [outbound] or [internal], and per domain in [domain NAME] (the\n"
    "# sender's domain for outbound mail, the recipient's otherwise). The most\n"
    "# specific wins: domain, then direction, then the value above. A message\n"
    "# must fit the limit of every recipient it is accepted for.\n"
    "#\n"
    "#[inbound]\n"
    "#max_message_size = 30M\n"
    "#\n"
    "#[outbound]\n"
    "#max_message_size = 25M\n"
    "#\n"
    "#[domain example.jp]\n"
    "#max_message_size = 150M\n";

// Per-message state, destroyed with the transaction.
struct SizeMessage {
  std::shared_ptr<const SizeConfig> cfg;
  bool inside = false;
  std::uint64_t received = 0;
  std::string topType = "text/plain";
  bool topDisposition = false;
  std::string mimeHeaders;  // Content-* and MIME-Version lines: all the MIME walk needs of the header
  std::uint64_t sizeLimit = 0;  // the strictest recipient's, fixed at end of headers
  std::optional<mime::Spool> spool;
};

// The recipients-so-far count lives in the framework's transaction; this is
// what the RCPT stage checks against.
bool isLocal(const milter::Session& s, const policy::Address& a) {
  const auto& t = const_cast<milter::Session&>(s).txn();
  return t.common && policy::isLocal(t.common->direction, a);
}

void logDecision(milter::Session& s, const SizeMessage& m, std::string_view stage, const Decision& d,
                 const Reply* reply, const policy::Address* rcpt = nullptr) {
  const auto level = reply ? log::Level::Info : log::Level::Debug;
  if (!log::enabled(level)) return;
  auto& t = s.txn();
  log::Line line(s.queueId());
  line.kv("milter", "sizelimit")
      .kv("action", reply ? (reply->temporary() ? "tempfail" : "reject") : "accept")
      .kv("stage", stage);
  if (d.refused()) {
    line.kv("reason", toString(d.reason)).kv("value", d.value).kv("limit", d.limit);
    if (!d.what.empty()) line.kv("of", d.what);
  } else {
    line.kv("size", t.messageBytes()).kv("limit", m.sizeLimit);
  }
  line.kv("from", t.sender.bracketed());
  if (rcpt) line.kv("to", rcpt->bracketed());
  line.kv("direction", policy::toString(s.direction()))
      .kv("client", s.clientName + "[" + (s.clientAddr ? s.clientAddr->str() : std::string("unknown")) + "]");
  if (reply) line.kv("reply", reply->str());
  line.emit(level);
}

Verdict refuse(milter::Session& s, const SizeMessage& m, std::string_view stage, const Decision& d,
               const policy::Address* rcpt = nullptr) {
  const Reply& r = d.reply(m.cfg->replies);
  logDecision(s, m, stage, d, &r, rcpt);
  return Verdict::refuse(r);
}

SizeMessage& state(milter::Session& s, const config::Snapshot<SizeConfig>& current) {
  auto& m = s.message<SizeMessage>();
  if (!m.cfg) m.cfg = current.get();
  return m;
}

// What the MIME walk finds, as a decision.
Decision inspectMime(const SizeConfig& cfg, mime::Spool& spool, std::uint64_t maxAttachments,
                     std::uint64_t maxExpansion) {
  Decision found;
  std::uint64_t attachments = 0;
  mime::WalkLimits limits;
  limits.maxDepth = cfg.maxMimeDepth;
  limits.maxParts = cfg.maxMimeParts;
  const auto result = mime::walk(spool, limits, [&](const mime::PartInfo& part, mime::Content* content) {
    if (cfg.rejectPartial && part.contentType == "message/partial") {
      found = {Reason::Partial, 1, 0};
      return false;
    }
    if (!part.isAttachment && util::istartsWith(part.contentType, "text/")) return true;
    if (part.isAttachment) {
      ++attachments;
      if (const auto d = decideAttachments(maxAttachments, attachments); d.refused()) {
        found = d;
        return false;
      }
    }
    if (maxExpansion == 0 || content == nullptr) return true;
    mime::ExpansionLimits el;
    el.maxTotal = maxExpansion;
    el.maxDepth = cfg.maxArchiveDepth;
    const auto r = mime::measureExpansion(*content, el);
    using S = mime::ExpansionResult::Status;
    if (r.status == S::TooLarge || r.status == S::TooManyEntries) {
      found = {Reason::Archive, r.totalUncompressed, maxExpansion};
      return false;
    }
    if (r.status == S::TooDeep && cfg.rejectDeepArchives) {
      found = {Reason::Archive, static_cast<std::uint64_t>(r.deepestLevel), static_cast<std::uint64_t>(cfg.maxArchiveDepth)};
      return false;
    }
    return true;
  });
  if (found.refused()) return found;
  if (result.depthExceeded) return {Reason::Structure, static_cast<std::uint64_t>(cfg.maxMimeDepth) + 1, static_cast<std::uint64_t>(cfg.maxMimeDepth)};
  if (result.partsExceeded) return {Reason::Structure, result.parts, cfg.maxMimeParts};
  // The walk stopped at its bound on header fields and bytes (a part's
  // header block, prefaces and epilogues over 1 MiB, also a multipart whose
  // boundary is ambiguous or never comes, counted as all preface): the
  // attachments after that point were neither counted nor measured, and
  // an archive there could be a bomb.
  if (result.headersExceeded) {
    return {Reason::Structure, limits.maxHeaderBytes + 1, limits.maxHeaderBytes, "MIME header bytes or fields"};
  }
  return {};
}

}  // namespace

void SizeLimitMilter::declareOptions(config::Schema& schema) const {
  schema.section("limits", "What a message may be. Every limit has a reply in [replies].");
  for (const auto* o : {&kMaxSize, &kMaxExpansion}) schema.add(*o);
  schema.add(kMaxReceived);
  schema.add(kRejectPartial);
  schema.add(kMaxRecipients);
  schema.add(kMaxAttachments);
  schema.add(kMaxArchiveDepth);
  schema.add(kRejectDeep);
  schema.add(kMaxMimeDepth);
  schema.add(kMaxMimeParts);
  schema.section("mime", "How a message is held while its MIME structure is read.");
  schema.add(kSpoolMemory);
  schema.add(kSpoolDir);
  schema.section("replies",
                 "SMTP replies: code, enhanced code, text. 4xx tempfails, 5xx rejects. "
                 "A # in the text is part of it.");
  for (const auto* o : {&kReplySize, &kReplyPartial, &kReplyHops, &kReplyArchive, &kReplyRecipients,
                        &kReplyAttachments, &kReplyStructure}) {
    schema.add(*o);
  }
  schema.footer(kFooter);
}

bool SizeLimitMilter::configure(const config::Values& v, config::Errors& errors, bool apply) {
  auto cfg = std::make_shared<SizeConfig>();
  cfg->maxMessageSize = v.layered(kMaxSize);
  cfg->maxRecipients = v.layered(kMaxRecipients);
  cfg->maxAttachments = v.layered(kMaxAttachments);
  cfg->maxArchiveExpansion = v.layered(kMaxExpansion);
  cfg->maxReceived = v.get(kMaxReceived).value;
  cfg->rejectPartial = v.get(kRejectPartial);
  cfg->rejectDeepArchives = v.get(kRejectDeep);
  cfg->spoolMemory = v.get(kSpoolMemory).value;
  cfg->spoolDir = v.get(kSpoolDir);
  cfg->maxMimeParts = v.get(kMaxMimeParts).value;
  const std::size_t before = errors.list().size();
  const auto bounded = [&](const Option<Count>& o, std::uint64_t lo, std::uint64_t hi, int& out) {
    const auto n = v.get(o).value;
    if (n < lo || n > hi) {
      errors.add(v.file(), v.line(o.key),
                 o.key.substr(o.key.find('.') + 1) + ": must be between " + std::to_string(lo) + " and " +
                     std::to_string(hi));
    }
    out = static_cast<int>(n);
  };
  bounded(kMaxArchiveDepth, 1, 64, cfg->maxArchiveDepth);
  bounded(kMaxMimeDepth, 1, 1000, cfg->maxMimeDepth);
  if (cfg->spoolDir.empty() || cfg->spoolDir[0] != '/') {
    errors.add(v.file(), v.line(kSpoolDir.key), "spool_dir: must be an absolute path");
  }
  Replies& r = cfg->replies;
  r.size = v.get(kReplySize);
  r.partial = v.get(kReplyPartial);
  r.hops = v.get(kReplyHops);
  r.archive = v.get(kReplyArchive);
  r.recipients = v.get(kReplyRecipients);
  r.attachments = v.get(kReplyAttachments);
  r.structure = v.get(kReplyStructure);
  if (errors.list().size() != before) return false;
  if (apply) config_.set(std::move(cfg));
  return true;
}

Verdict SizeLimitMilter::onMail(milter::Session& s) {
  auto& m = state(s, config_);
  auto& t = s.txn();
  m.inside = t.common && policy::isInside(t.common->direction, !t.authUser.empty(), s.clientAddr);
  const auto d = decideDeclared(sizeBoundAtMail(*m.cfg, m.inside, t.sender), t.declaredSize());
  if (d.refused()) return refuse(s, m, "mail", d);
  return Verdict::next();
}

Verdict SizeLimitMilter::onRcpt(milter::Session& s, const policy::Address& rcpt) {
  auto& m = state(s, config_);
  auto& t = s.txn();
  const auto dir = policy::recipientDirection(m.inside, isLocal(s, rcpt));
  const auto domain = policy::overrideDomain(dir, t.sender, rcpt);
  if (const auto d = decideRecipients(m.cfg->maxRecipients.get(dir, domain).value, t.recipients.size() + 1);
      d.refused()) {
    return refuse(s, m, "rcpt", d, &rcpt);
  }
  if (const auto d = decideDeclared(m.cfg->maxMessageSize.get(dir, domain).value, t.declaredSize()); d.refused()) {
    return refuse(s, m, "rcpt", d, &rcpt);
  }
  return Verdict::next();
}

Verdict SizeLimitMilter::onHeader(milter::Session& s, std::string_view name, std::string_view value) {
  auto& m = state(s, config_);
  if (util::iequals(name, "Received")) {
    ++m.received;
  } else if (util::istartsWith(name, "Content-") || util::iequals(name, "MIME-Version")) {
    if (util::iequals(name, "Content-Type")) m.topType = mediaType(value);
    if (util::iequals(name, "Content-Disposition")) m.topDisposition = true;
    // Bounded: a header block of thousands of Content-* lines is not MIME we
    // need to read; the structure limits catch what it would have been.
    if (m.mimeHeaders.size() < 64 * 1024) {
      m.mimeHeaders.append(name).append(":").append(value).append("\r\n");
    }
  }
  return Verdict::next();
}

Verdict SizeLimitMilter::onEoh(milter::Session& s) {
  auto& m = state(s, config_);
  auto& t = s.txn();
  if (const auto d = decideHops(m.cfg->maxReceived, m.received); d.refused()) return refuse(s, m, "eoh", d);
  if (m.cfg->rejectPartial && m.topType == "message/partial") {
    return refuse(s, m, "eoh", Decision{Reason::Partial, 1, 0});
  }
  m.sizeLimit = strictestFor(m.cfg->maxMessageSize, m.inside, t.sender, t.recipients,
                             [&](const policy::Address& a) { return isLocal(s, a); });
  if (const auto d = decideSize(m.sizeLimit, t.messageBytes()); d.refused()) return refuse(s, m, "eoh", d);

  // Only a body that can hold parts, attachments or an archive is read as
  // MIME; plain text is just counted.
  const bool structured = !util::istartsWith(m.topType, "text/") || m.topDisposition;
  if (structured && m.cfg->needsMime()) {
    m.spool.emplace(m.cfg->spoolMemory, m.cfg->spoolDir, m.sizeLimit == 0 ? UINT64_MAX : m.sizeLimit + 1);
    m.mimeHeaders.append("\r\n");
    if (!m.spool->append(std::string_view(m.mimeHeaders))) return Verdict::fault("cannot spool message");
    m.mimeHeaders.clear();
    m.mimeHeaders.shrink_to_fit();
  }
  return Verdict::next();
}

Verdict SizeLimitMilter::onBody(milter::Session& s, std::span<const std::byte> chunk) {
  auto& m = state(s, config_);
  if (!m.spool) return Verdict::next();
  // Over the limit is certain: stop holding a message that will be refused.
  if (m.sizeLimit != 0 && s.txn().messageBytes() > m.sizeLimit) {
    m.spool.reset();
    return Verdict::next();
  }
  if (!m.spool->append(chunk)) {
    m.spool.reset();
    return Verdict::fault("cannot spool message body");
  }
  return Verdict::next();
}

Verdict SizeLimitMilter::onEom(milter::Session& s, milter::MtaActions&) {
  auto& m = state(s, config_);
  auto& t = s.txn();
  if (const auto d = decideSize(m.sizeLimit, t.messageBytes()); d.refused()) return refuse(s, m, "eom", d);
  if (m.spool) {
    const auto isLocalRcpt = [&](const policy::Address& a) { return isLocal(s, a); };
    const auto maxAttachments = strictestFor(m.cfg->maxAttachments, m.inside, t.sender, t.recipients, isLocalRcpt);
    const auto maxExpansion = strictestFor(m.cfg->maxArchiveExpansion, m.inside, t.sender, t.recipients, isLocalRcpt);
    if (const auto d = inspectMime(*m.cfg, *m.spool, maxAttachments, maxExpansion); d.refused()) {
      return refuse(s, m, "eom", d);
    }
  }
  logDecision(s, m, "eom", Decision{}, nullptr);
  return Verdict::next();
}

}  // namespace sekimori::sizelimit
