#include "router/worker_client.h"

namespace tandem::router {

void CallCanceller::Cancel() {
  std::function<void()> action;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (cancelled_) return;
    cancelled_ = true;
    action = std::move(action_);
  }
  if (action) action();
}

void CallCanceller::SetAction(std::function<void()> action) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!cancelled_) {
      action_ = std::move(action);
      return;
    }
  }
  action();
}

bool CallCanceller::cancelled() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cancelled_;
}

}  // namespace tandem::router
