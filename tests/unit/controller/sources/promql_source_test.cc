#include "controller/sources/promql_source.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "controller/sources/scrape_source.h"
#include "fmt/format.h"
#include "http/http_server.h"

namespace tandem::controller {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string PercentDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      out.push_back(static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else {
      out.push_back(s[i] == '+' ? ' ' : s[i]);
    }
  }
  return out;
}

std::map<std::string, std::string> QueryParams(std::string_view query) {
  std::map<std::string, std::string> params;
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    const size_t eq = pair.find('=');
    params[PercentDecode(pair.substr(0, eq))] = eq == std::string_view::npos ? "" : PercentDecode(pair.substr(eq + 1));
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
  }
  return params;
}

std::string Vector(std::string_view value) {
  return "{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[{\"metric\":{},\"value\":[1712345678.5,\"" +
         std::string(value) + "\"]}]}}";
}
const std::string kEmpty = R"({"status":"success","data":{"resultType":"vector","result":[]}})";

// Answers GET /api/v1/query from a script: PromQL → (HTTP status, JSON body); anything not
// scripted gets a value of 1. Records every query's parameters.
class FakePrometheus {
 public:
  FakePrometheus() {
    auto server = http::HttpServer::Create({.address = "127.0.0.1", .port = 0});
    EXPECT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    server_->Handle("GET", "/api/v1/query", [this](const http::HttpRequest& req, std::shared_ptr<http::HttpResponder> r) {
      auto params = QueryParams(req.query);
      std::pair<int, std::string> answer{200, Vector("1")};
      {
        std::lock_guard lock(mu_);
        requests_.push_back(params);
        if (auto it = script_.find(params["query"]); it != script_.end()) answer = it->second;
      }
      (void)r->Reply(answer.first, "application/json", answer.second);
    });
    EXPECT_TRUE(server_->Start().ok());
  }
  ~FakePrometheus() { server_->Stop(absl::ZeroDuration()); }

  void Script(const std::string& promql, std::string body, int status = 200) {
    std::lock_guard lock(mu_);
    script_[promql] = {status, std::move(body)};
  }
  std::vector<std::map<std::string, std::string>> requests() {
    std::lock_guard lock(mu_);
    return requests_;
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(server_->port()); }

 private:
  std::unique_ptr<http::HttpServer> server_;
  std::mutex mu_;
  std::map<std::string, std::pair<int, std::string>> script_;
  std::vector<std::map<std::string, std::string>> requests_;
};

std::unique_ptr<PromQLSource> Make(const std::string& url, std::string window = "1m", bool send_time = false) {
  PromQLSourceOptions o;
  o.base_url = url;
  o.window = std::move(window);
  o.send_time = send_time;
  o.timeout = std::chrono::milliseconds(3000);
  auto source = PromQLSource::Create(o);
  EXPECT_TRUE(source.ok()) << source.status();
  return source.ok() ? *std::move(source) : nullptr;
}

std::string QueryOf(std::string_view field, std::string_view window = "1m") {
  for (const auto& [f, q] : PromQLSource::Queries(window)) {
    if (f == field) return q;
  }
  ADD_FAILURE() << "no query for " << field;
  return "";
}

