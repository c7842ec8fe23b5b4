// milters/sizelimit/sizelimit_milter.h — sekimori-sizelimit: message size,
// hop count, message/partial, archive expansion, recipient and attachment
// limits (R-SIZE-1 … R-SIZE-6).
//
// Cheapest decision first: a declared SIZE= over every possible limit is
// refused at MAIL FROM, per-recipient limits at RCPT, hop count and a
// top-level message/partial at end of headers. The body is only counted,
// and read as MIME (spooled with bounded memory) only when the top-level
// type can hold parts or attachments at all; once the size limit is
// certainly exceeded, buffering stops and the verdict waits for end of
// message (Postfix answers the client only after the final dot anyway).
#pragma once

#include <memory>

#include "common/config/snapshot.h"
#include "common/milter/milter.h"
#include "milters/sizelimit/size_policy.h"

namespace sekimori::sizelimit {

class SizeLimitMilter final : public milter::Milter {
 public:
  std::string_view name() const override { return "sizelimit"; }
  milter::Stages stages() const override {
    using milter::Stage;
    return Stage::Mail | Stage::Rcpt | Stage::Header | Stage::Eoh | Stage::Body | Stage::Eom;
  }
  // Headers and body chunks are only observed: no round trip per header or chunk.
  milter::Stages replyStages() const override {
    using milter::Stage;
    return Stage::Mail | Stage::Rcpt | Stage::Eoh | Stage::Eom;
  }

  void declareOptions(config::Schema& schema) const override;
  bool configure(const config::Values& values, config::Errors& errors, bool apply) override;

  milter::Verdict onMail(milter::Session& s) override;
  milter::Verdict onRcpt(milter::Session& s, const policy::Address& rcpt) override;
  milter::Verdict onHeader(milter::Session& s, std::string_view name, std::string_view value) override;
  milter::Verdict onEoh(milter::Session& s) override;
  milter::Verdict onBody(milter::Session& s, std::span<const std::byte> chunk) override;
  milter::Verdict onEom(milter::Session& s, milter::MtaActions& mta) override;

  // The config in force (for tests).
  std::shared_ptr<const SizeConfig> current() const { return config_.get(); }

 private:
  config::Snapshot<SizeConfig> config_;
};

}  // namespace sekimori::sizelimit
