// Smoke runs against a fake OpenAI server on 127.0.0.1:0 (fake_openai_server.h): the runner,
// the whole benchmark through the library, the preflight's errors, and `tandem bench serve`
// itself when the binary has been built. Bounds on times are loose: nothing here is timing
// critical.
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "bench/http_stream_client.h"
#include "bench/load_runner.h"
#include "bench/preflight.h"
#include "bench/request_plan.h"
#include "bench/serve.h"
#include "common/strings.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "http/http_server.h"
#include "nlohmann/json.hpp"
#include "testing/shell.h"
#include "testing/tiny_model.h"
#include "unit/bench/fake_openai_server.h"

namespace tandem::bench {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

struct TinyTokenizer {
  TinyTokenizer() {
    path = tandem::testing::TinyModelPath();
    auto file = gguf::GgufFile::Open(path);
    tokenizer = *text::Tokenizer::Create(*text::TokenizerConfigFromGguf(**file));
    chat_template = *text::ChatTemplate::FromJinja(tokenizer->chat_template());
  }
  std::string path;
  std::unique_ptr<text::Tokenizer> tokenizer;
  text::ChatTemplate chat_template = text::ChatTemplate::ChatMl();
};

std::vector<PlannedRequest> FixedPlan(int n, int output_tokens) {
  std::vector<PlannedRequest> plan;
  for (int i = 0; i < n; ++i) {
    PlannedRequest r;
    r.index = i;
    r.input_tokens = 5;
    r.output_tokens = output_tokens;
    r.body = RequestBody({"", " a b c d"}, output_tokens, RequestSettings{});
    plan.push_back(std::move(r));
  }
  return plan;
}

TEST(LoadRunner, StreamsFromAFakeServerAndMeasuresItsDelays) {
  testing::FakeOpenAiServer server({});  // first token after 40 ms, then every 10 ms
  ASSERT_TRUE(server.Start().ok());
  LoadRunOptions o;
  o.max_concurrency = 4;
  int progress_reports = 0;
  bool saw_done = false;
  o.on_progress = [&](const LoadProgress& p) {
    ++progress_reports;
    saw_done |= p.done;
  };
  auto result = RunLoad(*ParseBaseUrl(server.url()), FixedPlan(12, 8), o);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->records.size(), 12u);
  const Summary s = Summarize(result->records, result->duration_s, std::nullopt);
  EXPECT_EQ(s.completed, 12) << result->records[0].error;
  EXPECT_EQ(s.output_tokens, 12 * 8);
  for (const RequestRecord& r : result->records) {
    EXPECT_EQ(r.chunk_s.size(), 8u);
    EXPECT_GE(*r.ttft_s(), 0.040);  // the fake cannot answer sooner
    EXPECT_LT(*r.ttft_s(), 5.0);
    EXPECT_GE(r.end_s, 0.040 + 8 * 0.010);
  }
  EXPECT_GT(s.itl.mean, 0.0);
  EXPECT_LT(s.itl.mean, 1000.0);
  EXPECT_EQ(s.tpot.count, 12);
  // 12 requests, 4 at a time, each >= 120 ms: at least three rounds.
  EXPECT_GE(result->duration_s, 0.36);
  EXPECT_TRUE(saw_done);
  EXPECT_GE(progress_reports, 1);
}

TEST(LoadRunner, CountsServerErrorsByStatus) {
  testing::FakeServerOptions fo;
  fo.fail_every = 4;
  fo.first_token_delay = absl::Milliseconds(1);
  fo.token_delay = absl::Milliseconds(1);
  testing::FakeOpenAiServer server(fo);
  ASSERT_TRUE(server.Start().ok());
  auto result = RunLoad(*ParseBaseUrl(server.url()), FixedPlan(12, 3), {});
  ASSERT_TRUE(result.ok());
  const Summary s = Summarize(result->records, result->duration_s, std::nullopt);
  EXPECT_EQ(s.completed, 9);
  EXPECT_EQ(s.failed, 3);
  EXPECT_EQ(s.http_statuses.at(503), 3);
}

