// common/notify/issued.cpp — see issued.h.
#include "common/notify/issued.h"

#include "common/util/strings.h"

namespace sekimori::notify {

void IssuedIds::add(std::string id, Clock::time_point now) {
  id = std::string(util::trim(id));
  if (id.empty() || max_ == 0) return;
  std::lock_guard lock(mutex_);
  prune(now);
  while (ids_.size() >= max_ && !order_.empty()) {  // full: the oldest go
    if (live(order_.front())) ids_.erase(order_.front().second);
    order_.pop_front();
  }
  ids_[id] = now;
  order_.emplace_back(now, std::move(id));
}

bool IssuedIds::take(std::string_view id, Clock::time_point now) {
  id = util::trim(id);
  if (id.empty()) return false;
  std::lock_guard lock(mutex_);
  prune(now);
  const auto it = ids_.find(std::string(id));
  if (it == ids_.end()) return false;
  ids_.erase(it);  // its entry in order_ goes when it comes to the front
  return true;
}

std::size_t IssuedIds::size() const {
  std::lock_guard lock(mutex_);
  return ids_.size();
}

std::size_t IssuedIds::bookkeeping() const {
  std::lock_guard lock(mutex_);
  return order_.size();
}

bool IssuedIds::live(const Entry& e) const {
  const auto it = ids_.find(e.second);
  return it != ids_.end() && it->second == e.first;
}

void IssuedIds::prune(Clock::time_point now) {
  while (!order_.empty() && now - order_.front().first >= ttl_) {
    if (live(order_.front())) ids_.erase(order_.front().second);
    order_.pop_front();
  }
  // Taken ids leave entries behind: once they outnumber the live ones, the
  // deque is rebuilt from the live ones (amortised O(1) per add).
  if (order_.size() > 2 * max_ + 16) {
    std::deque<Entry> kept;
    for (auto& e : order_) {
      if (live(e)) kept.push_back(std::move(e));
    }
    order_.swap(kept);
  }
}

}  // namespace sekimori::notify
