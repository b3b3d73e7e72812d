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

// Masked batch norm on the CPU as libtorch autograd functions over fused loops, for src/model/norm.rs and
// src/model/encoder.rs:
//   batch norm in training (several passes, one set of statistics over their real positions): two passes
//     over the activations forward and two backward, as ATen's batch norm;
//   affine (x, mask, scale [c], shift [c]) -> (x·scale + shift)·m, for evaluation with running statistics;
//   and the stem's max-pooling by 2 over real positions only (MaskedMaxPool).
// The composite of elementwise ops they replace makes about ten full-size kernels and temporaries per norm.
// Masks hold 0 or 1. Each channel's sums run in f64 on one thread, in a fixed number of lanes (see Lanes), so
// they depend neither on the number of threads nor on the CPU's vector width. Elementwise work runs in the
// activations' own precision, as ATen's does. f32 and f64 activations; other kinds and devices keep the
// composite (nothing returned).
#include <ATen/Dispatch.h>
#include <algorithm>
#include <cmath>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>
#include <ATen/ops/batch_norm_backward_elemt.h>
#include <ATen/ops/batch_norm_backward_reduce.h>
#include <ATen/ops/batch_norm_elemt.h>
#include <ATen/ops/batch_norm_update_stats.h>

namespace {
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Per-channel sums in kLanes independent f64 partial sums: element j of a row goes to lane j % kLanes,
// and the lanes are added in order at the end. Independent lanes let the compiler use vector registers and
// break the chain of dependent additions that bounds a single running sum, while the order of additions,
// and so the result, stays fixed by the code. An f32 value, or a product of two, is exact in f64.
constexpr int64_t kLanes = 8;

struct Lanes {
  double first[kLanes] = {};
  double second[kLanes] = {};

  static double total(const double* lanes) {
    double sum = 0.0;
    for (int64_t k = 0; k < kLanes; ++k) {
      sum += lanes[k];
    }
    return sum;
  }

  // first += x·m, second += (x·m)² over one row of length l.
  template <typename T>
  void add_masked_moments(const T* x, const T* m, int64_t l) {
    int64_t j = 0;
    for (; j + kLanes <= l; j += kLanes) {
      for (int64_t k = 0; k < kLanes; ++k) {
        const double v = static_cast<double>(x[j + k] * m[j + k]);
        first[k] += v;
        second[k] += v * v;
      }
    }
    for (int64_t k = 0; j < l; ++j, ++k) {
      const double v = static_cast<double>(x[j] * m[j]);
      first[k] += v;
      second[k] += v * v;
    }
  }

  // first += g·m, second += g·m·x over one row of length l.
  template <typename T>
  void add_masked_products(const T* g, const T* x, const T* m, int64_t l) {
    int64_t j = 0;
    for (; j + kLanes <= l; j += kLanes) {
      for (int64_t k = 0; k < kLanes; ++k) {
        const double gm = static_cast<double>(g[j + k] * m[j + k]);
        first[k] += gm;
        second[k] += gm * static_cast<double>(x[j + k]);
      }
    }
    for (int64_t k = 0; j < l; ++j, ++k) {
      const double gm = static_cast<double>(g[j] * m[j]);
      first[k] += gm;
      second[k] += gm * static_cast<double>(x[j]);
    }
  }
};

// out = (x·scale + shift)·m over one row of length l.
template <typename T>
void affine_row(const T* __restrict__ x, const T* __restrict__ m, T scale, T shift, T* __restrict__ out,
                int64_t l) {
  for (int64_t j = 0; j < l; ++j) {
    out[j] = (x[j] * scale + shift) * m[j];
  }
}

// Runs body(row, channel, mask_row) for every row (sample, channel) of an [n, c, l] tensor, in parallel.
template <typename T, typename Body>
void for_each_row(int64_t n, int64_t c, int64_t l, const T* mask, const Body& body) {
  at::parallel_for(0, n * c, 1, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      body(row, row % c, mask + (row / c) * l);
    }
  });
}

