// How a rebalance moves a worker from one role to the other: flip its role in place (drain it,
// then tell it its new role: no model load, no second process) or restart (drain and stop it
// while a new process of the other role starts and loads the model). Which is faster depends on
// the worker: an idle one flips at once, one with long streams in flight drains for as long as
// they take, while a new process is serving after the start-up time.
//
//   flip    = the victim's remaining drain: 0 when it has nothing in flight, else the mean of
//             the drains this actuator measured for busy workers of its role, less the time it
//             has drained already (unknown until one has been measured)
//   restart = the mean start-up time this actuator measured (spawn → serving)
//   RebalanceBy::kCost flips when flip ≤ restart, and when either is unknown (a flip loads
//   nothing; the drain is measured either way, since a restart drains its victim too).
//
// Pure logic, no clocks: callers pass the elapsed times. Not thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "controller/core/signals.h"

namespace tandem::controller {

enum class RebalanceBy {
  kCost,     // per move, whichever the measured costs predict is ready first
  kFlip,     // always flip a drained worker's role
  kRestart,  // always stop one and start another
};

std::string_view RebalanceByName(RebalanceBy by);  // "cost", "flip", "restart"
absl::StatusOr<RebalanceBy> ParseRebalanceBy(std::string_view text);

// The measured costs of moving workers: running means (each new measurement weighs 1/2).
class MoveCosts {
 public:
  void NoteStart(double seconds);             // a new worker: spawned → serving
  void NoteDrain(Role role, double seconds);  // a worker of `role` that had work when its drain began
  std::optional<double> start_s() const { return start_s_; }
  std::optional<double> drain_s(Role role) const { return drain_s_[static_cast<int>(role)]; }

  // The rest of a drain of a worker of `role`: `busy` whether it had work when the drain began
  // (or has now, for one not draining yet), `drained_s` how long it has drained so far.
  // nullopt: busy and no drain of that role measured yet.
  std::optional<double> PredictDrain(Role role, bool busy, double drained_s = 0) const;

 private:
  std::optional<double> start_s_;
  std::optional<double> drain_s_[2];  // indexed by Role
};

struct MoveChoice {
  bool flip = false;
  std::optional<double> flip_s;     // predicted seconds until the worker serves its new role
  std::optional<double> restart_s;  // predicted seconds until a new process serves
  std::string why;                  // for the log and the decision log
};

// `predicted_drain_s`: MoveCosts::PredictDrain for the victim; `start_s`: MoveCosts::start_s.
MoveChoice ChooseMove(RebalanceBy by, std::optional<double> predicted_drain_s, std::optional<double> start_s);

}  // namespace tandem::controller
