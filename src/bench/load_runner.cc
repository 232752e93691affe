#include "bench/load_runner.h"

#include <csignal>
#include <cstdlib>
#include <deque>
#include <memory>

#include "bench/stream_recorder.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/signal_set.hpp"
#include "boost/asio/steady_timer.hpp"

namespace tandem::bench {
namespace {

namespace net = boost::asio;
using Clock = std::chrono::steady_clock;

constexpr double kRateWindowSeconds = 5.0;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// One run's state; everything runs on io_'s thread.
class LoadRun {
 public:
  LoadRun(const std::vector<PlannedRequest>& plan, const LoadRunOptions& options)
      : plan_(plan), options_(options), dispatch_timer_(io_), progress_timer_(io_), signals_(io_) {
    records_.resize(plan.size());
    sent_.assign(plan.size(), false);
    recorders_.reserve(plan.size());
    for (size_t i = 0; i < plan.size(); ++i) {
      RequestRecord& r = records_[i];
      r.index = plan[i].index;
      r.phase = plan[i].phase;
      r.scheduled_s = plan[i].arrival_s;
      r.input_tokens = plan[i].input_tokens;
      r.output_tokens_requested = plan[i].output_tokens;
      recorders_.push_back(std::make_unique<StreamRecorder>(&r, options.exact_output_length));
    }
  }

  absl::StatusOr<LoadRunResult> Run(const BaseUrl& url) {
    auto client = HttpStreamClient::Create(io_, url);
    if (!client.ok()) return client.status();
    client_ = std::move(*client);
    start_ = last_end_ = Clock::now();
    if (plan_.empty()) return LoadRunResult{};
    if (options_.stop_on_interrupt) WatchInterrupts();
    Dispatch();
    if (options_.on_progress) ScheduleProgress();
    io_.run();
    client_->CloseIdle();
    LoadRunResult result;
    result.interrupted = interrupted_;
    for (size_t i = 0; i < records_.size(); ++i) {
      if (sent_[i]) result.records.push_back(std::move(records_[i]));
    }
    result.duration_s = Seconds(last_end_ - start_);
    return result;
  }

 private:
  // Sends every request whose arrival time has come, then waits for the next one.
  void Dispatch() {
    const double now = Seconds(Clock::now() - start_);
    while (next_ < plan_.size() && plan_[next_].arrival_s <= now) Arrive(next_++);
    if (next_ == plan_.size()) return;
    dispatch_timer_.expires_at(start_ + std::chrono::duration_cast<Clock::duration>(
                                            std::chrono::duration<double>(plan_[next_].arrival_s)));
    dispatch_timer_.async_wait([this](boost::system::error_code ec) {
      if (!ec) Dispatch();
    });
  }

  // SIGINT/SIGTERM: send nothing more and let the requests in flight finish; a second one
  // quits at once.
  void WatchInterrupts() {
    signals_.add(SIGINT);
    signals_.add(SIGTERM);
    signals_.async_wait([this](boost::system::error_code ec, int) {
      if (ec) return;
      if (interrupted_) std::_Exit(130);
      interrupted_ = true;
      dispatch_timer_.cancel();
      waiting_.clear();  // arrived but never sent: not part of the result
      if (options_.on_progress) options_.on_progress(Progress(false));
      WatchInterrupts();
      MaybeDone();
    });
  }

  void Arrive(size_t i) {
    if (options_.max_concurrency > 0 && in_flight_ >= options_.max_concurrency) {
      waiting_.push_back(i);
    } else {
      Send(i);
    }
  }

  void Send(size_t i) {
    const Clock::time_point sent = Clock::now();
    records_[i].sent_s = Seconds(sent - start_);
    sent_[i] = true;
    ++in_flight_;
    ++sent_count_;
    recent_sends_.push_back(sent);
    ClientRequest request;
    request.path = options_.path;
    request.body = plan_[i].body;
    request.headers = options_.headers;
    request.headers.emplace_back("Accept", "text/event-stream");
    request.timeout = options_.request_timeout;
    StreamRecorder* recorder = recorders_[i].get();
    ResponseCallbacks cb;
    cb.on_head = [recorder](int status, std::string_view type) { recorder->OnHead(status, type); };
    cb.on_body = [recorder, sent](std::string_view bytes) { recorder->OnBody(bytes, Seconds(Clock::now() - sent)); };
    cb.on_end = [this, recorder, sent, i](const absl::Status& s) {
      recorder->OnEnd(s, Seconds(Clock::now() - sent));
      OnEnd(i);
    };
    client_->Send(std::move(request), std::move(cb));
  }

  void OnEnd(size_t i) {
    --in_flight_;
    ++finished_;
    if (!records_[i].ok()) ++failed_;
    last_end_ = Clock::now();
    if (!waiting_.empty()) {
      const size_t w = waiting_.front();
      waiting_.pop_front();
      Send(w);
    }
    MaybeDone();
  }

  // Every request that will be sent has ended: stop the timers so that io_.run() returns.
  void MaybeDone() {
    const bool all_sent = next_ == plan_.size() || interrupted_;
    if (!all_sent || !waiting_.empty() || in_flight_ > 0 || done_) return;
    done_ = true;
    progress_timer_.cancel();
    dispatch_timer_.cancel();
    boost::system::error_code ignored;
    signals_.cancel(ignored);
    if (options_.on_progress) options_.on_progress(Progress(true));
  }

  LoadProgress Progress(bool done) {
    const Clock::time_point now = Clock::now();
    while (!recent_sends_.empty() && Seconds(now - recent_sends_.front()) > kRateWindowSeconds) {
      recent_sends_.pop_front();
    }
    LoadProgress p;
    p.total = static_cast<int>(plan_.size());
    p.sent = sent_count_;
    p.finished = static_cast<int>(finished_);
    p.failed = failed_;
    p.in_flight = in_flight_;
    p.elapsed_s = Seconds(now - start_);
    p.send_rate = recent_sends_.size() / std::min(kRateWindowSeconds, std::max(p.elapsed_s, 1e-3));
    p.done = done;
    p.interrupted = interrupted_;
    return p;
  }

  void ScheduleProgress() {
    progress_timer_.expires_after(options_.progress_interval);
    progress_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec || done_) return;
      options_.on_progress(Progress(false));
      ScheduleProgress();
    });
  }

  const std::vector<PlannedRequest>& plan_;
  const LoadRunOptions& options_;
  net::io_context io_;
  std::unique_ptr<HttpStreamClient> client_;
  net::steady_timer dispatch_timer_, progress_timer_;
  net::signal_set signals_;
  std::vector<RequestRecord> records_;
  std::vector<bool> sent_;
  std::vector<std::unique_ptr<StreamRecorder>> recorders_;
  Clock::time_point start_, last_end_;
  size_t next_ = 0, finished_ = 0;
  int in_flight_ = 0, sent_count_ = 0, failed_ = 0;
  bool interrupted_ = false, done_ = false;
  std::deque<size_t> waiting_;
  std::deque<Clock::time_point> recent_sends_;
};

}  // namespace

absl::StatusOr<LoadRunResult> RunLoad(const BaseUrl& url, const std::vector<PlannedRequest>& plan,
                                      const LoadRunOptions& options) {
  LoadRun run(plan, options);
  return run.Run(url);
}

}  // namespace tandem::bench