// Per-channel sums over the rows of [n, c, l] tensors: body(i, ch, lanes) adds row (i, ch) into that
// channel's lanes, then done(ch, lanes) reads them. Blocks of channels run in parallel; within a block the
// samples are the outer loop, so a sample's mask row is read once for all the block's channels while it is
// in cache, not once per channel. Each channel's sums are made by one thread, in sample order, whatever
// the number of threads.
template <typename Body, typename Done>
void sum_per_channel(int64_t n, int64_t c, const Body& body, const Done& done) {
  at::parallel_for(0, c, 1, [&](int64_t begin, int64_t end) {
    std::vector<Lanes> lanes(end - begin);
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t ch = begin; ch < end; ++ch) {
        body(i, ch, lanes[ch - begin]);
      }
    }
    for (int64_t ch = begin; ch < end; ++ch) {
      done(ch, lanes[ch - begin]);
    }
  });
}

// Whether a and b are per-channel vectors [c] on the CPU (weight and bias, or scale and shift).
bool channel_vectors(const at::Tensor& a, const at::Tensor& b, int64_t c) {
  return a.dim() == 1 && b.dim() == 1 && a.size(0) == c && b.size(0) == c && a.device().is_cpu() &&
         b.device().is_cpu();
}

// Whether x is [n, c, l] and mask [n, 1, l].
bool masked_shapes(const at::Tensor& x, const at::Tensor& mask) {
  return x.dim() == 3 && mask.dim() == 3 && mask.size(0) == x.size(0) && mask.size(1) == 1 &&
         mask.size(2) == x.size(2);
}

bool fused_kernel_applies(const at::Tensor& x, const at::Tensor& mask) {
  return x.device().is_cpu() && mask.device().is_cpu() && masked_shapes(x, mask) &&
         x.scalar_type() == mask.scalar_type() &&
         (x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble);
}

// What both batch-norm functions below keep for backward: each pass's activations, then each pass's mask,
// then weight, mean, invstd and the count of real positions, with the kinds of weight and bias for their
// gradients; and the gradients they return in the order of their inputs.
struct SavedBatchNorm {
  int64_t passes;
  variable_list saved;

  static void save(AutogradContext* ctx, const std::vector<at::Tensor>& xs, const std::vector<at::Tensor>& masks,
                   std::initializer_list<at::Tensor> statistics, const at::Tensor& weight_in,
                   const at::Tensor& bias_in) {
    variable_list to_save(xs.begin(), xs.end());
    to_save.insert(to_save.end(), masks.begin(), masks.end());
    to_save.insert(to_save.end(), statistics);
    ctx->save_for_backward(to_save);
    ctx->saved_data["passes"] = static_cast<int64_t>(xs.size());
    ctx->saved_data["weight_type"] = static_cast<int64_t>(weight_in.scalar_type());
    ctx->saved_data["bias_type"] = static_cast<int64_t>(bias_in.scalar_type());
  }

  explicit SavedBatchNorm(AutogradContext* ctx)
      : passes(ctx->saved_data["passes"].toInt()), saved(ctx->get_saved_variables()) {}

  const at::Tensor& x(int64_t p) const { return saved[p]; }
  const at::Tensor& mask(int64_t p) const { return saved[passes + p]; }
  const at::Tensor& weight() const { return saved[2 * passes]; }
  const at::Tensor& mean() const { return saved[2 * passes + 1]; }
  const at::Tensor& invstd() const { return saved[2 * passes + 2]; }
  const at::Tensor& count() const { return saved[2 * passes + 3]; }

  // The input gradients (xs, masks, weight, bias, eps), weight's and bias's in their own kinds.
  static variable_list gradients(AutogradContext* ctx, std::vector<at::Tensor> dxs, const at::Tensor& d_weight,
                                 const at::Tensor& d_bias) {
    const auto passes = static_cast<int64_t>(dxs.size());
    variable_list out(dxs.begin(), dxs.end());
    out.resize(2 * passes);  // none for the masks
    out.push_back(d_weight.to(static_cast<at::ScalarType>(ctx->saved_data["weight_type"].toInt())));
    out.push_back(d_bias.to(static_cast<at::ScalarType>(ctx->saved_data["bias_type"].toInt())));
    out.emplace_back();  // eps
    return out;
  }
};

