// common/control/control.cpp — see control.h.
#include "common/control/control.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "common/log/log.h"

namespace sekimori::control {

namespace {

bool fillAddress(const std::string& path, sockaddr_un& addr, std::string* error) {
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    *error = "control socket path empty or too long: " + path;
    return false;
  }
  std::memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return true;
}

long remainingMs(std::chrono::steady_clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  return left.count() > 0 ? left.count() : 0;
}

// Reads up to and excluding '\n' within the deadline; false on timeout, EOF
// without a newline, or an over-long line.
bool readLine(int fd, std::string* line, std::chrono::steady_clock::time_point deadline) {
  line->clear();
  char buf[512];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    const int r = poll(&p, 1, static_cast<int>(remainingMs(deadline)));
    if (r <= 0) return false;
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) return false;
    line->append(buf, static_cast<std::size_t>(n));
    const auto nl = line->find('\n');
    if (nl != std::string::npos) {
      line->resize(nl);
      if (!line->empty() && line->back() == '\r') line->pop_back();
      return true;
    }
    if (line->size() > kMaxLine) return false;
  }
}

bool writeAll(int fd, std::string_view data, std::chrono::steady_clock::time_point deadline) {
  while (!data.empty()) {
    pollfd p{fd, POLLOUT, 0};
    if (poll(&p, 1, static_cast<int>(remainingMs(deadline))) <= 0) return false;
    const ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

}  // namespace

ControlServer::ControlServer(std::string path, mode_t mode, Handler handler)
    : path_(std::move(path)), mode_(mode), handler_(std::move(handler)) {}

ControlServer::~ControlServer() {
  stop();
  if (fd_ >= 0) {
    close(fd_);
    unlink(path_.c_str());
  }
}

bool ControlServer::open(std::string* error) {
  sockaddr_un addr{};
  if (!fillAddress(path_, addr, error)) return false;
  std::error_code ec;
  const auto dir = std::filesystem::path(path_).parent_path();
  if (!dir.empty()) std::filesystem::create_directories(dir, ec);
  if (ec) {
    *error = "cannot create directory of control socket " + path_ + ": " + ec.message();
    return false;
  }
  struct stat st {};
  if (lstat(path_.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      *error = "control socket path exists and is not a socket: " + path_;
      return false;
    }
    unlink(path_.c_str());
  }
  fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    *error = std::string("socket: ") + std::strerror(errno);
    return false;
  }
  // The socket is created with the final mode: no window in which another
  // user could connect.
  const mode_t old = umask(static_cast<mode_t>(~mode_ & 0777));
  const int rc = bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  umask(old);
  if (rc != 0 || listen(fd_, 8) != 0) {
    *error = "cannot listen on control socket " + path_ + ": " + std::strerror(errno);
    close(fd_);
    fd_ = -1;
    return false;
  }
  return true;
}

void ControlServer::start() {
  if (fd_ < 0 || thread_.joinable()) return;
  if (pipe2(wake_, O_CLOEXEC) != 0) {
    log::message(log::Level::Error, "control socket not served: pipe: " + std::string(std::strerror(errno)));
    return;
  }
  thread_ = std::thread([this] { serve(); });
}

void ControlServer::stop() {
  if (!thread_.joinable()) return;
  const char b = 0;
  (void)!write(wake_[1], &b, 1);
  thread_.join();
  close(wake_[0]);
  close(wake_[1]);
  wake_[0] = wake_[1] = -1;
}

void ControlServer::serve() {
  for (;;) {
    pollfd p[2] = {{fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      log::message(log::Level::Error, "control socket: poll: " + std::string(std::strerror(errno)));
      return;
    }
    if (p[1].revents != 0) return;
    if ((p[0].revents & POLLIN) == 0) continue;
    const int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    const auto deadline = std::chrono::steady_clock::now() + kIoTimeout;
    std::string line;
    std::string reply;
    if (readLine(c, &line, deadline)) {
      try {
        reply = handler_(line);
      } catch (const std::exception& e) {
        reply = std::string("error ") + e.what();
      }
    } else {
      reply = "error request not received: one line of at most " + std::to_string(kMaxLine) + " bytes";
    }
    reply += '\n';
    writeAll(c, reply, deadline);
    close(c);
  }
}

bool controlRequest(const std::string& path, std::string_view request, std::string* reply, std::string* error) {
  sockaddr_un addr{};
  if (!fillAddress(path, addr, error)) return false;
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = std::string("socket: ") + std::strerror(errno);
    return false;
  }
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    *error = "cannot connect to " + path + ": " + std::strerror(errno);
    close(fd);
    return false;
  }
  const auto deadline = std::chrono::steady_clock::now() + kIoTimeout * 2;
  std::string line(request);
  line += '\n';
  const bool ok = writeAll(fd, line, deadline) && readLine(fd, reply, deadline);
  close(fd);
  if (!ok) *error = "no reply from " + path;
  return ok;
}

}  // namespace sekimori::control
