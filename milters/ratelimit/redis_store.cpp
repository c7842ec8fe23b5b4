// milters/ratelimit/redis_store.cpp — RedisStore: the sliding-window counters
// of store.h kept in Redis, so every MX host of a cluster shares one limit.
//
// Layout. A counter key is one Redis hash, PREFIX + key: a ring of bucket
// counts and a penalty's end (see "scripts" below). A remembered key (the
// loop guard) is a plain string under the same name, SET NX PX, so reset()
// removes either with one DEL. rate_policy.h gives counters and loop-guard
// keys different kind prefixes ("s:", "l:", ...), so one name is never
// both. XXX: a caller that used one key for both would get WRONGTYPE
// (reported as StoreUnavailable) from hit() and remembered() == true for a
// counter. Every key expires on its own (PEXPIRE): nothing sweeps.
//
// Each call is one round trip: the counter operations are Lua scripts (run
// atomically by Redis, so hosts and threads never race between reading the
// buckets and adding to them), loaded with SCRIPT LOAD when a connection is
// opened and run with EVALSHA; a NOSCRIPT (SCRIPT FLUSH, a failover to a
// server that never saw them) falls back to EVAL, which also caches them
// again. `now` always comes from the caller, never from Redis TIME: tests
// inject it, and the MX hosts' clocks are the ones that matter.
//
// Connections. Milter callbacks run on many threads and hiredis contexts are
// not thread-safe, so contexts are pooled: a caller takes an idle one, opens
// a new one while fewer than maxConnections exist, or waits (bounded too).
// Connecting is bounded by connectTimeout, every command (write and reply)
// by ioTimeout, so no call blocks longer than those.
//
// Outages. Any connection-level failure (refused, timed out, closed,
// protocol error, AUTH refused) drops the context, every idle one with it
// (they point at the same dead server), and starts an outage: for
// retryInterval every call throws StoreUnavailable at once without touching
// the network, so a Redis outage costs the mail flow no time per message;
// then exactly one caller tries a new connection while the others keep
// failing fast. The start and the end of an outage are logged once each.
//
// SIGPIPE: hiredis writes with write(2), so writing to a server that has gone
// away raises SIGPIPE. The daemon ignores it process-wide
// (common/milter/daemon.cpp); any other program using RedisStore must too.
#include "milters/ratelimit/redis_store.h"

#include <hiredis/hiredis.h>
#include <poll.h>
#include <sys/time.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <limits>
#include <mutex>
#include <optional>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "common/log/log.h"

namespace sekimori::ratelimit {
namespace {

using SteadyClock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// ---------------------------------------------------------------- addresses

struct Endpoint {
  bool unixSocket = false;
  std::string host;  // without brackets
  int port = 0;
  std::string path;  // unix socket
};

bool hostnameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_';
}

bool ipv6Char(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' || c == '.';
}

std::optional<int> parsePort(std::string_view s) {
  if (s.empty() || s.size() > 5) return std::nullopt;
  int port = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    port = port * 10 + (c - '0');
  }
  if (port < 1 || port > 65535) return std::nullopt;
  return port;
}

std::optional<Endpoint> parseEndpoint(std::string_view a) {
  Endpoint e;
  if (a.starts_with("unix:")) {
    // An absolute path: a relative one would depend on the daemon's cwd.
    e.unixSocket = true;
    e.path = std::string(a.substr(5));
    if (e.path.size() < 2 || e.path.front() != '/' || e.path.find('\0') != std::string::npos) return std::nullopt;
    return e;
  }
  std::string_view host;
  std::string_view port;
  if (a.starts_with('[')) {
    // "[::1]:6379"; a zone ("[fe80::1%eth0]") is passed on to getaddrinfo.
    const auto close = a.find(']');
    if (close == std::string_view::npos || close + 1 >= a.size() || a[close + 1] != ':') return std::nullopt;
    host = a.substr(1, close - 1);
    port = a.substr(close + 2);
    const auto zone = host.find('%');
    const auto addr = host.substr(0, zone);
    if (addr.find(':') == std::string_view::npos || !std::all_of(addr.begin(), addr.end(), ipv6Char)) return std::nullopt;
    if (zone != std::string_view::npos) {
      const auto name = host.substr(zone + 1);
      if (name.empty() || !std::all_of(name.begin(), name.end(), hostnameChar)) return std::nullopt;
    }
  } else {
    // An unbracketed IPv6 address ("::1:6379") is ambiguous and refused.
    const auto colon = a.find(':');
    if (colon == std::string_view::npos || a.find(':', colon + 1) != std::string_view::npos) return std::nullopt;
    host = a.substr(0, colon);
    port = a.substr(colon + 1);
    if (!std::all_of(host.begin(), host.end(), hostnameChar)) return std::nullopt;
  }
  const auto p = parsePort(port);
  if (host.empty() || !p) return std::nullopt;
  e.host = std::string(host);
  e.port = *p;
  return e;
}

