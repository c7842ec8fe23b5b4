// sekimori — the admin command of the sekimori milters.
//
//   sekimori ratelimit status KEY [-s SOCKET]
//   sekimori ratelimit reset KEY [-s SOCKET]
//
// It talks to a running milter over its control socket (a unix socket whose
// file permissions are the access control), so it works the same whatever
// backend holds the counters.
#include <iostream>
#include <string>
#include <vector>

#include "common/control/control.h"
#include "common/policy/address.h"
#include "common/policy/cidr.h"
#include "common/util/strings.h"

namespace {

constexpr const char* kUsage =
    "Usage: sekimori ratelimit status KEY [-s SOCKET]\n"
    "       sekimori ratelimit reset KEY [-s SOCKET]\n"
    "       sekimori --help | --version\n"
    "\n"
    "Shows or clears one rate-limit counter of a running sekimori-ratelimit,\n"
    "whichever backend (memory or redis) holds it.\n"
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
    "Exit status: 0 done, 1 usage or key error, 2 the milter could not be reached\n"
    "or answered with an error.\n";

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

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  std::string socket = SEKIMORI_RUNDIR "/ratelimit.ctl";
  std::vector<std::string> words;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "-h" || args[i] == "--help") {
      std::cout << kUsage;
      return 0;
    }
    if (args[i] == "--version") {
      std::cout << "sekimori " SEKIMORI_VERSION "\n";
      return 0;
    }
    if (args[i] == "-s" || args[i] == "--socket") {
      if (i + 1 >= args.size()) {
        std::cerr << "sekimori: -s needs a socket path\n";
        return 1;
      }
      socket = args[++i];
      continue;
    }
    words.push_back(args[i]);
  }
  if (words.size() != 3 || words[0] != "ratelimit" || (words[1] != "status" && words[1] != "reset")) {
    std::cerr << kUsage;
    return 1;
  }
  std::string error;
  const std::string key = normaliseKey(words[2], &error);
  if (key.empty()) {
    std::cerr << "sekimori: " << error << "\n";
    return 1;
  }
  std::string reply;
  if (!sekimori::control::controlRequest(socket, words[1] + " " + key, &reply, &error)) {
    std::cerr << "sekimori: " << error << " (is sekimori-ratelimit running? -s names its control socket)\n";
    return 2;
  }
  std::cout << reply << "\n";
  return sekimori::util::istartsWith(reply, "ok") ? 0 : 2;
}
