// milters/antivirus/av_policy.cpp — see av_policy.h.
#include "milters/antivirus/av_policy.h"

#include <algorithm>
#include <cctype>

namespace sekimori::antivirus {

namespace {

using Status = ScanResult::Status;

void addName(std::string& names, const std::string& n) {
  if (n.empty() || names.find(n) != std::string::npos) return;
  if (!names.empty()) names += ", ";
  names += n;
}

policy::Reply withName(policy::Reply r, const std::string& name) {
  // Reply text must stay printable ASCII (signature names are); bounded.
  std::string n;
  for (const char c : name.substr(0, 200)) n += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (!n.empty()) r.text += " " + n;
  return r;
}

Decision threat(const ActionConfig& a, const Replies& replies, policy::Direction dir, const Findings& f,
                std::string names) {
  Decision d;
  d.infected = true;
  d.virus = names;
  const auto reject = [&](InfectedAction act) {
    d.kind = act == InfectedAction::Discard ? Decision::Kind::Discard : Decision::Kind::Reject;
    d.reply = withName(replies.virus, names);
    d.status = "infected: " + names;
    return d;
  };
  if (dir != policy::Direction::Inbound) return reject(a.outboundInfected);

  // Inbound: removable only when every finding is an attachment inside a
  // multipart and no part failed to scan.
  bool confined = !f.parts.empty();
  std::vector<PartFinding> remove;
  for (const auto& p : f.parts) {
    if (p.result.status == Status::Error) confined = false;
    if (!isThreat(p.result, a.limitsExceeded)) continue;
    if (!p.attachment || p.path.empty()) confined = false;
    remove.push_back(p);
  }
  if (remove.empty()) confined = false;  // the whole message is infected, no part alone is
  if (!confined) return reject(a.inboundBody);
  if (a.inboundAttachment == AttachmentAction::Reject) return reject(InfectedAction::Reject);
  d.kind = Decision::Kind::RemoveParts;
  d.remove = std::move(remove);
  d.status = "removed: " + names;
  return d;
}

}  // namespace

bool isThreat(const ScanResult& r, LimitsAction limits) {
  return r.status == Status::Infected || (r.status == Status::LimitsExceeded && limits == LimitsAction::Infected);
}

Decision decide(const ActionConfig& a, const Replies& replies, policy::Direction dir, const Findings& f) {
  Decision d;
  if (f.whole.status == Status::Error) {
    if (a.scanFailure == FailureAction::Accept) {
      d.status = "unscanned: scan failed";
      return d;
    }
    d.kind = Decision::Kind::Tempfail;
    d.reply = replies.failure;
    d.status = "unscanned: scan failed";
    return d;
  }

  std::string names;
  bool anyThreat = isThreat(f.whole, a.limitsExceeded);
  for (const auto& p : f.parts) {
    if (isThreat(p.result, a.limitsExceeded)) {
      anyThreat = true;
      addName(names, p.result.name);
    }
  }
  if (anyThreat) {
    if (names.empty()) addName(names, f.whole.name);
    return threat(a, replies, dir, f, names);
  }

  if (f.whole.status == Status::LimitsExceeded) {
    if (a.limitsExceeded == LimitsAction::Reject) {
      d.kind = Decision::Kind::Reject;
      d.reply = withName(replies.virus, f.whole.name);
      d.status = "unscanned: limits exceeded";
      return d;
    }
    d.status = "unscanned: limits exceeded";
    return d;
  }
  if (f.whole.status == Status::Encrypted) {
    if (a.encrypted == UnscannableAction::Reject) {
      d.kind = Decision::Kind::Reject;
      d.reply = replies.encrypted;
    }
    d.status = "unscanned: encrypted";
    d.virus = f.whole.name;
    return d;
  }
  if (f.whole.status == Status::Unscanned) {
    if (a.unscanned == UnscannableAction::Reject) {
      d.kind = Decision::Kind::Reject;
      d.reply = withName(replies.unscanned, f.whole.name);
    }
    d.status = "unscanned: " + f.whole.name + " not unpacked";
    return d;
  }
  if (f.htmlScript) {
    d.virus = "Heuristics.HTML.Script";
    if (a.htmlScript == HtmlScriptAction::Reject) {
      d.kind = Decision::Kind::Reject;
      d.reply = replies.htmlScript;
    }
    d.status = "clean; suspicious: Heuristics.HTML.Script";
    return d;
  }
  d.status = "clean";
  return d;
}

bool hasActiveHtml(std::string_view html) {
  // Lowercased copy of a bounded prefix: active content sits in the first
  // megabytes of any real page; a hostile 20 MB page is still bounded.
  const std::size_t n = std::min<std::size_t>(html.size(), 8 * 1024 * 1024);
  std::string s(html.substr(0, n));
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (const char* tag : {"<script", "<embed", "<applet"}) {
    if (s.find(tag) != std::string::npos) return true;
  }
  for (std::size_t p = s.find("<object"); p != std::string::npos; p = s.find("<object", p + 1)) {
    const std::size_t end = s.find('>', p);
    if (s.substr(p, end == std::string::npos ? std::string::npos : end - p).find("classid") != std::string::npos) {
      return true;
    }
  }
  // on*= event handlers inside a tag: whitespace or quote/slash, "on",
  // letters, optional spaces, "=".
  for (std::size_t p = s.find("on"); p != std::string::npos; p = s.find("on", p + 2)) {
    if (p == 0) continue;
    const char before = s[p - 1];
    if (!(before == ' ' || before == '\t' || before == '\n' || before == '\r' || before == '/' || before == '"' ||
          before == '\'')) {
      continue;
    }
    std::size_t q = p + 2;
    const std::size_t letters = q;
    while (q < s.size() && std::isalpha(static_cast<unsigned char>(s[q]))) ++q;
    if (q - letters < 3) continue;  // onload, onclick, onerror ...; not "on=" or "one="
    while (q < s.size() && (s[q] == ' ' || s[q] == '\t')) ++q;
    if (q >= s.size() || s[q] != '=') continue;
    // Inside a tag: the nearest '<' before is after the nearest '>'.
    const std::size_t lt = s.rfind('<', p);
    const std::size_t gt = s.rfind('>', p);
    if (lt != std::string::npos && (gt == std::string::npos || lt > gt)) return true;
  }
  return false;
}

}  // namespace sekimori::antivirus
