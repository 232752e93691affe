#include "controller/core/role_move.h"

#include <algorithm>

#include "common/strings.h"
#include "fmt/format.h"

namespace tandem::controller {
namespace {

void Fold(std::optional<double>& mean, double x) { mean = mean ? (*mean + x) / 2 : x; }

std::string Seconds(const std::optional<double>& s) {
  return s ? fmt::format("{:.1f} s", *s) : std::string("not measured yet");
}

}  // namespace

std::string_view RebalanceByName(RebalanceBy by) {
  switch (by) {
    case RebalanceBy::kCost:
      return "cost";
    case RebalanceBy::kFlip:
      return "flip";
    case RebalanceBy::kRestart:
      return "restart";
  }
  return "cost";
}

absl::StatusOr<RebalanceBy> ParseRebalanceBy(std::string_view text) {
  for (RebalanceBy by : {RebalanceBy::kCost, RebalanceBy::kFlip, RebalanceBy::kRestart}) {
    if (text == RebalanceByName(by)) return by;
  }
  return absl::InvalidArgumentError(
      StrCat("unknown rebalance method '", text, "' (cost, flip or restart)"));
}

void MoveCosts::NoteStart(double seconds) { Fold(start_s_, std::max(0.0, seconds)); }

void MoveCosts::NoteDrain(Role role, double seconds) {
  Fold(drain_s_[static_cast<int>(role)], std::max(0.0, seconds));
}

std::optional<double> MoveCosts::PredictDrain(Role role, bool busy, double drained_s) const {
  if (!busy) return 0.0;
  const std::optional<double>& mean = drain_s_[static_cast<int>(role)];
  if (!mean) return std::nullopt;
  return std::max(0.0, *mean - drained_s);
}

MoveChoice ChooseMove(RebalanceBy by, std::optional<double> predicted_drain_s, std::optional<double> start_s) {
  MoveChoice c;
  c.flip_s = predicted_drain_s;
  c.restart_s = start_s;
  const std::string figures =
      fmt::format("drain {}, start-up {}", Seconds(predicted_drain_s), Seconds(start_s));
  switch (by) {
    case RebalanceBy::kFlip:
      c.flip = true;
      c.why = "flip (--rebalance-by flip): " + figures;
      return c;
    case RebalanceBy::kRestart:
      c.flip = false;
      c.why = "restart (--rebalance-by restart): " + figures;
      return c;
    case RebalanceBy::kCost:
      break;
  }
  if (!predicted_drain_s || !start_s) {
    c.flip = true;
    c.why = "flip, nothing to compare yet (a flip loads no model): " + figures;
  } else if (*predicted_drain_s <= *start_s) {
    c.flip = true;
    c.why = "flip, ready sooner: " + figures;
  } else {
    c.flip = false;
    c.why = "restart, ready sooner: " + figures;
  }
  return c;
}

}  // namespace tandem::controller
