// sekimori-antivirus: see antivirus_milter.h.
#include "common/milter/daemon.h"
#include "milters/antivirus/antivirus_milter.h"

int main(int argc, char** argv) {
  sekimori::antivirus::AntivirusMilter milter;
  return sekimori::milter::runDaemon(milter, argc, argv);
}
