// sekimori-sizelimit: see sizelimit_milter.h.
#include "common/milter/daemon.h"
#include "milters/sizelimit/sizelimit_milter.h"

int main(int argc, char** argv) {
  sekimori::sizelimit::SizeLimitMilter milter;
  return sekimori::milter::runDaemon(milter, argc, argv);
}
