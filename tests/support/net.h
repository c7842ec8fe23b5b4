// tests/support/net.h — small helpers of the tests and benchmarks that
// start programs of their own on the loopback interface.
#pragma once

#include <string>

namespace sekimori::testsupport {

// The first executable `name` in $PATH (/usr/bin:/usr/sbin when unset);
// empty when there is none.
std::string findInPath(const std::string& name);

// A 127.0.0.1 TCP port nothing listens on right now (bind to port 0, read
// what the kernel chose, close), 0 when none could be had. Another process
// could take it in between; on a test host that does not happen in practice.
int freeLoopbackPort();

}  // namespace sekimori::testsupport
