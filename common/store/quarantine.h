// common/store/quarantine.h — the admin-only quarantine (R-AV-7): each held
// message is a file of its own (mode 0600, in a 0700 directory) and a line in
// index.tsv (0600) with when, the queue id, direction, reason, sender and
// recipients. Nothing here hands a message to an end user.
//
//   Quarantine q("/var/lib/sekimori/quarantine");
//   std::string why;
//   auto id = q.store(spool, {.queueId = "4cKq...", .direction = "inbound",
//                             .reason = "Eicar-Signature", .sender = "a@b", .recipients = {...}}, &why);
//   q.expire(std::chrono::days(30), std::time(nullptr), &why);  // older entries go
#pragma once

#include <chrono>
#include <ctime>
#include <optional>
#include <string>
#include <vector>

#include "common/mime/spool.h"

namespace sekimori::store {

struct QuarantineEntry {
  std::string queueId;
  std::string direction;
  std::string reason;  // virus names
  std::string sender;
  std::vector<std::string> recipients;
};

class Quarantine {
 public:
  explicit Quarantine(std::string dir) : dir_(std::move(dir)) {}

  // Creates the directory (0700) if missing; false + error if it cannot or
  // if it is accessible to others.
  bool prepare(std::string* error) const;

  // Copies the spool's bytes into a new file and appends the index line.
  // Returns the entry's id (its file name), nullopt + error on failure.
  std::optional<std::string> store(const mime::Spool& message, const QuarantineEntry& e, std::string* error) const;

  // Removes the entries stored more than `keep` before `now`: their files
  // and their index lines (the index is rewritten beside and renamed over
  // the old one, so a crash leaves one or the other whole). Files that are
  // not entries (other names) are left alone. Returns how many entries
  // went, nullopt + error when the directory or the index cannot be read
  // or written (some entries may have gone by then).
  std::optional<std::size_t> expire(std::chrono::seconds keep, std::time_t now, std::string* error) const;

  // The UTC time stamp entries are named and indexed by: 20261124T093000Z.
  static std::string stamp(std::time_t t);

  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
};

}  // namespace sekimori::store
