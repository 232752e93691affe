#include "metrics/process_metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <iterator>
#include <limits>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>

namespace tandem::metrics {
namespace {

std::optional<double> BootTimeSeconds() {
  std::ifstream in("/proc/stat");
  std::string key;
  double value = 0;
  while (in >> key) {
    if (key == "btime" && in >> value) return value;
    in.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  return std::nullopt;
}

// NaN stands for "could not be read" in that scrape.
double OrNan(std::optional<double> v) { return v.value_or(std::nan("")); }

}  // namespace

std::optional<ProcessStats> ReadProcessStats() {
  std::ifstream in("/proc/self/stat");
  std::string line;
  if (!std::getline(in, line)) return std::nullopt;
  // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
  const size_t close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(line.substr(close + 1));
  std::vector<std::string> f{std::istream_iterator<std::string>(rest), std::istream_iterator<std::string>()};
  // f[0] is field 3 (state): field n is f[n - 3].
  if (f.size() < 22) return std::nullopt;
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  ProcessStats s;
  try {
    s.cpu_seconds = (std::stod(f[14 - 3]) + std::stod(f[15 - 3])) / ticks;
    s.virtual_bytes = std::stod(f[23 - 3]);
    s.resident_bytes = std::stod(f[24 - 3]) * page;
    const std::optional<double> boot = BootTimeSeconds();
    s.start_time_seconds = boot ? *boot + std::stod(f[22 - 3]) / ticks : std::nan("");
  } catch (const std::exception&) {
    return std::nullopt;
  }
  return s;
}

std::optional<double> CountOpenFds() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return std::nullopt;
  double n = 0;
  while (const dirent* e = readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(dir);
  return n - 1;  // the directory stream itself
}

std::optional<double> MaxFds() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return std::nullopt;
  return static_cast<double>(limit.rlim_cur);
}

namespace {

// One read of /proc/self/stat serves the four metrics it feeds within a scrape: a read is reused
// for 200 ms.
class StatCache {
 public:
  std::optional<ProcessStats> Get() {
    std::lock_guard<std::mutex> lock(mu_);
    const auto now = std::chrono::steady_clock::now();
    if (!read_at_ || now - *read_at_ > std::chrono::milliseconds(200)) {
      last_ = ReadProcessStats();
      read_at_ = now;
    }
    return last_;
  }

 private:
  std::mutex mu_;
  std::optional<std::chrono::steady_clock::time_point> read_at_;
  std::optional<ProcessStats> last_;
};

}  // namespace

std::vector<CallbackRegistration> RegisterProcessMetrics(MetricsRegistry& r) {
  auto cache = std::make_shared<StatCache>();
  const auto stat = [cache](double ProcessStats::*field) {
    return [cache, field] {
      const std::optional<ProcessStats> s = cache->Get();
      return s ? (*s).*field : std::nan("");
    };
  };
  std::vector<CallbackRegistration> out;
  out.push_back(r.AddCallbackCounter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.")
                    .Register({}, stat(&ProcessStats::cpu_seconds)));
  out.push_back(r.AddCallbackGauge("process_resident_memory_bytes", "Resident memory size in bytes.")
                    .Register({}, stat(&ProcessStats::resident_bytes)));
  out.push_back(r.AddCallbackGauge("process_virtual_memory_bytes", "Virtual memory size in bytes.")
                    .Register({}, stat(&ProcessStats::virtual_bytes)));
  out.push_back(r.AddCallbackGauge("process_start_time_seconds",
                                   "Start time of the process since unix epoch in seconds.")
                    .Register({}, stat(&ProcessStats::start_time_seconds)));
  out.push_back(r.AddCallbackGauge("process_open_fds", "Number of open file descriptors.")
                    .Register({}, [] { return OrNan(CountOpenFds()); }));
  out.push_back(r.AddCallbackGauge("process_max_fds", "Maximum number of open file descriptors.")
                    .Register({}, [] { return OrNan(MaxFds()); }));
  return out;
}

}  // namespace tandem::metrics
