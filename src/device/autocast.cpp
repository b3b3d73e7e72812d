// Mixed precision on CUDA through libtorch's current autocast API.
//
// tch's `autocast` calls the deprecated `at::autocast::set_enabled(bool)`, which prints a deprecation
// warning on every call and leaves the dtype at float16. These three functions use the per-device API
// instead, so bf16 autocast is quiet. No C++ exception may cross into Rust: every entry point catches.
#include <ATen/autocast_mode.h>

extern "C" {

// Enables CUDA autocast in bfloat16; returns the previous enabled state (1/0), or -1 on error.
int isoclr_autocast_enter_cuda_bf16() {
  try {
    bool previous = at::autocast::is_autocast_enabled(at::kCUDA);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    at::autocast::increment_nesting();
    return previous ? 1 : 0;
  } catch (...) {
    return -1;
  }
}

// Leaves an autocast region entered with the function above, restoring the previous state.
int isoclr_autocast_exit_cuda(int previous) {
  try {
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
    at::autocast::set_autocast_enabled(at::kCUDA, previous == 1);
    return 0;
  } catch (...) {
    return -1;
  }
}

// 1 when CUDA autocast is on in bfloat16, 0 otherwise (for tests).
int isoclr_autocast_cuda_bf16_active() {
  try {
    return at::autocast::is_autocast_enabled(at::kCUDA) &&
                   at::autocast::get_autocast_dtype(at::kCUDA) == at::kBFloat16
               ? 1
               : 0;
  } catch (...) {
    return 0;
  }
}
}
