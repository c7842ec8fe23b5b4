// common/milter/session.cpp — see milter.h.
#include <atomic>
#include <charconv>

#include "common/milter/milter.h"
#include "common/util/strings.h"

namespace sekimori::milter {
namespace {
std::atomic<std::uint64_t> gLive{0};
std::atomic<std::uint64_t> gNextId{1};
std::atomic<bool> gRefusing{false};
}  // namespace

std::optional<std::uint64_t> Transaction::declaredSize() const {
  for (const auto& arg : mailArgs) {
    if (!util::istartsWith(arg, "SIZE=")) continue;
    const std::string_view digits = std::string_view(arg).substr(5);
    std::uint64_t n = 0;
    const auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
    if (ec == std::errc() && ptr == digits.data() + digits.size() && !digits.empty()) return n;
    // RFC 1870 allows only digits; a SIZE= too large to represent is larger
    // than any limit.
    if (ec == std::errc::result_out_of_range) return UINT64_MAX;
    return std::nullopt;
  }
  return std::nullopt;
}

Session::Session(const MacroSource& macros, std::shared_ptr<const CommonConfig> common)
    : macros_(&macros), connCommon_(std::move(common)) {
  connectionId = gNextId.fetch_add(1, std::memory_order_relaxed);
  counted_ = !gRefusing.load();
  if (counted_) gLive.fetch_add(1, std::memory_order_relaxed);
}

Session::~Session() {
  endTransaction();
  if (counted_) gLive.fetch_sub(1, std::memory_order_relaxed);
}

std::uint64_t Session::live() { return gLive.load(std::memory_order_relaxed); }
void Session::refuseNew() { gRefusing = true; }

const std::string& Session::queueId() {
  if (queueId_.empty()) {
    if (const auto id = macros_->get("i"); id && !id->empty()) queueId_ = std::string(*id);
  }
  return queueId_;
}

Transaction& Session::txn() {
  if (!txn_) beginTransaction(connCommon_);
  return *txn_;
}

void Session::beginTransaction(std::shared_ptr<const CommonConfig> common) {
  endTransaction();
  if (common) connCommon_ = common;
  txn_ = std::make_unique<Transaction>();
  txn_->common = connCommon_;
  ++messagesInConnection;
}

void Session::endTransaction() {
  state_.reset();
  stateType_ = nullptr;
  txn_.reset();
  queueId_.clear();
}

bool Session::authenticated() { return !txn().authUser.empty(); }

policy::Direction Session::direction() {
  auto& t = txn();
  static const CommonConfig kEmpty{};
  const CommonConfig& c = t.common ? *t.common : kEmpty;
  return policy::classify(c.direction, !t.authUser.empty(), clientAddr, t.recipients);
}

}  // namespace sekimori::milter
