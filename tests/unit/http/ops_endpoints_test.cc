#include "http/ops_endpoints.h"

#include <atomic>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "unit/http/test_client.h"

namespace tandem::http {
namespace {

using ::testing::HasSubstr;
using namespace ::tandem::http::testing;

TEST(OpsEndpointsTest, HealthReadinessAndMetrics) {
  metrics::MetricsRegistry registry;
  registry.AddCounter("tandem_test_things_total", "Things.").With().Increment(5);
  std::atomic<bool> ready{false};
  auto server = StartServer({}, [&](HttpServer& s) {
    RegisterOpsEndpoints(
        s, [&] { return ready.load(); }, &registry);
  });

  auto health = Fetch(server->port(), "GET", "/healthz");
  ASSERT_TRUE(health.has_value());
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(health->body, "ok\n");
  EXPECT_EQ(health->headers.Get("Content-Type"), "text/plain; charset=utf-8");

  auto not_ready = Fetch(server->port(), "GET", "/readyz");
  ASSERT_TRUE(not_ready.has_value());
  EXPECT_EQ(not_ready->status, 503);
  EXPECT_EQ(not_ready->body, "not ready\n");
  ready = true;
  auto is_ready = Fetch(server->port(), "GET", "/readyz");
  ASSERT_TRUE(is_ready.has_value());
  EXPECT_EQ(is_ready->status, 200);
  EXPECT_EQ(is_ready->body, "ready\n");

  auto scrape = Fetch(server->port(), "GET", "/metrics");
  ASSERT_TRUE(scrape.has_value());
  EXPECT_EQ(scrape->status, 200);
  EXPECT_EQ(scrape->headers.Get("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(scrape->body, registry.Render());
  EXPECT_THAT(scrape->body, HasSubstr("tandem_test_things_total 5\n"));

  auto post = Fetch(server->port(), "POST", "/metrics", "x");
  ASSERT_TRUE(post.has_value());
  EXPECT_EQ(post->status, 405);
  EXPECT_EQ(post->headers.Get("Allow"), "GET");
}

TEST(OpsEndpointsTest, NoRegistryMeansNoMetricsAndNullReadyMeansReady) {
  auto server = StartServer({}, [](HttpServer& s) { RegisterOpsEndpoints(s, nullptr, nullptr); });
  EXPECT_EQ(Fetch(server->port(), "GET", "/readyz")->status, 200);
  EXPECT_EQ(Fetch(server->port(), "GET", "/metrics")->status, 404);
}

TEST(OpsEndpointsTest, InstrumentedServerCountsRequests) {
  metrics::MetricsRegistry registry;
  auto server = StartServer({}, [&](HttpServer& s) {
    RegisterOpsEndpoints(s, nullptr, &registry);
    InstrumentHttpServer(s, registry);
  });
  TestClient client(server->port());
  ASSERT_TRUE(client.Send(RequestText("GET", "/healthz") + RequestText("GET", "/healthz") +
                          RequestText("GET", "/nope") + RequestText("BREW", "/pot")));
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(client.ReadResponse().has_value());
  // The exchange is recorded once the response is written; the scrape below comes after the
  // four responses on the same connection, so they are all counted.
  ASSERT_TRUE(client.Send(RequestText("GET", "/metrics")));
  auto scrape = client.ReadResponse();
  ASSERT_TRUE(scrape.has_value());
  EXPECT_THAT(scrape->body,
              HasSubstr("tandem_http_requests_total{route=\"/healthz\",method=\"GET\","
                        "code=\"200\"} 2\n"));
  EXPECT_THAT(scrape->body, HasSubstr("tandem_http_requests_total{route=\"unmatched\","
                                      "method=\"GET\",code=\"404\"} 1\n"));
  EXPECT_THAT(scrape->body, HasSubstr("tandem_http_requests_total{route=\"unmatched\","
                                      "method=\"other\",code=\"404\"} 1\n"));
  EXPECT_THAT(scrape->body,
              HasSubstr("tandem_http_request_duration_seconds_count{route=\"/healthz\","
                        "method=\"GET\"} 2\n"));
}

}  // namespace
}  // namespace tandem::http
