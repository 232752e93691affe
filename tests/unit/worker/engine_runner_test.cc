// The engine thread survives what is thrown on it: a failing task is counted and logged, and
// the requests around it are served (no engine-thread exception ends the worker process).
#include "worker/engine_runner.h"

#include <future>
#include <stdexcept>

#include "engine/backends/cpu/cpu_backend.h"
#include "gguf/gguf_file.h"
#include "gtest/gtest.h"
#include "testing/tiny_model.h"

namespace tandem::worker {
namespace {

std::unique_ptr<Engine> TinyEngine(const gguf::GgufFile& file) {
  auto backend = cpu::CpuBackend::Create({.threads = 1});
  EXPECT_TRUE(backend.ok());
  EngineOptions options;
  options.num_kv_blocks = 64;
  options.block_size = 16;
  options.eog_token_ids = {2};
  auto engine = Engine::Create(file, std::move(*backend), options);
  EXPECT_TRUE(engine.ok()) << engine.status();
  return std::move(*engine);
}

// Runs one greedy request to its end; returns its finish reason and token count.
std::pair<FinishReason, int> Generate(EngineRunner& runner, const std::string& id) {
  GenerateRequest r;
  r.id = id;
  r.prompt = {5, 6, 7, 8, 9};
  r.sampling.temperature = 0;
  r.sampling.max_tokens = 4;
  r.sampling.ignore_eos = true;
  auto done = std::make_shared<std::promise<std::pair<FinishReason, int>>>();
  auto tokens = std::make_shared<int>(0);
  runner.Add(
      std::move(r),
      [done, tokens](Engine&, const RequestOutput& out) {
        *tokens += static_cast<int>(out.new_tokens.size());
        if (out.finish != FinishReason::kNone) done->set_value({out.finish, *tokens});
      },
      [done](const absl::Status&) { done->set_value({FinishReason::kError, -1}); });
  auto f = done->get_future();
  EXPECT_EQ(f.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  return f.get();
}

TEST(EngineRunnerTest, ThrowingTasksAreCountedAndTheEngineKeepsServing) {
  auto file = gguf::GgufFile::Open(testing::TinyModelPath());
  ASSERT_TRUE(file.ok()) << file.status();
  EngineRunner runner(TinyEngine(**file), /*leases=*/nullptr);
  runner.Post([](Engine&) { throw std::runtime_error("a bug in a task"); });
  runner.Post([](Engine&) { throw std::length_error("vector::reserve"); });
  auto [finish, tokens] = Generate(runner, "after-the-throw");
  EXPECT_EQ(finish, FinishReason::kLength);
  EXPECT_EQ(tokens, 4);
  EXPECT_EQ(runner.task_failures(), 2);
}

}  // namespace
}  // namespace tandem::worker
