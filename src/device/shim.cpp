// What isoclr needs of libtorch that tch does not bind (src/device/mod.rs wraps each function).
//
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

// CUDA memory statistics of libtorch's caching allocator, for benchmarks: what torch.cuda's
// max_memory_allocated / reset_peak_memory_stats / empty_cache report and do. tch has no binding for
// them. They go through c10's device-generic allocator interface (virtual calls, declared in libc10), so
// the shim links no CUDA library and a CPU-only libtorch merely makes them fail (-1): the CUDA allocator
// is then not registered, and GetAllocator throws.
#include <c10/core/CachingDeviceAllocator.h>

namespace {
c10::DeviceAllocator* cuda_allocator() { return c10::getDeviceAllocator(c10::DeviceType::CUDA); }
}  // namespace

extern "C" {

// Peak bytes allocated to tensors on CUDA device `device` since the last reset (all pools), or -1 on
// error (no CUDA backend, or the device was never used).
int64_t isoclr_cuda_peak_allocated_bytes(int device) {
  try {
    auto stats = cuda_allocator()->getDeviceStats(static_cast<c10::DeviceIndex>(device));
    return stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].peak;
  } catch (...) {
    return -1;
  }
}

// Restarts the peak statistics of CUDA device `device` from the current usage; 0, or -1 on error.
int isoclr_cuda_reset_peak_stats(int device) {
  try {
    cuda_allocator()->resetPeakStats(static_cast<c10::DeviceIndex>(device));
    return 0;
  } catch (...) {
    return -1;
  }
}

// Returns cached, unused CUDA memory to the driver (torch.cuda.empty_cache); 0, or -1 on error.
int isoclr_cuda_empty_cache() {
  try {
    cuda_allocator()->emptyCache();
    return 0;
  } catch (...) {
    return -1;
  }
}
}

// Host-to-device copies without a stall. `Tensor::pin_memory(device)`, the only form tch binds, prints a
// deprecation warning on every call in libtorch 2.11; this calls the argument-free form.
#include <ATen/core/Tensor.h>

extern "C" {

// A copy of the host tensor `tensor` (an at::Tensor*) in page-locked memory from libtorch's caching host
// allocator, as a new at::Tensor* the caller owns; null on error (no CUDA backend, not a CPU tensor).
void* isoclr_pin_memory(const void* tensor) {
  try {
    return new at::Tensor(static_cast<const at::Tensor*>(tensor)->pin_memory());
  } catch (...) {
    return nullptr;
  }
}
}

// One AdamW update of many tensors by libtorch's fused multi-tensor kernel (what torch.optim.AdamW runs with
// fused=True; CPU and CUDA), which tch does not bind. The arrays hold `count` at::Tensor* each; `step` is a
// float scalar tensor on the tensors' device holding the step number after this update (for the bias
// corrections). Updates the parameters and moments in place. 0, or -1 on error (nothing updated then: the
// kernel checks its arguments before it writes).
#include <ATen/ops/_fused_adamw.h>

extern "C" {

int isoclr_fused_adamw(const void* const* params, const void* const* grads, const void* const* exp_avgs,
                       const void* const* exp_avg_sqs, int count, const void* step, double lr, double beta1,
                       double beta2, double weight_decay, double eps) {
  try {
    auto list = [count](const void* const* tensors) {
      std::vector<at::Tensor> out;
      out.reserve(static_cast<size_t>(count));
      for (int i = 0; i < count; ++i) {
        out.push_back(*static_cast<const at::Tensor*>(tensors[i]));
      }
      return out;
    };
    std::vector<at::Tensor> steps(static_cast<size_t>(count), *static_cast<const at::Tensor*>(step));
    at::_fused_adamw_(list(params), list(grads), list(exp_avgs), list(exp_avg_sqs), {}, steps, lr, beta1, beta2,
                      weight_decay, eps, /*amsgrad=*/false, /*maximize=*/false);
    return 0;
  } catch (...) {
    return -1;
  }
}
}

// Gradient clipping's two passes over many tensors by libtorch's multi-tensor kernels (what
// torch.nn.utils.clip_grad_norm_ uses), which tch does not bind either.
#include <ATen/ops/_foreach_mul.h>
#include <ATen/ops/_foreach_norm.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/unbind.h>

namespace {
std::vector<at::Tensor> tensor_list(const void* const* tensors, int count) {
  std::vector<at::Tensor> out;
  out.reserve(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) {
    out.push_back(*static_cast<const at::Tensor*>(tensors[i]));
  }
  return out;
}
}  // namespace

extern "C" {

// The L2 norm of each of `count` tensors, stacked into a new 1-D tensor the caller owns; null on error.
void* isoclr_foreach_norms(const void* const* tensors, int count) {
  try {
    return new at::Tensor(at::stack(at::_foreach_norm(tensor_list(tensors, count), 2)));
  } catch (...) {
    return nullptr;
  }
}

// Multiplies tensor i of `count` in place by element i of the 1-D tensor `factors` (all on one device);
// 0, or -1 on error (then nothing was multiplied: the kernel checks its arguments first).
int isoclr_foreach_scale_(const void* const* tensors, int count, const void* factors) {
  try {
    auto list = tensor_list(tensors, count);
    at::_foreach_mul_(list, at::unbind(*static_cast<const at::Tensor*>(factors), 0));
    return 0;
  } catch (...) {
    return -1;
  }
}
}
