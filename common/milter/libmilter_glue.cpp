// common/milter/libmilter_glue.cpp — the only code that includes libmilter.
//
// C trampolines turn libmilter callbacks into calls on the C++ Milter, with
// per-connection state owned here: a Conn (Session + macro access) is handed
// to libmilter with smfi_setpriv at negotiate/connect and taken back into a
// unique_ptr at close, which may arrive without a connect (so it may be null).
// Every trampoline is noexcept: an exception becomes a fault, logged and
// answered with the configured on_error action, never a crash.
#include <libmilter/mfapi.h>
#include <libmilter/mfdef.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <dirent.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <algorithm>
#include <atomic>
#include <cstring>
#include <chrono>
#include <mutex>
#include <thread>

#include "common/config/snapshot.h"
#include "common/log/log.h"
#include "common/milter/driver.h"
#include "common/milter/glue.h"
#include "common/util/strings.h"

namespace sekimori::milter::glue {
namespace {

Milter* gMilter = nullptr;
std::unique_ptr<Driver> gDriver;
std::string gName;  // smfiDesc keeps the pointer
config::Snapshot<CommonConfig> gCommon;

class CtxMacros final : public MacroSource {
 public:
  explicit CtxMacros(SMFICTX* ctx) : ctx_(ctx) {}
  std::optional<std::string_view> get(const char* name) const override {
    const char* v = smfi_getsymval(ctx_, const_cast<char*>(name));
    if (v == nullptr) return std::nullopt;
    return std::string_view(v);
  }

 private:
  SMFICTX* ctx_;
};

// What one SMTP connection owns.
struct Conn {
  explicit Conn(SMFICTX* ctx) : macros(ctx), session(macros, common()) {}
  CtxMacros macros;
  Session session;
  unsigned long protocol = 0;  // SMFIP_* flags agreed at negotiate
};

class CtxActions final : public MtaActions {
 public:
  CtxActions(SMFICTX* ctx, bool leadingSpace) : ctx_(ctx), leadingSpace_(leadingSpace) {}
  bool addHeader(std::string_view name, std::string_view value) override {
    std::string n(name), v = headerValue(value);
    return smfi_addheader(ctx_, n.data(), v.data()) == MI_SUCCESS;
  }
  bool insertHeader(int index, std::string_view name, std::string_view value) override {
    std::string n(name), v = headerValue(value);
    return smfi_insheader(ctx_, index, n.data(), v.data()) == MI_SUCCESS;
  }
  bool changeHeader(std::string_view name, int index, std::string_view value) override {
    std::string n(name);
    if (value.empty()) return smfi_chgheader(ctx_, n.data(), index, nullptr) == MI_SUCCESS;
    std::string v = headerValue(value);
    return smfi_chgheader(ctx_, n.data(), index, v.data()) == MI_SUCCESS;
  }
  bool replaceBody(std::span<const std::byte> chunk) override {
    // libmilter takes an int length: hand over large bodies in pieces.
    constexpr std::size_t kPiece = 1 << 20;
    while (!chunk.empty()) {
      const auto n = std::min(chunk.size(), kPiece);
      auto* p = reinterpret_cast<unsigned char*>(const_cast<std::byte*>(chunk.data()));
      if (smfi_replacebody(ctx_, p, static_cast<int>(n)) != MI_SUCCESS) return false;
      chunk = chunk.subspan(n);
    }
    return true;
  }
  bool addRecipient(std::string_view address) override {
    std::string a(address);
    return smfi_addrcpt(ctx_, a.data()) == MI_SUCCESS;
  }
  bool deleteRecipient(std::string_view address) override {
    std::string a(address);
    return smfi_delrcpt(ctx_, a.data()) == MI_SUCCESS;
  }
  bool quarantine(std::string_view reason) override {
    std::string r(reason);
    return smfi_quarantine(ctx_, r.data()) == MI_SUCCESS;
  }
  bool progress() override { return smfi_progress(ctx_) == MI_SUCCESS; }

