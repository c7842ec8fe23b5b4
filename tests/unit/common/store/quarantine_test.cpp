#include "common/store/quarantine.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

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

// A quarantine in a fresh 0700 directory, and a one-byte message to store.
struct Fresh {
  TempDir t;
  Quarantine q{t.path};
  mime::Spool spool{1024};
  std::string why;
  explicit Fresh(std::string_view held = "x") {
    chmod(t.path.c_str(), 0700);
    spool.append(held);
  }
};

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
  Fresh f;
  QuarantineEntry e{"Q1", "inbound", "Evil\tName\nInjected", "a@b", {}};
  ASSERT_TRUE(f.q.store(f.spool, e, &f.why)) << f.why;
  const std::string index = slurp(f.t.path + "/index.tsv");
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
  Fresh f("fresh");
  const std::time_t now = std::time(nullptr);
  constexpr std::time_t kDay = 24 * 3600;
  const std::string old1 = Quarantine::stamp(now - 40 * kDay), old2 = Quarantine::stamp(now - 20 * kDay);
  plantOld(f.t.path, old1, "OLD1");
  const auto fresh = f.q.store(f.spool, {"NEW1", "inbound", "Eicar", "a@b", {"c@d"}}, &f.why);
  ASSERT_TRUE(fresh) << f.why;
  plantOld(f.t.path, old2, "OLD2");
  std::ofstream(f.t.path + "/README.txt") << "the admin's own notes";
  std::ofstream(f.t.path + "/" + old1 + "-notes.txt") << "not an entry";
  ASSERT_EQ(lines(slurp(f.t.path + "/index.tsv")), 3u);

  // Kept 60 days: nothing goes.
  EXPECT_EQ(f.q.expire(std::chrono::hours(60 * 24), now, &f.why), std::optional<std::size_t>(0)) << f.why;
  EXPECT_EQ(lines(slurp(f.t.path + "/index.tsv")), 3u);
  // Kept 30 days: the 40-day-old entry goes, file and line.
  EXPECT_EQ(f.q.expire(std::chrono::hours(30 * 24), now, &f.why), std::optional<std::size_t>(1)) << f.why;
  const std::string index = slurp(f.t.path + "/index.tsv");
  EXPECT_EQ(lines(index), 2u);
  EXPECT_EQ(index.find("OLD1"), std::string::npos) << index;
  EXPECT_NE(index.find("OLD2"), std::string::npos) << index;
  EXPECT_NE(index.find(*fresh), std::string::npos) << index;
  EXPECT_FALSE(std::filesystem::exists(f.t.path + "/" + old1 + "-OLD1-0123456789abcdef.eml"));
  EXPECT_TRUE(std::filesystem::exists(f.t.path + "/" + old2 + "-OLD2-0123456789abcdef.eml"));
  EXPECT_TRUE(std::filesystem::exists(f.t.path + "/" + *fresh));
  // Files that are not entries stay, whatever their names start with.
  EXPECT_TRUE(std::filesystem::exists(f.t.path + "/README.txt"));
  EXPECT_TRUE(std::filesystem::exists(f.t.path + "/" + old1 + "-notes.txt"));
  EXPECT_EQ(modeOf(f.t.path + "/index.tsv"), 0600u);
  EXPECT_FALSE(std::filesystem::exists(f.t.path + "/index.tsv.new"));
  // A minute on, kept 0 s: the rest goes.
  EXPECT_EQ(f.q.expire(std::chrono::seconds(0), now + 60, &f.why), std::optional<std::size_t>(2)) << f.why;
  EXPECT_EQ(slurp(f.t.path + "/index.tsv"), "");
}

