#include "unit/transfer/transfer_test_util.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <future>
#include <random>

#include "absl/time/clock.h"
#include "common/check.h"

namespace tandem::transfer::testing {

KvLayoutInfo SmallLayout() {
  KvLayoutInfo l;
  l.model_id = "test-model";
  l.layout.num_layers = 2;
  l.layout.num_kv_heads = 2;
  l.layout.head_dim = 16;
  l.layout.block_size = 4;
  l.layout.dtype = DType::kF16;
  l.block_format = "cpu/kt-v1";
  return l;
}

KvLayoutInfo SmolLm2Layout() {
  KvLayoutInfo l;
  l.model_id = "smollm2-135m-instruct-q4_1";
  l.layout.num_layers = 30;
  l.layout.num_kv_heads = 3;
  l.layout.head_dim = 64;
  l.layout.block_size = 16;
  l.layout.dtype = DType::kF16;
  l.block_format = "cpu/kt-v1";
  return l;
}

TestCache MakeCache(const KvLayoutInfo& layout, int64_t num_blocks) {
  TestCache c;
  cpu::CpuBackendOptions options;
  options.threads = 1;
  c.backend = cpu::CpuBackend::Create(options).value();
  c.cache = c.backend->CreateKvCache(layout.layout, num_blocks).value();
  return c;
}

void FillRandom(const TestCache& cache, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const size_t n = static_cast<size_t>(cache.cache->num_blocks() * cache.bytes_per_block());
  uint8_t* p = cache.cache->host_base();
  for (size_t i = 0; i + 8 <= n; i += 8) {
    const uint64_t v = rng();
    std::memcpy(p + i, &v, 8);
  }
}

void FillByte(const TestCache& cache, uint8_t value) {
  std::memset(cache.cache->host_base(), value,
              static_cast<size_t>(cache.cache->num_blocks() * cache.bytes_per_block()));
}

bool BlockEquals(const TestCache& a, int64_t block_a, const TestCache& b, int64_t block_b) {
  TANDEM_CHECK_EQ(a.bytes_per_block(), b.bytes_per_block());
  return std::memcmp(a.block(block_a), b.block(block_b), static_cast<size_t>(a.bytes_per_block())) ==
         0;
}

bool BlockIsByte(const TestCache& cache, int64_t block, uint8_t value) {
  const uint8_t* p = cache.block(block);
  for (int64_t i = 0; i < cache.bytes_per_block(); ++i) {
    if (p[i] != value) return false;
  }
  return true;
}

absl::Status RecordingLeaseHandler::TransferStarting(const std::string& lease_id,
                                                     std::span<const int32_t> blocks) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = refusals_.find(lease_id); it != refusals_.end()) return it->second;
    ++started_[lease_id];
    ++starts_;
    ++pinned_;
  }
  cv_.notify_all();
  return absl::OkStatus();
}

void RecordingLeaseHandler::TransferEnded(const std::string& lease_id, const absl::Status& status,
                                          int32_t filled_blocks) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ended_[lease_id].push_back(status);
    filled_[lease_id] = filled_blocks;
    ++ends_;
    --pinned_;
  }
  cv_.notify_all();
}

void RecordingLeaseHandler::Refuse(const std::string& lease_id, absl::Status status) {
  std::lock_guard<std::mutex> lock(mu_);
  refusals_[lease_id] = std::move(status);
}

std::optional<absl::Status> RecordingLeaseHandler::WaitEnded(const std::string& lease_id,
                                                            absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, absl::ToChronoMilliseconds(timeout),
               [this, &lease_id] { return ended_.contains(lease_id); });
  if (!ended_.contains(lease_id)) return std::nullopt;
  return ended_[lease_id].front();
}

bool RecordingLeaseHandler::WaitStarted(const std::string& lease_id, absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, absl::ToChronoMilliseconds(timeout),
                      [this, &lease_id] { return started_.contains(lease_id); });
}