// Batch norm in training over the real positions of several passes at once (one set of statistics), as
// one autograd function: statistics in one pass over each x, the output in another; backward, the two
// per-channel reductions in one pass and the input gradient in another (the standard batch-norm gradient
// over the real positions), which is what ATen's own batch norm costs.
struct MaskedBatchNorm : public torch::autograd::Function<MaskedBatchNorm> {
  // Outputs: one y per pass, then mean, biased variance ([c], f64) and the count of real positions ([],
  // f64), the last three not differentiable.
  static variable_list forward(AutogradContext* ctx, at::TensorList xs_in, at::TensorList masks_in,
                               const at::Tensor& weight_in, const at::Tensor& bias_in, double eps) {
    const auto passes = static_cast<int64_t>(xs_in.size());
    std::vector<at::Tensor> xs, masks;
    for (int64_t p = 0; p < passes; ++p) {
      xs.push_back(xs_in[p].contiguous());
      masks.push_back(masks_in[p].contiguous());
    }
    const auto type = xs[0].scalar_type();
    auto weight = weight_in.to(at::kDouble).contiguous();
    auto bias = bias_in.to(at::kDouble).contiguous();
    const int64_t c = weight.size(0);
    auto doubles = xs[0].options().dtype(at::kDouble);
    auto sums = at::zeros({c}, doubles), squares = at::zeros({c}, doubles);
    auto mean = at::empty({c}, doubles), var = at::empty({c}, doubles), invstd = at::empty({c}, doubles);
    auto scale = at::empty({c}, xs[0].options()), shift = at::empty({c}, xs[0].options());
    double count = 0.0;
    std::vector<at::Tensor> ys;
    AT_DISPATCH_FLOATING_TYPES(type, "isoclr_masked_batch_norm", [&] {
      double* s = sums.mutable_data_ptr<double>();
      double* q = squares.mutable_data_ptr<double>();
      for (int64_t p = 0; p < passes; ++p) {
        const scalar_t* xp = xs[p].const_data_ptr<scalar_t>();
        const scalar_t* mp = masks[p].const_data_ptr<scalar_t>();
        const int64_t n = xs[p].size(0), l = xs[p].size(2);
        for (int64_t i = 0; i < n * l; ++i) {
          count += static_cast<double>(mp[i]);
        }
        sum_per_channel(
            n, c,
            [&](int64_t i, int64_t ch, Lanes& lanes) { lanes.add_masked_moments(xp + (i * c + ch) * l, mp + i * l, l); },
            [&](int64_t ch, const Lanes& lanes) {
              s[ch] += Lanes::total(lanes.first);
              q[ch] += Lanes::total(lanes.second);
            });
      }
      const double real = std::max(count, 1.0);
      const double* w = weight.const_data_ptr<double>();
      const double* b = bias.const_data_ptr<double>();
      double* mu = mean.mutable_data_ptr<double>();
      double* va = var.mutable_data_ptr<double>();
      double* is = invstd.mutable_data_ptr<double>();
      scalar_t* a = scale.mutable_data_ptr<scalar_t>();
      scalar_t* sh = shift.mutable_data_ptr<scalar_t>();
      for (int64_t ch = 0; ch < c; ++ch) {
        mu[ch] = s[ch] / real;
        va[ch] = std::max(q[ch] / real - mu[ch] * mu[ch], 0.0);
        is[ch] = 1.0 / std::sqrt(va[ch] + eps);
        a[ch] = static_cast<scalar_t>(w[ch] * is[ch]);
        sh[ch] = static_cast<scalar_t>(b[ch] - mu[ch] * w[ch] * is[ch]);
      }
      for (int64_t p = 0; p < passes; ++p) {
        const scalar_t* xp = xs[p].const_data_ptr<scalar_t>();
        const int64_t n = xs[p].size(0), l = xs[p].size(2);
        auto y = at::empty_like(xs[p]);
        scalar_t* out = y.mutable_data_ptr<scalar_t>();
        for_each_row(n, c, l, masks[p].const_data_ptr<scalar_t>(), [&](int64_t row, int64_t ch, const scalar_t* m) {
          affine_row(xp + row * l, m, a[ch], sh[ch], out + row * l, l);
        });
        ys.push_back(y);
      }
    });
    auto count_tensor = at::scalar_tensor(count, doubles);
    SavedBatchNorm::save(ctx, xs, masks, {weight, mean, invstd, count_tensor}, weight_in, bias_in);
    ctx->mark_non_differentiable({mean, var, count_tensor});
    variable_list outputs(ys.begin(), ys.end());
    outputs.insert(outputs.end(), {mean, var, count_tensor});
    return outputs;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const SavedBatchNorm saved(ctx);
    const auto passes = saved.passes;
    const auto& weight = saved.weight();
    const auto& mean = saved.mean();
    const auto& invstd = saved.invstd();
    const double count = std::max(saved.count().item<double>(), 1.0);
    const int64_t c = weight.size(0);
    std::vector<at::Tensor> gys;
    for (int64_t p = 0; p < passes; ++p) {
      gys.push_back(grads[p].defined() ? grads[p].contiguous() : at::zeros_like(saved.x(p)));
    }
    auto doubles = mean.options();
    auto g_sum = at::zeros({c}, doubles), g_dot = at::zeros({c}, doubles);
    std::vector<at::Tensor> dxs;
    AT_DISPATCH_FLOATING_TYPES(saved.x(0).scalar_type(), "isoclr_masked_batch_norm_backward", [&] {
      const double* mu = mean.const_data_ptr<double>();
      const double* is = invstd.const_data_ptr<double>();
      const double* w = weight.const_data_ptr<double>();
      double* g1 = g_sum.mutable_data_ptr<double>();
      double* g2 = g_dot.mutable_data_ptr<double>();
      // Σ gy·m and Σ gy·m·x̂ = (Σ gy·m·x − mean·Σ gy·m)·invstd per channel over every pass.
      for (int64_t p = 0; p < passes; ++p) {
        const scalar_t* xp = saved.x(p).const_data_ptr<scalar_t>();
        const scalar_t* mp = saved.mask(p).const_data_ptr<scalar_t>();
        const scalar_t* gp = gys[p].const_data_ptr<scalar_t>();
        const int64_t n = saved.x(p).size(0), l = saved.x(p).size(2);
        sum_per_channel(
            n, c,
            [&](int64_t i, int64_t ch, Lanes& lanes) {
              const int64_t row = i * c + ch;
              lanes.add_masked_products(gp + row * l, xp + row * l, mp + i * l, l);
            },
            [&](int64_t ch, const Lanes& lanes) {
              const double sum = Lanes::total(lanes.first);
              g1[ch] += sum;
              g2[ch] += (Lanes::total(lanes.second) - mu[ch] * sum) * is[ch];
            });
      }
      // dx = m·w·invstd·(gy − Σ gy·m / count − x̂·Σ gy·m·x̂ / count), with x̂ = (x − mean)·invstd; m² = m.
      std::vector<scalar_t> k(c), mean_g(c), mean_x(c), slope(c);
      for (int64_t ch = 0; ch < c; ++ch) {
        k[ch] = static_cast<scalar_t>(w[ch] * is[ch]);
        mean_g[ch] = static_cast<scalar_t>(g1[ch] / count);
        mean_x[ch] = static_cast<scalar_t>(mu[ch]);
        slope[ch] = static_cast<scalar_t>(is[ch] * g2[ch] / count);
      }
      for (int64_t p = 0; p < passes; ++p) {
        const scalar_t* xp = saved.x(p).const_data_ptr<scalar_t>();
        const scalar_t* gp = gys[p].const_data_ptr<scalar_t>();
        const int64_t n = saved.x(p).size(0), l = saved.x(p).size(2);
        auto dx = at::empty_like(saved.x(p));
        scalar_t* out = dx.mutable_data_ptr<scalar_t>();
        for_each_row(n, c, l, saved.mask(p).const_data_ptr<scalar_t>(),
                     [&](int64_t row, int64_t ch, const scalar_t* m) {
                       const scalar_t kc = k[ch], gc = mean_g[ch], xc = mean_x[ch], sc = slope[ch];
                       const scalar_t* x = xp + row * l;
                       const scalar_t* g = gp + row * l;
                       scalar_t* d = out + row * l;
                       for (int64_t j = 0; j < l; ++j) {
                         d[j] = ((g[j] - gc) - (x[j] - xc) * sc) * kc * m[j];
                       }
                     });
        dxs.push_back(dx);
      }
    });
    return SavedBatchNorm::gradients(ctx, std::move(dxs), g_dot, g_sum);
  }
};

