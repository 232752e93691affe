// The server against a real client, libcurl: connection reuse, Expect: 100-continue, and
// streamed events delivered while the stream is still open.
#include <curl/curl.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "http/http_server.h"
#include "unit/http/test_client.h"

namespace tandem::http {
namespace {

using ::testing::HasSubstr;
using namespace ::tandem::http::testing;

size_t AppendToString(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

class CurlTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { curl_global_init(CURL_GLOBAL_DEFAULT); }
  static void TearDownTestSuite() { curl_global_cleanup(); }

  void SetUp() override { curl_ = curl_easy_init(); }
  void TearDown() override { curl_easy_cleanup(curl_); }

  std::string Url(const HttpServer& server, std::string_view path) {
    return "http://127.0.0.1:" + std::to_string(server.port()) + std::string(path);
  }

  CURL* curl_ = nullptr;
};

TEST_F(CurlTest, ReusesTheConnectionAndSendsBodiesWithExpectContinue) {
  auto server = StartServer({}, [](HttpServer& s) {
    s.Handle("POST", "/v1/completions",
             [](const HttpRequest& req, std::shared_ptr<HttpResponder> r) {
               r->Reply(200, "application/json",
                        "{\"received\":" + std::to_string(req.body.size()) + "}")
                   .IgnoreError();
             });
  });
  const std::string body(300000, 'q');
  std::string out;
  curl_slist* headers = curl_slist_append(nullptr, "Expect: 100-continue");
  curl_slist_append(headers, "Content-Type: application/json");
  curl_easy_setopt(curl_, CURLOPT_URL, Url(*server, "/v1/completions").c_str());
  curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(curl_, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, AppendToString);
  curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &out);
  curl_easy_setopt(curl_, CURLOPT_TIMEOUT_MS, 5000L);
  // Without a 100 Continue, curl would wait this long before sending the body anyway.
  curl_easy_setopt(curl_, CURLOPT_EXPECT_100_TIMEOUT_MS, 3000L);

  for (int i = 0; i < 3; ++i) {
    out.clear();
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_EQ(curl_easy_perform(curl_), CURLE_OK);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s) << "no 100 Continue?";
    long code = 0;
    long new_connections = -1;
    curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_getinfo(curl_, CURLINFO_NUM_CONNECTS, &new_connections);
    EXPECT_EQ(code, 200);
    EXPECT_EQ(out, "{\"received\":300000}");
    EXPECT_EQ(new_connections, i == 0 ? 1 : 0) << "keep-alive connection not reused";
  }
  curl_slist_free_all(headers);
}

TEST_F(CurlTest, ReceivesEventsWhileTheStreamIsOpen) {
  // The handler writes event 1; curl's write callback sees it and only then lets the producer
  // write event 2 and end. If the server held chunks back, this would time out.
  std::mutex mu;
  std::condition_variable cv;
  bool first_seen = false;
  std::thread producer;
  auto server = StartServer({}, [&](HttpServer& s) {
    s.Handle("GET", "/events", [&](const HttpRequest&, std::shared_ptr<HttpResponder> r) {
      r->StartStream(200, "text/event-stream").IgnoreError();
      r->Write("data: 1\n\n").IgnoreError();
      producer = std::thread([&, r] {
        std::unique_lock<std::mutex> lock(mu);
        if (!cv.wait_for(lock, 5s, [&] { return first_seen; })) return;  // then End() never comes
        r->Write("data: 2\n\n").IgnoreError();
        r->End().IgnoreError();
      });
    });
  });
  struct Sink {
    std::string text;
    std::mutex* mu;
    std::condition_variable* cv;
    bool* first_seen;
  } sink{"", &mu, &cv, &first_seen};
  auto on_data = +[](char* data, size_t size, size_t n, void* user) -> size_t {
    auto* s = static_cast<Sink*>(user);
    s->text.append(data, size * n);
    if (s->text.find("data: 1\n\n") != std::string::npos) {
      std::lock_guard<std::mutex> lock(*s->mu);
      *s->first_seen = true;
      s->cv->notify_all();
    }
    return size * n;
  };
  curl_easy_setopt(curl_, CURLOPT_URL, Url(*server, "/events").c_str());
  curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(curl_, CURLOPT_TIMEOUT_MS, 8000L);
  const CURLcode rc = curl_easy_perform(curl_);
  server->Stop(absl::Seconds(1));
  producer.join();
  ASSERT_EQ(rc, CURLE_OK) << curl_easy_strerror(rc);
  EXPECT_EQ(sink.text, "data: 1\n\ndata: 2\n\n");
}

}  // namespace
}  // namespace tandem::http
