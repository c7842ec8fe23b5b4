// tests/support/redis_server.h — a private redis-server for tests and
// benchmarks: its own temp directory (removed at the end), a unix socket in
// it and, when asked, a free 127.0.0.1 port; no persistence; started and
// stopped by PID, never anything else.
//
//   sekimori::testsupport::RedisServer server(findInPath("redis-server"), {.tcp = true, .password = ""});
//   if (const std::string error = server.start(); !error.empty()) ...;
//   RedisOptions o;
//   o.address = server.address();           // "127.0.0.1:PORT", or "unix:PATH" without tcp
//   server.raw({"HGET", "key", "field"});    // what the code under test wrote
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "tests/support/net.h"

namespace sekimori::testsupport {

class RedisServer {
 public:
  struct Config {
    bool tcp = false;      // also listen on a free 127.0.0.1 port
    std::string password;  // requirepass, when not empty
  };

  RedisServer(std::string binary, Config config);
  ~RedisServer();
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  // Starts the server (again, on the same socket and port) and waits up to
  // 10 s until it answers PING. Empty on success, else why not (with the
  // server's log).
  std::string start();
  // SIGKILL: no goodbye on the connections, like a crash.
  void kill();
  // A hung server: connections stay open, nothing is answered.
  void pause();
  void resume();

  std::string socketPath() const { return dir_ + "/redis.sock"; }
  int port() const { return port_; }  // 0 without Config::tcp
  std::string unixAddress() const { return "unix:" + socketPath(); }
  std::string tcpAddress() const { return "127.0.0.1:" + std::to_string(port_); }
  // RedisOptions::address of the server: TCP with Config::tcp, else the socket.
  std::string address() const { return config_.tcp ? tcpAddress() : unixAddress(); }

  // One command on a new connection over the unix socket (after AUTH and
  // SELECT as needed), for looking at what the code under test wrote. The
  // reply's first line ("+OK", ":3", "-ERR ...") or a bulk string's
  // contents; "" when there is no answer within 2 s.
  std::string raw(const std::vector<std::string>& words, int database = 0) const;
  // What the server wrote to its log file so far.
  std::string log() const;

 private:
  std::string binary_;
  Config config_;
  std::string dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace sekimori::testsupport
