#include "transfer/protocol/epoch.h"

#include <random>

namespace tandem::transfer {

uint64_t RandomEpoch() {
  std::random_device rd;
  uint64_t e = 0;
  while (e == 0) e = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  return e;
}

}  // namespace tandem::transfer