 private:
  // With SMFIP_HDR_LEADSPC the MTA adds no space after the colon: we do, so
  // headers we add look like any other. CR, LF and NUL become spaces: no
  // value (a signature name, a version string) may add a header line of
  // its own or be cut short.
  std::string headerValue(std::string_view v) const {
    std::string out;
    out.reserve(v.size() + 1);
    if (leadingSpace_) out.push_back(' ');
    out.append(v);
    std::replace_if(out.begin(), out.end(), [](char c) { return c == '\r' || c == '\n' || c == '\0'; }, ' ');
    return out;
  }
  SMFICTX* ctx_;
  bool leadingSpace_;
};

// The no-reply flag for each stage a milter may take part in.
unsigned long noReplyFlag(Stage s) {
  switch (s) {
    case Stage::Connect: return SMFIP_NR_CONN;
    case Stage::Helo: return SMFIP_NR_HELO;
    case Stage::Mail: return SMFIP_NR_MAIL;
    case Stage::Rcpt: return SMFIP_NR_RCPT;
    case Stage::Header: return SMFIP_NR_HDR;
    case Stage::Eoh: return SMFIP_NR_EOH;
    case Stage::Body: return SMFIP_NR_BODY;
    default: return 0;
  }
}

Conn* connOf(SMFICTX* ctx) {
  auto* c = static_cast<Conn*>(smfi_getpriv(ctx));
  if (c == nullptr) {
    // A stage without negotiate/connect (should not happen with Postfix):
    // make the state here so the milter still sees a whole session.
    c = new Conn(ctx);
    smfi_setpriv(ctx, c);
  }
  return c;
}

sfsistat setReply(SMFICTX* ctx, const policy::Reply& r) {
  // libmilter treats the text as a format: a single % makes it drop the text.
  std::string text;
  for (char ch : r.text) {
    text += ch;
    if (ch == '%') text += '%';
  }
  std::string code = r.code, xcode = r.xcode;
  if (smfi_setreply(ctx, code.data(), xcode.data(), text.data()) != MI_SUCCESS) {
    log::message(log::Level::Warning, "smfi_setreply refused reply " + r.str());
  }
  return r.temporary() ? SMFIS_TEMPFAIL : SMFIS_REJECT;
}

// Maps a verdict to libmilter's answer. Faults were already turned into
// the on_error verdict by the Driver.
sfsistat answer(SMFICTX* ctx, Conn& c, Stage stage, const Verdict& v) {
  const bool noReply = (c.protocol & noReplyFlag(stage)) != 0;
  if (noReply) {
    if (!v.isContinue() && v.kind() != Verdict::Kind::Skip) {
      // The MTA is not waiting for an answer at this stage: the milter
      // declared it would not give one. A bug in the milter, not in the mail.
      log::Line(c.session.queueId()).kv("milter", gName).kv("action", "ignored").kv("stage", stageName(stage))
          .kv("reason", "verdict-at-no-reply-stage").emit(log::Level::Error);
    }
    return SMFIS_NOREPLY;
  }
  switch (v.kind()) {
    case Verdict::Kind::Continue: return SMFIS_CONTINUE;
    case Verdict::Kind::Skip:
      return (stage == Stage::Body && (c.protocol & SMFIP_SKIP)) ? SMFIS_SKIP : SMFIS_CONTINUE;
    case Verdict::Kind::Accept: return SMFIS_ACCEPT;
    case Verdict::Kind::Discard: return SMFIS_DISCARD;
    case Verdict::Kind::Reply: return setReply(ctx, *v.reply());
    case Verdict::Kind::Fault: break;
  }
  return SMFIS_TEMPFAIL;
}

// Every trampoline: find the connection, run the stage through the Driver,
// answer. Nothing escapes into libmilter's C code.
template <class F>
sfsistat guard(SMFICTX* ctx, Stage stage, F&& f) noexcept {
  try {
    Conn* c = connOf(ctx);
    return answer(ctx, *c, stage, f(*c));
  } catch (...) {
    return SMFIS_TEMPFAIL;
  }
}

std::optional<policy::IpAddress> ipOf(const struct sockaddr* sa) {
  if (sa == nullptr) return std::nullopt;
  char buf[INET6_ADDRSTRLEN] = {0};
  if (sa->sa_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, buf, sizeof buf);
  } else if (sa->sa_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, buf, sizeof buf);
  } else {
    return std::nullopt;
  }
  return policy::IpAddress::parse(buf);
}

