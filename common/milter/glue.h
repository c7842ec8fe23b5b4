// common/milter/glue.h — between the daemon (daemon.cpp) and the only file
// that talks to libmilter (libmilter_glue.cpp). Not for milters.
#pragma once

#include <memory>
#include <string>

#include "common/milter/milter.h"

namespace sekimori::milter::glue {

// Registers the callbacks for `m` with libmilter. The common config is read
// from `common` at each MAIL FROM (and each connection).
bool registerMilter(Milter& m, std::string* error);
void setCommon(std::shared_ptr<const CommonConfig> common);
std::shared_ptr<const CommonConfig> common();

// smfi_setconn + smfi_opensocket (a stale unix socket is removed), then
// TCP_NODELAY on an inet listener. timeoutSeconds: libmilter's I/O timeout.
bool openSocket(const std::string& spec, int timeoutSeconds, int backlog, std::string* error);
// smfi_main: serves until stop() (or libmilter's own signal thread sees
// SIGTERM/SIGHUP/SIGINT, which the daemon keeps from it). False on failure.
bool serve();
void stop();

}  // namespace sekimori::milter::glue
