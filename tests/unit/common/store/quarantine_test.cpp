#include "common/store/quarantine.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

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

// An entry as an older release left it: its file and its index line.
void plantOld(const std::string& dir, const std::string& stamp, const std::string& tag) {
  const std::string id = stamp + "-" + tag + "-0123456789abcdef.eml";
  std::ofstream(dir + "/" + id) << "old " << tag;
  std::ofstream(dir + "/index.tsv", std::ios::app) << stamp << "\t" << id << "\t" << tag << "\tinbound\tEicar\ta@b\tc@d\n";
}

std::size_t lines(const std::string& text) { return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n')); }

TEST(Quarantine, ExpireRemovesOldEntriesAndTheirIndexLinesOnly) {
  TempDir t;
  Quarantine q(t.path);
  chmod(t.path.c_str(), 0700);
  std::string why;
  const std::time_t now = std::time(nullptr);
  constexpr std::time_t kDay = 24 * 3600;
  const std::string old1 = Quarantine::stamp(now - 40 * kDay), old2 = Quarantine::stamp(now - 20 * kDay);
  plantOld(t.path, old1, "OLD1");
  mime::Spool spool(1024);
  spool.append("fresh");
  const auto fresh = q.store(spool, {"NEW1", "inbound", "Eicar", "a@b", {"c@d"}}, &why);
  ASSERT_TRUE(fresh) << why;
  plantOld(t.path, old2, "OLD2");
  std::ofstream(t.path + "/README.txt") << "the admin's own notes";
  std::ofstream(t.path + "/" + old1 + "-notes.txt") << "not an entry";
  ASSERT_EQ(lines(slurp(t.path + "/index.tsv")), 3u);

  // Kept 60 days: nothing goes.
  EXPECT_EQ(q.expire(std::chrono::hours(60 * 24), now, &why), std::optional<std::size_t>(0)) << why;
  EXPECT_EQ(lines(slurp(t.path + "/index.tsv")), 3u);
  // Kept 30 days: the 40-day-old entry goes, file and line.
  EXPECT_EQ(q.expire(std::chrono::hours(30 * 24), now, &why), std::optional<std::size_t>(1)) << why;
  const std::string index = slurp(t.path + "/index.tsv");
  EXPECT_EQ(lines(index), 2u);
  EXPECT_EQ(index.find("OLD1"), std::string::npos) << index;
  EXPECT_NE(index.find("OLD2"), std::string::npos) << index;
  EXPECT_NE(index.find(*fresh), std::string::npos) << index;
  EXPECT_FALSE(std::filesystem::exists(t.path + "/" + old1 + "-OLD1-0123456789abcdef.eml"));
  EXPECT_TRUE(std::filesystem::exists(t.path + "/" + old2 + "-OLD2-0123456789abcdef.eml"));
  EXPECT_TRUE(std::filesystem::exists(t.path + "/" + *fresh));
  // Files that are not entries stay, whatever their names start with.
  EXPECT_TRUE(std::filesystem::exists(t.path + "/README.txt"));
  EXPECT_TRUE(std::filesystem::exists(t.path + "/" + old1 + "-notes.txt"));
  EXPECT_EQ(modeOf(t.path + "/index.tsv"), 0600u);
  EXPECT_FALSE(std::filesystem::exists(t.path + "/index.tsv.new"));
  // A minute on, kept 0 s: the rest goes.
  EXPECT_EQ(q.expire(std::chrono::seconds(0), now + 60, &why), std::optional<std::size_t>(2)) << why;
  EXPECT_EQ(slurp(t.path + "/index.tsv"), "");
}

TEST(Quarantine, NoIndexLineIsLostToAnExpiryRunningMeanwhile) {
  TempDir t;
  Quarantine q(t.path);
  chmod(t.path.c_str(), 0700);
  std::atomic<bool> done{false};
  std::atomic<int> expiries{0};
  // Expiry rewrites the index whenever it finds an old line; old lines are
  // planted all the time, so the rename races with the writers below.
  std::thread expirer([&] {
    for (int i = 0; !done.load(); ++i) {
      plantOld(t.path, "20200101T000000Z", "OLD" + std::to_string(i));
      std::string why;
      if (q.expire(std::chrono::hours(24), std::time(nullptr), &why)) ++expiries;
    }
  });
  std::vector<std::string> ids[2];
  std::vector<std::thread> writers;
  for (int w = 0; w < 2; ++w) {
    writers.emplace_back([&, w] {
      mime::Spool spool(1024);
      spool.append("x");
      for (int i = 0; i < 300; ++i) {
        std::string why;
        if (auto id = q.store(spool, {"W" + std::to_string(w), "inbound", "Eicar", "a@b", {}}, &why)) {
          ids[w].push_back(*id);
        }
      }
    });
  }
  for (auto& w : writers) w.join();
  done = true;
  expirer.join();
  EXPECT_GT(expiries.load(), 10);
  const std::string index = slurp(t.path + "/index.tsv");
  std::set<std::string> listed;
  std::istringstream in(index);
  for (std::string line; std::getline(in, line);) {
    const auto a = line.find('\t'), b = line.find('\t', a + 1);
    listed.insert(line.substr(a + 1, b - a - 1));
  }
  for (const auto& v : ids) {
    EXPECT_EQ(v.size(), 300u);
    for (const auto& id : v) EXPECT_TRUE(listed.count(id)) << id << " lost from the index";
  }
}

}  // namespace
}  // namespace sekimori::store
