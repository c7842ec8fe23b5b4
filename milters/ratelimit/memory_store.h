// milters/ratelimit/memory_store.h — counters in this process (the default
// backend): sharded by key hash, one mutex per shard, bounded.
#pragma once
#include <cstddef>
#include <memory>

#include "milters/ratelimit/store.h"

namespace sekimori::ratelimit {

struct MemoryStoreOptions {
  // Most keys held (counters, penalties and remembered loop-guard entries
  // together). Expired keys are dropped first; at the cap a new key is not
  // tracked (its hit is allowed) and one log line says so per minute.
  std::size_t maxKeys = 500000;
  std::size_t shards = 64;  // rounded up to a power of two
};

class MemoryStore final : public Store {
 public:
  explicit MemoryStore(MemoryStoreOptions options = {});
  ~MemoryStore() override;

  Check hit(std::string_view key, const Limit& limit, std::uint32_t n, TimePoint now,
            Ticket* ticket = nullptr) override;
  void giveBack(const Ticket& ticket, const Limit& limit) override;
  bool remember(std::string_view key, std::chrono::milliseconds ttl, TimePoint now) override;
  bool remembered(std::string_view key, TimePoint now) override;
  Usage usage(std::string_view key, const Limit& limit, TimePoint now) override;
  bool reset(std::string_view key) override;
  std::string_view kind() const override { return "memory"; }

  // Keys held now (for tests, status and the cap).
  std::size_t size() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sekimori::ratelimit
