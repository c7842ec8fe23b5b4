// common/milter/daemon.cpp — see daemon.h.
#include "common/milter/daemon.h"

#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <iostream>
#include <thread>

#include "common/config/schema.h"
#include "common/config/values.h"
#include "common/log/log.h"
#include "common/milter/glue.h"
#include "common/util/strings.h"

#ifndef SEKIMORI_VERSION
#define SEKIMORI_VERSION "0.0.0"
#endif
#ifndef SEKIMORI_SYSCONFDIR
#define SEKIMORI_SYSCONFDIR "/etc/sekimori"
#endif
#ifndef SEKIMORI_RUNDIR
#define SEKIMORI_RUNDIR "/run/sekimori"
#endif

namespace sekimori::milter {
namespace po = boost::program_options;
using config::Option;
using config::Scope;

namespace {

// The [milter] and [policy] keys every milter has. The socket's default names
// the milter, so the set is built per milter.
struct CommonOptions {
  Option<std::string> socket;
  Option<std::string> socketMode{"milter.socket_mode", "0660",
                                 "Permissions of a unix socket, in octal. Postfix's smtpd must be able to "
                                 "write to it (see socket_group)."};
  Option<std::string> socketGroup{"milter.socket_group", "postfix",
                                  "Group of a unix socket. Empty: leave the group of the creating user."};
  Option<std::string> user{"milter.user", "",
                           "Run as this user after opening the socket (as -u). Empty: keep the starting "
                           "user. Recommended when started as root."};
  Option<std::string> pidfile{"milter.pidfile", "", "Write the process id here (as -P). Empty: no pid file."};
  Option<std::string> onError{"milter.on_error", "tempfail",
                              "What Postfix is told when the milter meets an internal error (a fault, not a "
                              "verdict): tempfail keeps the mail queued at the sender (R-OPS-4), accept lets "
                              "it through unchecked, reject refuses it.",
                              Scope::Global, {"tempfail", "accept", "reject"}};
  Option<policy::Reply> errorReply{"milter.error_reply",
                                   policy::Reply{"451", "4.3.0", "Temporary failure in mail filter, try again later"},
                                   "The reply for on_error = tempfail."};
  Option<std::string> logLevel{"milter.log_level", "info",
                               "Least important syslog level written (facility mail). info logs every refusal; "
                               "debug also every accepted message.",
                               Scope::Global, {"error", "warning", "notice", "info", "debug"}};
  Option<config::Duration> timeout{"milter.timeout", config::Duration{std::chrono::seconds(600)},
                                   "How long to wait for the MTA between two protocol steps before giving up "
                                   "on the connection (libmilter's I/O timeout)."};
  Option<config::Count> backlog{"milter.backlog", config::Count{128}, "Listen queue length of the socket."};
  Option<config::Duration> drainTimeout{"milter.drain_timeout", config::Duration{std::chrono::seconds(30)},
                                        "At SIGTERM, how long open connections may take to finish before the "
                                        "process exits."};
  Option<std::string> localDomains{"policy.local_domains", "",
                                   "Domains this site receives mail for, separated by commas or spaces; "
                                   "\".example.jp\" also matches its subdomains. A message to one of them from "
                                   "outside is inbound (R-DIR-1)."};
  Option<std::string> internalNetworks{"policy.internal_networks", "127.0.0.0/8 ::1/128",
                                       "Client networks (CIDR, IPv4 and IPv6) whose mail counts as sent from "
                                       "inside, like mail from an SMTP AUTH user: outbound, or internal when "
                                       "every recipient is local (R-DIR-1)."};