TEST(LoadRunner, AnInterruptStopsSendingAndKeepsWhatWasSent) {
  testing::FakeServerOptions fo;
  fo.first_token_delay = fo.token_delay = absl::Milliseconds(1);
  testing::FakeOpenAiServer server(fo);
  ASSERT_TRUE(server.Start().ok());
  std::vector<PlannedRequest> plan = FixedPlan(20, 2);
  for (size_t i = 0; i < plan.size(); ++i) plan[i].arrival_s = 0.2 * i;  // 4 s in all
  LoadRunOptions o;
  o.stop_on_interrupt = true;
  o.progress_interval = std::chrono::milliseconds(20);
  bool raised = false;
  o.on_progress = [&](const LoadProgress& p) {
    if (p.sent >= 2 && !raised) {
      raised = true;
      std::raise(SIGINT);  // as Ctrl-C; the run's signal handler takes it
    }
  };
  auto result = RunLoad(*ParseBaseUrl(server.url()), plan, o);
  ASSERT_TRUE(result.ok());
  EXPECT_TRUE(result->interrupted);
  EXPECT_GE(result->records.size(), 2u);
  EXPECT_LT(result->records.size(), 20u);
  for (const RequestRecord& r : result->records) EXPECT_TRUE(r.ok()) << r.error;  // in flight ones finished
}

TEST(LoadRunner, AClosedPortIsAConnectError) {
  auto probe = http::HttpServer::Create({.address = "127.0.0.1"});
  ASSERT_TRUE((*probe)->Start().ok());
  const int port = (*probe)->port();
  probe->reset();  // closes the port
  auto result = RunLoad(*ParseBaseUrl(StrCat("http://127.0.0.1:", port)), FixedPlan(2, 3), {});
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->records[0].failure, FailureKind::kConnect);
  EXPECT_THAT(result->records[0].error, HasSubstr("cannot connect"));
}

TEST(BaseUrl, ParsesHttpUrlsAndRefusesOthers) {
  auto u = ParseBaseUrl("http://example.com:8080/api/");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->host, "example.com");
  EXPECT_EQ(u->port, 8080);
  EXPECT_EQ(u->path_prefix, "/api");
  EXPECT_EQ(ParseBaseUrl("http://localhost")->port, 80);
  EXPECT_EQ(ParseBaseUrl("http://[::1]:9000")->host, "::1");
  EXPECT_THAT(ParseBaseUrl("https://api.example.com").status().message(), HasSubstr("TLS-terminating proxy"));
  EXPECT_FALSE(ParseBaseUrl("127.0.0.1:8000").ok());
  EXPECT_FALSE(ParseBaseUrl("http://host:99999").ok());
  EXPECT_FALSE(ParseBaseUrl("http://:80").ok());
}

TEST(Preflight, ExplainsWhatIsWrongWithTheServer) {
  const BaseUrl url = *ParseBaseUrl("http://127.0.0.1:1");
  EXPECT_THAT(ParseModelList(url, 404, "", "").status().message(), HasSubstr("not an OpenAI-compatible server"));
  EXPECT_THAT(ParseModelList(url, 401, "", "").status().message(), HasSubstr("API key"));
  EXPECT_THAT(ParseModelList(url, 200, "<html>", "").status().message(), HasSubstr("did not answer JSON"));
  EXPECT_THAT(ParseModelList(url, 200, "{\"models\": []}", "").status().message(), HasSubstr("not an OpenAI model list"));
  EXPECT_THAT(ParseModelList(url, 200, "{\"data\": []}", "").status().message(), HasSubstr("lists no models"));
  auto info = ParseModelList(url, 200, R"({"data": [{"id": "a", "max_model_len": 2048}, {"id": "b"}]})", "");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->model, "a");
  EXPECT_EQ(info->max_model_len, 2048);
  auto other = ParseModelList(url, 200, R"({"data": [{"id": "a"}]})", "zzz");
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(other->model, "zzz");
  EXPECT_THAT(other->note, HasSubstr("does not list model 'zzz'"));
}