TEST(PromQLSourceTest, QueriesFollowTheSignalDefinitions) {
  const auto queries = PromQLSource::Queries("1m");
  std::vector<std::string> fields;
  for (const auto& [f, q] : queries) fields.push_back(f);
  EXPECT_THAT(fields, ::testing::ElementsAre(
                          "arrival_rate", "prompt_tokens_mean", "output_tokens_mean", "prompt_tokens_p50",
                          "prompt_tokens_p90", "prompt_tokens_p99", "output_tokens_p50", "output_tokens_p90",
                          "output_tokens_p99", "prompt_token_rate",
                          "prompt_cached_fraction", "ttft_p50", "ttft_p90",
                          "ttft_p99", "itl_p50", "itl_p99", "tpot_p90", "tpot_p99", "queue_p99", "inflight_requests", "queued_prefill_tokens",
                          "kv_utilization", "prefill_tokens_per_busy_second", "decode_tokens_per_busy_second",
                          "prefill_busy_fraction", "decode_busy_fraction", "decode_iteration_mean_s", "ready.prefill",
                          "ready.decode"));
  EXPECT_EQ(QueryOf("arrival_rate"), "sum(rate(tandem_router_prompt_tokens_count[1m]))");
  EXPECT_EQ(QueryOf("prompt_tokens_mean"),
            "sum(rate(tandem_router_prompt_tokens_sum[1m])) / (sum(rate(tandem_router_prompt_tokens_count[1m])) > 0)");
  EXPECT_EQ(QueryOf("prompt_tokens_p90"),
            "histogram_quantile(0.9, sum by (le) (rate(tandem_router_prompt_tokens_bucket[1m])))");
  EXPECT_EQ(QueryOf("output_tokens_p99"),
            "histogram_quantile(0.99, sum by (le) (rate(tandem_router_generated_tokens_bucket[1m])))");
  EXPECT_EQ(QueryOf("ttft_p99"), "histogram_quantile(0.99, sum by (le) (rate(tandem_router_ttft_seconds_bucket[1m])))");
  EXPECT_EQ(QueryOf("queued_prefill_tokens"), R"(sum(tandem_worker_queued_prefill_tokens{role=~"prefill|mixed"}))");
  EXPECT_EQ(QueryOf("kv_utilization"),
            R"(sum(tandem_worker_kv_blocks{role=~"decode|mixed",state=~"used|reserved"}) / )"
            R"((sum(tandem_worker_kv_blocks{role=~"decode|mixed"}) > 0))");
  EXPECT_EQ(QueryOf("prefill_tokens_per_busy_second"),
            R"(sum(rate(tandem_worker_tokens_total{phase="prefill",role="prefill"}[1m])) / )"
            R"((sum(rate(tandem_worker_busy_seconds_total{role="prefill"}[1m])) > 0))");
  EXPECT_EQ(QueryOf("decode_busy_fraction"), R"(avg(rate(tandem_worker_busy_seconds_total{role=~"decode|mixed"}[1m])))");
  EXPECT_EQ(QueryOf("decode_iteration_mean_s"),
            R"(sum(rate(tandem_worker_iteration_seconds_sum{phase="decode",role=~"decode|mixed"}[1m])) / )"
            R"((sum(rate(tandem_worker_iteration_seconds_count{phase="decode",role=~"decode|mixed"}[1m])) > 0))");
  // The most any one router counts: routers serving the same workers each count all of them.
  EXPECT_EQ(QueryOf("ready.decode"),
            R"(max(sum by (instance) (tandem_router_workers{state="ready",role=~"decode|mixed"})))");
  for (const auto& [f, q] : PromQLSource::Queries("5m")) EXPECT_THAT(q, Not(HasSubstr("[1m]"))) << f;
  EXPECT_THAT(QueryOf("itl_p50", "5m"), HasSubstr("[5m]"));
}

