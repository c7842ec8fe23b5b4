// common/notify/outbox.cpp — see outbox.h.
#include "common/notify/outbox.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <filesystem>

#include "common/notify/spoolfile.h"
#include "common/util/files.h"

namespace sekimori::notify {

namespace {
constexpr const char* kNotSent = "not sent: still queued when the milter stopped";
constexpr const char* kKeptUntried = "not sent before the milter stopped; kept in the spool for its next start";

using Millis = std::chrono::milliseconds;

std::int64_t unixMillis(Outbox::Clock::time_point t) {
  const auto wall = std::chrono::system_clock::now() +
                    std::chrono::duration_cast<std::chrono::system_clock::duration>(t - Outbox::Clock::now());
  return std::chrono::duration_cast<Millis>(wall.time_since_epoch()).count();
}

// Within a year of now, whatever the file said.
Outbox::Clock::time_point steadyOf(std::int64_t unixMs) {
  constexpr std::int64_t kYear = 366LL * 24 * 3600 * 1000;
  const std::int64_t now = std::chrono::duration_cast<Millis>(std::chrono::system_clock::now().time_since_epoch()).count();
  return Outbox::Clock::now() + Millis(std::clamp(unixMs, now - kYear, now + kYear) - now);
}
}  // namespace

std::chrono::milliseconds Outbox::Retry::delay(int tries) const {
  using std::chrono::milliseconds;
  const milliseconds first = std::max(after, milliseconds(10));  // never a busy loop on a dead relay
  const milliseconds cap = std::max<milliseconds>(first, std::chrono::minutes(15));
  milliseconds d = first;
  for (int i = 1; i < tries && d < cap; ++i) d *= 2;
  return std::min(d, cap);
}

void Outbox::start() { start(Spool{}); }

void Outbox::start(Spool spool, Refresh refresh) {
  std::lock_guard lock(mutex_);
  if (thread_.joinable()) return;
  spool_ = std::move(spool);
  refresh_ = std::move(refresh);
  if (!spool_.dir.empty()) {
    // One outbox per spool: another process's batches are its own to send.
    const std::string lockPath = spool_.dir + "/.lock";
    spoolLock_ = ::open(lockPath.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (spoolLock_ < 0 || flock(spoolLock_, LOCK_EX | LOCK_NB) != 0) {
      const std::string why = spoolLock_ < 0 ? util::errnoText("cannot open " + lockPath)
                                             : spool_.dir + " is in use by another process";
      if (spoolLock_ >= 0) close(spoolLock_);
      spoolLock_ = -1;
      if (spool_.problem) spool_.problem(why + "; warning mails not yet sent are kept in memory only");
      spool_.dir.clear();
    }
  }
  if (!spool_.dir.empty()) load();
  running_ = true;
  stopping_ = false;
  thread_ = std::thread([this] { run(); });
}

// With mutex_ held, before the thread starts: the spool's batches, oldest
// (by name) first, into retries_.
void Outbox::load() {
  namespace fs = std::filesystem;
  const auto problem = [this](const std::string& what) {
    if (spool_.problem) spool_.problem(what);
  };
  std::error_code ec;
  std::vector<std::string> names;
  for (fs::directory_iterator it(spool_.dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.starts_with(".") && name.ends_with(".tmp")) {
      fs::remove(it->path(), ec);  // a write cut short by a crash; the batch it replaced is still there
      ec.clear();
    } else if (name.ends_with(kSpooledSuffix) && !name.starts_with(".")) {
      names.push_back(name);
    }
  }
  if (ec) {
    problem("cannot read the outbox spool " + spool_.dir + ": " + ec.message());
    return;
  }
  std::sort(names.begin(), names.end());
  std::size_t left = 0;
  for (const auto& name : names) {
    const std::string path = spool_.dir + "/" + name;
    std::string why;
    SpooledBatch st;
    // Never more than the outbox holds (and some room for the fields).
    if (!readSpooled(path, maxBytes_ + 65536, &st, &why)) {
      const std::string bad = path + ".bad";
      problem("spooled warning mails " + path + ": " + why + "; renamed to " + bad +
              (rename(path.c_str(), bad.c_str()) == 0 ? "" : " failed (" + util::errnoText("rename") + ")"));
      continue;
    }
    const std::size_t bytes = bytesOf(st.batch);
    if (queuedBytes_ + bytes > maxBytes_) {
      ++left;
      continue;
    }
    if (spool_.recovered) st.batch.report = spool_.recovered(st.batch);
    if (refresh_) refresh_(st.batch.settings, st.batch.retry);
    Pending p{std::move(st.batch), st.tries, {}, {}, path};
    const auto now = Clock::now();
    p.first = std::min(steadyOf(st.first), now);
    p.due = std::clamp(steadyOf(st.due), now, now + p.batch.retry.delay(p.tries));
    queuedBytes_ += bytes;
    retries_.push_back(std::move(p));
  }
  if (left > 0) {
    problem(std::to_string(left) + " spooled batches of warning mails in " + spool_.dir +
            " are left for a later start: they would take the outbox past its bound");
  }
}

void Outbox::keep(Pending& p) {
  if (spool_.dir.empty()) return;
  std::string why;
  if (p.batch.items.empty()) {
    if (!p.file.empty() && unlink(p.file.c_str()) != 0 && errno != ENOENT) {
      if (spool_.problem) spool_.problem(util::errnoText("cannot remove " + p.file));
    }
    return;
  }
  std::string file = p.file;
  if (file.empty()) {
    // Named by the time it was first kept: a start loads the oldest first.
    char name[64];
    std::snprintf(name, sizeof name, "%013lld-%d-%u", static_cast<long long>(unixMillis(Clock::now())),
                  static_cast<int>(getpid()), ++spoolSerial_);  // atomic: post() and the thread both name files
    file = spool_.dir + "/" + name + std::string(kSpooledSuffix);
  }
  if (util::replaceFile(file, encodeSpooled({p.batch, p.tries, unixMillis(p.first), unixMillis(p.due)}), &why)) {
    p.file = std::move(file);
  } else if (spool_.problem) {
    spool_.problem(why + (p.file.empty() ? " (the warning mails wait in memory only)"
                                         : " (the file keeps the state of an earlier try)"));
  }
}

std::size_t Outbox::bytesOf(const Batch& b) {
  std::size_t n = 0;
  for (const auto& i : b.items) n += i.data.size();
  return n;
}

void Outbox::post(Batch b) {
  const char* reason = nullptr;
  bool relayFailing = false;
  {
    std::lock_guard lock(mutex_);
    const std::size_t bytes = bytesOf(b);
    if (running_ && queuedBytes_ + bytes <= maxBytes_) {
      queuedBytes_ += bytes;
      const auto now = Clock::now();
      Pending p{std::move(b), 0, now, now, {}};
      // On disk before the caller goes on: a crash or a kill from here on
      // does not lose it. Under the lock, so that a stop() cannot slip in
      // between the file and the queue (rare: one per infected message).
      keep(p);
      queue_.push_back(std::move(p));
      wake_.notify_one();
      return;
    }
    reason = running_ ? "the outbox is full" : "the outbox is not running";
    relayFailing = running_ && !retries_.empty();
  }
  if (relayFailing) {
    // Full, and mails wait for a retry: the relay is failing, and a try
    // here would most likely fail too, after up to its timeout per mail,
    // in the caller's thread (a milter's end of message). Not tried.
    for (const auto& item : b.items) {
      if (b.report) b.report(item, Result{Outcome::Failed, "not sent: the outbox is full of mails waiting for a retry", 0, {}});
    }
    return;
  }
  attempt(Pending{std::move(b), 0, {}, {}, {}}, [] { return false; }, [reason] { return reason; });
}

void Outbox::retryNow() {
  {
    std::lock_guard lock(mutex_);
    const auto now = Clock::now();
    for (auto& p : retries_) p.due = std::min(p.due, now);
    ++retryNows_;  // and the batch being tried, once its try is over
  }
  wake_.notify_all();
}

std::size_t Outbox::queued() const {
  std::lock_guard lock(mutex_);
  return queue_.size();
}

std::size_t Outbox::deferred() const {
  std::lock_guard lock(mutex_);
  return retries_.size();
}

Outbox::Pending Outbox::attempt(Pending p, const std::function<bool()>& giveUp,
                                const std::function<const char*()>& noRetry, bool keepUntried) {
  const Batch& b = p.batch;
  if (p.tries++ == 0) p.first = Clock::now();
  const Clock::time_point last = p.first + b.retry.within;  // no try after it
  Pending rest{Batch{b.settings, b.retry, {}, b.report, b.origin}, p.tries, p.first, {}, p.file};
  Submitter out(b.settings);  // one SMTP session for the batch
  bool tried = false;    // an item of this batch, now
  bool untried = false;  // an item given up on, to be kept
  for (auto& item : p.batch.items) {
    Result r;
    r.tries = p.tries;
    if (giveUp()) {  // and it stays so: the items after this one are not tried either
      r.outcome = keepUntried ? Outcome::Deferred : Outcome::Failed;
      r.error = keepUntried ? kKeptUntried : kNotSent;
      if (!tried) r.tries = p.tries - 1;  // this try was not made
      untried = untried || keepUntried;
    } else {
      tried = true;
      bool temporary = false;
      if (out.submit(item.to, item.data, &r.error, &temporary)) {
        r.error.clear();
      } else {
        r.outcome = Outcome::Failed;
        const auto now = Clock::now();
        if (temporary && now < last) {
          if (const char* why = noRetry()) {
            r.error += std::string(" (not retried: ") + why + ")";
          } else {
            r.outcome = Outcome::Deferred;
            r.retryIn = std::min(b.retry.delay(p.tries),
                                 std::chrono::duration_cast<std::chrono::milliseconds>(last - now));
          }
        }
      }
    }
    if (b.report) b.report(item, r);
    if (r.outcome == Outcome::Deferred) rest.batch.items.push_back(std::move(item));
  }
  // Kept untried by a stop: due as soon as the outbox starts again (a batch
  // never tried starts its retry window then).
  if (untried && !tried) rest.tries = p.tries - 1;
  rest.due = untried ? Clock::now() : std::min(Clock::now() + b.retry.delay(p.tries), last);
  return rest;
}

bool Outbox::pastDeadline() const {
  std::lock_guard lock(mutex_);
  return stopping_ && Clock::now() >= deadline_;
}

const char* Outbox::noRetryReason() const {
  std::lock_guard lock(mutex_);
  return stopping_ && spool_.dir.empty() ? "the milter is stopping" : nullptr;
}

void Outbox::run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    // The next batch: the oldest posted, else a retry that is due — every
    // retry is, once stop() has begun, unless the spool keeps them for the
    // next start.
    const bool spooling = !spool_.dir.empty();
    const auto soonest = std::min_element(retries_.begin(), retries_.end(),
                                          [](const Pending& a, const Pending& b) { return a.due < b.due; });
    Pending next;
    if (!queue_.empty()) {
      next = std::move(queue_.front());
      queue_.pop_front();
    } else if (soonest != retries_.end() && (stopping_ ? !spooling : soonest->due <= Clock::now())) {
      next = std::move(*soonest);
      retries_.erase(soonest);
    } else if (stopping_) {
      // Nothing left to try. The spool's batches stay in their files for
      // the next start; one whose file could not be written has a last
      // chance here.
      std::vector<Pending> unfiled;
      for (auto& p : retries_) {
        if (p.file.empty()) unfiled.push_back(std::move(p));
      }
      retries_.clear();
      queuedBytes_ = 0;
      lock.unlock();
      for (auto& p : unfiled) {
        keep(p);
        if (p.file.empty() && spool_.problem) {
          spool_.problem(std::to_string(p.batch.items.size()) + " warning mails of " + p.batch.origin +
                         " are lost: they could not be kept in the spool");
        }
      }
      return;
    } else {
      if (soonest == retries_.end()) {
        wake_.wait(lock);
      } else {
        const Clock::time_point due = soonest->due;
        wake_.wait_until(lock, due);
      }
      continue;
    }
    const std::size_t bytes = bytesOf(next.batch);
    const unsigned retryNows = retryNows_;  // a retryNow() during this try applies to its rest too
    lock.unlock();
    if (refresh_) refresh_(next.batch.settings, next.batch.retry);
    // Past stop()'s deadline the rest is reported, not tried: a dead relay
    // would otherwise cost a timeout per mail.
    Pending rest = attempt(
        std::move(next), [this] { return pastDeadline(); }, [this] { return noRetryReason(); }, spooling);
    keep(rest);
    lock.lock();
    queuedBytes_ -= bytes;
    if (!rest.batch.items.empty()) {
      queuedBytes_ += bytesOf(rest.batch);
      if (retryNows_ != retryNows) rest.due = std::min(rest.due, Clock::now());
      retries_.push_back(std::move(rest));
    }
  }
}

void Outbox::stop(std::chrono::milliseconds deadline) {
  std::thread t;
  {
    std::lock_guard lock(mutex_);
    if (!thread_.joinable()) return;
    running_ = false;  // posts from now on are sent by their callers
    stopping_ = true;
    deadline_ = Clock::now() + deadline;
    t = std::move(thread_);
  }
  wake_.notify_all();
  t.join();
  if (spoolLock_ >= 0) close(spoolLock_);  // the next start (of this process or another) takes it
  spoolLock_ = -1;
}

}  // namespace sekimori::notify
