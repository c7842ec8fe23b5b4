// milters/ratelimit/redis_store.h — counters in Redis, shared by every MX
// host of a cluster (R-RATE-7). Each call is one round trip (a Lua script,
// loaded once per connection with SCRIPT LOAD and run with EVALSHA).
//
// hiredis writes with write(2): a program using RedisStore must ignore
// SIGPIPE (the milter daemon does), or a vanished server kills it. Give
// redis_address as an IP address or a unix socket: a host name is resolved
// by a blocking lookup that connectTimeout does not bound.
#pragma once
#include <chrono>
#include <memory>
#include <string>

#include "milters/ratelimit/store.h"

namespace sekimori::ratelimit {

struct RedisOptions {
  // "127.0.0.1:6379", "[::1]:6379", "localhost:6379" or "unix:/run/redis/redis.sock".
  std::string address = "127.0.0.1:6379";
  std::string password;  // AUTH when not empty
  std::string username;  // ACL user (Redis 6+); empty: AUTH password only
  int database = 0;      // SELECT when not 0
  std::chrono::milliseconds connectTimeout{500};
  std::chrono::milliseconds ioTimeout{500};
  // After a failure, calls fail at once (StoreUnavailable) for this long
  // before a reconnect is tried, so an outage costs no time per message.
  std::chrono::milliseconds retryInterval{1000};
  std::string prefix = "sekimori:rl:";  // prepended to every key
  std::size_t maxConnections = 32;       // pooled; callers beyond wait
};

// Parses an address as above; false on a malformed one.
bool validRedisAddress(const std::string& address);

class RedisStore final : public Store {
 public:
  explicit RedisStore(RedisOptions options);
  ~RedisStore() override;

  // All throw StoreUnavailable when Redis cannot answer within the timeouts.
  Check hit(std::string_view key, const Limit& limit, std::uint32_t n, TimePoint now,
            Ticket* ticket = nullptr) override;
  void giveBack(const Ticket& ticket, const Limit& limit) override;
  bool remember(std::string_view key, std::chrono::milliseconds ttl, TimePoint now) override;
  bool remembered(std::string_view key, TimePoint now) override;
  Usage usage(std::string_view key, const Limit& limit, TimePoint now) override;
  bool reset(std::string_view key) override;
  std::string_view kind() const override { return "redis"; }

  // Connects once (for start-up checks and tests); throws StoreUnavailable.
  void ping();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sekimori::ratelimit
