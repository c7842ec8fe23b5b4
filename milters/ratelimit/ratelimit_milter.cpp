// milters/ratelimit/ratelimit_milter.cpp — see ratelimit_milter.h.
#include "milters/ratelimit/ratelimit_milter.h"

#include <sstream>

#include "common/config/schema.h"
#include "common/log/log.h"
#include "common/util/strings.h"
#include "milters/ratelimit/memory_store.h"
#include "milters/ratelimit/redis_store.h"

namespace sekimori::ratelimit {
namespace {

using config::Count;
using config::Duration;
using config::Option;
using config::Scope;
using milter::Verdict;
using policy::Direction;
using policy::Reply;

using std::chrono::hours;
using std::chrono::minutes;

const Replies kDefaultReplies{};

// One counter's options: [limits] NAME, NAME_window, NAME_penalty, NAME_directions.
struct CounterOptions {
  Kind kind;
  Option<Count> max;
  Option<Duration> window;
  std::optional<Option<Duration>> penalty;
  Option<std::string> directions;
};

const CounterOptions kCounters[kCounterKinds] = {
    {Kind::Sender,
     {"limits.sender_recipients", Count{100},
      "Envelope recipients one sender address may send to in any sliding window (0 = off). Counted at RCPT; "
      "the recipient over it gets the sender reply, and it lifts by itself as the window slides. R-RATE-1.",
      Scope::Overridable},
     {"limits.sender_window", Duration{minutes(5)}, "The sliding window of sender_recipients."},
     std::nullopt,
     {"limits.sender_directions", "outbound", "Directions sender_recipients applies in (R-DIR-1)."}},
    {Kind::Recipient,
     {"limits.recipient_messages", Count{100},
      "Messages one recipient address may receive in any sliding window (0 = off); over it only that "
      "recipient is refused (recipient reply). R-RATE-2.",
      Scope::Overridable},
     {"limits.recipient_window", Duration{minutes(5)}, "The sliding window of recipient_messages."},
     std::nullopt,
     {"limits.recipient_directions", "inbound internal", "Directions recipient_messages applies in."}},
    {Kind::Client,
     {"limits.client_messages", Count{1000},
      "Messages one client IP address may send in any sliding window (0 = off). Once over, the client is "
      "penalised: every message is refused (client reply) until client_penalty has passed, even if the "
      "window empties. R-RATE-3.",
      Scope::Overridable},
     {"limits.client_window", Duration{hours(1)}, "The sliding window of client_messages."},
     Option<Duration>{"limits.client_penalty", Duration{hours(1)},
                      "How long a client over client_messages is refused (0 = only while over the limit)."},
     {"limits.client_directions", "inbound", "Directions client_messages applies in."}},
    {Kind::User,
     {"limits.user_messages", Count{1000},
      "Messages one SMTP AUTH user ({auth_authen}) may send in any sliding window (0 = off), with a penalty "
      "as for clients. R-RATE-3.",
      Scope::Overridable},
     {"limits.user_window", Duration{hours(1)}, "The sliding window of user_messages."},
     Option<Duration>{"limits.user_penalty", Duration{hours(1)}, "How long a user over user_messages is refused."},
     {"limits.user_directions", "outbound internal", "Directions user_messages applies in."}},
    {Kind::Domain,
     {"limits.domain_messages", Count{1000},
      "Messages with one envelope sender domain in any sliding window (0 = off), with a penalty as for "
      "clients. R-RATE-3.",
      Scope::Overridable},
     {"limits.domain_window", Duration{hours(1)}, "The sliding window of domain_messages."},
     Option<Duration>{"limits.domain_penalty", Duration{hours(1)},
                      "How long a sender domain over domain_messages is refused."},
     {"limits.domain_directions", "inbound outbound", "Directions domain_messages applies in."}},
};

const Option<Count> kSessionRecipients{
    "limits.session_recipients", Count{100},
    "Recipients accepted in one SMTP session, over all its messages (0 = off); later RCPTs get the session "
    "reply. R-RATE-4."};

const Option<std::string> kLists{
    "loop.list_addresses", "",
    "Mailing-list addresses (or @domains) guarded against loops: a message whose Message-ID was already "
    "accepted for the same list address within loop.window is refused (loop reply). Only messages this "
    "milter accepted at end of message are remembered. Empty: off. R-RATE-5."};
const Option<Duration> kLoopWindow{"loop.window", Duration{hours(24)},
                                   "How long an accepted Message-ID is remembered per list address."};

const Option<std::string> kExemptSenders{
    "exempt.senders", "",
    "Envelope senders never rate limited: addresses, local parts (user@) and domains (example.jp, "
    ".example.jp for subdomains). R-RATE-6."};
const Option<std::string> kExemptNetworks{"exempt.networks", "",
                                          "Client networks (CIDR, IPv4 and IPv6) never rate limited."};
const Option<std::string> kExemptUsers{"exempt.users", "", "SMTP AUTH users never rate limited."};

const Option<std::string> kBackend{"store.backend", "memory",
                                   "Where counters live: memory (this process; the state survives a reload) or "
                                   "redis (shared by every MX host pointed at the same Redis). R-RATE-7.",
                                   Scope::Global,
                                   {"memory", "redis"}};
const Option<Count> kMemoryMaxKeys{
    "store.memory_max_keys", Count{500000},
    "Most keys the memory store holds (about 300 bytes each); expired keys are dropped first, and at the cap "
    "new keys go unlimited with a log line."};
const Option<std::string> kRedisAddress{"store.redis_address", "127.0.0.1:6379",
                                        "Redis server: HOST:PORT, [IPv6]:PORT or unix:/path/to/redis.sock."};
const Option<std::string> kRedisUsername{"store.redis_username", "", "Redis ACL user (empty: AUTH with the password only)."};
const Option<std::string> kRedisPassword{"store.redis_password", "",
                                         "Redis password (empty: no AUTH). Keep this file mode 0640 or stricter."};
const Option<Count> kRedisDatabase{"store.redis_database", Count{0}, "Redis database number (SELECT)."};
const Option<Duration> kRedisConnectTimeout{"store.redis_connect_timeout", Duration{std::chrono::milliseconds(500)},
                                            "Time to connect to Redis before it counts as unavailable."};
const Option<Duration> kRedisTimeout{"store.redis_timeout", Duration{std::chrono::milliseconds(500)},
                                     "Time for one Redis answer before it counts as unavailable."};
const Option<std::string> kRedisPrefix{"store.redis_prefix", "sekimori:rl:", "Prefix of every Redis key."};
const Option<std::string> kRedisFailure{
    "store.redis_failure", "accept",
    "When Redis cannot be reached: accept (mail flows unlimited) or tempfail (the store_failure reply). "
    "Logged once per outage, not per message.",
    Scope::Global,
    {"accept", "tempfail"}};

const Option<std::string> kControlSocket{
    "control.socket", SEKIMORI_RUNDIR "/ratelimit.ctl",
    "Unix socket of the admin command (sekimori ratelimit status|reset KEY). Created mode 0600: only its "
    "owner (the user the milter starts as) may use it. Empty: none. Read at start only."};

const Option<Reply> kReplySender{"replies.sender", kDefaultReplies.sender, "A recipient over sender_recipients."};
const Option<Reply> kReplyRecipient{"replies.recipient", kDefaultReplies.recipient,
                                    "A recipient over recipient_messages (only that recipient is refused)."};
const Option<Reply> kReplyClient{
    "replies.client", kDefaultReplies.client,
    "A message over client_, user_ or domain_messages or in their penalty. (The seed's bare \"423\" is not a "
    "valid milter reply: replies need 4xx/5xx and an enhanced code.)"};
const Option<Reply> kReplySession{"replies.session", kDefaultReplies.session, "A RCPT over session_recipients."};
const Option<Reply> kReplyLoop{"replies.loop", kDefaultReplies.loop, "A duplicate Message-ID to a list address."};
const Option<Reply> kReplyStoreFailure{"replies.store_failure",
                                       Reply{"451", "4.3.0", "Rate limit service unavailable, try again later"},
                                       "Redis unavailable with redis_failure = tempfail."};

constexpr const char* kFooter =
    "# Overrides. Keys marked \"Overridable\" may be set again per direction in\n"
    "# [inbound], [outbound] or [internal], and per domain in [domain NAME]: the\n"
    "# sender's domain for the sender, client, user and domain counters, the\n"
    "# recipient's for the recipient counter. The most specific wins. 0 turns\n"
    "# a counter off there.\n"
    "#\n"
    "#[outbound]\n"
    "#sender_recipients = 200\n"
    "#\n"
    "#[domain bulk.example.jp]\n"
    "#sender_recipients = 5000\n";

// Per-connection: recipients accepted in this SMTP session (R-RATE-4).
struct RateConnection {
  std::uint64_t recipients = 0;
};

// Per-message state. Hits counted for a message that does not reach our
// end-of-message accept are given back when this is destroyed (abort, RSET,
// disconnect, refusal, the next MAIL FROM), whatever the path.
struct RateMessage {
  std::shared_ptr<const RateRuntime> rt;
  bool exempt = false;
  bool inside = false;
  bool committed = false;
  std::string messageId;
  struct Hit {
    Ticket ticket;
    Limit limit;
  };
  std::vector<Hit> hits;