TEST(Preflight, ANonOpenAiServerIsNamedAsSuch) {
  auto plain = http::HttpServer::Create({.address = "127.0.0.1"});
  ASSERT_TRUE((*plain)->Start().ok());  // no routes: 404 for everything
  auto info = Preflight(*ParseBaseUrl(StrCat("http://127.0.0.1:", (*plain)->port())), {}, "");
  EXPECT_EQ(info.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(info.status().message(), HasSubstr("HTTP 404"));
}

class ServeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::FakeServerOptions fo;
    fo.first_token_delay = absl::Milliseconds(5);
    fo.token_delay = absl::Milliseconds(2);
    fo.tokenizer = tok_.tokenizer.get();
    fo.chat_template = &tok_.chat_template;
    server_ = std::make_unique<testing::FakeOpenAiServer>(fo);
    ASSERT_TRUE(server_->Start().ok());
    options_.base_url = server_->url() + "/v1";  // a trailing /v1 is dropped with a note
    options_.num_prompts = 10;
    options_.lengths = {32, 6};
    options_.progress = false;
    options_.result_file = StrCat(tandem::testing::TestTempDir(), "/result-", ++files_, ".json");
    context_.tokenizer = tok_.tokenizer.get();
    context_.chat_template = &tok_.chat_template;
    context_.out = out_ = std::tmpfile();
    context_.err = err_ = std::tmpfile();
  }
  void TearDown() override {
    std::fclose(out_);
    std::fclose(err_);
  }
  static std::string Read(std::FILE* f) {
    std::fflush(f);
    std::rewind(f);
    std::string s;
    char buf[4096];
    for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) s.append(buf, n);
    return s;
  }
  absl::Status Run() {
    auto traffic = PrepareTraffic(options_);
    if (!traffic.ok()) return traffic.status();
    return RunServeBenchmark(options_, *traffic, context_);
  }
  Json Result() { return Json::parse(std::ifstream(options_.result_file)); }

  TinyTokenizer tok_;
  std::unique_ptr<testing::FakeOpenAiServer> server_;
  ServeOptions options_;
  ServeContext context_;
  std::FILE* out_ = nullptr;
  std::FILE* err_ = nullptr;
  static inline int files_ = 0;
};

TEST_F(ServeTest, CompletionsRunPrintsTheTableAndWritesJson) {
  options_.slo = *ParseSlo("ttft:10000 tpot:5000");
  ASSERT_TRUE(Run().ok());
  const std::string table = Read(out_);
  EXPECT_THAT(table, HasSubstr("Successful requests:                     10"));
  EXPECT_THAT(table, HasSubstr("SLO attainment (%):                      100.00"));
  EXPECT_THAT(Read(err_), HasSubstr("dropped the trailing /v1"));
  const Json j = Result();
  EXPECT_EQ(j["server"]["model"], "fake-model");
  EXPECT_EQ(j["server"]["max_model_len"], 4096);
  EXPECT_EQ(j["summary"]["completed"], 10);
  EXPECT_EQ(j["summary"]["total_input_tokens"], 320);
  EXPECT_EQ(j["summary"]["prompt_token_mismatches"], 0);  // the fake counted what we built
  EXPECT_EQ(j["summary"]["goodput"]["good"], 10);
  ASSERT_EQ(j["requests"].size(), 10u);
  for (const Json& r : j["requests"]) {
    EXPECT_EQ(r["prompt_tokens_reported"], 32);
    EXPECT_EQ(r["output_tokens"], 6);
    EXPECT_EQ(r["itl_ms"].size(), 5u);
    EXPECT_EQ(r["good"], true);
  }
}

TEST_F(ServeTest, ChatScheduleRunReportsPhases) {
  options_.endpoint = "/v1/chat/completions";
  options_.schedule = "0.4s@20:fixed:in=40,out=3;0.2s@0;0.4s@20:shared-prefix:prefixes=2,prefix=30,in=40,out=2";
  ASSERT_TRUE(Run().ok()) << Read(err_);
  const Json j = Result();
  ASSERT_EQ(j["phases"].size(), 3u);
  EXPECT_EQ(j["phases"][1]["sent"], 0);
  EXPECT_EQ(j["summary"]["failed"], 0);
  EXPECT_EQ(j["summary"]["prompt_token_mismatches"], 0);
  for (const Json& r : j["requests"]) {
    EXPECT_EQ(r["prompt_tokens_reported"], r["phase"] == 0 ? 40 : 70);
  }
  EXPECT_THAT(Read(out_), HasSubstr("phase 2:"));
}

TEST_F(ServeTest, TraceReplaySendsTheTracesLengths) {
  options_.trace_file = StrCat(tandem::testing::TestTempDir(), "/trace.jsonl");
  std::ofstream(options_.trace_file) << "{\"timestamp\": 1000, \"input_length\": 20, \"output_length\": 2}\n"
                                        "{\"timestamp\": 1050, \"input_length\": 30, \"output_length\": 4}\n";
  ASSERT_TRUE(Run().ok());
  const Json j = Result();
  ASSERT_EQ(j["requests"].size(), 2u);
  EXPECT_EQ(j["requests"][1]["prompt_tokens_reported"], 30);
  EXPECT_EQ(j["requests"][1]["output_tokens"], 4);
  EXPECT_NEAR(j["requests"][1]["scheduled_s"].get<double>(), 0.05, 1e-9);
}