  explicit CommonOptions(std::string_view name)
      : socket{"milter.socket", "unix:" SEKIMORI_RUNDIR "/" + std::string(name) + ".sock",
               "Where the milter listens, in libmilter syntax: unix:/path, inet:PORT@127.0.0.1, "
               "inet6:PORT@[::1]. Unix sockets are faster (see README). Postfix names the same socket in "
               "smtpd_milters (unix:/path or inet:127.0.0.1:PORT). A stale unix socket file is removed at "
               "start; its directory is created if missing."} {}
};

std::string usage(const Milter& m, const po::options_description& cmdline, const config::Schema& schema) {
  const std::string bin = "sekimori-" + std::string(m.name());
  std::string out;
  out += "Usage: " + bin + " [-c FILE] [-p SOCKET] [-f] [-u USER] [-P PIDFILE]\n";
  out += "       " + bin + " -t [-c FILE]      check the configuration\n";
  out += "       " + bin + " --defaults        print the documented default configuration\n\n";
  out += "A Postfix milter of the sekimori suite. Add its socket to smtpd_milters (and\n"
         "non_smtpd_milters) in main.cf with milter_default_action = tempfail and\n"
         "milter_protocol = 6; see README.md.\n\n";
  std::ostringstream opts;
  opts << cmdline;
  out += opts.str();
  out += "\nConfiguration keys (" SEKIMORI_SYSCONFDIR "/" + std::string(m.name()) + ".conf, INI sections):\n";
  out += schema.renderHelp();
  out += "\nSignals:\n"
         "  SIGUSR1       reload the conf file; a broken file is refused and logged, the\n"
         "                old configuration stays in force; open connections continue\n"
         "  SIGTERM       stop: new connections are tempfailed, open ones are served\n"
         "                until they end (at most drain_timeout); a second one stops at once\n"
         "  SIGINT        as SIGTERM\n"
         "  SIGHUP        as SIGTERM, as libmilter does (use SIGUSR1 to reload)\n"
         "\nExit status: 0 normal stop or valid config, 1 config error, 2 failure to start,\n"
         "or a failure that stops the daemon (e.g. sekimori-antivirus' scanner processes gone).\n"
         "Logs go to syslog, facility mail, one line per decision, queue ID first.\n";
  return out;
}

bool parseMode(std::string_view text, mode_t& out) {
  if (text.empty() || text.size() > 4) return false;
  unsigned v = 0;
  for (char c : text) {
    if (c < '0' || c > '7') return false;
    v = v * 8 + static_cast<unsigned>(c - '0');
  }
  out = static_cast<mode_t>(v);
  return true;
}

// Settings that are read once at start (changing them needs a restart).
struct StartSettings {
  std::string socket;
  mode_t socketMode = 0660;
  std::string socketGroup;
  std::string user;
  std::string pidfile;
  int timeoutSeconds = 600;
  int backlog = 128;
  std::chrono::seconds drain{30};
  log::Level level = log::Level::Info;
};

StartSettings startSettings(const Milter& m, const config::Values& values) {
  const CommonOptions o(m.name());
  StartSettings s;
  s.socket = values.get(o.socket);
  parseMode(values.get(o.socketMode), s.socketMode);
  s.socketGroup = values.get(o.socketGroup);
  s.user = values.get(o.user);
  s.pidfile = values.get(o.pidfile);
  s.timeoutSeconds = static_cast<int>(std::chrono::duration_cast<std::chrono::seconds>(values.get(o.timeout).value).count());
  s.backlog = static_cast<int>(std::min<std::uint64_t>(values.get(o.backlog).value, 65535));
  s.drain = std::chrono::duration_cast<std::chrono::seconds>(values.get(o.drainTimeout).value);
  log::parseLevel(values.get(o.logLevel), s.level);
  return s;
}

std::string unixPath(const std::string& spec) {
  for (const std::string_view prefix : {"unix:", "local:"}) {
    if (util::istartsWith(spec, prefix)) return spec.substr(prefix.size());
  }
  if (!spec.empty() && spec[0] == '/') return spec;
  return {};
}

// Everything that can fail and must be reported before we detach.
struct Loaded {
  config::Values values;
  std::shared_ptr<const CommonConfig> common;
};

std::optional<Loaded> load(Milter& m, const config::Schema& schema, const std::string& path,
                           const std::vector<std::pair<std::string, std::string>>& overrides, bool apply,
                           config::Errors& errors) {
  Loaded l{config::Values::load(schema, path, errors), nullptr};
  for (const auto& [key, value] : overrides) l.values.set(key, value, errors);
  if (!errors.empty()) return std::nullopt;
  l.common = buildCommon(m, l.values, errors);
  // The milter checks its part even when the common part failed, so -t
  // reports every problem at once.
  const bool ok = m.configure(l.values, errors, apply && errors.empty());
  if (!ok || !errors.empty() || !l.common) return std::nullopt;
  return l;
}

std::atomic<bool> gStopping{false};
std::atomic<bool> gFailed{false};  // stopFailed()

// The stop signals reach the main thread's handler through this pipe;
// serveAndDrain() also learns here that libmilter returned by itself.
int gWake[2] = {-1, -1};
constexpr char kServerEnded = 'E';

extern "C" void onStopSignal(int sig) {
  const int saved = errno;
  const char c = static_cast<char>(sig);
  (void)!write(gWake[1], &c, 1);
  errno = saved;
}

const char* signalName(int sig) {
  switch (sig) {
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGHUP: return "SIGHUP";
    default: return "a signal";
  }
}

// Runs libmilter in a thread of its own and waits here for a stop signal.
// libmilter's own handling of SIGTERM cannot drain: Debian builds it with
// its pool of workers, which abandon every open connection the moment the
// stop flag is set (the MTA waits for its command timeout, then
// tempfails). So the signals are ours: on the first one new connections
// are tempfailed at connect while open ones keep their service, until none
// is left or drain_timeout passes; then libmilter is stopped. A second
// signal stops at once. Only this thread ever unblocks the stop signals,
// and Linux gives a process-directed signal to the main thread first when
// it does not block it, so libmilter's signal thread (sigwait on the same
// signals) does not see them.
bool serveAndDrain(std::chrono::milliseconds drain) {
  if (pipe2(gWake, O_CLOEXEC | O_NONBLOCK) != 0) {
    log::message(log::Level::Warning, std::string("no graceful stop (pipe: ") + std::strerror(errno) +
                                          "); libmilter handles SIGTERM itself");
    return glue::serve();
  }
  std::atomic<bool> served{false};
  std::thread server([&] {
    served = glue::serve();
    const char c = kServerEnded;
    (void)!write(gWake[1], &c, 1);
  });

  struct sigaction sa {};
  sa.sa_handler = onStopSignal;
  sigemptyset(&sa.sa_mask);
  sigset_t stops;
  sigemptyset(&stops);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) {
    sigaction(sig, &sa, nullptr);
    sigaddset(&stops, sig);
  }
  pthread_sigmask(SIG_UNBLOCK, &stops, nullptr);

