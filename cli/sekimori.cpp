// sekimori — the admin command of the sekimori milters.
//
//   sekimori ratelimit status KEY [-s SOCKET]
//   sekimori ratelimit reset KEY [-s SOCKET]
//   sekimori quarantine list|show|remove|expire ... [-c FILE | -d DIR]
//   sekimori outbox list [-c FILE | -d DIR]
//
// ratelimit talks to a running milter over its control socket (a unix
// socket whose file permissions are the access control), so it works the
// same whatever backend holds the counters. quarantine works on the
// directory itself (the milter need not run); its permissions (0700, the
// milter's user) are the access control; so does outbox, read only.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include "common/config/units.h"
#include "common/config/values.h"
#include "common/control/control.h"
#include "common/milter/daemon.h"
#include "common/policy/address.h"
#include "common/policy/cidr.h"
#include "common/notify/spoolfile.h"
#include "common/store/quarantine.h"
#include "common/util/strings.h"
#include "milters/antivirus/antivirus_milter.h"

namespace {

constexpr const char* kUsage =
    "Usage: sekimori ratelimit status KEY [-s SOCKET]\n"
    "       sekimori ratelimit reset KEY [-s SOCKET]\n"
    "       sekimori quarantine list [-c FILE | -d DIR]\n"
    "       sekimori quarantine show ENTRY [-c FILE | -d DIR]\n"
    "       sekimori quarantine remove ENTRY... [-c FILE | -d DIR]\n"
    "       sekimori quarantine expire [AGE] [-c FILE | -d DIR]\n"
    "       sekimori outbox list [-c FILE | -d DIR]\n"
    "       sekimori --help | --version\n"
    "\n"
    "ratelimit: shows or clears one rate-limit counter of a running\n"
    "sekimori-ratelimit, whichever backend (memory or redis) holds it.\n"
    "\n"
    "KEY is KIND:VALUE:\n"
    "  sender:ADDRESS      recipients per window of an envelope sender      (s:)\n"
    "  recipient:ADDRESS   messages per window to a recipient               (r:)\n"
    "  client:IP           messages per window from a client address        (c:)\n"
    "  user:NAME           messages per window of an SMTP AUTH user         (u:)\n"
    "  domain:DOMAIN       messages per window of an envelope sender domain (d:)\n"
    "Addresses are normalised as the milter does (domain lowercased, <> removed).\n"
    "status prints: ok key=... count=N limit=N window=... penalised=yes|no [penalty_left=Ns]\n"
    "reset removes the counter and any penalty: the key starts afresh.\n"
    "\n"
    "  -s SOCKET   the milter's control socket, [control] socket in ratelimit.conf\n"
    "              (default " SEKIMORI_RUNDIR "/ratelimit.ctl)\n"
    "\n"
    "quarantine: the infected originals sekimori-antivirus kept (R-AV-7), for\n"
    "administrators only; it works on the directory, the milter need not run.\n"
    "  list        one line per entry, oldest first:\n"
    "                TIME  ENTRY  DIRECTION  SIZE  VIRUS  <SENDER> -> RECIPIENTS\n"
    "              then a total. An entry whose file is gone is marked [file\n"
    "              missing]; a file the index does not name, [not in index].\n"
    "  show        writes the held message, as received, to standard output\n"
    "              (e.g. | less, or > file to hand to an analyst).\n"
    "  remove      removes entries: their files and index lines.\n"
    "  expire      removes entries older than AGE (5d, 12h, 0 = all); without\n"
    "              AGE, applies [quarantine] keep and max_size as the milter\n"
    "              does every hour.\n"
    "ENTRY is an entry's id as list prints it (20261124T093000Z-QUEUEID-...eml),\n"
    "or a Postfix queue id as the milter's log names it, when one entry has it.\n"
    "Nothing here hands a held message to its recipients: release is not a\n"
    "command, by design (R-AV-7).\n"
    "\n"
    "outbox: the warning mails sekimori-antivirus has not sent yet ([notify]\n"
    "spool_dir): queued, or waiting for a retry because the relay turned them\n"
    "away for the time being; read only, the milter may be running (it sends\n"
    "them when due).\n"
    "  list        one line per infected message's batch, oldest first:\n"
    "                FIRST_TRY  FILE  QUEUEID  tries=N  next=TIME  via RELAY  -> ADDRESSES\n"
    "              then a total. RELAY is the one of the last try (not tried yet:\n"
    "              of the event); the next try uses [notify] as it is then. A file\n"
    "              the milter could not read is marked.\n"
    "\n"
    "  -c FILE     sekimori-antivirus's conf file, for [quarantine] dir, keep, max_size\n"
    "              and [notify] spool_dir (default " SEKIMORI_SYSCONFDIR "/antivirus.conf)\n"
    "  -d DIR      the quarantine (or outbox spool) directory itself (the conf file\n"
    "              is not read)\n"
    "\n"
    "Exit status: 0 done, 1 usage, key, entry or conf file error, 2 the milter\n"
    "could not be reached or answered with an error, or the quarantine (or the\n"
    "outbox spool) could not be read or changed.\n";

constexpr int kExitUsage = 1;
constexpr int kExitFailed = 2;

// "sender:Alice@Example.JP" -> "s:Alice@example.jp"; "" with `error` set.
std::string normaliseKey(const std::string& text, std::string* error) {
  const auto colon = text.find(':');
  if (colon == std::string::npos) {
    *error = "KEY must be KIND:VALUE, e.g. sender:alice@example.jp";
    return "";
  }
  const std::string kind = sekimori::util::toLowerAscii(text.substr(0, colon));
  const std::string value = text.substr(colon + 1);
  const auto address = [&](char prefix) -> std::string {
    const auto a = sekimori::policy::parseAddress(value);
    if (!a || a->isNull()) {
      *error = "not an address: '" + value + "'";
      return "";
    }
    return std::string{prefix, ':'} + a->str();
  };
  if (kind == "sender" || kind == "s") return address('s');
  if (kind == "recipient" || kind == "r") return address('r');
  if (kind == "client" || kind == "c") {
    const auto ip = sekimori::policy::IpAddress::parse(value);
    if (!ip) {
      *error = "not an IP address: '" + value + "'";
      return "";
    }
    return "c:" + ip->str();
  }
  if (kind == "user" || kind == "u") return value.empty() ? (*error = "empty user", "") : "u:" + value;
  if (kind == "domain" || kind == "d") {
    const std::string d = sekimori::policy::normalizeDomain(value);
    return d.empty() ? (*error = "empty domain", "") : "d:" + d;
  }
  *error = "unknown KIND '" + kind + "' (sender, recipient, client, user, domain)";
  return "";
}

int ratelimit(const std::vector<std::string>& words, const std::string& socket) {
  if (words.size() != 3 || (words[1] != "status" && words[1] != "reset")) {
    std::cerr << kUsage;
    return kExitUsage;
  }
  std::string error;
  const std::string key = normaliseKey(words[2], &error);
  if (key.empty()) {
    std::cerr << "sekimori: " << error << "\n";
    return kExitUsage;
  }
  std::string reply;
  if (!sekimori::control::controlRequest(socket, words[1] + " " + key, &reply, &error)) {
    std::cerr << "sekimori: " << error << " (is sekimori-ratelimit running? -s names its control socket)\n";
    return kExitFailed;
  }
  std::cout << reply << "\n";
  return sekimori::util::istartsWith(reply, "ok") ? 0 : kExitFailed;
}

// What `extract` takes from sekimori-antivirus's conf file, read and
// checked as the daemon reads it; `what` (e.g. "the quarantine settings")
// and `dirIs` (what -d names instead) for the error.
template <class Extract>
auto readConf(const std::string& conf, const std::string& what, const std::string& dirIs, Extract extract)
    -> std::optional<decltype(extract(std::declval<const sekimori::config::Values&>()))> {
  sekimori::antivirus::AntivirusMilter milter;  // its schema only: nothing starts
  const auto schema = sekimori::milter::buildSchema(milter);
  sekimori::config::Errors errors;
  const auto values = sekimori::config::Values::load(schema, conf, errors);
  if (!errors.empty()) {
    std::cerr << errors.str() << "sekimori: cannot read " << what << " from " << conf
              << " (-c names sekimori-antivirus's conf file, -d " << dirIs << ")\n";
    return std::nullopt;
  }
  return extract(values);
}

// [quarantine] of the conf file.
std::optional<sekimori::antivirus::QuarantineSettings> readSettings(const std::string& conf) {
  return readConf(conf, "the quarantine settings", "the quarantine directory",
                  [](const sekimori::config::Values& v) { return sekimori::antivirus::quarantineSettings(v); });
}

// "20261124T093000Z" -> "2026-11-24 09:30:00Z".
std::string readableStamp(const std::string& s) {
  if (s.size() != 16) return s;
  return s.substr(0, 4) + "-" + s.substr(4, 2) + "-" + s.substr(6, 2) + " " + s.substr(9, 2) + ":" + s.substr(11, 2) +
         ":" + s.substr(13, 2) + "Z";
}

// The entries ENTRY names: an id, or every entry of a queue id.
std::vector<const sekimori::store::QuarantineRecord*> resolve(const std::vector<sekimori::store::QuarantineRecord>& all,
                                                               const std::string& entry) {
  std::vector<const sekimori::store::QuarantineRecord*> out;
  for (const auto& r : all) {
    if (r.id == entry) return {&r};
  }
  for (const auto& r : all) {
    // The queue id as the index has it, or as the file name has it (an entry not in the index).
    const bool byIndex = r.indexed && r.entry.queueId == entry;
    const bool byName = !r.indexed && r.id.compare(17, entry.size() + 1, entry + "-") == 0;
    if (!entry.empty() && (byIndex || byName)) out.push_back(&r);
  }
  return out;
}

int list(const sekimori::store::Quarantine& q, const std::vector<sekimori::store::QuarantineRecord>& all) {
  std::uint64_t bytes = 0;
  for (const auto& r : all) {
    const auto& e = r.entry;
    std::string line = readableStamp(r.stamp) + "  " + r.id + "  ";
    if (r.indexed) {
      line += (e.direction.empty() ? "-" : e.direction) + "  " + (r.held ? std::to_string(r.size) : "-") + "  " +
              (e.reason.empty() ? "-" : e.reason) + "  <" + e.sender + "> -> ";
      for (std::size_t i = 0; i < e.recipients.size(); ++i) line += (i ? ", " : "") + e.recipients[i];
      if (!r.held) line += "  [file missing]";
    } else {
      line += "-  " + std::to_string(r.size) + "  [not in index]";
    }
    std::cout << line << "\n";
    bytes += r.size;
  }
  std::cout << all.size() << (all.size() == 1 ? " entry, " : " entries, ") << bytes << " bytes in " << q.dir() << "\n";
  return 0;
}

int show(const sekimori::store::Quarantine& q, const sekimori::store::QuarantineRecord& r) {
  if (!r.held) {
    std::cerr << "sekimori: the file of " << r.id << " is missing from " << q.dir() << "\n";
    return kExitFailed;
  }
  std::ifstream in(q.dir() + "/" + r.id, std::ios::binary);
  if (!in) {
    std::cerr << "sekimori: cannot open " << q.dir() << "/" << r.id << "\n";
    return kExitFailed;
  }
  std::cout << in.rdbuf();
  std::cout.flush();
  return std::cout ? 0 : kExitFailed;
}

int quarantine(const std::vector<std::string>& words, const std::string& conf, const std::string& dir) {
  const std::string verb = words.size() >= 2 ? words[1] : "";
  const bool shapeOk = (verb == "list" && words.size() == 2) || (verb == "show" && words.size() == 3) ||
                       (verb == "remove" && words.size() >= 3) || (verb == "expire" && words.size() <= 3);
  if (!shapeOk) {
    std::cerr << kUsage;
    return kExitUsage;
  }
  sekimori::antivirus::QuarantineSettings settings;
  if (dir.empty()) {
    auto read = readSettings(conf);
    if (!read) return kExitUsage;
    settings = *read;
    if (settings.dir.empty()) {
      std::cerr << "sekimori: " << conf << " keeps no quarantine ([quarantine] dir is empty)\n";
      return kExitUsage;
    }
  } else {
    settings.dir = dir;
  }
  const sekimori::store::Quarantine q(settings.dir);
  std::string error;

  if (verb == "expire") {
    const auto entries = [](std::size_t n) { return std::to_string(n) + (n == 1 ? " entry" : " entries"); };
    if (words.size() == 2 && !dir.empty()) {
      std::cerr << "sekimori: expire -d DIR needs an AGE (with -c, [quarantine] keep and max_size apply)\n";
      return kExitUsage;
    }
    std::chrono::seconds keep = settings.keep;
    if (words.size() == 3) {
      const auto age = sekimori::config::parseDuration(words[2], &error);
      if (!age) {
        std::cerr << "sekimori: AGE '" << words[2] << "': " << error << "\n";
        return kExitUsage;
      }
      keep = std::chrono::duration_cast<std::chrono::seconds>(age->value);
      settings.maxSize = 0;  // by age only
    }
    if (words.size() == 3 || keep.count() > 0) {
      const auto removed = q.expire(keep, std::time(nullptr), &error);
      if (!removed) {
        std::cerr << "sekimori: " << error << "\n";
        return kExitFailed;
      }
      std::cout << "removed " << entries(*removed) << " older than "
                << sekimori::config::formatDuration(sekimori::config::Duration{keep}) << " from " << q.dir() << "\n";
    }
    if (settings.maxSize > 0) {  // as the milter does
      const auto trimmed = q.trim(settings.maxSize, settings.trimTo(), &error);
      if (!trimmed) {
        std::cerr << "sekimori: " << error << "\n";
        return kExitFailed;
      }
      std::cout << "removed " << entries(trimmed->removed) << " to stay under max_size "
                << sekimori::config::formatBytes(sekimori::config::Bytes{settings.maxSize}) << " ("
                << trimmed->bytesLeft << " bytes left) from " << q.dir() << "\n";
    }
    return 0;
  }

  const auto all = q.list(&error);
  if (!all) {
    std::cerr << "sekimori: " << error << "\n";
    return kExitFailed;
  }
  if (verb == "list") return list(q, *all);

  // show and remove: every ENTRY must name exactly one entry before anything is done.
  std::set<std::string> ids;
  const sekimori::store::QuarantineRecord* one = nullptr;
  for (std::size_t i = 2; i < words.size(); ++i) {
    const auto found = resolve(*all, words[i]);
    if (found.size() != 1) {
      std::cerr << "sekimori: '" << sekimori::util::sanitize(words[i], 200) << "' "
                << (found.empty() ? "is not in the quarantine" : "names several entries; give one of their ids:")
                << "\n";
      for (const auto* r : found) std::cerr << "  " << r->id << "\n";
      return kExitUsage;
    }
    one = found[0];
    ids.insert(one->id);
  }
  if (verb == "show") return show(q, *one);
  const auto removed = q.remove(ids, &error);
  if (!removed) {
    std::cerr << "sekimori: " << error << "\n";
    return kExitFailed;
  }
  std::cout << "removed " << ids.size() << (ids.size() == 1 ? " entry" : " entries") << " from " << q.dir() << "\n";
  return 0;
}

// "1795000000000" (unix ms) -> "2026-11-17 08:26:40Z".
std::string readableMillis(std::int64_t ms) {
  const std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%SZ", &tm);
  return buf;
}

// The warning mails sekimori-antivirus has not sent yet ([notify]
// spool_dir): read only, the milter may be running.
int outbox(const std::vector<std::string>& words, const std::string& conf, const std::string& dir) {
  if (words.size() != 2 || words[1] != "list") {
    std::cerr << kUsage;
    return kExitUsage;
  }
  std::string spool = dir;
  if (spool.empty()) {
    const auto read = readConf(conf, "[notify] spool_dir", "the spool directory", sekimori::antivirus::notifySpoolDir);
    if (!read) return kExitUsage;
    spool = *read;
    if (spool.empty()) {
      std::cerr << "sekimori: " << conf << " keeps no warning mails on disk ([notify] spool_dir is empty)\n";
      return kExitUsage;
    }
  }
  namespace fs = std::filesystem;
  std::error_code ec;
  std::vector<std::string> names;
  const std::string bad = std::string(sekimori::notify::kSpooledSuffix) + ".bad";
  for (fs::directory_iterator it(spool, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!name.starts_with(".") && (name.ends_with(sekimori::notify::kSpooledSuffix) || name.ends_with(bad))) {
      names.push_back(name);
    }
  }
  if (ec) {
    std::cerr << "sekimori: cannot read " << spool << ": " << ec.message() << "\n";
    return kExitFailed;
  }
  std::sort(names.begin(), names.end());
  std::size_t mails = 0;
  std::size_t batches = 0;
  for (const auto& name : names) {
    std::string why;
    sekimori::notify::SpooledBatch b;
    if (name.ends_with(bad)) {
      std::cout << name << "  [set aside by the milter: unreadable]\n";
      continue;
    }
    // An outbox holds at most 16 MiB: a bigger file is not one of its own.
    if (!sekimori::notify::readSpooled(spool + "/" + name, 32 << 20, &b, &why)) {
      std::cout << name << "  [" << why << "]\n";
      continue;
    }
    ++batches;
    std::string line = (b.tries > 0 ? readableMillis(b.first) : std::string("(not tried yet)")) + "  " + name + "  " +
                       (b.batch.origin.empty() ? "-" : b.batch.origin) + "  tries=" + std::to_string(b.tries) +
                       "  next=" + readableMillis(b.due) + "  via " +
                       (b.batch.settings.method == "sendmail" ? b.batch.settings.sendmailPath : b.batch.settings.smtpUrl) +
                       "  ->";
    const char* sep = " ";
    for (const auto& item : b.batch.items) {
      for (const auto& to : item.to) {
        line += sep + to;
        sep = ", ";
      }
    }
    mails += b.batch.items.size();
    std::cout << sekimori::util::sanitize(line, 4096) << "\n";
  }
  std::cout << mails << (mails == 1 ? " warning mail" : " warning mails") << " not yet sent, in " << batches
            << (batches == 1 ? " batch" : " batches") << ", in " << spool << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  std::string socket = SEKIMORI_RUNDIR "/ratelimit.ctl";
  std::string conf = SEKIMORI_SYSCONFDIR "/antivirus.conf";
  std::string dir;
  std::vector<std::string> words;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      return 0;
    }
    if (a == "--version") {
      std::cout << "sekimori " SEKIMORI_VERSION "\n";
      return 0;
    }
    std::string* value = a == "-s" || a == "--socket"     ? &socket
                         : a == "-c" || a == "--config"   ? &conf
                         : a == "-d" || a == "--directory" ? &dir
                                                            : nullptr;
    if (value) {
      if (i + 1 >= args.size() || args[i + 1].empty()) {
        std::cerr << "sekimori: " << a << " needs a value\n";
        return kExitUsage;
      }
      *value = args[++i];
      continue;
    }
    if (a.size() > 1 && a[0] == '-') {
      std::cerr << "sekimori: unknown option " << a << "\n" << kUsage;
      return kExitUsage;
    }
    words.push_back(a);
  }
  if (!words.empty() && words[0] == "ratelimit") return ratelimit(words, socket);
  if (!words.empty() && words[0] == "quarantine") return quarantine(words, conf, dir);
  if (!words.empty() && words[0] == "outbox") return outbox(words, conf, dir);
  std::cerr << kUsage;
  return kExitUsage;
}
