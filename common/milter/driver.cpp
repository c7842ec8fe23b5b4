// common/milter/driver.cpp — see driver.h.
#include "common/milter/driver.h"

#include "common/log/log.h"
#include "common/util/strings.h"

namespace sekimori::milter {

std::string_view stageName(Stage s) {
  switch (s) {
    case Stage::Connect: return "connect";
    case Stage::Helo: return "helo";
    case Stage::Mail: return "mail";
    case Stage::Rcpt: return "rcpt";
    case Stage::Data: return "data";
    case Stage::Header: return "header";
    case Stage::Eoh: return "eoh";
    case Stage::Body: return "body";
    case Stage::Eom: return "eom";
    case Stage::None: break;
  }
  return "none";
}

Verdict Driver::resolveFault(Session& s, Stage stage, const Verdict& v) {
  const auto cfg = s.hasTxn() && s.txn().common ? s.txn().common : nullptr;
  const auto onError = cfg ? cfg->onError : CommonConfig::OnError::Tempfail;
  const char* action = onError == CommonConfig::OnError::Accept   ? "accept"
                       : onError == CommonConfig::OnError::Reject ? "reject"
                                                                  : "tempfail";
  log::Line(s.queueId())
      .kv("milter", cfg ? cfg->milterName : std::string("sekimori"))
      .kv("action", action)
      .kv("stage", stageName(stage))
      .kv("reason", "fault")
      .kv("detail", v.reason())
      .emit(log::Level::Error);
  switch (onError) {
    case CommonConfig::OnError::Accept: return Verdict::accept();
    case CommonConfig::OnError::Reject:
      return Verdict::refuse(policy::Reply{"554", "5.3.0", "Internal error in mail filter"});
    case CommonConfig::OnError::Tempfail: break;
  }
  return Verdict::refuse(cfg ? cfg->errorReply : CommonConfig{}.errorReply);
}

// Runs one stage: exceptions become faults, faults become the on_error
// verdict, and a verdict that ends the message ends the transaction (a
// refused recipient ends only that recipient).
template <class F>
Verdict Driver::run(Session& s, Stage stage, F&& f) {
  Verdict v = Verdict::next();
  try {
    v = f();
  } catch (const std::exception& e) {
    v = Verdict::fault(std::string("exception: ") + e.what());
  } catch (...) {
    v = Verdict::fault("unknown exception");
  }
  if (v.kind() == Verdict::Kind::Fault) v = resolveFault(s, stage, v);
  const bool endsMessage = !v.isContinue() && v.kind() != Verdict::Kind::Skip && stage != Stage::Connect &&
                           stage != Stage::Helo && !(stage == Stage::Rcpt && v.kind() == Verdict::Kind::Reply);
  if (endsMessage || stage == Stage::Eom) s.endTransaction();
  return v;
}

Verdict Driver::connect(Session& s, std::string_view hostname, std::optional<policy::IpAddress> addr) {
  return run(s, Stage::Connect, [&] {
    s.clientName = hostname.empty() ? "unknown" : std::string(hostname);
    s.clientAddr = std::move(addr);
    return milter_.onConnect(s);
  });
}

Verdict Driver::helo(Session& s, std::string_view helo) {
  return run(s, Stage::Helo, [&] {
    s.helo = std::string(helo);
    return milter_.onHelo(s);
  });
}

Verdict Driver::mail(Session& s, std::shared_ptr<const CommonConfig> common, std::span<const std::string_view> argv) {
  return run(s, Stage::Mail, [&] {
    s.beginTransaction(std::move(common));
    Transaction& t = s.txn();
    t.senderRaw = argv.empty() ? std::string() : std::string(argv[0]);
    if (auto a = policy::parseAddress(t.senderRaw)) t.sender = std::move(*a);
    for (std::size_t i = 1; i < argv.size(); ++i) t.mailArgs.emplace_back(argv[i]);
    if (auto user = s.macros().get("{auth_authen}"); user && !user->empty()) t.authUser = std::string(*user);
    return milter_.onMail(s);
  });
}

Verdict Driver::rcpt(Session& s, std::string_view raw) {
  return run(s, Stage::Rcpt, [&] {
    auto rcpt = policy::parseAddress(raw).value_or(policy::Address{});
    Verdict v = milter_.onRcpt(s, rcpt);
    if (v.isContinue()) s.txn().recipients.push_back(std::move(rcpt));
    return v;
  });
}

Verdict Driver::data(Session& s) {
  return run(s, Stage::Data, [&] { return milter_.onData(s); });
}

Verdict Driver::header(Session& s, std::string_view name, std::string_view value) {
  return run(s, Stage::Header, [&] {
    Transaction& t = s.txn();
    ++t.headerCount;
    // "Name:" + value (its leading space included, SMFIP_HDR_LEADSPC) + CRLF.
    t.headerBytes += name.size() + 1 + value.size() + 2;
    return milter_.onHeader(s, name, value);
  });
}

Verdict Driver::eoh(Session& s) {
  return run(s, Stage::Eoh, [&] { return milter_.onEoh(s); });
}

Verdict Driver::body(Session& s, std::span<const std::byte> chunk) {
  return run(s, Stage::Body, [&] {
    s.txn().bodyBytes += chunk.size();
    return milter_.onBody(s, chunk);
  });
}

Verdict Driver::eom(Session& s, MtaActions& mta) {
  return run(s, Stage::Eom, [&] { return milter_.onEom(s, mta); });
}

void Driver::abort(Session& s) {
  try {
    if (s.hasTxn()) milter_.onAbort(s);
  } catch (...) {
    log::message(log::Level::Error, "exception in abort handler ignored");
  }
  s.endTransaction();
}

}  // namespace sekimori::milter