// ------------------------------------------------------------------ scripts
//
// The counting is MemoryStore's, so both backends answer alike:
//
//   * width = window / kBuckets rounded up (at least 1 ms), so kBuckets
//     buckets never span less than the window;
//   * usage = the buckets from floor((now - window) / width) — the one that
//     straddles the window's start, counted whole — to the newest: up to
//     kBuckets + 1 of them, so a ring of kRing = kBuckets + 1 slots;
//   * a key is counted under one width; when a reload changes the window its
//     old buckets mean nothing and are dropped;
//   * a hit whose bucket is behind the newest one (a host whose clock is a
//     little slow) is counted in the newest: it then expires later, never
//     earlier.
//
// A counter hash holds "w" (the width, ms), "n" (the newest bucket index),
// "t" (the sum of all slots), "p" (a penalty's end, ms since the epoch) and
// the slots "0" … "60": slot b % kRing holds bucket b for newest - kRing < b
// <= newest. Keeping the total and the newest index makes a hit O(1) however
// many buckets a busy key has filled: it reads five fields and writes two
// (and sets the TTL once per new bucket). Reading and adding up every bucket
// instead cost 32 µs of server time per hit on a busy key; this costs about
// 5 µs (bench/ratelimit_redis_bench.cpp), most of it the price of running a
// script and of its two redis.call()s.

enum Script : std::size_t { kHitScript, kGiveBackScript, kUsageScript, kScriptCount };

// KEYS[1] counter hash. ARGV: [1] now ms, [2] current bucket, [3] buckets
// of the window before the current one (the current bucket minus the
// oldest; kBuckets unless the window is not a multiple of kBuckets ms),
// [4] width ms, [5] n, [6] max, [7] the penalty's end should this hit start
// one (ms; "0": the limit has none), [8] the penalty (ms), [9] kBuckets,
// [10] the current bucket's slot.
// Returns {allowed 0|1, usage, penalty end ms or 0, bucket counted in}.
//
// Every redis.call costs about 1.4 µs of server time, and every helper
// closure, table and tonumber() (strtod) adds up, so the common case — the
// key's newest bucket is the current one and the window is a whole number
// of buckets — goes first, compares strings where it can, and does one
// HMGET and one HSET.
constexpr std::string_view kHitLua = R"lua(
local key = KEYS[1]
local h = redis.call('HMGET', key, 'w', 'n', 't', 'p', ARGV[10])
if h[1] == ARGV[4] and h[2] == ARGV[2] and ARGV[3] == ARGV[9] then
  local used, n = tonumber(h[3]) or 0, tonumber(ARGV[5])
  local penalty = h[4] and tonumber(h[4]) or 0
  if penalty > 0 and penalty > tonumber(ARGV[1]) then return {0, used, penalty, 0} end
  if used + n <= tonumber(ARGV[6]) then
    if n > 0 then redis.call('HSET', key, ARGV[10], (tonumber(h[5]) or 0) + n, 't', used + n) end
    return {1, used + n, 0, n > 0 and tonumber(ARGV[2]) or 0}
  end
  -- Over the limit: the general case below handles it.
end

