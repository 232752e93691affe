// Stop strings over streamed text (OpenAI's `stop`): generated text is shown up to, and never
// including, the first stop string; the request ends there.
//
// Text arrives in pieces (one per decoded token) and a stop string can span several of them,
// so the tail of the text that could still grow into a stop string is held back until the
// next pieces rule it out. Which stop wins: the one that is complete first in the text (the
// smallest end offset), and among those ending there the longest (the earliest start). This
// is what a per-character stream would see, so the output does not depend on how the text is
// cut into pieces: for stops {"ab", "abc"} the text "aabc" shows "a".
//
// UTF-8: a returned string never ends inside a character. Pieces may end mid-character (the
// bytes wait for the rest); with well-formed input every returned string is well-formed.
//
// Cost: every byte is examined once per stop string (a KMP automaton per stop), so the time
// is linear in the text for a fixed set of stops; at most (longest stop - 1) + 3 bytes are
// held back at any time.
//
// Thread-safety: not thread-safe (one per stream). Copyable and movable; owns its stops.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tandem::text {

class StopStringMatcher {
 public:
  // InvalidArgument for an empty stop string. No stops at all is fine (text passes through,
  // whole characters only).
  static absl::StatusOr<StopStringMatcher> Create(std::vector<std::string> stops);

  // Adds the next piece of text; returns the text that is now safe to show (possibly empty).
  // Once a stop string has matched, returns the text before it, and "" for every later call.
  std::string Push(std::string_view piece);
  // The end of the stream: returns what is still held back (empty once stopped). An
  // incomplete character at the very end is returned as its bytes (the caller's detokenizer
  // has already replaced such bytes, see IncrementalDetokenizer::Flush).
  std::string Flush();

  // While disarmed (vLLM's min_tokens), a completed stop string does not stop the text; one that
  // completes after arming does, even if it began before.
  void set_armed(bool armed) { armed_ = armed; }

  bool stopped() const { return matched_ >= 0; }
  // The stop string that matched; empty while !stopped().
  std::string_view matched_stop() const;
  // Bytes currently held back.
  size_t held_bytes() const { return pending_.size(); }
  const std::vector<std::string>& stops() const { return stops_; }

 private:
  StopStringMatcher() = default;

  std::vector<std::string> stops_;
  std::vector<std::vector<uint32_t>> failure_;  // KMP failure function per stop
  std::vector<uint32_t> state_;                 // matched prefix length per stop
  std::string pending_;                         // text received but not yet returned
  int matched_ = -1;                            // index into stops_, -1: none yet
  bool armed_ = true;
};

}  // namespace tandem::text