TEST(Quarantine, ListFindsIndexedEntriesFilesWithoutLinesAndLinesWithoutFiles) {
  Fresh f("Subject: held\r\n\r\nbody\r\n");
  const std::time_t now = std::time(nullptr);
  // Oldest first, whatever the order in the index.
  plantOld(f.t.path, Quarantine::stamp(now - 3600), "LATER");
  plantOld(f.t.path, Quarantine::stamp(now - 7200), "EARLIER");
  const auto held = f.q.store(f.spool, {"Q3", "outbound", "Eicar-Signature", "a@example.jp", {"b@example.net", "c@example.net"}}, &f.why);
  ASSERT_TRUE(held) << f.why;
  // The file of LATER removed by hand; a file whose line never got written.
  const std::string later = Quarantine::stamp(now - 3600) + "-LATER-0123456789abcdef.eml";
  ASSERT_EQ(std::filesystem::remove(f.t.path + "/" + later), true);
  const std::string orphan = Quarantine::stamp(now - 60) + "-ORPHAN-00000000000000aa.eml";
  std::ofstream(f.t.path + "/" + orphan) << "12345";
  // Not entries: ignored.
  std::ofstream(f.t.path + "/index.tsv", std::ios::app) << "garbage without tabs\n";
  std::ofstream(f.t.path + "/notes.txt") << "x";

  const auto list = f.q.list(&f.why);
  ASSERT_TRUE(list) << f.why;
  ASSERT_EQ(list->size(), 4u);
  EXPECT_NE((*list)[0].id.find("EARLIER"), std::string::npos);
  EXPECT_TRUE((*list)[0].indexed && (*list)[0].held);
  EXPECT_EQ((*list)[1].id, later);
  EXPECT_TRUE((*list)[1].indexed);
  EXPECT_FALSE((*list)[1].held);
  EXPECT_EQ((*list)[1].entry.queueId, "LATER");
  EXPECT_EQ((*list)[2].id, orphan);
  EXPECT_FALSE((*list)[2].indexed);
  EXPECT_TRUE((*list)[2].held);
  EXPECT_EQ((*list)[2].size, 5u);
  const auto& r = (*list)[3];
  EXPECT_EQ(r.id, *held);
  EXPECT_EQ(r.stamp, held->substr(0, 16));
  EXPECT_TRUE(r.indexed && r.held);
  EXPECT_EQ(r.size, std::string("Subject: held\r\n\r\nbody\r\n").size());
  EXPECT_EQ(r.entry.queueId, "Q3");
  EXPECT_EQ(r.entry.direction, "outbound");
  EXPECT_EQ(r.entry.reason, "Eicar-Signature");
  EXPECT_EQ(r.entry.sender, "a@example.jp");
  EXPECT_EQ(r.entry.recipients, (std::vector<std::string>{"b@example.net", "c@example.net"}));

  // An empty quarantine (no index yet) lists nothing; a missing one is an error.
  TempDir empty;
  EXPECT_EQ(Quarantine(empty.path).list(&f.why)->size(), 0u);
  EXPECT_FALSE(Quarantine(empty.path + "/missing").list(&f.why));
  EXPECT_NE(f.why.find("missing"), std::string::npos) << f.why;
}

TEST(Quarantine, RemoveTakesTheFileAndTheLineAndRefusesWhatIsNotAnEntry) {
  Fresh f;
  const auto a = f.q.store(f.spool, {"QA", "inbound", "Eicar", "a@b", {"c@d"}}, &f.why);
  const auto b = f.q.store(f.spool, {"QB", "inbound", "Eicar", "a@b", {"c@d"}}, &f.why);
  ASSERT_TRUE(a && b) << f.why;
  std::ofstream(f.t.path + "/secret.txt") << "not yours";

  // Anything but an entry's name is refused, and nothing is removed.
  for (const std::string& bad : std::vector<std::string>{"../secret.txt", "secret.txt", "index.tsv", "", *a + "/..", "/etc/passwd",
                                                         "20261124T093000Z-/../../secret.txt.eml",
                                                         "20261124T093000Z-x/../..eml", "20261124T093000Z-.eml"}) {
    EXPECT_FALSE(f.q.remove({*a, bad}, &f.why)) << bad;
    EXPECT_NE(f.why.find("not a quarantine entry id"), std::string::npos) << f.why;
  }
  EXPECT_TRUE(std::filesystem::exists(f.t.path + "/" + *a));
  EXPECT_TRUE(std::filesystem::exists(f.t.path + "/secret.txt"));

  EXPECT_EQ(f.q.remove({*a}, &f.why), std::optional<std::size_t>(1)) << f.why;
  EXPECT_FALSE(std::filesystem::exists(f.t.path + "/" + *a));
  EXPECT_TRUE(std::filesystem::exists(f.t.path + "/" + *b));
  const std::string index = slurp(f.t.path + "/index.tsv");
  EXPECT_EQ(index.find(*a), std::string::npos) << index;
  EXPECT_NE(index.find(*b), std::string::npos) << index;
  // A line whose file is already gone: the line goes, no file counted.
  std::filesystem::remove(f.t.path + "/" + *b);
  EXPECT_EQ(f.q.remove({*b}, &f.why), std::optional<std::size_t>(0)) << f.why;
  EXPECT_EQ(slurp(f.t.path + "/index.tsv"), "");
  EXPECT_EQ(modeOf(f.t.path + "/index.tsv"), 0600u);
}

