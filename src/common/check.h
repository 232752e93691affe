// CHECK for conditions that can never happen (a bug if they do), DCHECK for internal
// invariants checked in debug builds. Anything a client, a peer or a file can cause is an
// absl::Status instead. (absl's CHECK arrived after the Debian Abseil release we build with.)
#pragma once

#include <sstream>

namespace tandem::internal {

class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* condition);
  [[noreturn]] ~CheckFailure();
  std::ostream& stream() { return stream_; }

 private:
  std::ostringstream stream_;
};

}  // namespace tandem::internal

#define TANDEM_CHECK(cond) \
  if (cond) {              \
  } else                   \
    ::tandem::internal::CheckFailure(__FILE__, __LINE__, #cond).stream()

#define TANDEM_CHECK_OP_(a, op, b) TANDEM_CHECK((a)op(b)) << "(" << (a) << " vs " << (b) << ") "
#define TANDEM_CHECK_EQ(a, b) TANDEM_CHECK_OP_(a, ==, b)
#define TANDEM_CHECK_NE(a, b) TANDEM_CHECK_OP_(a, !=, b)
#define TANDEM_CHECK_LE(a, b) TANDEM_CHECK_OP_(a, <=, b)
#define TANDEM_CHECK_LT(a, b) TANDEM_CHECK_OP_(a, <, b)
#define TANDEM_CHECK_GE(a, b) TANDEM_CHECK_OP_(a, >=, b)
#define TANDEM_CHECK_GT(a, b) TANDEM_CHECK_OP_(a, >, b)

#ifdef NDEBUG
#define TANDEM_DCHECK(cond) \
  while (false) TANDEM_CHECK(cond)
#else
#define TANDEM_DCHECK(cond) TANDEM_CHECK(cond)
#endif
#define TANDEM_DCHECK_EQ(a, b) TANDEM_DCHECK((a) == (b))
#define TANDEM_DCHECK_LT(a, b) TANDEM_DCHECK((a) < (b))
#define TANDEM_DCHECK_LE(a, b) TANDEM_DCHECK((a) <= (b))
