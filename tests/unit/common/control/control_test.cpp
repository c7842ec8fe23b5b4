#include "common/control/control.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

namespace sekimori::control {
namespace {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/sekimori-control-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

TEST(Control, AnswersOneLinePerRequestWithTheSocketMode) {
  TempDir dir;
  const std::string path = dir.path + "/sub/ctl.sock";
  ControlServer server(path, 0600, [](std::string_view req) { return "ok " + std::string(req); });
  std::string why;
  ASSERT_TRUE(server.open(&why)) << why;
  server.start();
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  for (int i = 0; i < 3; ++i) {
    std::string reply;
    ASSERT_TRUE(controlRequest(path, "status s:a@b", &reply, &why)) << why;
    EXPECT_EQ(reply, "ok status s:a@b");
  }
  server.stop();
}

TEST(Control, ASilentClientTimesOutAndTheServerGoesOn) {
  TempDir dir;
  const std::string path = dir.path + "/ctl.sock";
  ControlServer server(path, 0600, [](std::string_view) { return std::string("ok"); });
  std::string why;
  ASSERT_TRUE(server.open(&why)) << why;
  server.start();
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  // Says nothing; the server gives up after kIoTimeout and serves the next.
  std::string reply;
  EXPECT_TRUE(controlRequest(path, "x", &reply, &why)) << why;
  EXPECT_EQ(reply, "ok");
  close(fd);
  server.stop();
}

TEST(Control, RefusesToReplaceAFileThatIsNotASocket) {
  TempDir dir;
  const std::string path = dir.path + "/not-a-socket";
  { FILE* f = std::fopen(path.c_str(), "w"); std::fclose(f); }
  ControlServer server(path, 0600, [](std::string_view) { return std::string("ok"); });
  std::string why;
  EXPECT_FALSE(server.open(&why));
  EXPECT_NE(why.find("not a socket"), std::string::npos);
  EXPECT_TRUE(std::filesystem::exists(path));
}

TEST(Control, UnreachableSocketIsAClearError) {
  std::string reply, why;
  EXPECT_FALSE(controlRequest("/nonexistent/ctl.sock", "status x", &reply, &why));
  EXPECT_NE(why.find("cannot connect"), std::string::npos);
}

}  // namespace
}  // namespace sekimori::control