// Batch norm in training over the real positions of several passes through ATen's batch-norm kernels, the
// ones behind SyncBatchNorm, for CUDA: the loops above run on the CPU only, and the composite they replace
// issues about ten full-size kernels per norm each way. Forward per pass: x·m, one reduction for its mean
// and variance over all positions (batch_norm_update_stats), one normalisation (batch_norm_elemt) and the
// mask, in place. Padding of x·m is zero, so a pass's sums over all its positions are the sums over its
// real ones; the passes' sums, combined in f64 and divided by the real count, give the statistics.
// Backward per pass: gy·m, one reduction (batch_norm_backward_reduce), the input gradient with the real
// count (batch_norm_backward_elemt) and the mask, in place. The three CUDA-only kernels have stand-ins on
// the CPU with the same arithmetic (SyncKernels), so everything around them is tested without a GPU.
struct SyncKernels {
  static at::Tensor channels(const at::Tensor& t) { return t.view({1, -1, 1}); }

  // (x − mean)·invstd·w + b.
  static at::Tensor elemt(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, const at::Tensor& mean,
                          const at::Tensor& invstd) {
    if (x.is_cuda()) {
      return at::batch_norm_elemt(x, w, b, mean, invstd, 0.0);
    }
    return ((x - channels(mean)) * channels(invstd * w) + channels(b)).to(x.scalar_type());
  }