TEST(PromQLSourceTest, EachAnswerLandsInItsField) {
  FakePrometheus prom;
  const auto queries = PromQLSource::Queries("30s");
  // A distinct value per query: field i gets i + 0.25.
  for (size_t i = 0; i < queries.size(); ++i) prom.Script(queries[i].second, Vector(std::to_string(i) + ".25"));
  prom.Script(QueryOf("ready.prefill", "30s"), Vector("3"));
  prom.Script(QueryOf("ready.decode", "30s"), Vector("5"));

  auto source = Make(prom.url() + "/", "30s");  // a trailing slash is fine
  auto s = source->Read(1000);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->time_s, 1000);
  EXPECT_EQ(s->window_s, 30);
  const std::pair<const char*, double> expected[] = {
      {"arrival_rate", s->arrival_rate},
      {"prompt_tokens_mean", s->prompt_tokens_mean},
      {"output_tokens_mean", s->output_tokens_mean},
      {"prompt_tokens_p50", s->prompt_tokens_p50},
      {"prompt_tokens_p90", s->prompt_tokens_p90},
      {"prompt_tokens_p99", s->prompt_tokens_p99},
      {"output_tokens_p50", s->output_tokens_p50},
      {"output_tokens_p90", s->output_tokens_p90},
      {"output_tokens_p99", s->output_tokens_p99},
      {"prompt_token_rate", s->prompt_token_rate},
      {"prompt_cached_fraction", s->prompt_cached_fraction},
      {"ttft_p50", s->ttft_p50},
      {"ttft_p90", s->ttft_p90},
      {"ttft_p99", s->ttft_p99},
      {"itl_p50", s->itl_p50},
      {"itl_p99", s->itl_p99},
      {"tpot_p90", s->tpot_p90},
      {"tpot_p99", s->tpot_p99},
      {"queue_p99", s->queue_p99},
      {"inflight_requests", s->inflight_requests},
      {"queued_prefill_tokens", s->queued_prefill_tokens},
      {"kv_utilization", s->kv_utilization},
      {"prefill_tokens_per_busy_second", s->prefill_tokens_per_busy_second},
      {"decode_tokens_per_busy_second", s->decode_tokens_per_busy_second},
      {"prefill_busy_fraction", s->prefill_busy_fraction},
      {"decode_busy_fraction", s->decode_busy_fraction},
      {"decode_iteration_mean_s", s->decode_iteration_mean_s},
  };
  for (const auto& [field, got] : expected) {
    size_t index = 0;
    while (queries[index].first != field) ++index;
    EXPECT_EQ(got, index + 0.25) << field;
  }
  EXPECT_EQ(s->ready, (InstanceCounts{.prefill = 3, .decode = 5}));

  // Prometheus received exactly our PromQL (URL-encoded and decoded intact), without a time.
  const auto requests = prom.requests();
  ASSERT_EQ(requests.size(), queries.size());
  for (size_t i = 0; i < queries.size(); ++i) {
    EXPECT_EQ(requests[i].at("query"), queries[i].second);
    EXPECT_FALSE(requests[i].contains("time"));
  }
}

TEST(PromQLSourceTest, EmptyResultsAreNoDataAndSpecialValuesParse) {
  FakePrometheus prom;
  prom.Script(QueryOf("ttft_p99"), kEmpty);
  prom.Script(QueryOf("itl_p50"), Vector("NaN"));
  prom.Script(QueryOf("queue_p99"), Vector("+Inf"));
  prom.Script(QueryOf("ready.prefill"), kEmpty);  // no such series: no instances
  prom.Script(QueryOf("arrival_rate"), R"({"status":"success","data":{"resultType":"scalar","result":[1,"2.5"]}})");
  auto source = Make(prom.url());
  auto s = source->Read(0);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(std::isnan(s->ttft_p99));
  EXPECT_TRUE(std::isnan(s->itl_p50));
  EXPECT_EQ(s->queue_p99, INFINITY);
  EXPECT_EQ(s->ready.prefill, 0);
  EXPECT_EQ(s->ready.decode, 1);
  EXPECT_EQ(s->arrival_rate, 2.5);
  EXPECT_EQ(s->ttft_p50, 1);
}

TEST(PromQLSourceTest, PrometheusErrorsFailTheReadWithTheirMessage) {
  FakePrometheus prom;
  prom.Script(QueryOf("kv_utilization"),
              R"({"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected identifier"})", 400);
  auto source = Make(prom.url());
  auto s = source->Read(0);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("1:5: parse error: unexpected identifier"));
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("kv_utilization"));

  prom.Script(QueryOf("kv_utilization"), R"({"status":"error","errorType":"timeout","error":"query timed out"})", 503);
  s = source->Read(0);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("query timed out"));
}