  // Waits up to `limit` for the next event: a signal number, kServerEnded,
  // or 0 on timeout.
  const auto next = [](std::chrono::milliseconds limit) -> char {
    pollfd p{gWake[0], POLLIN, 0};
    const int n = poll(&p, 1, static_cast<int>(limit.count()));
    char c = 0;
    if (n > 0 && read(gWake[0], &c, 1) == 1) return c;
    return 0;
  };
  char event = 0;
  while (event == 0) event = next(std::chrono::hours(1));
  if (event != kServerEnded) {
    Session::refuseNew();
    const auto open = Session::live();
    log::message(log::Level::Notice,
                 std::string(signalName(event)) + ": stopping; new connections are tempfailed" +
                     (open > 0 ? ", waiting for " + std::to_string(open) + " open connection(s)" : std::string()));
    const auto deadline = std::chrono::steady_clock::now() + drain;
    while (Session::live() > 0 && std::chrono::steady_clock::now() < deadline) {
      event = next(std::chrono::milliseconds(50));
      if (event == kServerEnded) break;
      if (event != 0) {
        log::message(log::Level::Notice, std::string(signalName(event)) + " again: stopping without waiting");
        break;
      }
    }
    if (Session::live() > 0 && event == 0) {
      log::message(log::Level::Warning, "stopping with " + std::to_string(Session::live()) +
                                            " connection(s) still open after drain_timeout");
    }
    glue::stop();
  }
  pthread_sigmask(SIG_BLOCK, &stops, nullptr);
  server.join();
  return served.load();
}

void reloadLoop(Milter* m, const config::Schema* schema, std::string path,
                std::vector<std::pair<std::string, std::string>> overrides) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  while (true) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    if (gStopping.load()) return;
    config::Errors errors;
    auto loaded = load(*m, *schema, path, overrides, true, errors);
    if (!loaded) {
      for (const auto& e : errors.list()) log::message(log::Level::Error, "reload refused: " + e.str());
      log::message(log::Level::Error, "reload refused, keeping the running configuration");
      continue;
    }
    glue::setCommon(loaded->common);
    log::Level level = log::Level::Info;
    log::parseLevel(loaded->values.get(CommonOptions(m->name()).logLevel), level);
    log::setLevel(level);
    log::message(log::Level::Notice, "configuration reloaded from " + path);
  }
}