  // (Σ gy, Σ gy·(x − mean)) per channel, in mean's kind.
  static std::pair<at::Tensor, at::Tensor> backward_reduce(const at::Tensor& gy, const at::Tensor& x,
                                                           const at::Tensor& mean, const at::Tensor& invstd,
                                                           const at::Tensor& w) {
    if (x.is_cuda()) {
      auto r = at::batch_norm_backward_reduce(gy, x, mean, invstd, w, true, false, false);
      return {std::get<0>(r), std::get<1>(r)};
    }
    const auto kind = mean.scalar_type();
    const std::vector<int64_t> dims{0, 2};
    return {gy.sum(dims, false, kind), (gy * (x - channels(mean))).sum(dims, false, kind)};
  }

  // (gy − Σgy/N − (x − mean)·invstd²·Σgy(x − mean)/N)·invstd·w with N the sum of `count` (int32).
  static at::Tensor backward_elemt(const at::Tensor& gy, const at::Tensor& x, const at::Tensor& mean,
                                   const at::Tensor& invstd, const at::Tensor& w, const at::Tensor& sum_dy,
                                   const at::Tensor& sum_dy_xmu, const at::Tensor& count) {
    if (x.is_cuda()) {
      return at::batch_norm_backward_elemt(gy, x, mean, invstd, w, sum_dy, sum_dy_xmu, count);
    }
    const auto n = count.sum().to(mean.scalar_type());
    const auto slope = invstd * invstd * sum_dy_xmu / n;
    return ((gy - channels(sum_dy / n) - (x - channels(mean)) * channels(slope)) * channels(invstd * w))
        .to(x.scalar_type());
  }
};