local now, n, max = tonumber(ARGV[1]), tonumber(ARGV[5]), tonumber(ARGV[6])
local penalty = tonumber(h[4]) or 0
local ring = tonumber(ARGV[9]) + 1
local cur, width = tonumber(ARGV[2]), tonumber(ARGV[4])
local oldest = cur - tonumber(ARGV[3])
local function slot(b) return tostring(b % ring) end
-- Bucket b is counted until (b + 1) * width + window <= (b + ring) * width;
-- one width more for a host whose clock runs behind ours.
local function ttl(b) return (b + 1 + ring) * width - now end
-- Slot values read so far (false: no such field); one HMGET for the rest.
local cache = {[ARGV[10]] = h[5]}
local function sum(from, to)
  local missing = {}
  for b = from, to do
    local s = slot(b)
    if cache[s] == nil then
      missing[#missing + 1] = s
      cache[s] = false
    end
  end
  if #missing > 0 then
    local v = redis.call('HMGET', key, unpack(missing))
    for i = 1, #missing do cache[missing[i]] = v[i] end
  end
  local total = 0
  for b = from, to do total = total + (tonumber(cache[slot(b)]) or 0) end
  return total
end

local counted = h[1] == ARGV[4]
local newest, total = cur, 0
if counted then
  newest, total = tonumber(h[2]), tonumber(h[3]) or 0
elseif h[1] then
  -- Counted under another width (a reload changed the window): the old
  -- buckets mean nothing now. Start an empty counter at this bucket, with
  -- its own TTL (the old one may be shorter), keeping a running penalty's.
  local names = {}
  for s = 0, ring - 1 do
    names[#names + 1] = tostring(s)
    cache[tostring(s)] = false
  end
  redis.call('HDEL', key, unpack(names))
  redis.call('HSET', key, 'w', ARGV[4], 'n', ARGV[2], 't', 0)
  redis.call('PEXPIRE', key, math.max(ttl(cur), penalty - now))
  counted = true
end
local used = 0
if counted and oldest <= newest then
  -- The ring holds newest - ring + 1 .. newest; the oldest of those may be
  -- older than the window.
  used = total
  local first = newest - ring + 1
  if oldest > first then used = used - sum(first, oldest - 1) end
end

if penalty > now then return {0, used, penalty, 0} end
if used + n > max then
  if ARGV[7] == '0' then return {0, used, 0, 0} end
  redis.call('HSET', key, 'p', ARGV[7])
  redis.call('PEXPIRE', key, math.max(tonumber(ARGV[8]), ttl(newest)))
  return {0, used, tonumber(ARGV[7]), 0}
end
if n == 0 then return {1, used, 0, 0} end

if not counted then
  redis.call('HSET', key, 'w', ARGV[4], 'n', ARGV[2], 't', n, ARGV[10], n)
  redis.call('PEXPIRE', key, ttl(cur))
  return {1, used + n, 0, cur}
end
if cur > newest then
  -- Buckets newest + 1 .. cur take the slots of buckets leaving the ring.
  local gone = {}
  if cur - newest >= ring then
    for s = 0, ring - 1 do gone[#gone + 1] = tostring(s) end
    total = 0
  else
    total = total - sum(newest + 1, cur)
    for b = newest + 1, cur - 1 do
      if cache[slot(b)] then gone[#gone + 1] = slot(b) end
    end
  end
  if #gone > 0 then redis.call('HDEL', key, unpack(gone)) end
  redis.call('HSET', key, 'n', ARGV[2], 't', total + n, ARGV[10], n)
  redis.call('PEXPIRE', key, ttl(cur))
  return {1, used + n, 0, cur}
end
if newest == cur then
  redis.call('HSET', key, ARGV[10], (tonumber(cache[ARGV[10]]) or 0) + n, 't', total + n)
else
  redis.call('HINCRBY', key, slot(newest), n)
  redis.call('HSET', key, 't', total + n)
end
return {1, used + n, 0, newest}
)lua";

// KEYS[1] counter hash. ARGV: [1] bucket, [2] n, [3] width ms, [4] kBuckets.
// Never below zero; nothing once the bucket has left the ring or the key is
// counted under another width. The TTL already covers the bucket.
constexpr std::string_view kGiveBackLua = R"lua(
local key = KEYS[1]
local b, ring = tonumber(ARGV[1]), tonumber(ARGV[4]) + 1
local s = tostring(b % ring)
local h = redis.call('HMGET', key, 'w', 'n', 't', s)
if h[1] ~= ARGV[3] then return 0 end
local newest = tonumber(h[2])
if b > newest or b <= newest - ring then return 0 end
local v = tonumber(h[4]) or 0
local back = math.min(v, tonumber(ARGV[2]))
if back <= 0 then return 0 end
redis.call('HSET', key, s, v - back, 't', (tonumber(h[3]) or 0) - back)
return back
)lua";

// KEYS[1] counter hash. ARGV: [1] now ms, [2] the limit's window ms, [3] its
// width ms, [4] kBuckets. Read-only. The admin's limit may not be the one
// the key was counted under (limits differ per direction and domain): the
// buckets are read in their own width, over the limit's window when it has
// that width and over kBuckets of them otherwise.
// Returns {usage, penalty end ms or 0}.
constexpr std::string_view kUsageLua = R"lua(
local key = KEYS[1]
local now, window, ring = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4]) + 1
local h = redis.call('HMGET', key, 'w', 'n', 't', 'p')
local penalty = tonumber(h[4]) or 0
if penalty <= now then penalty = 0 end
if not h[1] then return {0, penalty} end
local w, newest, used = tonumber(h[1]), tonumber(h[2]), tonumber(h[3]) or 0
local span = (h[1] == ARGV[3] and window > 0) and window or (ring - 1) * w
local oldest = math.floor((now - span) / w)
if oldest > newest then return {0, penalty} end
local first = newest - ring + 1
if oldest > first then
  local names = {}
  for b = first, oldest - 1 do names[#names + 1] = tostring(b % ring) end
  local v = redis.call('HMGET', key, unpack(names))
  for i = 1, #v do used = used - (tonumber(v[i]) or 0) end
end
return {used, penalty}
)lua";