TEST(Quarantine, TrimRemovesTheOldestUntilUnderTheCap) {
  TempDir t;
  Quarantine q(t.path);
  chmod(t.path.c_str(), 0700);
  std::string why;
  const std::time_t now = std::time(nullptr);
  // Four entries of 100 bytes, an hour apart, oldest "E0"; one index line without its file.
  for (int i = 0; i < 4; ++i) {
    const std::string stamp = Quarantine::stamp(now - (4 - i) * 3600);
    const std::string id = stamp + "-E" + std::to_string(i) + "-0123456789abcdef.eml";
    std::ofstream(t.path + "/" + id) << std::string(100, 'x');
    std::ofstream(t.path + "/index.tsv", std::ios::app) << stamp << "\t" << id << "\tE" << i << "\tinbound\tEicar\ta@b\tc@d\n";
  }
  std::ofstream(t.path + "/index.tsv", std::ios::app)
      << Quarantine::stamp(now - 9 * 3600) << "\t" << Quarantine::stamp(now - 9 * 3600) << "-GONE-0123456789abcdef.eml\tGONE\tinbound\tEicar\ta@b\tc@d\n";

  auto r = q.trim(400, 0, &why);  // not over the cap: nothing goes, whatever downTo says
  ASSERT_TRUE(r) << why;
  EXPECT_EQ(r->removed, 0u);
  EXPECT_EQ(r->bytesLeft, 400u);

  r = q.trim(350, 250, &why);  // over: down to 250
  ASSERT_TRUE(r) << why;
  EXPECT_EQ(r->removed, 2u);
  EXPECT_EQ(r->bytesLeft, 200u);
  const auto left = q.list(&why);
  ASSERT_TRUE(left) << why;
  std::vector<std::string> tags;
  for (const auto& e : *left) tags.push_back(e.entry.queueId);
  EXPECT_EQ(tags, (std::vector<std::string>{"GONE", "E2", "E3"}));  // a line without a file takes no room

  r = q.trim(0, 0, &why);
  ASSERT_TRUE(r) << why;
  EXPECT_EQ(r->removed, 2u);
  EXPECT_EQ(r->bytesLeft, 0u);
}

TEST(Quarantine, ARewrittenIndexKeepsItsOwner) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to give the index another owner";
  Fresh f;
  const auto a = f.q.store(f.spool, {"QA", "inbound", "Eicar", "a@b", {}}, &f.why);
  ASSERT_TRUE(a && f.q.store(f.spool, {"QB", "inbound", "Eicar", "a@b", {}}, &f.why)) << f.why;
  // The milter's user owns the index; root (the admin command) removes an entry.
  ASSERT_EQ(chown((f.t.path + "/index.tsv").c_str(), 4321, 4322), 0);
  ASSERT_EQ(f.q.remove({*a}, &f.why), std::optional<std::size_t>(1)) << f.why;
  struct stat st {};
  ASSERT_EQ(stat((f.t.path + "/index.tsv").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 4321u);
  EXPECT_EQ(st.st_gid, 4322u);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
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
        } else {
          ADD_FAILURE() << "store " << i << " of writer " << w << ": " << why;
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