TEST_F(ServeTest, GoodputSearchReportsEveryProbe) {
  options_.find_max_rate = true;
  options_.slo = *ParseSlo("ttft:0.001");  // nobody can meet 1 us
  options_.num_prompts = 3;
  options_.search.rate_min = 50;
  options_.search.rate_max = 100;
  ASSERT_TRUE(Run().ok());
  EXPECT_THAT(Read(out_), HasSubstr("even --rate-min fails"));
  const Json j = Result();
  EXPECT_EQ(j["search"]["probes"].size(), 2u);
  EXPECT_TRUE(j["search"]["max_rate"].is_null());
  ASSERT_EQ(j["search"]["runs"].size(), 2u);
  // Each rate gets its own prompts, so no probe is served from the cache the previous one filled.
  EXPECT_NE(j["search"]["runs"][0]["seed"], j["search"]["runs"][1]["seed"]);
  EXPECT_LE(j["started_at"].get<std::string>(), j["finished_at"].get<std::string>());
}

TEST_F(ServeTest, UsageErrorsAndUnreachableServers) {
  options_.find_max_rate = true;
  EXPECT_THAT(PrepareTraffic(options_).status().message(), HasSubstr("needs --goodput"));
  options_.find_max_rate = false;
  options_.schedule = "1s@1";
  options_.trace_file = "x";
  EXPECT_EQ(PrepareTraffic(options_).status().code(), absl::StatusCode::kInvalidArgument);
  options_.schedule = options_.trace_file = "";
  options_.workload = "nope";
  EXPECT_EQ(PrepareTraffic(options_).status().code(), absl::StatusCode::kInvalidArgument);
  options_.workload = "fixed";

  server_->Stop();
  const absl::Status s = Run();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(s.message(), HasSubstr("no OpenAI-compatible server reachable"));
  EXPECT_THAT(s.message(), HasSubstr("check --base-url"));
}

// `tandem bench serve` end to end, when the binary is built (it is in a full build).
using Command = tandem::testing::ShellResult;
using tandem::testing::Shell;

TEST(BenchServeCommand, RunsAgainstAFakeServerWithExitCodes) {
  const std::string tandem = StrCat(TANDEM_BINARY_DIR, "/tandem");
  if (!std::filesystem::exists(tandem)) GTEST_SKIP() << "build the tandem target to run this test";
  testing::FakeServerOptions fo;
  fo.first_token_delay = fo.token_delay = absl::Milliseconds(1);
  testing::FakeOpenAiServer server(fo);
  ASSERT_TRUE(server.Start().ok());
  const std::string result = StrCat(tandem::testing::TestTempDir(), "/cli.json");
  const std::string common = StrCat(tandem, " bench serve --tokenizer ", tandem::testing::TinyModelPath(),
                                    " --num-prompts 6 --input-len 24 --output-len 4 --no-progress");
  const Command ok = Shell(StrCat(common, " --base-url ", server.url(), " --request-rate 100 --max-concurrency 2",
                                  " --goodput ttft:60000 tpot:60000 --result-file ", result));
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_THAT(ok.output, HasSubstr("Serving Benchmark Result"));
  EXPECT_THAT(ok.output, HasSubstr("Request goodput (req/s):"));
  EXPECT_EQ(Json::parse(std::ifstream(result))["summary"]["completed"], 6);

  server.Stop();
  const Command down = Shell(StrCat(common, " --base-url ", server.url()));
  EXPECT_EQ(down.exit_code, 1) << down.output;
  EXPECT_THAT(down.output, HasSubstr("no OpenAI-compatible server reachable"));

  const Command usage = Shell(StrCat(common, " --request-rate fast"));
  EXPECT_EQ(usage.exit_code, 2) << usage.output;
  const Command help = Shell(StrCat(tandem, " bench serve --help"));
  EXPECT_EQ(help.exit_code, 0);
  for (const char* flag : {"--base-url", "--endpoint", "--model", "--num-prompts", "--request-rate", "--burstiness",
                           "--max-concurrency", "--seed", "--goodput", "--result-file", "--input-len", "--output-len",
                           "--workload", "--schedule", "--trace", "--trace-time-scale", "--tokenizer",
                           "--find-max-rate", "--attainment", "--rate-min", "--rate-max", "--search-iters",
                           "--repeats"}) {
    EXPECT_THAT(help.output, HasSubstr(flag));
  }
}

}  // namespace
}  // namespace tandem::bench
