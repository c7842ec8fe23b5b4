// milters/antivirus/av_policy.h — what sekimori-antivirus does with a scan's
// findings (R-AV-1 … R-AV-7), as pure functions: no libclamav, no libmilter.
//
// A message is scanned whole first (libclamav parses the mail itself); only
// if that finds something are its MIME leaf parts scanned one by one, to
// learn whether the finding is confined to attachments that can be removed.
//
//   outbound (or internal), infected          -> reject 554 5.7.1 Virus found: NAME
//   inbound, infected attachment(s) only      -> remove them, notice in their place, deliver
//     (an attached message is one: it goes whole for what cannot go alone, e.g. its text)
//   inbound, infection elsewhere (body, whole) -> reject (option: discard)
//   limits exceeded                           -> as infected, "Heuristics.Limits.Exceeded" (option)
//   encrypted (cannot be scanned)             -> deliver and mark (option: reject)
//   a container nobody could unpack           -> deliver and mark (option: reject)
//   HTML with script / plug-ins               -> deliver and mark (options: strip it, reject)
//   scan failure                              -> tempfail (option: accept unscanned)
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/policy/direction.h"
#include "common/policy/reply.h"
#include "milters/antivirus/active_html.h"
#include "milters/antivirus/scanner.h"

namespace sekimori::antivirus {

enum class InfectedAction { Reject, Discard };
enum class AttachmentAction { Remove, Reject };
enum class LimitsAction { Infected, Deliver, Reject };
enum class UnscannableAction { Mark, Reject };  // content that cannot be scanned
enum class HtmlScriptAction { Mark, Strip, Reject };
enum class FailureAction { Tempfail, Accept };

struct ActionConfig {
  InfectedAction outboundInfected = InfectedAction::Reject;
  AttachmentAction inboundAttachment = AttachmentAction::Remove;
  InfectedAction inboundBody = InfectedAction::Reject;
  LimitsAction limitsExceeded = LimitsAction::Infected;
  UnscannableAction encrypted = UnscannableAction::Mark;
  UnscannableAction unscanned = UnscannableAction::Mark;  // RAR without unrar, zstd, LZ4, ...
  HtmlScriptAction htmlScript = HtmlScriptAction::Mark;
  FailureAction scanFailure = FailureAction::Tempfail;
};

struct Replies {
  policy::Reply virus{"554", "5.7.1", "Virus found:"};  // the virus name is appended
  policy::Reply encrypted{"554", "5.7.1", "Encrypted content cannot be scanned"};
  policy::Reply unscanned{"554", "5.7.1", "Content that cannot be scanned:"};  // what is appended
  policy::Reply htmlScript{"554", "5.7.1", "HTML with active content is not accepted"};
  policy::Reply failure{"451", "4.3.0", "Virus scan failed, try again later"};
};

// One part scanned on its own.
struct PartFinding {
  std::vector<int> path;  // mime::PartInfo::path
  std::string filename;   // UTF-8, may be empty
  bool attachment = false;  // what `path` names can be removed (an attachment or an attached
                            // message, directly inside a multipart)
  ScanResult result;
  // Set: what was found cannot be removed alone (the text of an attached
  // message, anything inside one sent encoded), but the attached message
  // holding it can, whole; `path` and `filename` are that message's.
  bool message = false;
  // The attachments in that message it was found in, each as shownName()
  // gives it, with what was in it when it is an attached message too
  // ({"eicar.com", "fwd2.eml (x.exe)"}).
  std::vector<std::string> inside = {};
  bool text = false;         // some of it was found in that message's text (a part without a name)
  std::string subject = {};  // that message's Subject, as a notice may show it (util::displayText)
  std::string type = {};     // the part's media type (log-safe), shown when it has no name
};

// A part's name as notices and warnings show it: the sender's text, so on
// one line, without bidirectional tricks, at most 200 bytes
// (util::displayText); without one, its media type when known
// ("(no name, application/zip)").
std::string shownName(const std::string& filename, const std::string& type);
// What is removed, as notices and lists show it: its name; an attached
// message without one, by its Subject ("(no name, subject: Re: 会議)").
std::string shownName(const PartFinding& p);
// shownName() and what was found inside it, as a list shows it:
// "fwd.eml (eicar.com, b.exe)".
std::string listedName(const PartFinding& p);
// Names joined, each between `open` and `close`: quoted(names, "\"", "\"", ", ").
std::string quoted(const std::vector<std::string>& names, std::string_view open, std::string_view close,
                   std::string_view separator);

// What the scans found, as the decision needs it.
struct Findings {
  ScanResult whole;                 // the whole message
  std::vector<PartFinding> parts;   // when `whole` was not clean, or libclamav could not
                                    // see these parts in it (inside an encoded message)
  bool htmlScript = false;          // an HTML part with active content
};

struct Decision {
  enum class Kind {
    Deliver,          // add headers, nothing else
    RemoveParts,      // replace `remove` with notices, deliver
    Reject,           // reply
    Discard,
    Tempfail,         // reply (4xx)
  };
  Kind kind = Kind::Deliver;
  std::vector<PartFinding> remove;  // RemoveParts: the parts to replace
  std::string virus;                // names found, ", "-joined (for reply, log, header)
  std::string status;               // X-Virus-Status value: "clean", "removed: A, B", "unscanned: encrypted", ...
  bool infected = false;            // something malicious was found (quarantine + warning mails)
  bool stripHtml = false;           // Deliver or RemoveParts: also cut the active content out of the HTML parts
  policy::Reply reply;              // Reject / Tempfail
};

// "limits exceeded" findings count as infected under LimitsAction::Infected.
bool isThreat(const ScanResult& r, LimitsAction limits);

Decision decide(const ActionConfig& a, const Replies& replies, policy::Direction dir, const Findings& f);

// `d` made a refusal (InfectedAction::Discard: a discard) of the whole
// message for what it names (Decision::virus), with replies.virus.
void refuseInfected(Decision& d, const Replies& replies, InfectedAction act);

// A RemoveParts decision that cannot be carried out: the parts cannot be
// cut out safely, or what is left of the message still scans as a threat
// (named `leftover`, added to the names). The whole message is then
// refused, or discarded, as an infected body is (inbound_body_action).
void refuseWhole(Decision& d, const ActionConfig& a, const Replies& replies, const std::string& leftover = "");

// A RemoveParts decision whose rewritten message, scanned again as
// `leftover`, holds what could not be scanned all the same (an encrypted
// attachment, a container not unpacked, a limit under deliver or reject, a
// scan that failed under scan_failure_action = accept):
// marked so after the names removed ("removed: A; unscanned: encrypted"),
// or, when the action for it is reject, the whole message refused with the
// names and it. Nothing else changes (a threat left over: refuseWhole).
// Without it, adding a known virus to a message was a way past
// encrypted_action and unscanned_action.
void markLeftover(Decision& d, const ActionConfig& a, const Replies& replies, const ScanResult& leftover);

// A stripHtml decision whose HTML cannot be stripped safely: refused with
// replies.html_script rather than delivered with the active content.
void refuseUnstrippable(Decision& d, const Replies& replies);

// Whether a message body, fed in the chunks the MTA sends, may declare a
// part of encrypted mail, reading media types as MIME readers read them:
// any case, also with white space, folded lines or comments around the
// '/' ("multipart/ encrypted", "multipart /(x) encrypted"), split across
// chunks of any size. encrypted(): S/MIME (application/pkcs7-mime,
// application/x-pkcs7-mime) or PGP/MIME (multipart/encrypted,
// application/pgp-encrypted), or any "message/..." type (an attached
// message, maybe encoded, may hold either, or inline PGP): then the walk
// finds whether one is there.
// A yes only costs a walk, so where it cannot tell it says yes: a comment
// in place of either word, or white space running back past the 64 bytes
// it keeps. A subtype is matched by its start ("multipart/encryptedx" is a
// yes).
class MediaTypeSniffer {
 public:
  void feed(std::string_view chunk);
  bool encrypted() const { return seen_; }