TEST(PromQLSourceTest, UnusableAnswersAreErrorsNotValues) {
  FakePrometheus prom;
  auto source = Make(prom.url());
  const std::string q = QueryOf("itl_p99");
  const std::vector<std::pair<std::string, int>> answers = {
      {"<html>bad gateway</html>", 502},
      {"not json", 200},
      {R"({"status":"success","data":{"resultType":"matrix","result":[]}})", 200},
      {R"({"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,2]}]}})", 200},
      {R"({"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"x"]}]}})", 200},
      {R"({"status":"success","data":{"resultType":"vector","result":[{"value":[1,"1"]},{"value":[1,"2"]}]}})", 200},
      {R"({"status":"success","data":"oops"})", 200},
      {R"([1,2,3])", 200},
  };
  for (const auto& [body, status] : answers) {
    prom.Script(q, body, status);
    auto s = source->Read(0);
    EXPECT_FALSE(s.ok()) << body;
    EXPECT_THAT(std::string(s.status().message()), HasSubstr("itl_p99")) << body;
  }
}

TEST(PromQLSourceTest, NoRouterDataIsAnErrorNotZeroInstances) {
  FakePrometheus prom;
  prom.Script(QueryOf("inflight_requests"), kEmpty);
  prom.Script(QueryOf("ready.prefill"), kEmpty);
  prom.Script(QueryOf("ready.decode"), kEmpty);
  auto s = Make(prom.url())->Read(0);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("router"));
}

TEST(PromQLSourceTest, SendsTheEvaluationTimeWhenAsked) {
  FakePrometheus prom;
  auto s = Make(prom.url(), "2m", /*send_time=*/true)->Read(1712345678.25);
  ASSERT_TRUE(s.ok()) << s.status();
  const auto requests = prom.requests();
  ASSERT_FALSE(requests.empty());
  for (const auto& r : requests) {
    EXPECT_EQ(r.at("time"), "1712345678.250");
    EXPECT_THAT(r.at("query"), Not(HasSubstr("[1m]")));
  }
  EXPECT_EQ(s->window_s, 120);
}

TEST(PromQLSourceTest, PrometheusDownFailsFastWithUnavailable) {
  std::string url;
  {
    FakePrometheus prom;
    url = prom.url();
  }  // stopped: the port refuses connections
  auto source = Make(url);
  const auto start = std::chrono::steady_clock::now();
  auto s = source->Read(0);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kUnavailable) << s.status();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2)) << "tried every query";
}

