// sekimori-ratelimit: see ratelimit_milter.h.
#include "common/milter/daemon.h"
#include "milters/ratelimit/ratelimit_milter.h"

int main(int argc, char** argv) {
  sekimori::ratelimit::RateLimitMilter milter;
  return sekimori::milter::runDaemon(milter, argc, argv);
}
