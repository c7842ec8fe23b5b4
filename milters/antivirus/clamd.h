// milters/antivirus/clamd.h — scanning through a running clamd (INSTREAM),
// for sites that already run clamd, with the same verdicts and actions as
// the in-process pool, so the two can be compared and a site can migrate.
//
// Each scan is one connection: zINSTREAM, the content in chunks, the
// reply line. clamd applies its own limits (clamd.conf); its
// AlertExceedsMax / heuristic settings decide whether a limit is reported
// (as "Heuristics.Limits.Exceeded..." FOUND) or passes as clean — set
// AlertExceedsMax yes and AlertEncrypted yes in clamd.conf.
#pragma once

#include <chrono>
#include <mutex>
#include <string>

#include "milters/antivirus/scanner.h"

namespace sekimori::antivirus {

struct ClamdOptions {
  // "/run/clamav/clamd.ctl" (a unix socket) or "127.0.0.1:3310".
  std::string address = "/run/clamav/clamd.ctl";
  std::chrono::milliseconds timeout{120000};  // connect + stream + verdict
  std::size_t chunkSize = 64 * 1024;          // below clamd's StreamMaxLength chunks
};

// Syntax check of ClamdOptions::address.
bool validClamdAddress(const std::string& address);

class ClamdScanner final : public Scanner {
 public:
  explicit ClamdScanner(ClamdOptions options) : options_(std::move(options)) {}
  ScanResult scan(int fd) override;
  // "ClamAV 1.4.6/27100/..." as clamd's VERSION answers; "clamd" if it does not.
  std::string versions() const override;
  // A PING/PONG round trip; false + error when clamd cannot be reached.
  bool ping(std::string* error) const;

 private:
  ClamdOptions options_;
  mutable std::mutex versionMutex_;
  mutable std::string versionCache_;
  mutable std::chrono::steady_clock::time_point versionAt_{};
};

// clamd's reply line ("stream: Eicar-Signature FOUND", "stream: OK",
// "... ERROR") as a ScanResult. A name is kept to printable ASCII without
// spaces ('?' for anything else) and 200 bytes.
ScanResult parseClamdReply(std::string_view reply);

}  // namespace sekimori::antivirus