sfsistat cbNegotiate(SMFICTX* ctx, unsigned long f0, unsigned long f1, unsigned long, unsigned long,
                     unsigned long* pf0, unsigned long* pf1, unsigned long* pf2, unsigned long* pf3) noexcept {
  try {
    auto conn = std::make_unique<Conn>(ctx);
    const Stages used = gMilter->stages() | Stage::Connect | Stage::Mail | Stage::Rcpt | Stage::Eom;
    const Stages replies = gMilter->replyStages();

    const Actions a = gMilter->actions();
    unsigned long actions = SMFIF_SETSYMLIST;
    if (a.has(Action::AddHeader)) actions |= SMFIF_ADDHDRS;
    if (a.has(Action::ChangeHeader)) actions |= SMFIF_CHGHDRS;
    if (a.has(Action::ReplaceBody)) actions |= SMFIF_CHGBODY;
    if (a.has(Action::AddRecipient)) actions |= SMFIF_ADDRCPT;
    if (a.has(Action::DeleteRecipient)) actions |= SMFIF_DELRCPT;
    if (a.has(Action::Quarantine)) actions |= SMFIF_QUARANTINE;
    if (a.has(Action::ChangeFrom)) actions |= SMFIF_CHGFROM;
    if ((actions & f0) != actions) {
      log::message(log::Level::Warning, "the MTA does not offer every milter action " + gName + " needs");
    }
    *pf0 = actions & f0;

    // Stages the milter does not use are not sent at all; stages it uses
    // but never answers are sent without waiting for a reply.
    //
    // DATA is the exception both ways: it is always sent and always
    // answered. Postfix's smtpd sends DATA and then hands the milter
    // connection to cleanup, whose first header packet is small; if DATA
    // went unanswered (SMFIP_NR_DATA) or unsent (SMFIP_NODATA), that packet
    // waits under Nagle's algorithm on Postfix's side for our delayed ACK:
    // about 40 ms per message on a TCP socket (measured with bench/bench.py,
    // 44 ms -> 3.2 ms per message with one session). The DATA reply costs
    // nothing measurable on a unix socket.
    struct Step {
      Stage stage;
      unsigned long off;
    };
    static constexpr Step kSteps[] = {
        {Stage::Connect, SMFIP_NOCONNECT}, {Stage::Helo, SMFIP_NOHELO}, {Stage::Mail, SMFIP_NOMAIL},
        {Stage::Rcpt, SMFIP_NORCPT},       {Stage::Header, SMFIP_NOHDRS}, {Stage::Eoh, SMFIP_NOEOH},
        {Stage::Body, SMFIP_NOBODY},
    };
    unsigned long want = 0;
    // A connection that arrives while the daemon drains for shutdown is
    // refused at connect, so the MTA must wait for that reply.
    const bool refusing = conn->session.refused();
    for (const auto& step : kSteps) {
      if (refusing && step.stage == Stage::Connect) continue;
      if (!used.has(step.stage)) {
        want |= step.off;
      } else if (!replies.has(step.stage)) {
        want |= noReplyFlag(step.stage);
      }
    }
    want |= SMFIP_NOUNKNOWN | SMFIP_NR_UNKN | SMFIP_SKIP;
    if (used.has(Stage::Header)) want |= SMFIP_HDR_LEADSPC;
    *pf1 = want & f1;
    *pf2 = 0;
    *pf3 = 0;
    conn->protocol = *pf1;

    // Ask for the macros we read, whatever the MTA's defaults are.
    if (*pf0 & SMFIF_SETSYMLIST) {
      smfi_setsymlist(ctx, SMFIM_ENVFROM, const_cast<char*>("i {auth_authen} {auth_type}"));
      smfi_setsymlist(ctx, SMFIM_ENVRCPT, const_cast<char*>("i"));
      smfi_setsymlist(ctx, SMFIM_DATA, const_cast<char*>("i"));
      smfi_setsymlist(ctx, SMFIM_EOH, const_cast<char*>("i"));
      smfi_setsymlist(ctx, SMFIM_EOM, const_cast<char*>("i"));
    }
    // A renegotiation on the same context replaces the old state.
    delete static_cast<Conn*>(smfi_getpriv(ctx));
    smfi_setpriv(ctx, conn.release());
    return SMFIS_CONTINUE;
  } catch (...) {
    return SMFIS_ALL_OPTS;
  }
}