bool prepareUnixSocket(const std::string& path, std::string* error) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos || slash == 0) return true;
  const std::string dir = path.substr(0, slash);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);  // 0777 & ~umask, like mkdir -p
  if (ec) {
    *error = "cannot create socket directory " + dir + ": " + ec.message();
    return false;
  }
  return true;
}

bool fixUnixSocket(const std::string& path, const StartSettings& s, std::string* error) {
  uid_t uid = static_cast<uid_t>(-1);
  gid_t gid = static_cast<gid_t>(-1);
  if (!s.user.empty()) {
    const passwd* pw = getpwnam(s.user.c_str());
    if (pw == nullptr) {
      *error = "unknown user '" + s.user + "'";
      return false;
    }
    uid = pw->pw_uid;
  }
  if (!s.socketGroup.empty()) {
    const group* gr = getgrnam(s.socketGroup.c_str());
    if (gr == nullptr) {
      *error = "unknown socket_group '" + s.socketGroup + "'";
      return false;
    }
    gid = gr->gr_gid;
  }
  if ((uid != static_cast<uid_t>(-1) || gid != static_cast<gid_t>(-1)) && chown(path.c_str(), uid, gid) != 0) {
    *error = "cannot chown " + path + ": " + std::strerror(errno);
    return false;
  }
  if (chmod(path.c_str(), s.socketMode) != 0) {
    *error = "cannot chmod " + path + ": " + std::strerror(errno);
    return false;
  }
  return true;
}

bool dropPrivileges(const std::string& user, std::string* error) {
  if (user.empty()) return true;
  const passwd* pw = getpwnam(user.c_str());
  if (pw == nullptr) {
    *error = "unknown user '" + user + "'";
    return false;
  }
  if (getuid() == pw->pw_uid) return true;
  if (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0) {
    *error = "cannot switch to user '" + user + "': " + std::strerror(errno);
    return false;
  }
  return true;
}

// Detaches; the parent exits only when the child says it is ready (or dies),
// so a failure after the fork still reaches the administrator's shell.
// Returns the write end of the readiness pipe in the child.
int daemonize() {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  const pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid > 0) {
    close(fds[1]);
    char ok = 0;
    const ssize_t n = read(fds[0], &ok, 1);
    _exit(n == 1 ? kExitOk : kExitRuntime);
  }
  close(fds[0]);
  setsid();
  if (const int null = open("/dev/null", O_RDWR); null >= 0) {
    dup2(null, STDIN_FILENO);
    dup2(null, STDOUT_FILENO);
    dup2(null, STDERR_FILENO);
    if (null > 2) close(null);
  }
  return fds[1];
}

}  // namespace

config::Schema buildSchema(const Milter& m) {
  config::Schema schema{std::string(m.name())};
  const CommonOptions o(m.name());
  schema.section("milter", "The daemon: socket, privileges, logging, and what happens on internal errors.");
  schema.add(o.socket);
  schema.add(o.socketMode);
  schema.add(o.socketGroup);
  schema.add(o.user);
  schema.add(o.pidfile);
  schema.add(o.onError);
  schema.add(o.errorReply);
  schema.add(o.logLevel);
  schema.add(o.timeout);
  schema.add(o.backlog);
  schema.add(o.drainTimeout);
  schema.section("policy", "Who is inside: decides whether a message is inbound, outbound or internal (R-DIR-1).");
  schema.add(o.localDomains);
  schema.add(o.internalNetworks);
  m.declareOptions(schema);
  return schema;
}