struct MaskedBatchNormKernels : public torch::autograd::Function<MaskedBatchNormKernels> {
  // The same inputs and outputs as MaskedBatchNorm.
  static variable_list forward(AutogradContext* ctx, at::TensorList xs_in, at::TensorList masks_in,
                               const at::Tensor& weight_in, const at::Tensor& bias_in, double eps) {
    const auto passes = static_cast<int64_t>(xs_in.size());
    const auto type = xs_in[0].scalar_type();
    // The kernels' statistics kind: f32 for f32 and bf16 activations (a bf16 x with f32 w is their mixed
    // mode), f64 for f64.
    const auto stat = type == at::kDouble ? at::kDouble : at::kFloat;
    auto weight = weight_in.to(stat), bias = bias_in.to(stat);
    std::vector<at::Tensor> xms, masks;
    const auto doubles = weight.options().dtype(at::kDouble);
    auto sums = at::zeros({weight.size(0)}, doubles), squares = at::zeros({weight.size(0)}, doubles);
    auto count = at::zeros({}, doubles);
    for (int64_t p = 0; p < passes; ++p) {
      masks.push_back(masks_in[p].to(type));
      xms.push_back((xs_in[p] * masks[p]).contiguous());
      if (xms[p].numel() == 0) {
        continue;  // an empty pass adds nothing (and its moments would be NaN)
      }
      auto moments = at::batch_norm_update_stats(xms[p], {}, {}, 0.0);
      const double all = static_cast<double>(xms[p].numel() / xms[p].size(1));
      auto mean = std::get<0>(moments).to(at::kDouble);
      sums += mean * all;
      squares += (std::get<1>(moments).to(at::kDouble) + mean * mean) * all;
      count += masks_in[p].sum(at::kDouble);
    }
    auto real = count.clamp_min(1.0);
    auto mean = sums / real;
    auto var = (squares / real - mean * mean).clamp_min(0.0);
    auto mean_s = mean.to(stat), invstd_s = (var + eps).rsqrt().to(stat);
    variable_list outputs;
    for (int64_t p = 0; p < passes; ++p) {
      outputs.push_back(xms[p].numel() == 0 ? at::zeros_like(xms[p])
                                            : SyncKernels::elemt(xms[p], weight, bias, mean_s, invstd_s).mul_(masks[p]));
    }
    SavedBatchNorm::save(ctx, xms, masks, {weight, mean_s, invstd_s, real.round().to(at::kInt).view({1})}, weight_in,
                         bias_in);
    ctx->mark_non_differentiable({mean, var, count});
    outputs.insert(outputs.end(), {mean, var, count});
    return outputs;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const SavedBatchNorm saved(ctx);
    const auto& weight = saved.weight();
    const auto& mean = saved.mean();
    const auto& invstd = saved.invstd();
    std::vector<at::Tensor> gys;
    auto sum_dy = at::zeros_like(mean), sum_dy_xmu = at::zeros_like(mean);
    for (int64_t p = 0; p < saved.passes; ++p) {
      const auto& xm = saved.x(p);
      gys.push_back(grads[p].defined() ? (grads[p] * saved.mask(p)).to(xm.scalar_type()).contiguous()
                                       : at::zeros_like(xm));
      if (xm.numel() > 0) {
        auto [dy, dy_xmu] = SyncKernels::backward_reduce(gys[p], xm, mean, invstd, weight);
        sum_dy += dy;
        sum_dy_xmu += dy_xmu;
      }
    }
    std::vector<at::Tensor> dxs;
    for (int64_t p = 0; p < saved.passes; ++p) {
      dxs.push_back(saved.x(p).numel() == 0 ? at::zeros_like(saved.x(p))
                                            : SyncKernels::backward_elemt(gys[p], saved.x(p), mean, invstd, weight,
                                                                          sum_dy, sum_dy_xmu, saved.count())
                                                  .mul_(saved.mask(p)));
    }
    return SavedBatchNorm::gradients(ctx, std::move(dxs), sum_dy_xmu * invstd, sum_dy);
  }
};

struct MaskedAffine : public torch::autograd::Function<MaskedAffine> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& mask_in,
                            const at::Tensor& scale_in, const at::Tensor& shift_in) {
    auto x = input.contiguous();
    auto mask = mask_in.contiguous();
    auto scale = scale_in.to(x.scalar_type()).contiguous();
    auto shift = shift_in.to(x.scalar_type()).contiguous();
    const int64_t n = x.size(0), c = x.size(1), l = x.size(2);
    auto y = at::empty_like(x);
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "isoclr_masked_affine", [&] {
      const scalar_t* xs = x.const_data_ptr<scalar_t>();
      const scalar_t* ms = mask.const_data_ptr<scalar_t>();
      const scalar_t* a = scale.const_data_ptr<scalar_t>();
      const scalar_t* b = shift.const_data_ptr<scalar_t>();
      scalar_t* out = y.mutable_data_ptr<scalar_t>();
      for_each_row(n, c, l, ms, [&](int64_t row, int64_t ch, const scalar_t* m) {
        affine_row(xs + row * l, m, a[ch], b[ch], out + row * l, l);
      });
    });
    ctx->save_for_backward({x, mask, scale});
    ctx->saved_data["scale_type"] = static_cast<int64_t>(scale_in.scalar_type());
    ctx->saved_data["shift_type"] = static_cast<int64_t>(shift_in.scalar_type());
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& mask = saved[1];
    const auto& scale = saved[2];
    auto gy = grads[0].contiguous();
    const int64_t n = x.size(0), c = x.size(1), l = x.size(2);
    auto dx = at::empty_like(x);
    auto d_scale = at::zeros({c}, x.options().dtype(at::kDouble));
    auto d_shift = at::zeros({c}, x.options().dtype(at::kDouble));
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "isoclr_masked_affine_backward", [&] {
      const scalar_t* xs = x.const_data_ptr<scalar_t>();
      const scalar_t* ms = mask.const_data_ptr<scalar_t>();
      const scalar_t* a = scale.const_data_ptr<scalar_t>();
      const scalar_t* g = gy.const_data_ptr<scalar_t>();
      scalar_t* out = dx.mutable_data_ptr<scalar_t>();
      double* ds = d_scale.mutable_data_ptr<double>();
      double* db = d_shift.mutable_data_ptr<double>();
      sum_per_channel(
          n, c,
          [&](int64_t i, int64_t ch, Lanes& lanes) {
            const int64_t row = i * c + ch;
            const scalar_t* m = ms + i * l;
            lanes.add_masked_products(g + row * l, xs + row * l, m, l);
            scalar_t* d = out + row * l;
            const scalar_t* gr = g + row * l;
            const scalar_t scale_c = a[ch];
            for (int64_t j = 0; j < l; ++j) {
              d[j] = gr[j] * m[j] * scale_c;
            }
          },
          [&](int64_t ch, const Lanes& lanes) {
            ds[ch] = Lanes::total(lanes.second);
            db[ch] = Lanes::total(lanes.first);
          });
    });
    auto scale_type = static_cast<at::ScalarType>(ctx->saved_data["scale_type"].toInt());
    auto shift_type = static_cast<at::ScalarType>(ctx->saved_data["shift_type"].toInt());
    return {dx, at::Tensor(), d_scale.to(scale_type), d_shift.to(shift_type)};
  }
};