sfsistat cbConnect(SMFICTX* ctx, char* hostname, _SOCK_ADDR* addr) noexcept {
  try {
    // The daemon is draining for shutdown: the MTA tempfails this client.
    if (connOf(ctx)->session.refused()) return SMFIS_TEMPFAIL;
  } catch (...) {
    return SMFIS_TEMPFAIL;
  }
  return guard(ctx, Stage::Connect,
               [&](Conn& c) { return gDriver->connect(c.session, hostname ? hostname : "", ipOf(addr)); });
}

sfsistat cbHelo(SMFICTX* ctx, char* helo) noexcept {
  return guard(ctx, Stage::Helo, [&](Conn& c) { return gDriver->helo(c.session, helo ? helo : ""); });
}

sfsistat cbEnvfrom(SMFICTX* ctx, char** argv) noexcept {
  return guard(ctx, Stage::Mail, [&](Conn& c) {
    std::vector<std::string_view> args;
    for (int i = 0; argv && argv[i]; ++i) args.emplace_back(argv[i]);
    return gDriver->mail(c.session, common(), args);
  });
}

sfsistat cbEnvrcpt(SMFICTX* ctx, char** argv) noexcept {
  return guard(ctx, Stage::Rcpt, [&](Conn& c) { return gDriver->rcpt(c.session, argv && argv[0] ? argv[0] : ""); });
}

sfsistat cbData(SMFICTX* ctx) noexcept {
  return guard(ctx, Stage::Data, [&](Conn& c) { return gDriver->data(c.session); });
}

sfsistat cbHeader(SMFICTX* ctx, char* name, char* value) noexcept {
  return guard(ctx, Stage::Header,
               [&](Conn& c) { return gDriver->header(c.session, name ? name : "", value ? value : ""); });
}

sfsistat cbEoh(SMFICTX* ctx) noexcept {
  return guard(ctx, Stage::Eoh, [&](Conn& c) { return gDriver->eoh(c.session); });
}

sfsistat cbBody(SMFICTX* ctx, unsigned char* data, size_t len) noexcept {
  return guard(ctx, Stage::Body, [&](Conn& c) {
    return gDriver->body(c.session, std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), len));
  });
}

sfsistat cbEom(SMFICTX* ctx) noexcept {
  return guard(ctx, Stage::Eom, [&](Conn& c) {
    CtxActions actions(ctx, (c.protocol & SMFIP_HDR_LEADSPC) != 0);
    return gDriver->eom(c.session, actions);
  });
}

sfsistat cbAbort(SMFICTX* ctx) noexcept {
  try {
    if (auto* c = static_cast<Conn*>(smfi_getpriv(ctx))) gDriver->abort(c->session);
  } catch (...) {
  }
  return SMFIS_CONTINUE;
}

// Close may arrive without negotiate or connect: the Conn may be null. A
// transaction still open (client gone mid-message) is aborted first.
sfsistat cbClose(SMFICTX* ctx) noexcept {
  std::unique_ptr<Conn> c{static_cast<Conn*>(smfi_getpriv(ctx))};
  smfi_setpriv(ctx, nullptr);
  try {
    if (c) gDriver->abort(c->session);
    c.reset();
  } catch (...) {
  }
  return SMFIS_CONTINUE;
}

// libmilter does not expose its listening socket: find it among our file
// descriptors, the only listening stream socket right after
// smfi_opensocket(). -1 if there is none.
int findListener() {
  int found = -1;
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  while (dirent* e = readdir(dir)) {
    const int fd = std::atoi(e->d_name);
    if (fd <= 2 || fd == dirfd(dir)) continue;
    int listening = 0, type = 0;
    socklen_t len = sizeof listening;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening) continue;
    len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) continue;
    found = fd;
    break;
  }
  closedir(dir);
  return found;
}

int gListenFd = -1;

// Turns off Nagle's algorithm on a TCP listener. Linux copies the option to
// every accepted socket, so each reply leaves at once instead of waiting
// ~40 ms for the MTA's delayed ACK.
bool setNoDelay(int fd) {
  sockaddr_storage ss{};
  socklen_t sl = sizeof ss;
  if (fd < 0 || getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &sl) != 0) return false;
  if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6) return false;
  const int one = 1;
  return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0;
}

