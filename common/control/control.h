// common/control/control.h — a milter's admin control socket: a unix socket
// (file permissions are the access control; never TCP) that answers one
// request line with one reply line, for the `sekimori` admin command.
//
//   ControlServer server("/run/sekimori/ratelimit.ctl", 0600,
//                        [](std::string_view line) { return "ok " + std::string(line); });
//   if (!server.open(&why)) ...;   // before dropping privileges
//   server.start();                // after detaching: the thread that serves
//   ...
//   server.stop();
//
//   std::string reply;
//   controlRequest("/run/sekimori/ratelimit.ctl", "status s:a@example.jp", &reply, &why);
//
// Requests and replies are single lines of at most kMaxLine bytes; a client
// has kIoTimeout to send its line. One request is served at a time: these are
// admin commands, not a hot path.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <thread>

namespace sekimori::control {

inline constexpr std::size_t kMaxLine = 4096;
inline constexpr std::chrono::milliseconds kIoTimeout{2000};

class ControlServer {
 public:
  using Handler = std::function<std::string(std::string_view request)>;

  ControlServer(std::string path, mode_t mode, Handler handler);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Creates the socket (removing a stale one, creating its directory).
  bool open(std::string* error);
  void start();
  void stop();
  const std::string& path() const { return path_; }

 private:
  void serve();

  std::string path_;
  mode_t mode_;
  Handler handler_;
  int fd_ = -1;
  int wake_[2] = {-1, -1};  // a pipe that ends the serving thread's poll
  std::thread thread_;
};

// Sends one request line and reads one reply line. false with `error` set
// when the socket cannot be reached or does not answer in time.
bool controlRequest(const std::string& path, std::string_view request, std::string* reply, std::string* error);

}  // namespace sekimori::control