// Max-pooling by 2 (floor) of x [n, c, l] in which only the real positions (mask [n, 1, l], 0/1) compete:
// a window with one real position gives that position's value, a window with none gives 0, and a tie
// goes to the first position, with its gradient, as ATen's max_pool1d does; a NaN wins its window. The
// choice is saved as one byte per output (0: first, 1: second, 2: neither) for the backward pass.
struct MaskedMaxPool : public torch::autograd::Function<MaskedMaxPool> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& mask_in) {
    auto x = input.contiguous();
    auto mask = mask_in.contiguous();
    const int64_t n = x.size(0), c = x.size(1), l = x.size(2), half = l / 2;
    auto y = at::empty({n, c, half}, x.options());
    auto choice = at::empty({n, c, half}, x.options().dtype(at::kByte));
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "isoclr_masked_max_pool", [&] {
      const scalar_t* xs = x.const_data_ptr<scalar_t>();
      scalar_t* out = y.mutable_data_ptr<scalar_t>();
      uint8_t* picks = choice.mutable_data_ptr<uint8_t>();
      for_each_row(n, c, l, mask.const_data_ptr<scalar_t>(), [&](int64_t row, int64_t, const scalar_t* m) {
        const scalar_t* in = xs + row * l;
        for (int64_t j = 0; j < half; ++j) {
          const scalar_t a = in[2 * j], b = in[2 * j + 1];
          const bool real_a = m[2 * j] != 0, real_b = m[2 * j + 1] != 0;
          uint8_t pick = 2;
          if (real_a && real_b) {
            pick = b > a || std::isnan(b) ? 1 : 0;
          } else if (real_a || real_b) {
            pick = real_a ? 0 : 1;
          }
          out[row * half + j] = pick == 2 ? scalar_t(0) : in[2 * j + pick];
          picks[row * half + j] = pick;
        }
      });
    });
    ctx->save_for_backward({choice});
    ctx->saved_data["length"] = l;
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto choice = ctx->get_saved_variables()[0];
    const int64_t l = ctx->saved_data["length"].toInt();
    auto gy = grads[0].contiguous();
    const int64_t n = choice.size(0), c = choice.size(1), half = choice.size(2);
    auto dx = at::zeros({n, c, l}, gy.options());
    AT_DISPATCH_FLOATING_TYPES(gy.scalar_type(), "isoclr_masked_max_pool_backward", [&] {
      const scalar_t* g = gy.const_data_ptr<scalar_t>();
      const uint8_t* picks = choice.const_data_ptr<uint8_t>();
      scalar_t* out = dx.mutable_data_ptr<scalar_t>();
      at::parallel_for(0, n * c, 1, [&](int64_t begin, int64_t end) {
        for (int64_t row = begin; row < end; ++row) {
          for (int64_t j = 0; j < half; ++j) {
            const uint8_t pick = picks[row * half + j];
            if (pick != 2) {
              out[row * l + 2 * j + pick] = g[row * half + j];
            }
          }
        }
      });
    });
    return {dx, at::Tensor()};
  }
};
}  // namespace

