// tests/support/sanitized.h — whether the test is built with AddressSanitizer
// and UBSan (SEKIMORI_SANITIZE=1 scripts/test, scripts/fuzz) or with
// ThreadSanitizer (SEKIMORI_TSAN): such code runs 5-30 times slower, and the
// sanitizers' allocators abort the process where malloc would return null.
//
//   EXPECT_LT(elapsed, std::chrono::seconds(support::kSanitized ? 20 : 2));
#pragma once

namespace sekimori::support {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif

}  // namespace sekimori::support