std::shared_ptr<const CommonConfig> buildCommon(const Milter& m, const config::Values& values,
                                                config::Errors& errors) {
  const CommonOptions o(m.name());
  auto c = std::make_shared<CommonConfig>();
  c->milterName = std::string(m.name());
  const std::size_t before = errors.list().size();
  for (const auto& d : util::splitList(values.get(o.localDomains))) {
    std::string why;
    if (!c->direction.localDomains.add(d, &why)) {
      errors.add(values.file(), values.line(o.localDomains.key), "local_domains: " + why);
    }
  }
  for (const auto& n : util::splitList(values.get(o.internalNetworks))) {
    std::string why;
    if (!c->direction.internalNetworks.add(n, &why)) {
      errors.add(values.file(), values.line(o.internalNetworks.key), "internal_networks: " + why);
    }
  }
  const std::string onError = values.get(o.onError);
  c->onError = onError == "accept"   ? CommonConfig::OnError::Accept
               : onError == "reject" ? CommonConfig::OnError::Reject
                                     : CommonConfig::OnError::Tempfail;
  c->errorReply = values.get(o.errorReply);
  if (!c->errorReply.temporary()) {
    errors.add(values.file(), values.line(o.errorReply.key), "error_reply: must be a 4xx reply");
  }
  mode_t mode = 0;
  if (!parseMode(values.get(o.socketMode), mode)) {
    errors.add(values.file(), values.line(o.socketMode.key), "socket_mode: not an octal mode like 0660");
  }
  const std::string socket = values.get(o.socket);
  if (unixPath(socket).empty() && !util::istartsWith(socket, "inet:") && !util::istartsWith(socket, "inet6:")) {
    errors.add(values.file(), values.line(o.socket.key),
               "socket: expected unix:/path, inet:PORT@HOST or inet6:PORT@HOST, got '" + socket + "'");
  }
  if (errors.list().size() != before) return nullptr;
  return c;
}