extern "C" {

// Batch norm in training over `passes` passes: xs[p] [n_p, c, l_p] under masks[p] [n_p, 1, l_p] (0/1),
// weight and bias [c]; differentiable in xs, weight and bias. `kernels` 0: the CPU loops (MaskedBatchNorm,
// masks of the activations' kind); 1: ATen's batch-norm kernels (MaskedBatchNormKernels, any device, f32,
// f64 or bf16). Writes passes + 3 new tensors the caller owns into `outputs` (the ys, then mean and biased
// variance [c] and the count of real positions [], f64) and returns 0; -1, with nothing written, when the
// implementation asked for does not apply or libtorch refused.
int isoclr_masked_batch_norm(const void* const* xs, const void* const* masks, int passes, const void* weight,
                             const void* bias, double eps, int kernels, void** outputs) {
  try {
    auto x_list = tensor_list(xs, passes);
    auto mask_list = tensor_list(masks, passes);
    const auto& w = *static_cast<const at::Tensor*>(weight);
    const auto& b = *static_cast<const at::Tensor*>(bias);
    if (passes < 1 || w.dim() != 1 || b.dim() != 1 || b.size(0) != w.size(0)) {
      return -1;
    }
    const auto device = x_list[0].device();
    const auto type = x_list[0].scalar_type();
    const bool shared_inputs_apply = kernels == 0 ? channel_vectors(w, b, w.size(0))
                                            : w.device() == device && b.device() == device &&
                                                  (type == at::kFloat || type == at::kDouble || type == at::kBFloat16);
    if (!shared_inputs_apply) {
      return -1;
    }
    for (int p = 0; p < passes; ++p) {
      const auto& x = x_list[p];
      const auto& m = mask_list[p];
      const bool applies = kernels == 0 ? fused_kernel_applies(x, m)
                                        : masked_shapes(x, m) && x.device() == device && m.device() == device;
      if (!applies || x.scalar_type() != type || x.size(1) != w.size(0)) {
        return -1;
      }
    }
    auto out = kernels == 0
                   ? MaskedBatchNorm::apply(at::TensorList(x_list), at::TensorList(mask_list), w, b, eps)
                   : MaskedBatchNormKernels::apply(at::TensorList(x_list), at::TensorList(mask_list), w, b, eps);
    for (size_t i = 0; i < out.size(); ++i) {
      outputs[i] = new at::Tensor(out[i]);
    }
    return 0;
  } catch (...) {
    return -1;
  }
}

// Max-pooling by 2 of x [n, c, l] over the real positions mask [n, 1, l] (0/1, the same kind), see
// MaskedMaxPool; differentiable in x: a new tensor the caller owns, or null when the fused kernel does not
// apply or libtorch refused.
void* isoclr_masked_max_pool(const void* x, const void* mask) {
  try {
    const auto& input = *static_cast<const at::Tensor*>(x);
    const auto& m = *static_cast<const at::Tensor*>(mask);
    if (!fused_kernel_applies(input, m)) {
      return nullptr;
    }
    return new at::Tensor(MaskedMaxPool::apply(input, m));
  } catch (...) {
    return nullptr;
  }
}

// (x·scale + shift)·mask for x [n, c, l], mask [n, 1, l], scale and shift [c], differentiable in x, scale
// and shift: a new tensor the caller owns, or null when the fused kernel does not apply or libtorch refused.
void* isoclr_masked_affine(const void* x, const void* mask, const void* scale, const void* shift) {
  try {
    const auto& input = *static_cast<const at::Tensor*>(x);
    const auto& m = *static_cast<const at::Tensor*>(mask);
    const auto& a = *static_cast<const at::Tensor*>(scale);
    const auto& b = *static_cast<const at::Tensor*>(shift);
    if (!fused_kernel_applies(input, m) || !channel_vectors(a, b, input.size(1))) {
      return nullptr;
    }
    return new at::Tensor(MaskedAffine::apply(input, m, a, b));
  } catch (...) {
    return nullptr;
  }
}
}
