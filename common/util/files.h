// common/util/files.h — small POSIX file helpers for the state a milter
// keeps on disk (quarantine, spooled warning mails): private directories,
// whole writes and reads, a file replaced in one step.
//
//   std::string why;
//   if (!util::preparePrivateDir("/var/lib/sekimori/outbox", "outbox", &why)) fail(why);
//   if (!util::replaceFile(dir + "/x.batch", bytes, &why)) log(why);
#pragma once

#include <string>
#include <string_view>

namespace sekimori::util {

// "what: strerror(errno)".
std::string errnoText(std::string_view what);

// Writes all of `data` (retrying short writes and EINTR). False with errno set.
bool writeAll(int fd, std::string_view data);

// Appends the whole of an open file, read from offset 0, to *text. False on
// a read error (errno set).
bool readWhole(int fd, std::string* text);

// Makes `dir` (an absolute path) if missing — its parents as mkdir -p would,
// the directory itself mode 0700 — and checks that it is a directory no
// other user can enter. False with *error saying so, naming it as `what`
// ("quarantine directory ...").
bool preparePrivateDir(const std::string& dir, std::string_view what, std::string* error);

// Replaces (or creates) `path` with `data` in one step: written to a temp
// file beside it (mode 0600), flushed to disk, renamed over `path`, the
// directory flushed. A crash leaves the old file or the new one, never half
// of one (at worst a stray ".NAME.tmp" that the next replaceFile of the same
// path overwrites). False with *error on failure; `path` is then unchanged.
bool replaceFile(const std::string& path, std::string_view data, std::string* error);

}  // namespace sekimori::util
