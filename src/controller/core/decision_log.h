// DecisionLog: the controller's audit trail. One JSON object per line (JSON Lines) for every
// decision, with the inputs it saw, the numbers it computed and what became of it, so that an
// operator can answer "why did it scale at 14:02?" with `jq`.
//
// A record:
//   {"time": "2024-05-01T14:02:03.250Z", "unix_s": 1714572123.25,
//    "inputs": {"raw": <Signals>, "smoothed": <Signals>},
//    "demand": <DemandEstimate>, "class": "prompt_heavy",
//    "current": {"prefill": 1, "decode": 1}, "desired": {"prefill": 2, "decode": 1},
//    "action": "scale_up", "reason": "prefill_load", "detail": "...",
//    "anomalies": ["spike"], "anomaly_detail": "...",   (what the anomaly guard found; [] and "")
//    "actuator": "local", "dry_run": false, "result": "ok" | "skipped" | "<error text>",
//    "actuation": "..."}   (how the actuator made a rebalance's moves, flip or restart, and why;
//                           "" when it moved no worker between roles)
// <Signals> has every field of Signals by name (SignalMeasurementFields() plus time_s, window_s
// and "ready": {"prefill", "decode"}); NaN (no data) is written as null.
//
// Thread-safe: Append may be called from any thread; each record is written with one write(2)
// on a file opened with O_APPEND, so lines from concurrent writers — threads or processes —
// never interleave, and nothing is buffered in the process (a crash loses no written record).
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "controller/core/classifier.h"
#include "controller/core/planner.h"
#include "controller/core/signals.h"
#include "nlohmann/json.hpp"

namespace tandem::controller {

inline constexpr std::string_view kResultOk = "ok";
inline constexpr std::string_view kResultSkipped = "skipped";  // dry run, or nothing to change

struct DecisionRecord {
  double unix_s = 0;  // wall-clock time of the decision
  Signals raw;
  Signals smoothed;
  DemandEstimate demand;
  TrafficClass cls = TrafficClass::kBalanced;
  InstanceCounts current;
  InstanceCounts desired;
  std::string action;
  std::string reason;
  std::string detail;
  std::vector<std::string> anomalies;  // kAnomaly* the guard found in this tick's reading
  std::string anomaly_detail;          // and what it did about them
  std::string actuator;  // Actuator::name()
  std::string actuation;  // ActuationReport::notes, joined with "; "
  bool dry_run = false;
  std::string result;    // kResultOk, kResultSkipped or the actuator's error text

  // Copies class, demand, counts, action, reason and detail from a plan.
  void SetPlan(const Plan& plan);
};

// Signals ⇄ JSON (NaN ⇄ null). FromJson takes missing fields as no data and rejects
// non-numeric values.
nlohmann::json SignalsToJson(const Signals& s);
absl::StatusOr<Signals> SignalsFromJson(const nlohmann::json& j);

nlohmann::json DemandToJson(const DemandEstimate& d);

nlohmann::json DecisionRecordToJson(const DecisionRecord& r);
// Parses one line of the log back (tests, `tandem plan` replays).
absl::StatusOr<DecisionRecord> ParseDecisionRecord(std::string_view line);

// RFC 3339 UTC with milliseconds: "2024-05-01T14:02:03.250Z".
std::string FormatRfc3339Millis(double unix_s);

class DecisionLog {
 public:
  // Opens `path` for appending (created 0644 if missing). "-" writes to standard output, so that
  // `tandem controller --decision-log=- | jq` works (logs go to stderr, stdout stays JSON).
  static absl::StatusOr<std::unique_ptr<DecisionLog>> Open(const std::string& path);
  ~DecisionLog();
  DecisionLog(const DecisionLog&) = delete;
  DecisionLog& operator=(const DecisionLog&) = delete;

  // Writes one record as one line. An error (disk full, closed pipe) is returned; the log stays
  // usable.
  absl::Status Append(const DecisionRecord& record);

  const std::string& path() const { return path_; }

 private:
  DecisionLog(std::string path, int fd, bool owns_fd);

  const std::string path_;
  const int fd_;
  const bool owns_fd_;
  std::mutex write_mu_;  // one record's write(2) calls at a time (a long line may need several)
};

}  // namespace tandem::controller
