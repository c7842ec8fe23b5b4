// milters/antivirus/clamd.cpp — see clamd.h.
#include "milters/antivirus/clamd.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace sekimori::antivirus {

namespace {

using Steady = std::chrono::steady_clock;

int remainingMs(Steady::time_point deadline) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Steady::now()).count();
  return ms > 0 ? static_cast<int>(ms) : 0;
}

// Splits "HOST:PORT" (IPv4 literal or [IPv6]); false if not that form.
bool splitHostPort(const std::string& a, std::string* host, int* port) {
  const auto colon = a.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  std::string h = a.substr(0, colon);
  if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  const std::string p = a.substr(colon + 1);
  if (p.empty() || p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos) return false;
  *port = std::stoi(p);
  *host = h;
  return *port > 0 && *port < 65536;
}

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// A connected, non-blocking socket to clamd, or -1 with `error` set.
int connectClamd(const std::string& address, Steady::time_point deadline, std::string* error) {
  int fd = -1;
  int rc = -1;
  if (!address.empty() && address[0] == '/') {
    sockaddr_un un{};
    if (address.size() >= sizeof un.sun_path) {
      *error = "clamd socket path too long";
      return -1;
    }
    un.sun_family = AF_UNIX;
    std::memcpy(un.sun_path, address.c_str(), address.size() + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd >= 0) rc = connect(fd, reinterpret_cast<sockaddr*>(&un), sizeof un);
  } else {
    std::string host;
    int port = 0;
    if (!splitHostPort(address, &host, &port)) {
      *error = "bad clamd address " + address;
      return -1;
    }
    sockaddr_in6 in6{};
    sockaddr_in in4{};
    if (inet_pton(AF_INET, host.c_str(), &in4.sin_addr) == 1) {
      in4.sin_family = AF_INET;
      in4.sin_port = htons(static_cast<std::uint16_t>(port));
      fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
      if (fd >= 0) rc = connect(fd, reinterpret_cast<sockaddr*>(&in4), sizeof in4);
    } else if (inet_pton(AF_INET6, host.c_str(), &in6.sin6_addr) == 1) {
      in6.sin6_family = AF_INET6;
      in6.sin6_port = htons(static_cast<std::uint16_t>(port));
      fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
      if (fd >= 0) rc = connect(fd, reinterpret_cast<sockaddr*>(&in6), sizeof in6);
    } else {
      *error = "clamd address must be an IP address or a socket path: " + address;
      return -1;
    }
  }
  if (fd < 0) {
    *error = std::string("socket: ") + std::strerror(errno);
    return -1;
  }
  if (rc != 0 && errno != EINPROGRESS && errno != EAGAIN) {
    *error = "cannot connect to clamd at " + address + ": " + std::strerror(errno);
    close(fd);
    return -1;
  }
  if (rc != 0) {
    pollfd p{fd, POLLOUT, 0};
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (poll(&p, 1, remainingMs(deadline)) <= 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 ||
        soerr != 0) {
      *error = "cannot connect to clamd at " + address + ": " + (soerr ? std::strerror(soerr) : "timed out");
      close(fd);
      return -1;
    }
  }
  return fd;
}

bool sendAll(int fd, const char* data, std::size_t n, Steady::time_point deadline) {
  while (n > 0) {
    const ssize_t w = send(fd, data, n, MSG_NOSIGNAL);
    if (w > 0) {
      data += w;
      n -= static_cast<std::size_t>(w);
      continue;
    }
    if (w < 0 && errno != EAGAIN && errno != EINTR) return false;
    pollfd p{fd, POLLOUT, 0};
    if (poll(&p, 1, remainingMs(deadline)) <= 0) return false;
  }
  return true;
}

// Reads up to the NUL that ends a z-command reply (or EOF).
bool readReply(int fd, std::string* out, Steady::time_point deadline) {
  out->clear();
  char buf[512];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, remainingMs(deadline)) <= 0) return false;
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) return !out->empty();
    out->append(buf, static_cast<std::size_t>(n));
    const auto nul = out->find('\0');
    if (nul != std::string::npos) {
      out->resize(nul);
      return true;
    }
    if (out->size() > 4096) return false;
  }
}

// What clamd names (a signature, its version) goes into headers, replies,
// logs and the quarantine index: printable ASCII without spaces, bounded,
// whatever the other end of the socket sends.
std::string word(std::string_view s) {
  std::string out(s.substr(0, 200));
  for (char& c : out) {
    if (c <= 0x20 || c >= 0x7f) c = '?';
  }
  return out;
}

bool command(const std::string& address, const char* cmd, std::chrono::milliseconds timeout, std::string* reply,
             std::string* why) {
  const auto deadline = Steady::now() + timeout;
  Fd fd(connectClamd(address, deadline, why));
  if (fd.get() < 0) return false;
  if (!sendAll(fd.get(), cmd, std::strlen(cmd) + 1, deadline) || !readReply(fd.get(), reply, deadline)) {
    *why = "no answer from clamd at " + address;
    return false;
  }
  return true;
}

}  // namespace