constexpr std::array<std::string_view, kScriptCount> kScripts = {kHitLua, kGiveBackLua, kUsageLua};

// ------------------------------------------------------------------ hiredis

struct ReplyFree {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using ReplyPtr = std::unique_ptr<redisReply, ReplyFree>;
using ContextPtr = std::unique_ptr<redisContext, decltype(&redisFree)>;

// The connection can no longer be trusted (I/O error, timeout, EOF, protocol
// error, refused handshake): it is dropped and an outage starts.
class ConnectionError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

timeval toTimeval(milliseconds ms) {
  const auto t = std::max<std::int64_t>(ms.count(), 1);
  return timeval{static_cast<time_t>(t / 1000), static_cast<suseconds_t>((t % 1000) * 1000)};
}

std::int64_t toMs(TimePoint t) { return std::chrono::floor<milliseconds>(t.time_since_epoch()).count(); }

// Floor division: a bucket index for any `now`, even before 1970.
std::int64_t bucketOf(std::int64_t nowMs, std::int64_t width) {
  const std::int64_t q = nowMs / width;
  return (nowMs % width != 0 && (nowMs < 0) != (width < 0)) ? q - 1 : q;
}

// Slots in a counter's ring (see "scripts").
constexpr std::int64_t kRing = std::int64_t{kBuckets} + 1;

// The slot of bucket b, as Lua's b % ring: never negative.
std::int64_t floorMod(std::int64_t b, std::int64_t m) {
  const std::int64_t r = b % m;
  return r < 0 ? r + m : r;
}

// As MemoryStore: window / kBuckets rounded up and at least 1 ms, so that
// kBuckets buckets never span less than the window (a 7 s window gets
// 117 ms buckets, not 116).
std::int64_t widthMs(const Limit& limit) {
  const std::int64_t window = std::max<std::int64_t>(limit.window.count(), 1);
  return std::min<std::int64_t>((window + kBuckets - 1) / kBuckets, std::numeric_limits<std::uint32_t>::max());
}

// The oldest bucket that overlaps (now - window, now], counted whole.
std::int64_t oldestOf(const Limit& limit, std::int64_t nowMs, std::int64_t width) {
  return bucketOf(nowMs - std::max<std::int64_t>(limit.window.count(), 1), width);
}

// A command's words as hiredis takes them (binary-safe: lengths, not NULs).
struct Argv {
  static constexpr std::size_t kMax = 16;  // the hit script needs 14
  std::array<const char*, kMax> ptr{};
  std::array<std::size_t, kMax> len{};
  int count = 0;

  explicit Argv(std::span<const std::string_view> args) {
    if (args.size() > kMax) throw std::logic_error("redis command with too many arguments");
    for (const auto a : args) {
      ptr[static_cast<std::size_t>(count)] = a.data();
      len[static_cast<std::size_t>(count)] = a.size();
      ++count;
    }
  }
};

std::string_view replyText(const redisReply& r) { return {r.str, r.len}; }

bool isError(const redisReply& r) { return r.type == REDIS_REPLY_ERROR; }

// A script's reply: an array of `count` integers, or nullopt.
template <std::size_t count>
std::optional<std::array<std::int64_t, count>> integers(const redisReply& r) {
  if (r.type != REDIS_REPLY_ARRAY || r.elements != count) return std::nullopt;
  std::array<std::int64_t, count> out{};
  for (std::size_t i = 0; i < count; ++i) {
    if (r.element[i]->type != REDIS_REPLY_INTEGER) return std::nullopt;
    out[i] = r.element[i]->integer;
  }
  return out;
}

}  // namespace

bool validRedisAddress(const std::string& address) { return parseEndpoint(address).has_value(); }

// ---------------------------------------------------------------------- Impl

struct RedisStore::Impl {
  // One pooled connection with the SHA1s its SCRIPT LOAD returned.
  struct Conn {
    ContextPtr ctx{nullptr, &redisFree};
    std::array<std::string, kScriptCount> sha;
    std::uint64_t generation = 0;
  };
  using ConnPtr = std::unique_ptr<Conn>;

