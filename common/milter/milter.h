// common/milter/milter.h — the C++ face of the milter protocol.
//
// A milter implements `Milter`, overriding only the stages it needs (the rest
// pass through) and declaring them in stages(): stages it does not declare
// are negotiated away (SMFIP_NO*), and stages it declares but never answers
// (not in replyStages()) are negotiated as no-reply (SMFIP_NR_*), because
// every round trip to the milter is paid per message. The framework
// (libmilter_glue.cpp, the only file that includes <libmilter/mfapi.h>) owns
// all libmilter state: one Session per SMTP connection, one Transaction per
// message inside it, each destroyed by RAII on end of message, abort, a new
// MAIL FROM, or a client that disconnects mid-message.
//
//   class Hello final : public milter::Milter {
//     std::string_view name() const override { return "hello"; }
//     milter::Stages stages() const override { return milter::Stage::Eom; }
//     milter::Actions actions() const override { return milter::Action::AddHeader; }
//     milter::Verdict onEom(milter::Session&, milter::MtaActions& mta) override {
//       mta.addHeader("X-Hello", "world");
//       return milter::Verdict::next();
//     }
//     ...
//   };
//
// Decisions belong in plain classes the milter calls; unit tests drive those
// and the Milter itself through a fake MacroSource and MtaActions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <typeinfo>
#include <vector>

#include "common/policy/address.h"
#include "common/policy/cidr.h"
#include "common/policy/direction.h"
#include "common/policy/reply.h"

namespace sekimori::config {
class Schema;
class Values;
class Errors;
}  // namespace sekimori::config

namespace sekimori::milter {

// Protocol stages a milter can take part in.
enum class Stage : std::uint32_t {
  None = 0,
  Connect = 1u << 0,
  Helo = 1u << 1,
  Mail = 1u << 2,
  Rcpt = 1u << 3,
  Data = 1u << 4,
  Header = 1u << 5,
  Eoh = 1u << 6,
  Body = 1u << 7,
  Eom = 1u << 8,
};

class Stages {
 public:
  constexpr Stages() = default;
  constexpr Stages(Stage s) : bits_(static_cast<std::uint32_t>(s)) {}  // NOLINT: implicit on purpose
  constexpr bool has(Stage s) const { return (bits_ & static_cast<std::uint32_t>(s)) != 0; }
  constexpr Stages operator|(Stages o) const { return Stages(bits_ | o.bits_); }
  constexpr bool operator==(const Stages&) const = default;

 private:
  constexpr explicit Stages(std::uint32_t bits) : bits_(bits) {}
  std::uint32_t bits_ = 0;
};
constexpr Stages operator|(Stage a, Stage b) { return Stages(a) | Stages(b); }

// Modifications a milter may make at end of message (SMFIF_*).
enum class Action : std::uint32_t {
  None = 0,
  AddHeader = 1u << 0,
  ChangeHeader = 1u << 1,
  ReplaceBody = 1u << 2,
  AddRecipient = 1u << 3,
  DeleteRecipient = 1u << 4,
  Quarantine = 1u << 5,
  ChangeFrom = 1u << 6,
};

class Actions {
 public:
  constexpr Actions() = default;
  constexpr Actions(Action a) : bits_(static_cast<std::uint32_t>(a)) {}  // NOLINT: implicit on purpose
  constexpr bool has(Action a) const { return (bits_ & static_cast<std::uint32_t>(a)) != 0; }
  constexpr Actions operator|(Actions o) const { return Actions(bits_ | o.bits_); }

 private:
  constexpr explicit Actions(std::uint32_t bits) : bits_(bits) {}
  std::uint32_t bits_ = 0;
};
constexpr Actions operator|(Action a, Action b) { return Actions(a) | Actions(b); }

// What a stage answers. An expected outcome (over a limit, a virus) is a
// reply; an internal problem is a fault, which the framework maps to the
// configured `on_error` action (tempfail by default) and logs.
class Verdict {
 public:
  enum class Kind {
    Continue,  // go on with the next stage
    Accept,    // accept the message (or connection), no more callbacks for it
    Reply,     // refuse with `reply`: 4xx tempfails, 5xx rejects (one recipient at RCPT)
    Discard,   // accept and silently drop (after end of headers only)
    Skip,      // skip the rest of the body (SMFIS_SKIP), if the MTA supports it
    Fault,     // internal error: `reason` is logged, on_error decides
  };

