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
//   q.trim(1ULL << 30, 900ULL << 20, &why);  // over 1 GiB: the oldest go until 900 MiB are left
//   for (auto& r : *q.list(&why)) ...;                            // what is held
//   q.remove({"20261124T093000Z-4cKq...-0123456789abcdef.eml"}, &why);
#pragma once

#include <chrono>
#include <cstdint>
#include <ctime>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>
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

// One entry as list() finds it: its file, its index line, or both.
struct QuarantineRecord {
  std::string id;     // the file name: STAMP-QUEUEID-RANDOM.eml
  std::string stamp;  // when it was stored, as stamp() writes it
  QuarantineEntry entry;  // from the index line; empty when not indexed
  bool indexed = false;   // index.tsv has a line for it
  bool held = false;      // the file is there
  std::uint64_t size = 0; // of the file
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

  // A cap on the disk an outbreak can take: when the entry files take more
  // than `maxBytes` together, the oldest entries are removed until they take
  // at most `downTo` (<= maxBytes; below it, the next store does not start
  // another round at once). Returns how many went and the bytes left;
  // nullopt + error as expire() does.
  struct Trimmed {
    std::size_t removed = 0;
    std::uint64_t bytesLeft = 0;
  };
  std::optional<Trimmed> trim(std::uint64_t maxBytes, std::uint64_t downTo, std::string* error) const;

  // Every entry, oldest first: those in the index (held or not: a file an
  // admin removed by hand) and entry files the index does not name (its
  // line lost, e.g. the disk filled up between file and line). nullopt +
  // error when the directory or the index cannot be read.
  std::optional<std::vector<QuarantineRecord>> list(std::string* error) const;

  // Removes these entries (ids as list() gives them): files and index
  // lines, as expire() does. Returns how many files went; an id that is
  // not an entry's name is refused (error) before anything is removed.
  std::optional<std::size_t> remove(const std::set<std::string>& ids, std::string* error) const;

  // The UTC time stamp entries are named and indexed by: 20261124T093000Z.
  static std::string stamp(std::time_t t);
  // Whether `name` is an entry's file name as store() makes them (so it
  // names a file in dir() and nothing outside it).
  static bool isEntryId(std::string_view name);


  const std::string& dir() const { return dir_; }

 private:
  // Removes the entry files whose ids `drop` picks and their index lines.
  std::optional<std::size_t> removeWhere(const std::function<bool(std::string_view id)>& drop,
                                         std::string* error) const;

  std::string dir_;
};

}  // namespace sekimori::store