// One connection to our own listener, closed at once: libmilter's listener
// thread wakes from its poll (up to 5 s otherwise) and sees the stop flag.
// A wildcard address is reached through loopback.
void pokeListener(sockaddr_storage addr, socklen_t len) {
  if (addr.ss_family == AF_INET) {
    auto& in = reinterpret_cast<sockaddr_in&>(addr);
    if (in.sin_addr.s_addr == htonl(INADDR_ANY)) in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  } else if (addr.ss_family == AF_INET6) {
    auto& in6 = reinterpret_cast<sockaddr_in6&>(addr);
    if (IN6_IS_ADDR_UNSPECIFIED(&in6.sin6_addr)) in6.sin6_addr = in6addr_loopback;
  }
  const int c = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (c < 0) return;
  (void)!connect(c, reinterpret_cast<sockaddr*>(&addr), len);  // in progress or refused: either is fine
  close(c);
}

}  // namespace

void setCommon(std::shared_ptr<const CommonConfig> c) { gCommon.set(std::move(c)); }
std::shared_ptr<const CommonConfig> common() { return gCommon.get(); }

bool registerMilter(Milter& m, std::string* error) {
  gMilter = &m;
  gDriver = std::make_unique<Driver>(m);
  gName = "sekimori-" + std::string(m.name());
  smfiDesc desc{};
  desc.xxfi_name = gName.data();
  desc.xxfi_version = SMFI_VERSION;
  desc.xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGBODY | SMFIF_ADDRCPT | SMFIF_DELRCPT |
                    SMFIF_QUARANTINE | SMFIF_CHGFROM | SMFIF_SETSYMLIST;
  desc.xxfi_connect = cbConnect;
  desc.xxfi_helo = cbHelo;
  desc.xxfi_envfrom = cbEnvfrom;
  desc.xxfi_envrcpt = cbEnvrcpt;
  desc.xxfi_header = cbHeader;
  desc.xxfi_eoh = cbEoh;
  desc.xxfi_body = cbBody;
  desc.xxfi_eom = cbEom;
  desc.xxfi_abort = cbAbort;
  desc.xxfi_close = cbClose;
  desc.xxfi_unknown = nullptr;
  desc.xxfi_data = cbData;
  desc.xxfi_negotiate = cbNegotiate;
  if (smfi_register(desc) != MI_SUCCESS) {
    if (error) *error = "smfi_register failed";
    return false;
  }
  return true;
}

bool openSocket(const std::string& spec, int timeoutSeconds, int backlog, std::string* error) {
  std::string s = spec;
  if (smfi_setconn(s.data()) != MI_SUCCESS) {
    if (error) *error = "invalid socket '" + spec + "'";
    return false;
  }
  smfi_settimeout(timeoutSeconds);
  if (backlog > 0) smfi_setbacklog(backlog);
  if (smfi_opensocket(true) != MI_SUCCESS) {
    if (error) *error = "cannot open socket '" + spec + "' (in use, or no permission for its directory)";
    return false;
  }
  gListenFd = findListener();
  if (util::istartsWith(spec, "inet")) {
    if (!setNoDelay(gListenFd)) {
      log::message(log::Level::Warning, "could not set TCP_NODELAY on the listening socket");
    }
  }
  return true;
}

bool serve() { return smfi_main() == MI_SUCCESS; }
void stop() {
  // smfi_stop() sets libmilter's stop flag, then waits for the listener
  // thread, which looks at the flag only between polls of up to 5 s. Poked
  // until smfi_stop() returns, it stops at once.
  // (A second stop() may find the descriptor closed by the first, or
  // reused: only a listening socket is poked.)
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  int listening = 0;
  socklen_t optLen = sizeof listening;
  const bool canPoke = gListenFd >= 0 &&
                       getsockopt(gListenFd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &optLen) == 0 && listening &&
                       getsockname(gListenFd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  std::atomic<bool> done{false};
  std::thread stopper([&] {
    smfi_stop();
    done = true;
  });
  for (int i = 0; canPoke && !done && i < 100; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(i == 0 ? 5 : 50));
    if (!done) pokeListener(addr, len);
  }
  stopper.join();
}

}  // namespace sekimori::milter::glue