  static Verdict next() { return Verdict(Kind::Continue); }
  static Verdict accept() { return Verdict(Kind::Accept); }
  static Verdict refuse(policy::Reply reply) {
    Verdict v(Kind::Reply);
    v.reply_ = std::move(reply);
    return v;
  }
  static Verdict discard() { return Verdict(Kind::Discard); }
  static Verdict skip() { return Verdict(Kind::Skip); }
  static Verdict fault(std::string reason) {
    Verdict v(Kind::Fault);
    v.reason_ = std::move(reason);
    return v;
  }

  Kind kind() const { return kind_; }
  bool isContinue() const { return kind_ == Kind::Continue; }
  const std::optional<policy::Reply>& reply() const { return reply_; }
  const std::string& reason() const { return reason_; }

 private:
  explicit Verdict(Kind k) : kind_(k) {}
  Kind kind_;
  std::optional<policy::Reply> reply_;
  std::string reason_;
};

// Macro values Postfix sends ({i}, {auth_authen}, ...). Faked in tests.
class MacroSource {
 public:
  virtual ~MacroSource() = default;
  // Name as Postfix spells it: "i", "{auth_authen}". nullopt when not sent.
  virtual std::optional<std::string_view> get(const char* name) const = 0;
};

// Changes to the message, allowed at end of message only (smfi_* calls).
// Each returns false when the MTA refused (logged by the caller's fault path).
class MtaActions {
 public:
  virtual ~MtaActions() = default;
  // `value` without the leading space; the framework adds what the MTA expects.
  virtual bool addHeader(std::string_view name, std::string_view value) = 0;
  virtual bool insertHeader(int index, std::string_view name, std::string_view value) = 0;
  // index is 1-based among headers of that name; an empty value deletes it.
  virtual bool changeHeader(std::string_view name, int index, std::string_view value) = 0;
  // The new body in pieces; the first call replaces, later calls append.
  virtual bool replaceBody(std::span<const std::byte> chunk) = 0;
  virtual bool addRecipient(std::string_view address) = 0;
  virtual bool deleteRecipient(std::string_view address) = 0;
  virtual bool quarantine(std::string_view reason) = 0;
  // Tells the MTA we are still working (long scans), resetting its timeout.
  virtual bool progress() = 0;
};

// The common settings every milter shares ([milter] and [policy] sections),
// one immutable snapshot per config load.
struct CommonConfig {
  enum class OnError { Tempfail, Accept, Reject };
  std::string milterName;  // "sizelimit", for log lines
  policy::DirectionPolicy direction;
  OnError onError = OnError::Tempfail;
  policy::Reply errorReply{"451", "4.3.0", "Temporary failure in mail filter, try again later"};
};

// One message: created at MAIL FROM, destroyed at end of message, abort,
// refusal, the next MAIL FROM or the end of the connection.
struct Transaction {
  std::shared_ptr<const CommonConfig> common;  // the config this message is judged by
  policy::Address sender;
  std::string senderRaw;                // as sent, e.g. "<a@example.jp>"
  std::vector<std::string> mailArgs;    // ESMTP parameters: "SIZE=1234", "BODY=8BITMIME"
  std::vector<policy::Address> recipients;  // accepted so far (by this milter)
  std::string authUser;                 // {auth_authen}, empty when not authenticated
  std::uint64_t headerCount = 0;
  std::uint64_t headerBytes = 0;        // header lines as received, with ": " and CRLF
  std::uint64_t bodyBytes = 0;          // body with CRLF line ends, as Postfix sends it

  // The declared SIZE= parameter, if any and well-formed.
  std::optional<std::uint64_t> declaredSize() const;
  // Header block plus the empty line plus body: what the message weighs.
  std::uint64_t messageBytes() const { return headerBytes + (headerCount > 0 ? 2 : 0) + bodyBytes; }
};

class Session {
 public:
  Session(const MacroSource& macros, std::shared_ptr<const CommonConfig> common);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Connection.
  std::string clientName;                       // "mx.example.jp" or "unknown"
  std::optional<policy::IpAddress> clientAddr;  // nullopt for non-IP (local) clients
  std::string helo;
  std::uint64_t connectionId = 0;               // process-unique, for logs
  std::uint64_t messagesInConnection = 0;

  const MacroSource& macros() const { return *macros_; }
  // The Postfix queue ID, re-read from {i} each call until it is known (Postfix
  // sends it late); "" before it exists.
  const std::string& queueId();

