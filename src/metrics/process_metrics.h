// The standard process metrics every Prometheus client library exports, with the same names and
// meanings, so SREs' usual dashboards and alerts work on tandem's processes:
//   process_cpu_seconds_total        user + system CPU time
//   process_resident_memory_bytes    resident set size
//   process_virtual_memory_bytes     virtual memory size
//   process_open_fds                 open file descriptors
//   process_max_fds                  the soft limit on them (RLIMIT_NOFILE)
//   process_start_time_seconds       start time, Unix seconds
// Read from /proc/self at each scrape (Linux). A value that cannot be read is reported as NaN
// for that scrape, never as a made-up 0.
//
// Thread-safety: ReadProcessStats is safe from any thread; the registrations are the registry's.
#pragma once

#include <optional>
#include <vector>

#include "metrics/registry.h"

namespace tandem::metrics {

struct ProcessStats {
  double cpu_seconds = 0;
  double resident_bytes = 0;
  double virtual_bytes = 0;
  double start_time_seconds = 0;
};

// CPU, memory and start time from /proc/self/stat (and the boot time in /proc/stat).
std::optional<ProcessStats> ReadProcessStats();
// Entries in /proc/self/fd, less the one the count itself opens.
std::optional<double> CountOpenFds();
std::optional<double> MaxFds();

// Registers the process_* families on `registry`; the metrics live as long as the returned
// registrations.
std::vector<CallbackRegistration> RegisterProcessMetrics(MetricsRegistry& registry);

}  // namespace tandem::metrics
