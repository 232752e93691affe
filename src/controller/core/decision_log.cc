#include "controller/core/decision_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <ctime>

#include "common/status_macros.h"
#include "common/strings.h"
#include "controller/core/smoother.h"
#include "fmt/format.h"

namespace tandem::controller {
namespace {

using nlohmann::json;

// JSON has no NaN or infinity: both become null ("no data").
json Num(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

json CountsToJson(const InstanceCounts& c) {
  return json{{"prefill", c.prefill}, {"decode", c.decode}};
}

absl::StatusOr<double> GetNum(const json& obj, std::string_view key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return kNoData;
  if (!it->is_number()) {
    return absl::InvalidArgumentError(StrCat("field '", key, "' is not a number"));
  }
  return it->get<double>();
}

absl::StatusOr<std::string> GetString(const json& obj, std::string_view key) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) {
    return absl::InvalidArgumentError(StrCat("field '", key, "' is missing or not a string"));
  }
  return it->get<std::string>();
}

absl::StatusOr<InstanceCounts> GetCounts(const json& obj, std::string_view key) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_object()) {
    return absl::InvalidArgumentError(StrCat("field '", key, "' is missing or not an object"));
  }
  InstanceCounts c;
  for (auto [name, out] : {std::pair<const char*, int*>{"prefill", &c.prefill},
                           {"decode", &c.decode}}) {
    auto f = it->find(name);
    if (f == it->end() || !f->is_number_integer()) {
      return absl::InvalidArgumentError(StrCat("field '", key, ".", name, "' is not an integer"));
    }
    *out = f->get<int>();
  }
  return c;
}

// The DemandEstimate's numeric fields, by name (shared by writing and parsing).
struct DemandField {
  const char* name;
  double DemandEstimate::*member;
};
constexpr DemandField kDemandFields[] = {
    {"prefill_load", &DemandEstimate::prefill_load},
    {"cached_fraction", &DemandEstimate::cached_fraction},
    {"decode_load", &DemandEstimate::decode_load},
    {"prefill_capacity", &DemandEstimate::prefill_capacity},
    {"decode_capacity", &DemandEstimate::decode_capacity},
    {"prefill_demand", &DemandEstimate::prefill_demand},
    {"decode_demand", &DemandEstimate::decode_demand},
    {"prefill_load_ahead", &DemandEstimate::prefill_load_ahead},
    {"decode_load_ahead", &DemandEstimate::decode_load_ahead},
    {"prefill_horizon_s", &DemandEstimate::prefill_horizon_s},
    {"decode_horizon_s", &DemandEstimate::decode_horizon_s},
    {"ttft_ratio", &DemandEstimate::ttft_ratio},
    {"itl_ratio", &DemandEstimate::itl_ratio},
    {"kv_ratio", &DemandEstimate::kv_ratio},
    {"prefill_pressure", &DemandEstimate::prefill_pressure},
    {"decode_pressure", &DemandEstimate::decode_pressure},
    {"demand_prefill_share", &DemandEstimate::demand_prefill_share},
    {"instance_prefill_share", &DemandEstimate::instance_prefill_share},
    {"score", &DemandEstimate::score},
};

absl::StatusOr<DemandEstimate> DemandFromJson(const json& j) {
  if (!j.is_object()) return absl::InvalidArgumentError("'demand' is not an object");
  DemandEstimate d;
  for (const DemandField& f : kDemandFields) {
    TANDEM_ASSIGN_OR_RETURN(d.*f.member, GetNum(j, f.name));
  }
  auto q = j.find("ttft_from_queue");
  d.ttft_from_queue = q != j.end() && q->is_boolean() && q->get<bool>();
  return d;
}

absl::Status WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::UnavailableError(StrCat("decision log write: ", std::strerror(errno)));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

}  // namespace

void DecisionRecord::SetPlan(const Plan& plan) {
  cls = plan.cls;
  demand = plan.demand;
  current = plan.current;
  desired = plan.desired;
  action = plan.action;
  reason = plan.reason;
  detail = plan.detail;
}

json SignalsToJson(const Signals& s) {
  json j = json::object();
  j["time_s"] = Num(s.time_s);
  j["window_s"] = Num(s.window_s);
  for (const SignalField& f : SignalMeasurementFields()) j[f.name] = Num(s.*f.member);
  j["ready"] = CountsToJson(s.ready);
  return j;
}

absl::StatusOr<Signals> SignalsFromJson(const json& j) {
  if (!j.is_object()) return absl::InvalidArgumentError("signals are not a JSON object");
  Signals s;
  TANDEM_ASSIGN_OR_RETURN(s.time_s, GetNum(j, "time_s"));
  TANDEM_ASSIGN_OR_RETURN(s.window_s, GetNum(j, "window_s"));
  for (const SignalField& f : SignalMeasurementFields()) {
    TANDEM_ASSIGN_OR_RETURN(s.*f.member, GetNum(j, f.name));
  }
  if (j.contains("ready")) {
    TANDEM_ASSIGN_OR_RETURN(s.ready, GetCounts(j, "ready"));
  }
  return s;
}

json DemandToJson(const DemandEstimate& d) {
  json j = json::object();
  for (const DemandField& f : kDemandFields) j[f.name] = Num(d.*f.member);
  j["ttft_from_queue"] = d.ttft_from_queue;
  return j;
}