  explicit Impl(RedisOptions o) : options(std::move(o)) {
    if (options.maxConnections == 0) options.maxConnections = 1;
    if (auto e = parseEndpoint(options.address)) endpoint = std::move(*e);
  }

  RedisOptions options;
  std::optional<Endpoint> endpoint;  // nullopt: malformed; every call fails

  std::mutex mu;
  std::condition_variable cv;
  std::vector<ConnPtr> idle;
  std::size_t open = 0;  // idle + in use + being connected
  // Outage state. `generation` changes when an outage starts, so a context
  // that was in use at that moment is not put back into the pool.
  bool down = false;
  bool probing = false;  // one caller is reconnecting
  SteadyClock::time_point retryAt{};
  std::string downReason;
  std::uint64_t generation = 0;

  std::string name() const { return "redis " + options.address; }

  // ------------------------------------------------------------- the pool

  ConnPtr acquire() {
    std::unique_lock lock(mu);
    // A caller waits for a busy connection at most as long as one holder can
    // keep it without failing (connect, then a script and its NOSCRIPT retry).
    const auto waitUntil = SteadyClock::now() + options.connectTimeout + 2 * options.ioTimeout;
    for (;;) {
      if (down) {
        const auto now = SteadyClock::now();
        if (probing || now < retryAt) {
          const auto left = std::chrono::ceil<milliseconds>(std::max(retryAt - now, SteadyClock::duration::zero()));
          throw StoreUnavailable(name() + " unavailable (" + downReason + "); next attempt in " +
                                 std::to_string(left.count()) + " ms");
        }
        probing = true;
        return openConn(lock, true);
      }
      if (!idle.empty()) {
        ConnPtr c = std::move(idle.back());
        idle.pop_back();
        return c;
      }
      if (open < options.maxConnections) return openConn(lock, false);
      if (cv.wait_until(lock, waitUntil) == std::cv_status::timeout && !down && idle.empty() &&
          open >= options.maxConnections) {
        // Busy, not broken: no outage, the next caller may be luckier.
        throw StoreUnavailable(name() + ": all " + std::to_string(options.maxConnections) +
                               " connections busy");
      }
    }
  }

  // Called with `lock` held; connects without it. Logging, too, happens
  // without it: syslog() may block, and every caller would wait.
  ConnPtr openConn(std::unique_lock<std::mutex>& lock, bool probe) {
    ++open;
    lock.unlock();
    ConnPtr c;
    std::string error;
    try {
      c = connect();
    } catch (const std::exception& e) {
      error = e.what();  // ConnectionError, or bad_alloc: either way no connection
    }
    lock.lock();
    if (probe) probing = false;
    if (!c) {
      --open;
      const bool first = startOutage(error);
      lock.unlock();
      cv.notify_all();
      if (first) logOutage(error);
      throw StoreUnavailable(name() + ": " + error);
    }
    c->generation = generation;
    if (probe) {
      down = false;
      lock.unlock();
      log::message(log::Level::Notice, name() + " reachable again");
    }
    return c;
  }

  void release(ConnPtr c) {
    {
      std::lock_guard lock(mu);
      if (c->generation == generation) {
        idle.push_back(std::move(c));
      } else {
        --open;  // opened before the last outage: do not trust it
      }
    }
    cv.notify_one();
  }

  // Drops a connection that is not to be reused, without an outage.
  void discard(ConnPtr c) {
    c.reset();
    {
      std::lock_guard lock(mu);
      --open;
    }
    cv.notify_one();
  }

  [[noreturn]] void fail(ConnPtr c, const std::string& reason) {
    c.reset();
    bool first = false;
    {
      std::lock_guard lock(mu);
      --open;
      first = startOutage(reason);
    }
    cv.notify_all();  // waiters fail fast now instead of timing out
    if (first) logOutage(reason);
    throw StoreUnavailable(name() + ": " + reason);
  }

  // With `mu` held. True when this failure starts an outage (rather than
  // prolonging one): the caller logs it, once.
  bool startOutage(const std::string& reason) {
    retryAt = SteadyClock::now() + options.retryInterval;
    downReason = reason;
    if (down) return false;
    down = true;
    ++generation;
    open -= idle.size();
    idle.clear();
    return true;
  }

  void logOutage(const std::string& reason) const {
    log::message(log::Level::Warning, name() + " unavailable: " + reason + "; calls fail at once for " +
                                          std::to_string(options.retryInterval.count()) +
                                          " ms, then a reconnect is tried");
  }