int runDaemon(Milter& milter, int argc, char** argv) {
  const std::string name(milter.name());
  const std::string bin = "sekimori-" + name;

  po::options_description cmdline("Options");
  cmdline.add_options()
      ("config,c", po::value<std::string>()->default_value(SEKIMORI_SYSCONFDIR "/" + name + ".conf"), "conf file")
      ("socket,p", po::value<std::string>(), "socket, overrides [milter] socket (unix:/path, inet:PORT@HOST)")
      ("foreground,f", po::bool_switch(), "stay in the foreground and log to stderr as well as syslog")
      ("test-config,t", po::bool_switch(), "check the conf file, print errors as file:line: reason, exit 0 or 1")
      ("user,u", po::value<std::string>(), "run as USER after opening the socket, overrides [milter] user")
      ("pidfile,P", po::value<std::string>(), "write the process id to FILE, overrides [milter] pidfile")
      ("defaults", po::bool_switch(), "print the documented default conf file and exit")
      ("version", po::bool_switch(), "print the version and exit")
      ("help,h", po::bool_switch(), "print this help and exit");

  const config::Schema schema = buildSchema(milter);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(cmdline).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << bin << ": " << e.what() << "\nTry '" << bin << " --help'.\n";
    return kExitConfig;
  }
  if (vm["help"].as<bool>()) {
    std::cout << usage(milter, cmdline, schema);
    return kExitOk;
  }
  if (vm["version"].as<bool>()) {
    std::cout << bin << " " SEKIMORI_VERSION "\n";
    return kExitOk;
  }
  if (vm["defaults"].as<bool>()) {
    std::cout << schema.renderConf();
    return kExitOk;
  }

  const std::string path = vm["config"].as<std::string>();
  std::vector<std::pair<std::string, std::string>> overrides;
  if (vm.count("socket")) overrides.emplace_back("milter.socket", vm["socket"].as<std::string>());
  if (vm.count("user")) overrides.emplace_back("milter.user", vm["user"].as<std::string>());
  if (vm.count("pidfile")) overrides.emplace_back("milter.pidfile", vm["pidfile"].as<std::string>());
  const bool testOnly = vm["test-config"].as<bool>();
  const bool foreground = vm["foreground"].as<bool>();

  config::Errors errors;
  auto loaded = load(milter, schema, path, overrides, !testOnly, errors);
  if (testOnly) {
    if (!loaded) {
      std::cerr << errors.str();
      return kExitConfig;
    }
    std::cout << path << ": configuration OK\n";
    return kExitOk;
  }
  log::init(bin, foreground);
  if (!loaded) {
    for (const auto& e : errors.list()) {
      log::message(log::Level::Error, e.str());
      if (!foreground) std::cerr << bin << ": " << e.str() << "\n";
    }
    return kExitConfig;
  }
  const StartSettings start = startSettings(milter, loaded->values);
  log::setLevel(start.level);
  glue::setCommon(loaded->common);

  const auto fail = [&](const std::string& why) {
    log::message(log::Level::Error, "cannot start: " + why);
    if (!foreground) std::cerr << bin << ": cannot start: " << why << "\n";
    return kExitRuntime;
  };

  // Blocked here, before any thread exists, so that every thread inherits
  // the mask: SIGUSR1 (reload) then reaches only the reload thread's
  // sigwait, and SIGTERM/SIGINT/SIGHUP only serveAndDrain(), the one place
  // that unblocks them. A thread started with them unblocked (the reload
  // thread, a milter's own threads) would take SIGTERM's default action:
  // the process killed on the spot, no drain, nothing cleaned up. A stop
  // signal sent during start-up stays pending until then. Children reset
  // the mask before exec. SIGPIPE from a vanished MTA must not kill us.
  sigset_t ours;
  sigemptyset(&ours);
  for (int sig : {SIGUSR1, SIGTERM, SIGINT, SIGHUP}) sigaddset(&ours, sig);
  pthread_sigmask(SIG_BLOCK, &ours, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::string why;
  if (!glue::registerMilter(milter, &why)) return fail(why);
  const std::string sockPath = unixPath(start.socket);
  if (!sockPath.empty() && !prepareUnixSocket(sockPath, &why)) return fail(why);
  if (!glue::openSocket(start.socket, start.timeoutSeconds, start.backlog, &why)) return fail(why);
  if (!sockPath.empty() && !fixUnixSocket(sockPath, start, &why)) return fail(why);
  if (!milter.open(&why)) return fail(why);
  if (!dropPrivileges(start.user, &why)) return fail(why);
  if (!milter.prepare(&why)) return fail(why);

  int ready = -1;
  if (!foreground) {
    ready = daemonize();
    if (ready < 0) return fail(std::string("cannot detach: ") + std::strerror(errno));
  }
  if (!start.pidfile.empty()) {
    std::ofstream pf(start.pidfile, std::ios::trunc);
    pf << getpid() << "\n";
    if (!pf) return fail("cannot write pid file " + start.pidfile);
  }
  if (ready >= 0) {
    const char ok = 1;
    (void)!write(ready, &ok, 1);
    close(ready);
  }

  milter.start();
  std::thread reloader(reloadLoop, &milter, &schema, path, overrides);
  log::message(log::Level::Notice, bin + " " SEKIMORI_VERSION " listening on " + start.socket);
  const bool served = serveAndDrain(start.drain);
  gStopping = true;
  pthread_kill(reloader.native_handle(), SIGUSR1);
  reloader.join();
  milter.stop();
  if (!start.pidfile.empty()) unlink(start.pidfile.c_str());
  log::message(log::Level::Notice, bin + " stopped");
  return served && !gFailed.load() ? kExitOk : kExitRuntime;
}

void stopFailed(const std::string& why) {
  if (gFailed.exchange(true)) return;
  log::message(log::Level::Error, "stopping: " + why + " (exit status " + std::to_string(kExitRuntime) +
                                      ", for the service manager to restart)");
  glue::stop();
}

}  // namespace sekimori::milter