 private:
  // How far the subtype after a '/' has matched: the rule whose type was
  // before it, the subtypes still possible (bits) and the bytes matched.
  struct After {
    int rule = -1;  // none
    unsigned alive = 0;
    std::size_t pos = 0;
  };
  enum class Match { No, Yes, Open };
  static Match afterSlash(std::string_view bytes, After& a);

  bool seen_ = false;
  std::string tail_;     // the stream's last bytes before the next chunk
  bool atStart_ = true;  // tail_ holds the stream from its first byte
  After pending_;        // a subtype cut off by the chunk's end
};

// Whether a fixed string occurs in a stream fed in chunks of any size, also
// across chunk ends (keeps the last needle.size() - 1 bytes).
//   StreamFind armor("-----BEGIN PGP MESSAGE-----");
//   armor.feed(chunk); ... if (armor.found()) ...
class StreamFind {
 public:
  explicit StreamFind(std::string needle) : needle_(std::move(needle)) {}
  void feed(std::string_view chunk);
  bool found() const { return found_; }

 private:
  std::string needle_;
  std::string tail_;
  bool found_ = false;
};

// Whether a fixed string occurs in a message body (fed in the chunks the
// MTA sends) as a MIME reader may decode one of its parts: as the bytes
// came or quoted-printable decoded (GMime's way: "=XX" in either case, soft
// line breaks "=\n" and "=\r\n", anything else after '=' kept as it is),
// or base64-decoded (GMime's way: what is not in the alphabet is skipped,
// '=' ends the part's data). The whole body is read each way, whatever its
// parts say, so a yes may be one no reader sees: it only costs a walk that
// decodes the parts and looks. Not found: uuencode, and content encoded
// twice (a base64-encoded message/rfc822; the walk for message/ types
// finds that).
//   EncodedFind armor("-----BEGIN PGP MESSAGE-----");
//   armor.feed(chunk); ... if (armor.found()) ...
class EncodedFind {
 public:
  explicit EncodedFind(std::string_view needle);
  void feed(std::string_view chunk);
  bool found() const;

 private:
  void feedQuotedPrintable(std::string_view chunk);
  void feedBase64(std::string_view chunk);

  StreamFind qp_;                     // also finds the bytes as they came
  std::array<StreamFind, 3> base64_;  // the needle's encoded letters at each byte offset mod 3
  int qpHeld_ = 0;                    // bytes of a "=XX" cut off by the chunk end: 0, 1 ("=") or 2
  char qpFirst_ = 0;                  // the byte after that '='
  std::string decoded_;               // scratch, kept to reuse its memory
};

}  // namespace sekimori::antivirus