  // ---------------------------------------------------------- connections

  std::string contextError(const redisContext* ctx) const {
    if (ctx == nullptr) return "cannot allocate a hiredis context";
#ifdef REDIS_ERR_TIMEOUT
    if (ctx->err == REDIS_ERR_TIMEOUT) return "timed out after " + std::to_string(options.ioTimeout.count()) + " ms";
#endif
    // hiredis 0.14 reports a read or write past SO_RCVTIMEO/SO_SNDTIMEO as
    // an I/O error with strerror(EAGAIN).
    if (ctx->err == REDIS_ERR_IO && (std::strcmp(ctx->errstr, std::strerror(EAGAIN)) == 0 ||
                                     std::strcmp(ctx->errstr, std::strerror(EWOULDBLOCK)) == 0)) {
      return "timed out after " + std::to_string(options.ioTimeout.count()) + " ms";
    }
    if (ctx->err == REDIS_ERR_EOF) return "connection closed by the server";
    if (ctx->err == REDIS_ERR_PROTOCOL) return std::string("protocol error: ") + ctx->errstr;
    return ctx->errstr[0] != '\0' ? std::string(ctx->errstr) : "unknown hiredis error";
  }

  // A new context: connected, timeouts set, authenticated, database
  // selected, scripts loaded — the handshake in one pipelined round trip.
  ConnPtr connect() {
    if (!endpoint) throw ConnectionError("malformed address");
    const timeval ct = toTimeval(options.connectTimeout);
    // hiredis sets TCP_NODELAY itself on TCP connections (checked on 0.14),
    // so a request is never held back by Nagle's algorithm.
    // XXX: a host name is resolved by a blocking getaddrinfo() that the
    // connect timeout does not bound; give an IP address or a socket.
    redisContext* raw = endpoint->unixSocket ? redisConnectUnixWithTimeout(endpoint->path.c_str(), ct)
                                             : redisConnectWithTimeout(endpoint->host.c_str(), endpoint->port, ct);
    auto c = std::make_unique<Conn>();
    c->ctx.reset(raw);
    if (raw == nullptr || raw->err) throw ConnectionError("connect: " + contextError(raw));
    // SO_SNDTIMEO/SO_RCVTIMEO: bound every write, and the reads of the
    // handshake below; command() waits for a reply in poll() instead.
    if (redisSetTimeout(raw, toTimeval(options.ioTimeout)) != REDIS_OK) {
      throw ConnectionError("setting timeouts: " + contextError(raw));
    }

    std::vector<std::string_view> what;  // one label per pipelined command
    if (!options.password.empty()) {
      if (options.username.empty()) {
        append(raw, std::array<std::string_view, 2>{"AUTH", options.password});
      } else {
        append(raw, std::array<std::string_view, 3>{"AUTH", options.username, options.password});
      }
      what.push_back("AUTH");
    }
    std::string db = std::to_string(options.database);
    if (options.database != 0) {
      append(raw, std::array<std::string_view, 2>{"SELECT", db});
      what.push_back("SELECT");
    }
    for (auto script : kScripts) {
      append(raw, std::array<std::string_view, 3>{"SCRIPT", "LOAD", script});
      what.push_back("SCRIPT LOAD");
    }
    std::size_t nextScript = 0;
    for (auto label : what) {
      void* out = nullptr;
      if (redisGetReply(raw, &out) != REDIS_OK) throw ConnectionError(std::string(label) + ": " + contextError(raw));
      ReplyPtr r(static_cast<redisReply*>(out));
      if (isError(*r)) throw ConnectionError(std::string(label) + " refused: " + std::string(replyText(*r)));
      if (label == "SCRIPT LOAD") {
        if (r->type != REDIS_REPLY_STRING) throw ConnectionError("SCRIPT LOAD: unexpected reply");
        c->sha[nextScript++] = std::string(replyText(*r));
      }
    }
    return c;
  }

  // Queues a command for the handshake's single write.
  static void append(redisContext* ctx, std::span<const std::string_view> args) {
    Argv a(args);
    if (redisAppendCommandArgv(ctx, a.count, a.ptr.data(), a.len.data()) != REDIS_OK) {
      throw ConnectionError("out of memory");
    }
  }