bool validClamdAddress(const std::string& address) {
  if (!address.empty() && address[0] == '/') return true;
  std::string host;
  int port = 0;
  if (!splitHostPort(address, &host, &port)) return false;
  in6_addr a6{};
  in_addr a4{};
  return inet_pton(AF_INET, host.c_str(), &a4) == 1 || inet_pton(AF_INET6, host.c_str(), &a6) == 1;
}

ScanResult parseClamdReply(std::string_view reply) {
  // "stream: NAME FOUND", "stream: OK", "stream: <text> ERROR", "INSTREAM size limit exceeded. ERROR"
  std::string_view body = reply;
  if (const auto colon = body.find(": "); colon != std::string_view::npos) body = body.substr(colon + 2);
  while (!body.empty() && (body.back() == '\n' || body.back() == ' ')) body.remove_suffix(1);
  ScanResult r;
  constexpr std::string_view kFound = " FOUND";
  if (body == "OK") {
    r.status = ScanResult::Status::Clean;
  } else if (body.size() > kFound.size() && body.substr(body.size() - kFound.size()) == kFound) {
    r.name = word(body.substr(0, body.size() - kFound.size()));
    if (r.name.rfind("Heuristics.Limits.Exceeded", 0) == 0) {
      r.status = ScanResult::Status::LimitsExceeded;
    } else if (r.name.rfind("Heuristics.Encrypted", 0) == 0) {
      r.status = ScanResult::Status::Encrypted;
    } else {
      r.status = ScanResult::Status::Infected;
    }
  } else if (reply.find("size limit exceeded") != std::string_view::npos) {
    r.status = ScanResult::Status::LimitsExceeded;
    r.name = "Heuristics.Limits.Exceeded.StreamMaxLength";
  } else {
    r.status = ScanResult::Status::Error;
    r.error = "clamd: " + std::string(reply.substr(0, 300));
  }
  return r;
}

ScanResult ClamdScanner::scan(int fd) {
  const auto deadline = Steady::now() + options_.timeout;
  std::string why;
  Fd sock(connectClamd(options_.address, deadline, &why));
  if (sock.get() < 0) return ScanResult::failure(why);
  static constexpr char kCmd[] = "zINSTREAM";
  if (!sendAll(sock.get(), kCmd, sizeof kCmd, deadline)) return ScanResult::failure("clamd: cannot send INSTREAM");
  std::vector<char> buf(4 + options_.chunkSize);
  for (off_t off = 0;;) {
    const ssize_t n = pread(fd, buf.data() + 4, options_.chunkSize, off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ScanResult::failure(std::string("reading the message: ") + std::strerror(errno));
    }
    const std::uint32_t len = htonl(static_cast<std::uint32_t>(n));
    std::memcpy(buf.data(), &len, 4);
    if (!sendAll(sock.get(), buf.data(), 4 + static_cast<std::size_t>(n), deadline)) {
      // clamd closes early when StreamMaxLength is exceeded; its reply says so.
      break;
    }
    if (n == 0) break;
    off += n;
  }
  std::string reply;
  if (!readReply(sock.get(), &reply, deadline)) return ScanResult::failure("clamd: no verdict before the timeout");
  ScanResult r = parseClamdReply(reply);
  if (r.status != ScanResult::Status::Error) r.versions = versions();
  return r;
}

std::string ClamdScanner::versions() const {
  // Asked per scan would double the round trips; clamd's answer changes
  // only with a database update, so a cached value is refreshed each minute.
  {
    std::lock_guard lock(versionMutex_);
    if (!versionCache_.empty() && Steady::now() - versionAt_ < std::chrono::minutes(1)) return versionCache_;
  }
  std::string reply, why;
  if (!command(options_.address, "zVERSION", std::chrono::milliseconds(2000), &reply, &why)) return "clamd";
  // "ClamAV 1.4.6/27100/Mon Nov 23 ..." -> "clamd 1.4.6/27100"
  std::string v = reply.rfind("ClamAV ", 0) == 0 ? reply.substr(7) : reply;
  const auto first = v.find('/');
  const auto second = first == std::string::npos ? std::string::npos : v.find('/', first + 1);
  std::lock_guard lock(versionMutex_);
  versionCache_ = "clamd " + word(v.substr(0, second));
  versionAt_ = Steady::now();
  return versionCache_;
}

bool ClamdScanner::ping(std::string* error) const {
  std::string reply;
  if (!command(options_.address, "zPING", std::chrono::milliseconds(2000), &reply, error)) return false;
  if (reply != "PONG") {
    *error = "clamd at " + options_.address + " answered PING with '" + reply.substr(0, 80) + "'";
    return false;
  }
  return true;
}

}  // namespace sekimori::antivirus
