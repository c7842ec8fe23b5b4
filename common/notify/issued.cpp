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
    const auto it = ids_.find(order_.front().second);
    if (it != ids_.end() && it->second == order_.front().first) ids_.erase(it);
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

void IssuedIds::prune(Clock::time_point now) {
  // order_ also names ids already taken (or added again later): only an
  // entry whose time matches the map's is the live one.
  const auto live = [this](const std::pair<Clock::time_point, std::string>& e) {
    const auto it = ids_.find(e.second);
    return it != ids_.end() && it->second == e.first;
  };
  while (!order_.empty() && now - order_.front().first >= ttl_) {
    if (live(order_.front())) ids_.erase(order_.front().second);
    order_.pop_front();
  }
  // Taken ids leave entries behind: once they outnumber the live ones, the
  // deque is rebuilt from the live ones (amortised O(1) per add).
  if (order_.size() > 2 * max_ + 16) {
    std::deque<std::pair<Clock::time_point, std::string>> kept;
    for (auto& e : order_) {
      if (live(e)) kept.push_back(std::move(e));
    }
    order_.swap(kept);
  }
}

}  // namespace sekimori::notify