  // One command, one round trip, within ioTimeout. Throws ConnectionError
  // when the context failed; an error reply is returned for the caller to
  // judge.
  //
  // This is redisCommandArgv() taken apart to wait for the reply in poll()
  // instead of in read(). On a unix socket, every time Redis consumes a
  // request the kernel wakes whoever sleeps on the sender's socket to say
  // that there is write space again — and a thread blocked in read() sleeps
  // there and wakes for nothing, twice the context switches per call, paid
  // partly on Redis's own CPU (12 % of it in bench/ratelimit_redis_bench.cpp).
  // poll(POLLIN) is only woken for input.
  ReplyPtr command(Conn& c, std::span<const std::string_view> args) {
    redisContext* ctx = c.ctx.get();
    Argv a(args);
    if (redisAppendCommandArgv(ctx, a.count, a.ptr.data(), a.len.data()) != REDIS_OK) {
      throw ConnectionError(contextError(ctx));
    }
    int done = 0;
    while (done == 0) {
      if (redisBufferWrite(ctx, &done) != REDIS_OK) throw ConnectionError(contextError(ctx));
    }
    const auto deadline = SteadyClock::now() + options.ioTimeout;
    for (;;) {
      void* out = nullptr;
      if (redisGetReplyFromReader(ctx, &out) != REDIS_OK) throw ConnectionError(contextError(ctx));
      if (out != nullptr) return ReplyPtr(static_cast<redisReply*>(out));
      const auto left = std::chrono::ceil<milliseconds>(deadline - SteadyClock::now()).count();
      pollfd p{ctx->fd, POLLIN, 0};
      const int ready = left > 0 ? ::poll(&p, 1, static_cast<int>(left)) : 0;
      if (ready == 0) throw ConnectionError("timed out after " + std::to_string(options.ioTimeout.count()) + " ms");
      if (ready < 0) {
        if (errno == EINTR) continue;
        throw ConnectionError(std::string("poll: ") + std::strerror(errno));
      }
      if (redisBufferRead(ctx) != REDIS_OK) throw ConnectionError(contextError(ctx));
    }
  }

  // EVALSHA, or EVAL when the server has lost the script (which also
  // caches it again). keysAndArgs: numkeys, keys, args.
  ReplyPtr script(Conn& c, Script s, std::span<const std::string_view> keysAndArgs) {
    if (keysAndArgs.size() + 2 > Argv::kMax) throw std::logic_error("redis script with too many arguments");
    std::array<std::string_view, Argv::kMax> argv{};
    argv[0] = "EVALSHA";
    argv[1] = c.sha[s];
    std::copy(keysAndArgs.begin(), keysAndArgs.end(), argv.begin() + 2);
    const std::span<const std::string_view> all(argv.data(), keysAndArgs.size() + 2);
    ReplyPtr r = command(c, all);
    if (isError(*r) && replyText(*r).starts_with("NOSCRIPT")) {
      argv[0] = "EVAL";
      argv[1] = kScripts[s];
      r = command(c, all);
    }
    return r;
  }

  // Runs `f(conn)` on a pooled connection. A ConnectionError drops the
  // connection and starts an outage; an error reply (WRONGTYPE, OOM, a
  // read-only replica) leaves the connection pooled: the server answered.
  template <typename F>
  auto with(F&& f) {
    ConnPtr c = acquire();
    ReplyPtr r;
    try {
      r = f(*c);
    } catch (const ConnectionError& e) {
      fail(std::move(c), e.what());
    } catch (...) {
      discard(std::move(c));  // bad_alloc halfway through a command: Redis is fine, the context is not
      throw;
    }
    release(std::move(c));
    if (isError(*r)) throw StoreUnavailable(name() + ": " + std::string(replyText(*r)));
    return r;
  }

  std::string redisKey(std::string_view key) const {
    std::string k;
    k.reserve(options.prefix.size() + key.size());
    k += options.prefix;
    k += key;
    return k;
  }
};

// ----------------------------------------------------------------- RedisStore

