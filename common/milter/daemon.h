// common/milter/daemon.h — the command line and life cycle every sekimori
// milter binary shares (the contract in shared/DESIGN.md):
//
//   -c, --config FILE     conf file (default /etc/sekimori/<name>.conf)
//   -p, --socket SPEC     overrides [milter] socket (unix:/path, inet:port@host, inet6:...)
//   -f, --foreground      do not detach; log to stderr as well as syslog
//   -t, --test-config     check the conf file, print `file:line: reason` errors, exit 0/1
//   -u, --user USER       run as USER after opening the socket
//   -P, --pidfile FILE    write the process id to FILE
//       --defaults        print the documented default conf file
//       --version, --help
// Signals: SIGUSR1 reloads the conf file (a broken one is refused and the old
// one kept); SIGTERM, SIGINT and SIGHUP stop: new connections are tempfailed,
// open ones are served until they end (at most drain_timeout), a second
// signal stops at once. The daemon handles them itself (serveAndDrain in
// daemon.cpp); libmilter's own signal thread never sees them.
// Exit codes: 0 normal stop, 1 config error, 2 failure to start (or stopFailed()).
//
//   int main(int argc, char** argv) {
//     sekimori::sizelimit::SizeLimitMilter milter;
//     return sekimori::milter::runDaemon(milter, argc, argv);
//   }
#pragma once

#include <string>

#include "common/milter/milter.h"

namespace sekimori::config {
class Schema;
class Values;
class Errors;
}  // namespace sekimori::config

namespace sekimori::milter {

constexpr int kExitOk = 0;
constexpr int kExitConfig = 1;
constexpr int kExitRuntime = 2;

int runDaemon(Milter& milter, int argc, char** argv);

// For a milter that can no longer do its work (a helper process it cannot
// replace is gone): logs `why`, stops accepting connections as SIGTERM
// does, and makes runDaemon() return kExitRuntime, so that a service
// manager (Restart=on-failure) starts a fresh daemon. Open connections
// drain; the MTA's milter_default_action covers the gap. Any thread.
void stopFailed(const std::string& why);

// The schema of a milter: [milter] and [policy] keys plus its own.
// Exposed for tests (every key documented in conf/<name>.conf).
config::Schema buildSchema(const Milter& milter);
// Builds the common snapshot from checked values; errors carry file:line.
std::shared_ptr<const CommonConfig> buildCommon(const Milter& milter, const config::Values& values,
                                                config::Errors& errors);

}  // namespace sekimori::milter