  void giveBackFrom(std::size_t first) {
    for (std::size_t i = first; i < hits.size(); ++i) {
      try {
        rt->store->giveBack(hits[i].ticket, hits[i].limit);
      } catch (const std::exception&) {
        // The counter is left a little high until its bucket expires.
      }
    }
    hits.resize(std::min(first, hits.size()));
  }
  ~RateMessage() {
    if (!committed && rt && rt->store) giveBackFrom(0);
  }
};

RateMessage& state(milter::Session& s, const config::Snapshot<RateRuntime>& current) {
  auto& m = s.message<RateMessage>();
  if (!m.rt) m.rt = current.get();
  return m;
}

std::string clientText(milter::Session& s) {
  return s.clientName + "[" + (s.clientAddr ? s.clientAddr->str() : std::string("unknown")) + "]";
}

std::string formatTime(TimePoint t) {
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
  return std::to_string(secs);
}

Verdict refuse(milter::Session& s, std::string_view stage, Kind kind, const Reply& reply, const std::string& key,
               const Check& c, const Limit& limit, const policy::Address* rcpt) {
  auto& t = s.txn();
  log::Line line(s.queueId());
  line.kv("milter", "ratelimit")
      .kv("action", reply.temporary() ? "tempfail" : "reject")
      .kv("stage", stage)
      .kv("reason", toString(kind))
      .kv("key", key)
      .kv("count", c.count)
      .kv("limit", limit.max);
  if (limit.window.count() > 0) line.kv("window", config::formatDuration(Duration{limit.window}));
  if (c.penaltyUntil) line.kv("penalty_until", formatTime(*c.penaltyUntil));
  line.kv("from", t.sender.bracketed());
  if (rcpt) line.kv("to", rcpt->bracketed());
  line.kv("direction", policy::toString(s.direction())).kv("client", clientText(s)).kv("reply", reply.str());
  line.emit(log::Level::Info);
  return Verdict::refuse(reply);
}

// A store that cannot answer: accept (logged once per outage by the store)
// or tempfail, as configured.
std::optional<Verdict> storeFailed(milter::Session& s, const RateRuntime& rt, std::string_view stage,
                                   const StoreUnavailable& e) {
  if (!rt.storeSettings.failTempfail) return std::nullopt;
  log::Line(s.queueId())
      .kv("milter", "ratelimit")
      .kv("action", "tempfail")
      .kv("stage", stage)
      .kv("reason", "store")
      .kv("error", e.what())
      .kv("client", clientText(s))
      .kv("reply", rt.storeFailure.str())
      .emit(log::Level::Info);
  return Verdict::refuse(rt.storeFailure);
}

std::string describeUsage(std::string_view key, const Usage& u, const Limit& l, TimePoint now) {
  std::ostringstream out;
  out << "ok key=" << key << " count=" << u.count << " limit=" << l.max
      << " window=" << config::formatDuration(Duration{l.window});
  if (u.penaltyUntil) {
    const auto left = std::chrono::duration_cast<std::chrono::seconds>(*u.penaltyUntil - now).count();
    out << " penalised=yes penalty_left=" << left << "s";
  } else {
    out << " penalised=no";
  }
  return out.str();
}

}  // namespace

void RateLimitMilter::declareOptions(config::Schema& schema) const {
  schema.section("limits",
                 "Sliding-window counters. Each window is divided into 60 buckets: never more than the limit "
                 "is admitted in any interval of one window, and a refused key is admitted again at most "
                 "window/60 later than an exact sliding log would. A refused hit is not counted; a message "
                 "that does not complete gives its counts back.");
  for (const auto& c : kCounters) {
    schema.add(c.max);
    schema.add(c.window);
    if (c.penalty) schema.add(*c.penalty);
    schema.add(c.directions);
  }
  schema.add(kSessionRecipients);
  schema.section("loop", "The mailing-list loop guard (R-RATE-5).");
  schema.add(kLists);
  schema.add(kLoopWindow);
  schema.section("exempt", "Mail never rate limited (the loop guard still applies). R-RATE-6.");
  schema.add(kExemptSenders);
  schema.add(kExemptNetworks);
  schema.add(kExemptUsers);
  schema.section("store", "Where the counters live (R-RATE-7). A change here takes effect on reload and starts "
                          "from empty counters; other reloads keep them.");
  schema.add(kBackend);
  schema.add(kMemoryMaxKeys);
  schema.add(kRedisAddress);
  schema.add(kRedisUsername);
  schema.add(kRedisPassword);
  schema.add(kRedisDatabase);
  schema.add(kRedisConnectTimeout);
  schema.add(kRedisTimeout);
  schema.add(kRedisPrefix);
  schema.add(kRedisFailure);
  schema.section("control", "The admin command's socket.");
  schema.add(kControlSocket);
  schema.section("replies",
                 "SMTP replies: code, enhanced code, text. 4xx tempfails, 5xx rejects. A # in the text is part "
                 "of it.");
  for (const auto* o : {&kReplySender, &kReplyRecipient, &kReplyClient, &kReplySession, &kReplyLoop,
                        &kReplyStoreFailure}) {
    schema.add(*o);
  }
  schema.footer(kFooter);
}

bool RateLimitMilter::configure(const config::Values& v, config::Errors& errors, bool apply) {
  std::lock_guard lock(configureMutex_);
  auto cfg = std::make_shared<RateConfig>();
  const std::size_t before = errors.list().size();
  const auto error = [&](const std::string& key, const std::string& why) {
    errors.add(v.file(), v.line(key), key.substr(key.find('.') + 1) + ": " + why);
  };

  for (const auto& o : kCounters) {
    auto& c = cfg->counter(o.kind);
    c.max = v.layered(o.max);
    c.window = v.get(o.window).value;
    if (c.window < std::chrono::seconds(1)) error(o.window.key, "must be at least 1s");
    if (o.penalty) c.penalty = v.get(*o.penalty).value;
    std::string why;
    const auto dirs = Directions::parse(v.get(o.directions), &why);
    if (!dirs) error(o.directions.key, why);
    c.directions = dirs.value_or(Directions{});
  }
  cfg->sessionRecipients = v.get(kSessionRecipients).value;
  for (const auto& a : util::splitList(v.get(kLists))) {
    std::string why;
    if (!cfg->lists.add(a, &why)) error(kLists.key, why);
  }
  cfg->loopWindow = v.get(kLoopWindow).value;
  for (const auto& a : util::splitList(v.get(kExemptSenders))) {
    std::string why;
    if (!cfg->exempt.senders.add(a, &why)) error(kExemptSenders.key, why);
  }
  for (const auto& n : util::splitList(v.get(kExemptNetworks))) {
    std::string why;
    if (!cfg->exempt.networks.add(n, &why)) error(kExemptNetworks.key, why);
  }
  for (const auto& u : util::splitList(v.get(kExemptUsers))) cfg->exempt.users.insert(u);

  auto& r = cfg->replies;
  r.sender = v.get(kReplySender);
  r.recipient = v.get(kReplyRecipient);
  r.client = v.get(kReplyClient);
  r.session = v.get(kReplySession);
  r.loop = v.get(kReplyLoop);

  auto rt = std::make_shared<RateRuntime>();
  rt->storeFailure = v.get(kReplyStoreFailure);
  StoreSettings& st = rt->storeSettings;
  st.backend = v.get(kBackend);
  st.memoryMaxKeys = v.get(kMemoryMaxKeys).value;
  if (st.memoryMaxKeys == 0) error(kMemoryMaxKeys.key, "must be at least 1");
  st.redisAddress = v.get(kRedisAddress);
  if (!validRedisAddress(st.redisAddress)) {
    error(kRedisAddress.key, "not HOST:PORT, [IPv6]:PORT or unix:/path: '" + st.redisAddress + "'");
  }
  st.redisUsername = v.get(kRedisUsername);
  st.redisPassword = v.get(kRedisPassword);
  st.redisDatabase = static_cast<int>(v.get(kRedisDatabase).value);
  if (v.get(kRedisDatabase).value > 10000) error(kRedisDatabase.key, "not a database number");
  st.redisConnectTimeout = v.get(kRedisConnectTimeout).value;
  st.redisTimeout = v.get(kRedisTimeout).value;
  for (const auto* o : {&kRedisConnectTimeout, &kRedisTimeout}) {
    const auto d = v.get(*o).value;
    if (d < std::chrono::milliseconds(10) || d > std::chrono::seconds(60)) error(o->key, "must be 10ms to 60s");
  }
  st.redisPrefix = v.get(kRedisPrefix);
  st.failTempfail = v.get(kRedisFailure) == "tempfail";

  const std::string controlPath = v.get(kControlSocket);
  if (!controlPath.empty() && controlPath[0] != '/') error(kControlSocket.key, "must be an absolute path");

  if (errors.list().size() != before) return false;
  if (!apply) return true;

  const auto old = runtime_.get();
  if (old && old->storeSettings == st) {
    rt->store = old->store;  // counters survive the reload
  } else if (st.backend == "redis") {
    RedisOptions o;
    o.address = st.redisAddress;
    o.username = st.redisUsername;
    o.password = st.redisPassword;
    o.database = st.redisDatabase;
    o.connectTimeout = st.redisConnectTimeout;
    o.ioTimeout = st.redisTimeout;
    o.prefix = st.redisPrefix;
    rt->store = std::make_shared<RedisStore>(std::move(o));
  } else {
    MemoryStoreOptions o;
    o.maxKeys = st.memoryMaxKeys;
    rt->store = std::make_shared<MemoryStore>(o);
  }
  if (old && old->store != rt->store) {
    log::message(log::Level::Notice, "counter store is now " + std::string(rt->store->kind()) +
                                         "; counting starts from empty counters");
  }
  if (!controlServer_) controlPath_ = controlPath;  // the socket is opened once, at start
  rt->cfg = std::move(cfg);
  runtime_.set(std::move(rt));
  return true;
}

bool RateLimitMilter::open(std::string* error) {
  if (controlPath_.empty()) return true;
  controlServer_ = std::make_unique<control::ControlServer>(controlPath_, controlMode_,
                                                            [this](std::string_view req) { return control(req); });
  return controlServer_->open(error);
}

void RateLimitMilter::start() {
  if (controlServer_) controlServer_->start();
}

void RateLimitMilter::stop() {
  if (controlServer_) controlServer_->stop();
}

Verdict RateLimitMilter::onMail(milter::Session& s) {
  auto& m = state(s, runtime_);
  auto& t = s.txn();
  const RateConfig& cfg = *m.rt->cfg;
  m.inside = t.common && policy::isInside(t.common->direction, !t.authUser.empty(), s.clientAddr);
  m.exempt = cfg.exempt.sender(t.sender) || cfg.exempt.client(s.clientAddr) || cfg.exempt.user(t.authUser);
  if (m.exempt) return Verdict::next();

  const Direction dir = m.inside ? Direction::Outbound : Direction::Inbound;
  const std::string_view domain = t.sender.domain;
  const std::pair<Kind, std::optional<std::string>> keys[] = {
      {Kind::Client, clientKey(s.clientAddr)},
      {Kind::User, userKey(t.authUser)},
      {Kind::Domain, domainKey(t.sender)},
  };
  const TimePoint now = clock_();
  const std::size_t first = m.hits.size();
  for (const auto& [kind, key] : keys) {
    if (!key) continue;
    const Limit limit = cfg.counter(kind).limit(dir, domain);
    if (limit.max == 0) continue;
    try {
      RateMessage::Hit hit{{}, limit};
      const Check c = m.rt->store->hit(*key, limit, 1, now, &hit.ticket);
      if (!c.allowed) {
        m.giveBackFrom(first);
        return refuse(s, "mail", kind, cfg.reply(kind), *key, c, limit, nullptr);
      }
      m.hits.push_back(std::move(hit));
    } catch (const StoreUnavailable& e) {
      if (auto v = storeFailed(s, *m.rt, "mail", e)) {
        m.giveBackFrom(first);
        return *v;
      }
    }
  }
  return Verdict::next();
}

Verdict RateLimitMilter::onRcpt(milter::Session& s, const policy::Address& rcpt) {
  auto& m = state(s, runtime_);
  auto& t = s.txn();
  const RateConfig& cfg = *m.rt->cfg;
  if (m.exempt) return Verdict::next();

  auto& conn = s.connection<RateConnection>();
  if (cfg.sessionRecipients != 0 && conn.recipients >= cfg.sessionRecipients) {
    Limit l;
    l.max = cfg.sessionRecipients;
    return refuse(s, "rcpt", Kind::Session, cfg.replies.session, "session", Check{false, conn.recipients, {}}, l,
                  &rcpt);
  }

  const bool local = t.common && policy::isLocal(t.common->direction, rcpt);
  const Direction dir = policy::recipientDirection(m.inside, local);
  const std::pair<Kind, std::optional<std::string>> keys[] = {
      {Kind::Sender, senderKey(t.sender)},
      {Kind::Recipient, recipientKey(rcpt)},
  };
  const TimePoint now = clock_();
  const std::size_t first = m.hits.size();
  for (const auto& [kind, key] : keys) {
    if (!key) continue;
    const std::string_view domain = kind == Kind::Recipient ? std::string_view(rcpt.domain) : t.sender.domain;
    const Limit limit = cfg.counter(kind).limit(dir, domain);
    if (limit.max == 0) continue;
    try {
      RateMessage::Hit hit{{}, limit};
      const Check c = m.rt->store->hit(*key, limit, 1, now, &hit.ticket);
      if (!c.allowed) {
        m.giveBackFrom(first);  // this recipient is not taken: nothing of it counts
        return refuse(s, "rcpt", kind, cfg.reply(kind), *key, c, limit, &rcpt);
      }
      m.hits.push_back(std::move(hit));
    } catch (const StoreUnavailable& e) {
      if (auto v = storeFailed(s, *m.rt, "rcpt", e)) {
        m.giveBackFrom(first);
        return *v;
      }
    }
  }
  ++conn.recipients;
  return Verdict::next();
}

Verdict RateLimitMilter::onHeader(milter::Session& s, std::string_view name, std::string_view value) {
  auto& m = state(s, runtime_);
  if (!m.rt->cfg->lists.empty() && m.messageId.empty() && util::iequals(name, "Message-ID")) {
    m.messageId = std::string(util::trim(value.substr(0, 998)));
  }
  return Verdict::next();
}

Verdict RateLimitMilter::onEom(milter::Session& s, milter::MtaActions&) {
  auto& m = state(s, runtime_);
  auto& t = s.txn();
  const RateConfig& cfg = *m.rt->cfg;
  if (!cfg.lists.empty() && !m.messageId.empty()) {
    std::vector<std::string> keys;
    for (const auto& r : t.recipients) {
      if (!cfg.lists.find(r).found()) continue;
      if (auto k = loopKey(r, m.messageId)) keys.push_back(std::move(*k));
    }
    const TimePoint now = clock_();
    try {
      for (const auto& k : keys) {
        if (m.rt->store->remembered(k, now)) {
          Limit l;
          l.window = cfg.loopWindow;
          return refuse(s, "eom", Kind::ListLoop, cfg.replies.loop, k, Check{false, 1, {}}, l, nullptr);
        }
      }
      // Remembered only now that the message is accepted. Two copies racing
      // through two MX hosts: the second remember() loses.
      for (const auto& k : keys) {
        if (!m.rt->store->remember(k, cfg.loopWindow, now)) {
          Limit l;
          l.window = cfg.loopWindow;
          return refuse(s, "eom", Kind::ListLoop, cfg.replies.loop, k, Check{false, 1, {}}, l, nullptr);
        }
      }
    } catch (const StoreUnavailable& e) {
      if (auto v = storeFailed(s, *m.rt, "eom", e)) return *v;
    }
  }
  m.committed = true;
  if (log::enabled(log::Level::Debug)) {
    log::Line(s.queueId())
        .kv("milter", "ratelimit")
        .kv("action", "accept")
        .kv("stage", "eom")
        .kv("from", t.sender.bracketed())
        .kv("recipients", static_cast<std::uint64_t>(t.recipients.size()))
        .kv("exempt", m.exempt)
        .kv("direction", policy::toString(s.direction()))
        .kv("client", clientText(s))
        .emit(log::Level::Debug);
  }
  return Verdict::next();
}

void RateLimitMilter::onAbort(milter::Session& s) {
  // The transaction (and with it RateMessage, which gives the hits back) is
  // destroyed right after this; nothing else to do.
  (void)s;
}

std::string RateLimitMilter::control(std::string_view request) {
  const auto words = util::split(request, ' ');
  if (words.size() != 2 || (words[0] != "status" && words[0] != "reset")) {
    return "error usage: status KEY | reset KEY (KEY: s:ADDRESS r:ADDRESS c:IP u:USER d:DOMAIN "
           "l:LIST MESSAGE-ID)";
  }
  const std::string& key = words[1];
  const auto kind = kindOfKey(key);
  if (!kind) return "error unknown key kind in '" + util::sanitize(key) + "'";
  const auto rt = runtime_.get();
  try {
    if (words[0] == "reset") {
      const bool removed = rt->store->reset(key);
      log::message(log::Level::Notice, "admin reset of " + util::sanitize(key) + (removed ? "" : " (was not set)"));
      return std::string("ok key=") + key + (removed ? " reset" : " not-found");
    }
    const TimePoint now = clock_();
    if (*kind == Kind::ListLoop) {
      return std::string("ok key=") + key + " remembered=" + (rt->store->remembered(key, now) ? "yes" : "no");
    }
    // The global limit is shown; overrides may differ per direction and domain.
    const CounterConfig& c = rt->cfg->counter(*kind);
    Limit limit;
    limit.max = c.max.global().value;
    limit.window = c.window;
    limit.penalty = c.penalty;
    return describeUsage(key, rt->store->usage(key, limit, now), limit, now);
  } catch (const StoreUnavailable& e) {
    return std::string("error store unavailable: ") + e.what();
  }
}

}  // namespace sekimori::ratelimit