RedisStore::RedisStore(RedisOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

RedisStore::~RedisStore() = default;

Check RedisStore::hit(std::string_view key, const Limit& limit, std::uint32_t n, TimePoint now, Ticket* ticket) {
  if (ticket != nullptr) *ticket = Ticket{std::string(key), 0, 0};
  // No limit: nothing to count, no round trip (and no failure when Redis is
  // down).
  if (limit.max == 0) return Check{};
  const std::int64_t nowMs = toMs(now);
  const std::int64_t width = widthMs(limit);
  const std::int64_t penalty = limit.penalty.count();
  const std::string k = impl_->redisKey(key);
  const std::int64_t bucket = bucketOf(nowMs, width);
  const std::string a1 = std::to_string(nowMs), a2 = std::to_string(bucket),
                    a3 = std::to_string(bucket - oldestOf(limit, nowMs, width)), a4 = std::to_string(width),
                    a5 = std::to_string(n), a6 = std::to_string(limit.max),
                    a7 = std::to_string(penalty > 0 ? nowMs + penalty : 0), a8 = std::to_string(penalty),
                    a9 = std::to_string(kBuckets), a10 = std::to_string(floorMod(bucket, kRing));
  auto r = impl_->with([&](Impl::Conn& c) {
    const std::array<std::string_view, 12> args{"1", k, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10};
    return impl_->script(c, kHitScript, args);
  });
  const auto v = integers<4>(*r);  // allowed, usage, penalty end, bucket counted in
  if (!v) throw StoreUnavailable(impl_->name() + ": unexpected reply to the hit script");
  Check out;
  out.allowed = (*v)[0] != 0;
  out.count = static_cast<std::uint64_t>(std::max<std::int64_t>((*v)[1], 0));
  if ((*v)[2] != 0) out.penaltyUntil = TimePoint(milliseconds((*v)[2]));
  if (ticket != nullptr && out.allowed && n > 0) {
    ticket->bucket = (*v)[3];
    ticket->n = n;
  }
  return out;
}

void RedisStore::giveBack(const Ticket& ticket, const Limit& limit) {
  if (ticket.n == 0) return;
  const std::string k = impl_->redisKey(ticket.key);
  const std::string b = std::to_string(ticket.bucket), n = std::to_string(ticket.n),
                    w = std::to_string(widthMs(limit)), buckets = std::to_string(kBuckets);
  impl_->with([&](Impl::Conn& c) {
    const std::array<std::string_view, 6> args{"1", k, b, n, w, buckets};
    return impl_->script(c, kGiveBackScript, args);
  });
}

bool RedisStore::remember(std::string_view key, std::chrono::milliseconds ttl, TimePoint /*now*/) {
  // Redis expires the entry in its own time; `now` is not needed. A TTL of
  // zero remembers nothing (PX 0 is an error to Redis).
  if (ttl.count() <= 0) return true;
  const std::string k = impl_->redisKey(key);
  const std::string px = std::to_string(ttl.count());
  auto r = impl_->with([&](Impl::Conn& c) {
    const std::array<std::string_view, 6> args{"SET", k, "1", "NX", "PX", px};
    return impl_->command(c, args);
  });
  return r->type == REDIS_REPLY_STATUS;  // +OK when set, nil when it existed
}

bool RedisStore::remembered(std::string_view key, TimePoint /*now*/) {
  const std::string k = impl_->redisKey(key);
  auto r = impl_->with([&](Impl::Conn& c) {
    const std::array<std::string_view, 2> args{"EXISTS", k};
    return impl_->command(c, args);
  });
  return r->type == REDIS_REPLY_INTEGER && r->integer > 0;
}

Usage RedisStore::usage(std::string_view key, const Limit& limit, TimePoint now) {
  const std::string k = impl_->redisKey(key);
  const std::string a1 = std::to_string(toMs(now)), a2 = std::to_string(limit.window.count()),
                    a3 = std::to_string(widthMs(limit)), a4 = std::to_string(kBuckets);
  auto r = impl_->with([&](Impl::Conn& c) {
    const std::array<std::string_view, 6> args{"1", k, a1, a2, a3, a4};
    return impl_->script(c, kUsageScript, args);
  });
  const auto v = integers<2>(*r);  // usage, penalty end
  if (!v) throw StoreUnavailable(impl_->name() + ": unexpected reply to the usage script");
  Usage u;
  u.count = static_cast<std::uint64_t>(std::max<std::int64_t>((*v)[0], 0));
  if ((*v)[1] != 0) u.penaltyUntil = TimePoint(milliseconds((*v)[1]));
  return u;
}

bool RedisStore::reset(std::string_view key) {
  // Counter, buckets and penalty are one hash, and a remembered entry has
  // the same name: one DEL removes all of them.
  const std::string k = impl_->redisKey(key);
  auto r = impl_->with([&](Impl::Conn& c) {
    const std::array<std::string_view, 2> args{"DEL", k};
    return impl_->command(c, args);
  });
  return r->type == REDIS_REPLY_INTEGER && r->integer > 0;
}

void RedisStore::ping() {
  auto r = impl_->with([&](Impl::Conn& c) {
    const std::array<std::string_view, 1> args{"PING"};
    return impl_->command(c, args);
  });
  if (r->type != REDIS_REPLY_STATUS || replyText(*r) != "PONG") {
    throw StoreUnavailable(impl_->name() + ": unexpected reply to PING");
  }
}

}  // namespace sekimori::ratelimit
