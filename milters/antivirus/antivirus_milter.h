// milters/antivirus/antivirus_milter.h — sekimori-antivirus: libclamav
// scanning in isolated worker processes, actions by direction, removal of
// infected attachments, quarantine, warning mails (R-AV-1 … R-AV-7).
//
// The message (headers as received, then the body) is spooled with bounded
// memory and scanned whole at end of message: one scan for clean mail. Only
// when that finds something are the MIME leaf parts scanned one by one, to
// tell an infected attachment (inbound: replaced by a notice, the rest
// delivered byte for byte) from an infected body or message (rejected).
// Every delivered message gets X-Virus-Scanned and X-Virus-Status; copies
// of those headers that arrived from outside are removed first.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>

#include "common/config/snapshot.h"
#include "common/config/values.h"
#include "common/milter/milter.h"
#include "common/notify/issued.h"
#include "common/notify/outbox.h"
#include "common/policy/lists.h"
#include "common/util/ticker.h"
#include "milters/antivirus/av_policy.h"
#include "milters/antivirus/clamd.h"
#include "milters/antivirus/scanner.h"

namespace sekimori::antivirus {

struct NotifyConfig {
  config::Layered<bool> enabled{true};    // per direction and per domain (R-AV-6)
  policy::AddressList optOut;             // addresses (or domains) that never get warnings
  std::string admin;                      // also warned when set
  std::string from = "postmaster@localhost";  // From: of warnings (envelope sender is always <>)
  std::string method = "smtp";            // smtp | sendmail
  std::string smtpUrl = "smtp://127.0.0.1:25";
  std::string sendmailPath = "/usr/sbin/sendmail";
  std::string templateDir;
  std::string language = "ja";
  std::chrono::milliseconds timeout{10000};
  notify::Outbox::Retry retry;            // of warnings the relay could not take for now
};

// [quarantine] of sekimori-antivirus's conf file.
struct QuarantineSettings {
  std::string dir;               // empty: nothing kept
  std::chrono::seconds keep{0};  // 0: for ever
  std::uint64_t maxSize = 0;     // bytes of held files; 0: no cap
  // Past maxSize the oldest entries go until this much is left (90%: the
  // next store does not start another round at once).
  std::uint64_t trimTo() const { return maxSize / 10 * 9; }
};
// As the daemon reads them from checked values; the admin command
// (`sekimori quarantine`) reads the same conf file through it.
QuarantineSettings quarantineSettings(const config::Values& v);
// [notify] spool_dir: where warnings not yet sent are kept (empty: in
// memory only); `sekimori outbox list` reads it the same way.
std::string notifySpoolDir(const config::Values& v);

struct AvConfig {
  ActionConfig actions;
  Replies replies;
  NotifyConfig notify;
  QuarantineSettings quarantine;
  std::uint64_t spoolMemory = 1024 * 1024;
  std::string spoolDir = "/tmp";
  std::uint64_t maxScanSize = 100ULL * 1024 * 1024;
};

class AntivirusMilter final : public milter::Milter {
 public:
  std::string_view name() const override { return "antivirus"; }
  milter::Stages stages() const override {
    using milter::Stage;
    return Stage::Mail | Stage::Rcpt | Stage::Header | Stage::Eoh | Stage::Body | Stage::Eom;
  }
  // Only end of message answers: nothing before it waits for us.
  milter::Stages replyStages() const override { return milter::Stage::Eom; }
  milter::Actions actions() const override {
    using milter::Action;
    return Action::AddHeader | Action::ChangeHeader | Action::ReplaceBody;
  }

  void declareOptions(config::Schema& schema) const override;
  bool configure(const config::Values& values, config::Errors& errors, bool apply) override;
  bool prepare(std::string* error) override;
  void start() override;
  void stop() override;

  milter::Verdict onMail(milter::Session& s) override;
  milter::Verdict onHeader(milter::Session& s, std::string_view name, std::string_view value) override;
  milter::Verdict onEoh(milter::Session& s) override;
  milter::Verdict onBody(milter::Session& s, std::span<const std::byte> chunk) override;
  milter::Verdict onEom(milter::Session& s, milter::MtaActions& mta) override;

  // For tests: a scanner started elsewhere (the daemon starts its own in prepare()).
  void useScanner(std::shared_ptr<Scanner> scanner) { pool_ = std::move(scanner); }
  // SIGUSR1 also rechecks the signature database.
  std::shared_ptr<const AvConfig> current() const { return config_.get(); }
  // Removes quarantine entries older than quarantine.keep, then the oldest
  // while the held files take more than max_size (logged); start() runs it
  // at once and every hour, a reload and a store past max_size at once.
  void expireQuarantine();

 private:
  config::Snapshot<AvConfig> config_;
  ScannerOptions scannerOptions_;  // read at start; engine settings need a restart
  std::string backend_ = "libclamav";
  std::string clamdAddress_;
  std::string outboxDir_;  // notify.spool_dir, read at start
  std::shared_ptr<Scanner> pool_;
  util::Ticker housekeeping_;
  std::atomic<std::uint64_t> quarantineBytes_{0};  // held, as of the last expireQuarantine() plus stores since
  notify::Outbox outbox_;  // warning mails, sent apart from end of message (start() to stop())
  notify::IssuedIds issued_;  // their Message-IDs: a mail only claiming to be one gets warnings too
};

}  // namespace sekimori::antivirus
