#include "common/store/quarantine.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace sekimori::store {
namespace {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/sekimori-quarantine-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

std::string slurp(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

mode_t modeOf(const std::string& p) {
  struct stat st {};
  stat(p.c_str(), &st);
  return st.st_mode & 0777;
}

TEST(Quarantine, StoresTheMessageAndAnIndexLineForAdminsOnly) {
  TempDir t;
  Quarantine q(t.path + "/q");
  std::string why;
  ASSERT_TRUE(q.prepare(&why)) << why;
  EXPECT_EQ(modeOf(t.path + "/q"), 0700u);
  mime::Spool spool(16);  // spilled to a temp file: bigger than its memory limit
  spool.append("Subject: x\r\n\r\nEICAR body\r\n");
  QuarantineEntry e{"4cKqLt0X3Tz5", "inbound", "Eicar-Signature", "a@example.org", {"b@example.net", "c@example.net"}};
  const auto id = q.store(spool, e, &why);
  ASSERT_TRUE(id) << why;
  const std::string file = t.path + "/q/" + *id;
  EXPECT_EQ(slurp(file), "Subject: x\r\n\r\nEICAR body\r\n");
  EXPECT_EQ(modeOf(file), 0600u);
  EXPECT_NE(id->find("4cKqLt0X3Tz5"), std::string::npos);
  const std::string index = slurp(t.path + "/q/index.tsv");
  EXPECT_EQ(modeOf(t.path + "/q/index.tsv"), 0600u);
  EXPECT_NE(index.find("\t" + *id + "\t4cKqLt0X3Tz5\tinbound\tEicar-Signature\ta@example.org\tb@example.net,c@example.net\n"),
            std::string::npos)
      << index;
}

TEST(Quarantine, IndexFieldsCannotBreakTheLineFormat) {
  TempDir t;
  Quarantine q(t.path);
  chmod(t.path.c_str(), 0700);
  std::string why;
  mime::Spool spool(1024);
  spool.append("x");
  QuarantineEntry e{"Q1", "inbound", "Evil\tName\nInjected", "a@b", {}};
  ASSERT_TRUE(q.store(spool, e, &why)) << why;
  const std::string index = slurp(t.path + "/index.tsv");
  EXPECT_EQ(std::count(index.begin(), index.end(), '\n'), 1);
  EXPECT_EQ(std::count(index.begin(), index.end(), '\t'), 6);
}

TEST(Quarantine, RefusesADirectoryOthersCanRead) {
  TempDir t;
  chmod(t.path.c_str(), 0755);
  std::string why;
  EXPECT_FALSE(Quarantine(t.path).prepare(&why));
  EXPECT_NE(why.find("chmod 0700"), std::string::npos) << why;
  EXPECT_FALSE(Quarantine("relative/dir").prepare(&why));
}

}  // namespace
}  // namespace sekimori::store