std::string FormatRfc3339Millis(double unix_s) {
  if (!std::isfinite(unix_s)) unix_s = 0;
  int64_t millis = std::llround(unix_s * 1000.0);
  int64_t secs = millis / 1000;
  int64_t ms = millis % 1000;
  if (ms < 0) {  // before 1970: floor, not truncate
    ms += 1000;
    --secs;
  }
  const std::time_t t = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  return fmt::format("{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}.{:03d}Z", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     static_cast<int>(ms));
}

json DecisionRecordToJson(const DecisionRecord& r) {
  json j = json::object();
  j["time"] = FormatRfc3339Millis(r.unix_s);
  j["unix_s"] = Num(r.unix_s);
  j["inputs"] = json{{"raw", SignalsToJson(r.raw)}, {"smoothed", SignalsToJson(r.smoothed)}};
  j["demand"] = DemandToJson(r.demand);
  j["class"] = TrafficClassName(r.cls);
  j["current"] = CountsToJson(r.current);
  j["desired"] = CountsToJson(r.desired);
  j["action"] = r.action;
  j["reason"] = r.reason;
  j["detail"] = r.detail;
  j["anomalies"] = r.anomalies;
  j["anomaly_detail"] = r.anomaly_detail;
  j["actuator"] = r.actuator;
  j["actuation"] = r.actuation;
  j["dry_run"] = r.dry_run;
  j["result"] = r.result;
  return j;
}

absl::StatusOr<DecisionRecord> ParseDecisionRecord(std::string_view line) {
  const json j = json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("decision log line is not a JSON object");
  }
  DecisionRecord r;
  TANDEM_ASSIGN_OR_RETURN(r.unix_s, GetNum(j, "unix_s"));
  auto inputs = j.find("inputs");
  if (inputs == j.end() || !inputs->is_object() || !inputs->contains("raw") ||
      !inputs->contains("smoothed")) {
    return absl::InvalidArgumentError("field 'inputs' must hold 'raw' and 'smoothed'");
  }
  TANDEM_ASSIGN_OR_RETURN(r.raw, SignalsFromJson((*inputs)["raw"]));
  TANDEM_ASSIGN_OR_RETURN(r.smoothed, SignalsFromJson((*inputs)["smoothed"]));
  if (!j.contains("demand")) return absl::InvalidArgumentError("field 'demand' is missing");
  TANDEM_ASSIGN_OR_RETURN(r.demand, DemandFromJson(j["demand"]));
  TANDEM_ASSIGN_OR_RETURN(std::string cls, GetString(j, "class"));
  std::optional<TrafficClass> parsed = ParseTrafficClass(cls);
  if (!parsed) return absl::InvalidArgumentError(StrCat("unknown class '", cls, "'"));
  r.cls = *parsed;
  TANDEM_ASSIGN_OR_RETURN(r.current, GetCounts(j, "current"));
  TANDEM_ASSIGN_OR_RETURN(r.desired, GetCounts(j, "desired"));
  TANDEM_ASSIGN_OR_RETURN(r.action, GetString(j, "action"));
  TANDEM_ASSIGN_OR_RETURN(r.reason, GetString(j, "reason"));
  TANDEM_ASSIGN_OR_RETURN(r.detail, GetString(j, "detail"));
  TANDEM_ASSIGN_OR_RETURN(r.actuator, GetString(j, "actuator"));
  // Logs written before the anomaly guard have neither field.
  if (auto a = j.find("anomalies"); a != j.end() && a->is_array()) {
    for (const json& kind : *a) {
      if (!kind.is_string()) return absl::InvalidArgumentError("field 'anomalies' must hold strings");
      r.anomalies.push_back(kind.get<std::string>());
    }
  }
  if (auto a = j.find("anomaly_detail"); a != j.end() && a->is_string()) r.anomaly_detail = a->get<std::string>();
  if (auto a = j.find("actuation"); a != j.end() && a->is_string()) r.actuation = a->get<std::string>();
  TANDEM_ASSIGN_OR_RETURN(r.result, GetString(j, "result"));
  auto dry = j.find("dry_run");
  if (dry == j.end() || !dry->is_boolean()) {
    return absl::InvalidArgumentError("field 'dry_run' is missing or not a boolean");
  }
  r.dry_run = dry->get<bool>();
  return r;
}

absl::StatusOr<std::unique_ptr<DecisionLog>> DecisionLog::Open(const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError("decision log path is empty");
  if (path == "-") return std::unique_ptr<DecisionLog>(new DecisionLog(path, STDOUT_FILENO, false));
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::FailedPreconditionError(
        StrCat("cannot open decision log '", path, "': ", std::strerror(errno)));
  }
  return std::unique_ptr<DecisionLog>(new DecisionLog(path, fd, true));
}

DecisionLog::DecisionLog(std::string path, int fd, bool owns_fd)
    : path_(std::move(path)), fd_(fd), owns_fd_(owns_fd) {}

DecisionLog::~DecisionLog() {
  if (owns_fd_) ::close(fd_);
}

absl::Status DecisionLog::Append(const DecisionRecord& record) {
  // Invalid UTF-8 (an error text from a peer) is replaced rather than thrown on.
  std::string line = DecisionRecordToJson(record).dump(-1, ' ', false,
                                                       json::error_handler_t::replace);
  line += '\n';
  std::lock_guard<std::mutex> lock(write_mu_);
  return WriteAll(fd_, line);
}

}  // namespace tandem::controller