int RecordingLeaseHandler::starts() const {
  std::lock_guard<std::mutex> lock(mu_);
  return starts_;
}

int RecordingLeaseHandler::ends() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ends_;
}

int RecordingLeaseHandler::pinned() const {
  std::lock_guard<std::mutex> lock(mu_);
  return pinned_;
}

int32_t RecordingLeaseHandler::filled(const std::string& lease_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = filled_.find(lease_id);
  return it == filled_.end() ? -1 : it->second;
}

int RecordingLeaseHandler::ended_count(const std::string& lease_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = ended_.find(lease_id);
  return it == ended_.end() ? 0 : static_cast<int>(it->second.size());
}

std::optional<absl::Status> FinishAndWait(KvTransfer& transfer, absl::Duration timeout) {
  auto promise = std::make_shared<std::promise<absl::Status>>();
  std::future<absl::Status> future = promise->get_future();
  transfer.Finish([promise](absl::Status s) { promise->set_value(std::move(s)); });
  if (future.wait_for(absl::ToChronoMilliseconds(timeout)) != std::future_status::ready) {
    return std::nullopt;
  }
  return future.get();
}

KvDestination Destination(const KvEndpoint& endpoint, const std::string& lease_id,
                          std::vector<int32_t> blocks) {
  KvDestination d;
  d.endpoint = endpoint;
  d.lease_id = lease_id;
  d.blocks = std::move(blocks);
  return d;
}

std::unique_ptr<ChildProcess> ChildProcess::Spawn(const std::vector<std::string>& argv) {
  int fds[2];
  TANDEM_CHECK(pipe2(fds, O_CLOEXEC) == 0);
  const pid_t pid = fork();
  TANDEM_CHECK(pid >= 0);
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(fds[1]);
  auto child = std::make_unique<ChildProcess>();
  child->pid_ = pid;
  child->out_fd_ = fds[0];
  return child;
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (out_fd_ >= 0) close(out_fd_);
}

std::optional<std::string> ChildProcess::ReadLine(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    if (size_t nl = buffer_.find('\n'); nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      return line;
    }
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return std::nullopt;
    pollfd p{out_fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1) <= 0) continue;
    char buf[4096];
    const ssize_t n = read(out_fd_, buf, sizeof(buf));
    if (n <= 0) return std::nullopt;
    buffer_.append(buf, static_cast<size_t>(n));
  }
}

std::optional<std::string> ChildProcess::WaitFor(const std::string& prefix, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    auto line = ReadLine(deadline - absl::Now());
    if (!line) return std::nullopt;
    if (line->rfind(prefix, 0) == 0) return line->substr(prefix.size());
  }
  return std::nullopt;
}

void ChildProcess::Kill9() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

#if TANDEM_HAVE_UCX
UcxKvTransportOptions TestUcxOptions(const std::string& worker_id, KvCacheStorage* cache,
                                     const KvLayoutInfo& layout, KvLeaseHandler* handler) {
  UcxKvTransportOptions o;
  o.worker_id = worker_id;
  o.cache = cache;
  o.layout = layout;
  o.lease_handler = handler;
  o.transports = "tcp,sm,self";
  o.keepalive_interval = absl::Milliseconds(500);
  return o;
}
#endif

std::string EndpointToArg(const KvEndpoint& e) {
  return e.worker_id + "|" + std::to_string(e.epoch) + "|" + e.address;
}

KvEndpoint EndpointFromArg(const std::string& arg, const KvLayoutInfo& layout) {
  KvEndpoint e;
  const size_t a = arg.find('|');
  const size_t b = arg.find('|', a + 1);
  TANDEM_CHECK(a != std::string::npos && b != std::string::npos) << arg;
  e.worker_id = arg.substr(0, a);
  e.epoch = std::stoull(arg.substr(a + 1, b - a - 1));
  e.address = arg.substr(b + 1);
  e.layout = layout;
  return e;
}

}  // namespace tandem::transfer::testing