TEST(PromQLSourceTest, CreateRejectsBadOptions) {
  PromQLSourceOptions o;
  o.base_url = "prometheus:9090";
  EXPECT_EQ(PromQLSource::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.base_url = "http://prometheus:9090";
  for (std::string bad : {"", "1", "m", "0s", "1.5m", "1s1m", "1m1m", "-1m", "1 m", "5x"}) {
    o.window = bad;
    EXPECT_EQ(PromQLSource::Create(o).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  o.window = "1h30m";
  auto ok = PromQLSource::Create(o);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ((*ok)->window_s(), 5400);
}

TEST(PromQLSourceTest, DurationsAndUrlEncoding) {
  EXPECT_EQ(*ParsePromDurationSeconds("30s"), 30);
  EXPECT_EQ(*ParsePromDurationSeconds("1m30s"), 90);
  EXPECT_EQ(*ParsePromDurationSeconds("1s500ms"), 1.5);
  EXPECT_EQ(*ParsePromDurationSeconds("2d"), 172800);
  EXPECT_EQ(*ParsePromDurationSeconds("1w"), 604800);
  EXPECT_EQ(UrlEncodeQueryValue(R"(sum(x{a=~"b|c"}[1m]) > 0 & +)"),
            "sum%28x%7Ba%3D~%22b%7Cc%22%7D%5B1m%5D%29%20%3E%200%20%26%20%2B");
}

// ---------------------------------------------------------------------------------------------
// Both sources on the same data: a small cluster whose series grow linearly (so Prometheus'
// rate() needs no extrapolation), read by ScrapeSource from two scrapes a minute apart, and
// every PromQL query evaluated by Prometheus' own engine (`promtool test rules`) on the same
// series, checked against what ScrapeSource computed. Skipped without promtool (Debian package
// `prometheus`) unless TANDEM_REQUIRE_PROMTOOL=1.

std::string FindPromtool() {
  if (const char* env = std::getenv("PROMTOOL"); env != nullptr && *env != '\0') return env;
  for (const char* dir : {"/usr/bin", "/usr/local/bin", "/bin"}) {
    const std::string candidate = std::string(dir) + "/promtool";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

// One series of the synthetic cluster: value = start + per_step × step, one step = 15 s.
struct SyntheticSeries {
  std::string target;   // scrape target (and Prometheus `instance`)
  std::string family;   // the # TYPE name
  std::string type;     // counter, gauge or histogram
  std::string name;     // the series name (family + _bucket/_sum/_count for histograms)
  std::string labels;   // `a="b",c="d"` or empty
  double start;
  double per_step;
};

std::vector<SyntheticSeries> SyntheticCluster() {
  std::vector<SyntheticSeries> c;
  auto add = [&](std::string target, std::string family, std::string type, std::string suffix, std::string labels,
                 double start, double per_step) {
    const std::string name = family + suffix;
    c.push_back({std::move(target), std::move(family), std::move(type), name, std::move(labels), start, per_step});
  };
  auto histogram = [&](std::string target, std::string family, std::string labels, std::vector<std::string> les,
                       std::vector<std::pair<double, double>> buckets, std::pair<double, double> sum) {
    const std::string sep = labels.empty() ? "" : ",";
    for (size_t i = 0; i < les.size(); ++i) {
      add(target, family, "histogram", "_bucket", labels + sep + "le=\"" + les[i] + "\"", buckets[i].first,
          buckets[i].second);
    }
    add(target, family, "histogram", "_sum", labels, sum.first, sum.second);
    add(target, family, "histogram", "_count", labels, buckets.back().first, buckets.back().second);
  };
  // Router: 2 arrivals/s of 100 prompt tokens, 1 finish/s of 60 tokens, latency histograms.
  histogram("router", "tandem_router_prompt_tokens", "", {"64", "128", "256", "+Inf"},
            {{200, 6}, {800, 24}, {1000, 30}, {1000, 30}}, {100000, 3000});
  histogram("router", "tandem_router_generated_tokens", "", {"32", "64", "128", "+Inf"},
            {{100, 3}, {300, 9}, {500, 15}, {500, 15}}, {20000, 900});
  histogram("router", "tandem_router_ttft_seconds", "", {"0.1", "0.5", "1", "+Inf"},
            {{100, 10}, {200, 30}, {300, 40}, {400, 40}}, {50, 12});
  histogram("router", "tandem_router_itl_seconds", "", {"0.01", "0.05", "0.1", "+Inf"},
            {{0, 0}, {10, 90}, {20, 100}, {20, 100}}, {1, 2.5});
  histogram("router", "tandem_router_tpot_seconds", "", {"0.01", "0.05", "0.1", "+Inf"},
            {{0, 1}, {10, 10}, {20, 14}, {20, 15}}, {1, 0.5});
  histogram("router", "tandem_router_queue_seconds", "", {"0.1", "1", "10", "+Inf"}, {{5, 0}, {5, 0}, {5, 0}, {5, 2}},
            {100, 40});
  add("router", "tandem_router_inflight_requests", "gauge", "", "", 7, 0);
  add("router", "tandem_router_workers", "gauge", "", R"(role="prefill",state="ready")", 2, 0);
  add("router", "tandem_router_workers", "gauge", "", R"(role="prefill",state="draining")", 1, 0);
  add("router", "tandem_router_workers", "gauge", "", R"(role="decode",state="ready")", 3, 0);
  add("router", "tandem_router_workers", "gauge", "", R"(role="mixed",state="ready")", 1, 0);
  // Workers: two prefill, one decode, one mixed.
  struct Worker {
    std::string name, role;
    double queued, kv_free, kv_used, kv_reserved, prefill_tokens, decode_tokens, busy, decode_iter_s, decode_iters,
        hit_tokens;
  };
  for (const Worker& w : {Worker{"p1", "prefill", 500, 0, 100, 0, 5000, 0, 7.5, 0, 0, 3000},
                          Worker{"p2", "prefill", 0, 10, 90, 0, 1500, 0, 3, 0, 0, 0},
                          Worker{"d1", "decode", 999, 60, 30, 10, 0, 600, 12, 12, 600, 0},
                          Worker{"m1", "mixed", 200, 50, 50, 0, 1500, 150, 6, 6, 150, 1000}}) {
    const std::string role = "role=\"" + w.role + "\"";
    add(w.name, "tandem_worker_queued_prefill_tokens", "gauge", "", role, w.queued, 0);
    add(w.name, "tandem_worker_kv_blocks", "gauge", "", role + R"(,state="free")", w.kv_free, 0);
    add(w.name, "tandem_worker_kv_blocks", "gauge", "", role + R"(,state="used")", w.kv_used, 0);
    add(w.name, "tandem_worker_kv_blocks", "gauge", "", role + R"(,state="reserved")", w.kv_reserved, 0);
    add(w.name, "tandem_worker_tokens_total", "counter", "", role + R"(,phase="prefill")", 1e6, w.prefill_tokens);
    add(w.name, "tandem_worker_tokens_total", "counter", "", role + R"(,phase="decode")", 1e5, w.decode_tokens);
    add(w.name, "tandem_worker_busy_seconds_total", "counter", "", role, 100, w.busy);
    add(w.name, "tandem_worker_prefix_cache_hit_tokens_total", "counter", "", role, 4e4, w.hit_tokens);
    histogram(w.name, "tandem_worker_iteration_seconds", role + R"(,phase="decode")", {"+Inf"},
              {{50, w.decode_iters}}, {1, w.decode_iter_s});
    histogram(w.name, "tandem_worker_iteration_seconds", role + R"(,phase="mixed")", {"+Inf"}, {{50, 3}}, {1, 15});
  }
  return c;
}

std::string Exposition(const std::vector<SyntheticSeries>& cluster, const std::string& target, int step) {
  std::string text;
  std::string last_family;
  for (const SyntheticSeries& s : cluster) {
    if (s.target != target) continue;
    if (s.family != last_family) text += "# TYPE " + s.family + " " + s.type + "\n";
    last_family = s.family;
    text += fmt::format("{}{}{}{} {}\n", s.name, s.labels.empty() ? "" : "{", s.labels, s.labels.empty() ? "" : "}",
                        s.start + s.per_step * step);
  }
  return text;
}

TEST(PromQLSourceTest, PrometheusEvaluatesEveryQueryAsScrapeSourceComputesIt) {
  const std::string promtool = FindPromtool();
  if (promtool.empty()) {
    const char* require = std::getenv("TANDEM_REQUIRE_PROMTOOL");
    if (require != nullptr && std::string(require) == "1") FAIL() << "promtool not found";
    GTEST_SKIP() << "promtool not found (Debian package prometheus)";
  }
  const std::vector<SyntheticSeries> cluster = SyntheticCluster();

  // ScrapeSource: steps 36 and 40 (9 min and 10 min), 60 s apart.
  int step = 36;
  std::vector<ScrapeTarget> targets = {{"router", "router"}, {"p1", "prefill"}, {"p2", "prefill"}, {"d1", "decode"},
                                       {"m1", "mixed"}};
  ScrapeSourceOptions options;
  options.fetch = [&](const std::string& url, std::chrono::milliseconds) -> absl::StatusOr<std::string> {
    return Exposition(cluster, url, step);
  };
  ScrapeSource scrape([&] { return targets; }, options);
  ASSERT_TRUE(scrape.Read(540).ok());
  step = 40;
  auto expected = scrape.Read(600);
  ASSERT_TRUE(expected.ok()) << expected.status();
  // The data has a value for every signal; a NaN here would make the comparison vacuous.
  const std::map<std::string, double> want = {
      {"arrival_rate", expected->arrival_rate},
      {"prompt_tokens_mean", expected->prompt_tokens_mean},
      {"output_tokens_mean", expected->output_tokens_mean},
      {"prompt_tokens_p50", expected->prompt_tokens_p50},
      {"prompt_tokens_p90", expected->prompt_tokens_p90},
      {"prompt_tokens_p99", expected->prompt_tokens_p99},
      {"output_tokens_p50", expected->output_tokens_p50},
      {"output_tokens_p90", expected->output_tokens_p90},
      {"output_tokens_p99", expected->output_tokens_p99},
      {"prompt_token_rate", expected->prompt_token_rate},
      {"prompt_cached_fraction", expected->prompt_cached_fraction},
      {"ttft_p50", expected->ttft_p50},
      {"ttft_p90", expected->ttft_p90},
      {"ttft_p99", expected->ttft_p99},
      {"itl_p50", expected->itl_p50},
      {"itl_p99", expected->itl_p99},
      {"tpot_p90", expected->tpot_p90},
      {"tpot_p99", expected->tpot_p99},
      {"queue_p99", expected->queue_p99},
      {"inflight_requests", expected->inflight_requests},
      {"queued_prefill_tokens", expected->queued_prefill_tokens},
      {"kv_utilization", expected->kv_utilization},
      {"prefill_tokens_per_busy_second", expected->prefill_tokens_per_busy_second},
      {"decode_tokens_per_busy_second", expected->decode_tokens_per_busy_second},
      {"prefill_busy_fraction", expected->prefill_busy_fraction},
      {"decode_busy_fraction", expected->decode_busy_fraction},
      {"decode_iteration_mean_s", expected->decode_iteration_mean_s},
      {"ready.prefill", expected->ready.prefill},
      {"ready.decode", expected->ready.decode},
  };
  for (const auto& [field, value] : want) ASSERT_TRUE(std::isfinite(value)) << field;
  // Spot checks by hand, so that agreement is not agreement on a wrong number.
  EXPECT_DOUBLE_EQ(expected->arrival_rate, 2);
  EXPECT_DOUBLE_EQ(expected->output_tokens_mean, 60);
  EXPECT_DOUBLE_EQ(expected->ttft_p50, 0.3);
  EXPECT_DOUBLE_EQ(expected->prompt_tokens_p50, 96);  // rank 15 of 30: 9 of the 18 in (64, 128]
  EXPECT_DOUBLE_EQ(expected->output_tokens_p90, 64 + 64 * (13.5 - 9) / 6);
  EXPECT_DOUBLE_EQ(expected->prefill_busy_fraction, (0.5 + 0.2) / 2);
  EXPECT_DOUBLE_EQ(expected->kv_utilization, 0.45);
  EXPECT_DOUBLE_EQ(expected->prompt_cached_fraction, 4000.0 / (4000 + 8000));
  EXPECT_EQ(expected->ready, (InstanceCounts{.prefill = 2, .decode = 4}));

  std::string yaml = "rule_files: []\nevaluation_interval: 15s\ntests:\n  - interval: 15s\n    input_series:\n";
  for (const SyntheticSeries& s : cluster) {
    const std::string labels = "instance=\"" + s.target + "\"" + (s.labels.empty() ? "" : "," + s.labels);
    yaml += fmt::format("      - series: '{}{{{}}}'\n        values: '{}+{}x40'\n", s.name, labels, s.start, s.per_step);
  }
  yaml += "    promql_expr_test:\n";
  for (const auto& [field, promql] : PromQLSource::Queries("1m")) {
    const double v = want.at(field);
    // 1 when Prometheus' answer is within 1e-9 (relative) of ScrapeSource's, 0 otherwise or when empty.
    const std::string check =
        fmt::format("(abs(({}) - {:.17g}) <= bool {:.17g}) or vector(0)", promql, v, 1e-9 * (1 + std::abs(v)));
    yaml += fmt::format("      - expr: '{}'\n        eval_time: 10m\n        exp_samples:\n          - labels: '{{}}'\n"
                        "            value: 1\n",
                        check);
  }
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("tandem_promql_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::filesystem::path file = dir / "queries_test.yml";
  std::ofstream(file) << yaml;

  const std::string command = promtool + " test rules " + file.string() + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof(buf), pipe)) output.append(buf, n);
  const int rc = ::pclose(pipe);
  EXPECT_EQ(rc, 0) << "Prometheus disagrees with ScrapeSource (expr shows the query):\n" << output;
  if (rc == 0) std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tandem::controller
