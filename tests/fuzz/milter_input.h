// tests/fuzz/milter_input.h — what the fuzz targets that play the MTA
// share: fuzz bytes turned into a message as Postfix passes it to a
// milter, the MTA's header changes applied to it, and decoded MIME leaves
// read whole.
#pragma once

#include <strings.h>

#include <array>
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/mime/message.h"

namespace sekimori::fuzz {

// A message as Postfix passes it to a milter: its header fields (name,
// value as passed: continuation lines kept in it) and the body. Lines that
// are no field are dropped, as Postfix ends the header block at them.
struct PostfixMessage {
  std::vector<std::pair<std::string, std::string>> fields;
  std::string_view body;

  // The header block ("Name:value" CRLF lines), without the empty line.
  std::string headerBlock() const {
    std::string out;
    for (const auto& [name, value] : fields) out += name + ":" + value + "\r\n";
    return out;
  }
  // What a milter spools: the header block, the empty line, the body.
  std::string spool() const { return headerBlock() + "\r\n" + std::string(body); }

  // smfi_chgheader(name, 1, value) as the MTA applies it: the first field
  // of that name (any case) changed, else one added.
  void changeFirst(const std::string& name, const std::string& value) {
    for (auto& [n, v] : fields) {
      if (strcasecmp(n.c_str(), name.c_str()) == 0) {
        v = " " + value;
        return;
      }
    }
    fields.emplace_back(name, " " + value);
  }
};

// `in`: header lines (LF or CRLF), an empty line, the body.
inline PostfixMessage asPostfixPassesIt(std::string_view in) {
  PostfixMessage m;
  while (!in.empty()) {
    const std::size_t nl = in.find('\n');
    std::string_view line = in.substr(0, nl);
    in = nl == std::string_view::npos ? "" : in.substr(nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) break;  // the empty line: the body follows
    if (line[0] == ' ' || line[0] == '\t') {
      if (!m.fields.empty()) m.fields.back().second.append("\r\n").append(line);
      continue;
    }
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0 ||
        line.substr(0, colon).find_first_of(" \t") != std::string_view::npos) {
      continue;
    }
    m.fields.emplace_back(line.substr(0, colon), line.substr(colon + 1));
  }
  m.body = in;
  return m;
}

// The rest of a decoded MIME leaf.
inline std::string readAll(mime::Content& c) {
  std::string out;
  std::array<std::byte, 4096> buf{};
  for (std::size_t n; (n = c.read(buf)) > 0;) out.append(reinterpret_cast<const char*>(buf.data()), n);
  return out;
}

}  // namespace sekimori::fuzz