  // The current message (created on demand if a stage arrives without MAIL).
  Transaction& txn();
  bool hasTxn() const { return txn_ != nullptr; }
  void beginTransaction(std::shared_ptr<const CommonConfig> common);
  void endTransaction();

  // Inside (authenticated or internal network) or outside, and the message's
  // direction from its recipients so far (R-DIR-1).
  bool authenticated();
  policy::Direction direction();

  // Milter-specific per-message state, constructed on first use and
  // destroyed with the transaction. Use one type per milter.
  template <class T>
  T& message() {
    if (!state_) {
      state_ = StatePtr(new T(), [](void* p) { delete static_cast<T*>(p); });
      stateType_ = &typeid(T);
    }
    return *static_cast<T*>(state_.get());
  }
  template <class T>
  T* messageIfAny() {
    return state_ && *stateType_ == typeid(T) ? static_cast<T*>(state_.get()) : nullptr;
  }

  // Milter-specific per-connection state (counts across the messages of
  // one SMTP session), constructed on first use and destroyed when the
  // connection closes. Use one type per milter.
  template <class T>
  T& connection() {
    if (!connState_) connState_ = StatePtr(new T(), [](void* p) { delete static_cast<T*>(p); });
    return *static_cast<T*>(connState_.get());
  }

  // Live sessions in this process that the drain at shutdown waits for:
  // those opened before refuseNew().
  static std::uint64_t live();
  // Shutdown has begun: sessions opened from now on are refused at connect
  // (refused() is true for them) and not counted by live().
  static void refuseNew();
  bool refused() const { return !counted_; }

 private:
  using StatePtr = std::unique_ptr<void, void (*)(void*)>;
  const MacroSource* macros_;
  std::shared_ptr<const CommonConfig> connCommon_;
  std::string queueId_;
  std::unique_ptr<Transaction> txn_;
  StatePtr state_{nullptr, [](void*) {}};
  StatePtr connState_{nullptr, [](void*) {}};
  const std::type_info* stateType_ = nullptr;
  bool counted_ = true;
};

class Milter {
 public:
  virtual ~Milter() = default;

  // "sizelimit": names the binary (sekimori-sizelimit), conf file and logs.
  virtual std::string_view name() const = 0;
  virtual Stages stages() const = 0;
  // Stages that may answer anything but Continue. Default: all of stages().
  virtual Stages replyStages() const { return stages(); }
  virtual Actions actions() const { return Action::None; }

  // Adds the milter's own keys (the framework adds [milter] and [policy]).
  virtual void declareOptions(config::Schema& schema) const = 0;
  // Builds the milter's immutable config from checked values and makes it
  // current; on problems adds `file:line: reason` errors and keeps the old
  // one. `apply` false: check only (-t). Called at start and on reload, from
  // a thread of its own while connections are served.
  virtual bool configure(const config::Values& values, config::Errors& errors, bool apply) = 0;

  // Process-level services beyond the milter socket (an admin control
  // socket, a cache thread). open() runs once after the first configure(),
  // before privileges are dropped and before the process detaches; start()
  // after it detached (threads do not survive the fork); stop() once
  // libmilter has stopped and connections have drained.
  virtual bool open(std::string* /*error*/) { return true; }
  // Like open() but after privileges are dropped (still one thread, still
  // before detaching): where helper processes are forked, so they never run
  // as root. A failure stops the start with exit code 2.
  virtual bool prepare(std::string* /*error*/) { return true; }
  virtual void start() {}
  virtual void stop() {}

  virtual Verdict onConnect(Session&) { return Verdict::next(); }
  virtual Verdict onHelo(Session&) { return Verdict::next(); }
  virtual Verdict onMail(Session&) { return Verdict::next(); }
  virtual Verdict onRcpt(Session&, const policy::Address&) { return Verdict::next(); }
  virtual Verdict onData(Session&) { return Verdict::next(); }
  virtual Verdict onHeader(Session&, std::string_view /*name*/, std::string_view /*value*/) { return Verdict::next(); }
  virtual Verdict onEoh(Session&) { return Verdict::next(); }
  virtual Verdict onBody(Session&, std::span<const std::byte>) { return Verdict::next(); }
  virtual Verdict onEom(Session&, MtaActions&) { return Verdict::next(); }
  // The message ended without end of message (client gone, RSET, another
  // milter refused). The transaction is destroyed right after.
  virtual void onAbort(Session&) {}
};

}  // namespace sekimori::milter
