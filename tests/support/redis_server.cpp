// tests/support/redis_server.cpp — see redis_server.h.
#include "tests/support/redis_server.h"

#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <utility>

extern char** environ;

namespace sekimori::testsupport {
namespace {

// Reads one reply from `fd` (buffered in `buf`): its first line, or a bulk
// string's contents; "" when the connection ends or times out first.
std::string readReply(int fd, std::string& buf) {
  auto fill = [&](std::size_t want) {
    char chunk[4096];
    while (buf.size() < want || (want == 0 && buf.find("\r\n") == std::string::npos)) {
      const ssize_t n = ::read(fd, chunk, sizeof chunk);
      if (n <= 0) return false;
      buf.append(chunk, static_cast<std::size_t>(n));
    }
    return true;
  };
  if (!fill(0)) return {};
  const auto eol = buf.find("\r\n");
  std::string line = buf.substr(0, eol);
  buf.erase(0, eol + 2);
  if (line.empty() || line[0] != '$' || line == "$-1") return line;
  const auto len = static_cast<std::size_t>(std::stoul(line.substr(1)));
  if (!fill(len + 2)) return {};
  std::string value = buf.substr(0, len);
  buf.erase(0, len + 2);
  return value;
}

int connectUnix(const std::string& path) {
  sockaddr_un a{};
  if (path.size() >= sizeof a.sun_path) return -1;
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  a.sun_family = AF_UNIX;
  std::copy(path.begin(), path.end(), a.sun_path);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) return fd;
  ::close(fd);
  return -1;
}

}  // namespace

RedisServer::RedisServer(std::string binary, Config config)
    : binary_(std::move(binary)), config_(std::move(config)) {
  char dir[] = "/tmp/sekimori-redis-XXXXXX";
  if (::mkdtemp(dir) != nullptr) dir_ = dir;
  if (config_.tcp) port_ = freeLoopbackPort();
}

RedisServer::~RedisServer() {
  kill();
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

std::string RedisServer::start() {
  using namespace std::chrono_literals;
  if (dir_.empty()) return "mkdtemp failed";
  if (config_.tcp && port_ == 0) return "no free port";
  // --port 0: no TCP listener at all.
  std::vector<std::string> args{binary_, "--port", std::to_string(port_), "--unixsocket", socketPath(),
                                "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir", dir_,
                                "--daemonize", "no", "--logfile", dir_ + "/redis.log"};
  if (config_.tcp) args.insert(args.end(), {"--bind", "127.0.0.1"});
  if (!config_.password.empty()) args.insert(args.end(), {"--requirepass", config_.password});
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  if (::posix_spawn(&pid_, binary_.c_str(), nullptr, nullptr, argv.data(), environ) != 0) {
    pid_ = -1;
    return "cannot spawn " + binary_;
  }
  for (const auto deadline = std::chrono::steady_clock::now() + 10s; std::chrono::steady_clock::now() < deadline;
       std::this_thread::sleep_for(10ms)) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return "redis-server exited: " + log();
    }
    if (raw({"PING"}) == "+PONG") return {};
  }
  return "redis-server does not answer: " + log();
}

void RedisServer::kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

void RedisServer::pause() {
  if (pid_ > 0) ::kill(pid_, SIGSTOP);
}

void RedisServer::resume() {
  if (pid_ > 0) ::kill(pid_, SIGCONT);
}

std::string RedisServer::raw(const std::vector<std::string>& words, int database) const {
  std::vector<std::vector<std::string>> commands;
  if (!config_.password.empty()) commands.push_back({"AUTH", config_.password});
  if (database != 0) commands.push_back({"SELECT", std::to_string(database)});
  commands.push_back(words);
  std::string out;
  for (const auto& c : commands) {
    out += "*" + std::to_string(c.size()) + "\r\n";
    for (const auto& w : c) out += "$" + std::to_string(w.size()) + "\r\n" + w + "\r\n";
  }
  const int fd = connectUnix(socketPath());
  if (fd < 0) return {};
  timeval tv{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string reply;
  if (::write(fd, out.data(), out.size()) == static_cast<ssize_t>(out.size())) {
    std::string buf;
    for (std::size_t i = 0; i < commands.size(); ++i) reply = readReply(fd, buf);
  }
  ::close(fd);
  return reply;
}

std::string RedisServer::log() const {
  std::ifstream in(dir_ + "/redis.log");
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace sekimori::testsupport
