//! What libtorch offers and tch does not bind, through a small C++ shim (src/device/shim.cpp): make CUDA
//! visible to tch; run autocast in bf16 without libtorch's deprecation-warning flood; copy host tensors to
//! the GPU without stalling it ([`upload`]); update many tensors with the fused AdamW kernel
//! ([`fused_adamw`]); and read the CUDA caching allocator's peak-memory statistics (for benchmarks).
//! [`failure`] catches a libtorch failure as a value, for the error boundaries of tensor work.
//!
//! Call [`init`] first thing in `main`, before any tch call.

pub mod failure;

use std::ffi::CString;

/// Where the build found libtorch (scripts/setup.sh sets LIBTORCH); empty when it was not set.
const LIBTORCH_LIB: &str = match option_env!("ISOCLR_LIBTORCH_LIB") {
    Some(dir) => dir,
    None => "",
};

unsafe extern "C" {
    fn isoclr_autocast_enter_cuda_bf16() -> i32;
    fn isoclr_autocast_exit_cuda(previous: i32) -> i32;
    fn isoclr_autocast_cuda_bf16_active() -> i32;
    fn isoclr_cuda_peak_allocated_bytes(device: i32) -> i64;
    fn isoclr_cuda_reset_peak_stats(device: i32) -> i32;
    fn isoclr_cuda_empty_cache() -> i32;
    fn isoclr_pin_memory(tensor: *const std::ffi::c_void) -> *mut std::ffi::c_void;
    fn isoclr_foreach_norms(tensors: *const *const std::ffi::c_void, count: i32) -> *mut std::ffi::c_void;
    fn isoclr_foreach_scale_(
        tensors: *const *const std::ffi::c_void,
        count: i32,
        factors: *const std::ffi::c_void,
    ) -> i32;
    fn isoclr_masked_batch_norm(
        xs: *const *const std::ffi::c_void,
        masks: *const *const std::ffi::c_void,
        passes: i32,
        weight: *const std::ffi::c_void,
        bias: *const std::ffi::c_void,
        eps: f64,
        kernels: i32,
        outputs: *mut *mut std::ffi::c_void,
    ) -> i32;
    fn isoclr_masked_affine(
        x: *const std::ffi::c_void,
        mask: *const std::ffi::c_void,
        scale: *const std::ffi::c_void,
        shift: *const std::ffi::c_void,
    ) -> *mut std::ffi::c_void;
    fn isoclr_masked_max_pool(x: *const std::ffi::c_void, mask: *const std::ffi::c_void) -> *mut std::ffi::c_void;
    fn isoclr_fused_adamw(
        params: *const *const std::ffi::c_void,
        grads: *const *const std::ffi::c_void,
        exp_avgs: *const *const std::ffi::c_void,
        exp_avg_sqs: *const *const std::ffi::c_void,
        count: i32,
        step: *const std::ffi::c_void,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
    ) -> i32;
}

/// Hyper-parameters of one [`fused_adamw`] call.
#[derive(Debug, Clone, Copy)]
pub struct FusedAdamW {
    /// Learning rate.
    pub lr: f64,
    /// β1, β2.
    pub betas: (f64, f64),
    /// Decoupled weight decay for every tensor of the call.
    pub weight_decay: f64,
    /// ε, added after the square root.
    pub eps: f64,
}

/// One AdamW update of `params` in place, with their gradients `grads` and moments `exp_avgs` and
/// `exp_avg_sqs` (all the same length, kind and device), by libtorch's fused multi-tensor kernel: a few
/// launches for all tensors where a loop issues seven per tensor. `step` is the step number after this
/// update. Returns false, with nothing updated, if libtorch refused (then update them another way).
pub fn fused_adamw(
    params: &[&tch::Tensor],
    grads: &[&tch::Tensor],
    exp_avgs: &[&tch::Tensor],
    exp_avg_sqs: &[&tch::Tensor],
    step: i64,
    h: FusedAdamW,
) -> bool {
    let count = params.len();
    if count == 0 {
        return true;
    }
    if grads.len() != count || exp_avgs.len() != count || exp_avg_sqs.len() != count {
        return false;
    }
    let Ok(count_i32) = i32::try_from(count) else {
        return false;
    };
    let pointers = |tensors: &[&tch::Tensor]| -> Vec<*const std::ffi::c_void> {
        tensors.iter().map(|t| t.as_ptr().cast()).collect()
    };
    let (p, g, m, v) = (
        pointers(params),
        pointers(grads),
        pointers(exp_avgs),
        pointers(exp_avg_sqs),
    );
    // A scalar made on the device by a fill, not copied from the host (which would wait for the device).
    let step = tch::Tensor::full([], step as f64, (tch::Kind::Float, params[0].device()));
    // SAFETY: every pointer is a live at::Tensor owned by a tch::Tensor that the caller's slices (or `step`)
    // keep alive for the call; the arrays hold exactly `count` entries; the shim only copies the handles
    // and catches every C++ exception.
    let status = unsafe {
        isoclr_fused_adamw(
            p.as_ptr(),
            g.as_ptr(),
            m.as_ptr(),
            v.as_ptr(),
            count_i32,
            step.as_ptr().cast(),
            h.lr,
            h.betas.0,
            h.betas.1,
            h.weight_decay,
            h.eps,
        )
    };
    status == 0
}

/// Sets libtorch's CPU threads to `train.threads`; 0 keeps libtorch's default (every core).
pub fn use_threads(threads: i32) {
    if threads > 0 {
        tch::set_num_threads(threads);
    }
}

/// The CUDA devices libtorch sees (0 without CUDA).
pub fn gpu_count() -> usize {
    tch::Cuda::device_count().max(0) as usize
}

/// Loads `libtorch_cuda.so` so libtorch registers its CUDA backend.
///
/// rustc links with `--as-needed`, which drops libtorch_cuda (no symbol of it is referenced directly), and
/// `tch::Cuda::is_available()` would then be false even on a GPU machine. On a CPU-only libtorch the load
/// fails harmlessly. Returns whether the library is loaded.
pub fn load_cuda_backend() -> bool {
    let mut candidates = Vec::new();
    if !LIBTORCH_LIB.is_empty() {
        candidates.push(format!("{LIBTORCH_LIB}/libtorch_cuda.so"));
    }
    candidates.push("libtorch_cuda.so".to_owned());
    candidates.into_iter().any(|name| {
        let Ok(name) = CString::new(name) else { return false };
        // SAFETY: `name` is a valid NUL-terminated string that outlives the call; dlopen has no other
        // preconditions, and a null return (library absent) is handled. The handle is deliberately never
        // closed: the CUDA backend must stay registered for the life of the process.
        let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        !handle.is_null()
    })
}

/// Loads the CUDA backend when present; returns whether it was.
pub fn init() -> bool {
    load_cuda_backend()
}

/// Runs `f` with CUDA autocast in bfloat16 when `enabled`, restoring the previous state afterwards (also
/// when `f` panics). CPU operations are unaffected.
pub fn autocast_bf16<T>(enabled: bool, f: impl FnOnce() -> T) -> T {
    struct Restore(i32);
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: the shim catches every C++ exception and only touches libtorch's thread-local
            // autocast state; `self.0` is the state returned by the matching enter call.
            unsafe { isoclr_autocast_exit_cuda(self.0) };
        }
    }
    if !enabled {
        return f();
    }
    // SAFETY: as above; a -1 (error) return means autocast could not be entered, and we run in full
    // precision without a matching exit.
    let previous = unsafe { isoclr_autocast_enter_cuda_bf16() };
    if previous < 0 {
        return f();
    }
    let _restore = Restore(previous);
    f()
}

/// Whether CUDA autocast is currently on in bfloat16 (for tests and diagnostics).
pub fn autocast_bf16_active() -> bool {
    // SAFETY: a read of libtorch's autocast state; the shim catches every C++ exception.
    unsafe { isoclr_autocast_cuda_bf16_active() == 1 }
}

/// Peak bytes held by tensors on CUDA device `device` since the last [`reset_cuda_peak_memory`] (or since
/// start-up): libtorch's caching-allocator statistic that `torch.cuda.max_memory_allocated` reports, so the
/// two are comparable. `None` without a CUDA backend or before the device allocated anything.
pub fn cuda_peak_allocated_bytes(device: usize) -> Option<u64> {
    let device = i32::try_from(device).ok()?;
    // SAFETY: the shim catches every C++ exception and only reads the allocator's statistics.
    let bytes = unsafe { isoclr_cuda_peak_allocated_bytes(device) };
    u64::try_from(bytes).ok()
}

/// Restarts the peak statistic of CUDA device `device` from what is allocated now; returns whether it
/// could (false without a CUDA backend or before the device allocated anything).
pub fn reset_cuda_peak_memory(device: usize) -> bool {
    let Ok(device) = i32::try_from(device) else {
        return false;
    };
    // SAFETY: the shim catches every C++ exception; resetting statistics has no other effect.
    unsafe { isoclr_cuda_reset_peak_stats(device) == 0 }
}

/// Gives cached but unused CUDA memory back to the driver (`torch.cuda.empty_cache`), so another process
/// on the same GPU can use it; returns whether it could.
pub fn cuda_empty_cache() -> bool {
    // SAFETY: the shim catches every C++ exception; only blocks no tensor holds are released.
    unsafe { isoclr_cuda_empty_cache() == 0 }
}

/// The L2 norm of each tensor, as one 1-D `f32` tensor on their device, by libtorch's multi-tensor kernel
/// (a few launches where a loop issues one per tensor); `None` if libtorch refused.
pub fn foreach_norms(tensors: &[&tch::Tensor]) -> Option<tch::Tensor> {
    let count = i32::try_from(tensors.len()).ok().filter(|&n| n > 0)?;
    let pointers: Vec<*const std::ffi::c_void> = tensors.iter().map(|t| t.as_ptr().cast()).collect();
    // SAFETY: the pointers are live at::Tensors held by the caller's slice for the call, `count` of them;
    // the shim catches every C++ exception and returns null or a new heap at::Tensor that `from_ptr` owns.
    unsafe {
        let norms = isoclr_foreach_norms(pointers.as_ptr(), count);
        (!norms.is_null()).then(|| tch::Tensor::from_ptr(norms.cast()))
    }
}

/// Multiplies each tensor in place by the matching element of the 1-D tensor `factors` (on their device),
/// by libtorch's multi-tensor kernel; false, with nothing changed, if libtorch refused.
pub fn foreach_scale_(tensors: &[&tch::Tensor], factors: &tch::Tensor) -> bool {
    let Ok(count) = i32::try_from(tensors.len()) else {
        return false;
    };
    if factors.size() != [i64::from(count)] {
        return false;
    }
    let pointers: Vec<*const std::ffi::c_void> = tensors.iter().map(|t| t.as_ptr().cast()).collect();
    // SAFETY: as in `foreach_norms`; `factors` is held by the caller for the call.
    unsafe { isoclr_foreach_scale_(pointers.as_ptr(), count, factors.as_ptr().cast()) == 0 }
}

/// What [`masked_batch_norm`] returns.
#[derive(Debug)]
pub struct MaskedBatchNorm {
    /// One normalised output per pass, zero in padding.
    pub outputs: Vec<tch::Tensor>,
    /// Per-channel mean over the real positions of all passes, `[C]` f64.
    pub mean: tch::Tensor,
    /// Per-channel biased variance, `[C]` f64.
    pub var: tch::Tensor,
    /// Real positions counted, 0-dimensional f64.
    pub count: tch::Tensor,
}

/// Which implementation [`masked_batch_norm`] runs (both in src/device/shim.cpp).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchNormKernels {
    /// Fused loops, two passes over the activations each way: CPU, f32 and f64, masks of the same kind.
    CpuLoops,
    /// ATen's batch-norm kernels (those behind SyncBatchNorm), four full-size kernels each way: for CUDA,
    /// f32, f64 and bf16; on the CPU, stand-ins with the same arithmetic, so that it is tested here.
    Aten,
}

impl BatchNormKernels {
    /// The implementation for activations on `device`: the loops on the CPU; on CUDA, ATen's kernels only
    /// when the environment sets `ISOCLR_CUDA_BATCH_NORM=kernels` (not yet measured on a GPU, see
    /// docs/PERFORMANCE.md), else none: the caller's elementwise composite.
    pub fn for_device(device: tch::Device) -> Option<Self> {
        static CUDA_KERNELS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        match device {
            tch::Device::Cpu => Some(Self::CpuLoops),
            tch::Device::Cuda(_)
                if *CUDA_KERNELS
                    .get_or_init(|| std::env::var("ISOCLR_CUDA_BATCH_NORM").is_ok_and(|v| v == "kernels")) =>
            {
                Some(Self::Aten)
            }
            _ => None,
        }
    }
}

/// Batch norm in training over the real positions of all passes `xs[p]` `[n_p, C, L_p]` (0/1 masks
/// `masks[p]` `[n_p, 1, L_p]`, one set of statistics), `(x − mean)/√(var + eps)·weight + bias`, zero in
/// padding; differentiable in `xs`, `weight` and `bias`, by `kernels`. `None` where that implementation
/// does not apply (see [`BatchNormKernels`]; shapes that do not match): the caller computes it with
/// elementwise ops instead.
pub fn masked_batch_norm(
    kernels: BatchNormKernels,
    xs: &[&tch::Tensor],
    masks: &[&tch::Tensor],
    weight: &tch::Tensor,
    bias: &tch::Tensor,
    eps: f64,
) -> Option<MaskedBatchNorm> {
    let passes = i32::try_from(xs.len())
        .ok()
        .filter(|&p| p > 0 && masks.len() == xs.len())?;
    let xs: Vec<*const std::ffi::c_void> = xs.iter().map(|t| t.as_ptr().cast()).collect();
    let masks: Vec<*const std::ffi::c_void> = masks.iter().map(|t| t.as_ptr().cast()).collect();
    let mut outputs: Vec<*mut std::ffi::c_void> = vec![std::ptr::null_mut(); xs.len() + 3];
    // SAFETY: every pointer is a live at::Tensor held by the caller for the call, `passes` of each kind;
    // `outputs` has room for passes + 3 pointers. The shim catches every C++ exception and, when it returns
    // 0, has written that many new heap at::Tensors that nothing else owns, which `from_ptr` takes over
    // (tch frees them on drop); on -1 it wrote nothing.
    let mut tensors = unsafe {
        let status = isoclr_masked_batch_norm(
            xs.as_ptr(),
            masks.as_ptr(),
            passes,
            weight.as_ptr().cast(),
            bias.as_ptr().cast(),
            eps,
            match kernels {
                BatchNormKernels::CpuLoops => 0,
                BatchNormKernels::Aten => 1,
            },
            outputs.as_mut_ptr(),
        );
        if status != 0 {
            return None;
        }
        outputs
            .into_iter()
            .map(|t| tch::Tensor::from_ptr(t.cast()))
            .collect::<Vec<_>>()
    };
    let count = tensors.pop()?;
    let var = tensors.pop()?;
    let mean = tensors.pop()?;
    Some(MaskedBatchNorm {
        outputs: tensors,
        mean,
        var,
        count,
    })
}

/// `(x·scale + shift)·mask` for `x` `[n, C, L]`, the 0/1 `mask` `[n, 1, L]` and `scale`, `shift` `[C]`,
/// differentiable in `x`, `scale` and `shift`, in one fused pass each way. `None` where the fused kernel
/// does not apply (as for [`masked_batch_norm`]).
pub fn masked_affine(
    x: &tch::Tensor,
    mask: &tch::Tensor,
    scale: &tch::Tensor,
    shift: &tch::Tensor,
) -> Option<tch::Tensor> {
    // SAFETY: the four tensors are live at::Tensors for the call; the shim catches every C++ exception and
    // returns null or a new heap at::Tensor that nothing else owns, which `from_ptr` takes over.
    unsafe {
        let y = isoclr_masked_affine(
            x.as_ptr().cast(),
            mask.as_ptr().cast(),
            scale.as_ptr().cast(),
            shift.as_ptr().cast(),
        );
        (!y.is_null()).then(|| tch::Tensor::from_ptr(y.cast()))
    }
}

/// Max-pooling by 2 of `x` `[n, C, L]` in which only the real positions (the 0/1 `mask` `[n, 1, L]`)
/// compete: a window with one real position gives its value, a window with none gives 0; ties and NaN as
/// libtorch's `max_pool1d`. Differentiable in `x`, in one fused pass each way. `None` where the fused kernel
/// does not apply (as for [`masked_batch_norm`]).
pub fn masked_max_pool(x: &tch::Tensor, mask: &tch::Tensor) -> Option<tch::Tensor> {
    // SAFETY: both tensors are live at::Tensors for the call; the shim catches every C++ exception and
    // returns null or a new heap at::Tensor that nothing else owns, which `from_ptr` takes over.
    unsafe {
        let y = isoclr_masked_max_pool(x.as_ptr().cast(), mask.as_ptr().cast());
        (!y.is_null()).then(|| tch::Tensor::from_ptr(y.cast()))
    }
}

/// Copies the host tensor `host` to `device` without making the host wait for the device.
///
/// A copy from ordinary (pageable) host memory to a GPU first waits for every kernel already queued on the
/// stream, so each one emptied the launch queue in the middle of a step. To a GPU this stages the bytes
/// in page-locked memory (libtorch's caching host allocator, which keeps the block until the copy has run)
/// and queues the copy; falls back to the blocking copy if memory cannot be pinned. Elsewhere it is a
/// plain `to_device`.
pub fn upload(host: &tch::Tensor, device: tch::Device) -> tch::Tensor {
    if !device.is_cuda() || host.device() != tch::Device::Cpu {
        return host.to_device(device);
    }
    // SAFETY: `host.as_ptr()` is a live at::Tensor for the duration of the call (we hold `host`); the shim
    // catches every C++ exception and returns either null or a new heap at::Tensor that nothing else
    // owns, which `from_ptr` takes over (tch frees it on drop).
    let pinned = unsafe {
        let pinned = isoclr_pin_memory(host.as_ptr().cast());
        (!pinned.is_null()).then(|| tch::Tensor::from_ptr(pinned.cast()))
    };
    match pinned {
        Some(pinned) => pinned.to_device_(device, pinned.kind(), true, false),
        None => host.to_device(device),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autocast_region_sets_bf16_and_restores() {
        assert!(!autocast_bf16_active());
        let inside = autocast_bf16(true, || {
            let nested = autocast_bf16(true, autocast_bf16_active);
            (autocast_bf16_active(), nested)
        });
        assert_eq!(inside, (true, true));
        assert!(!autocast_bf16_active());
        assert!(!autocast_bf16(false, autocast_bf16_active));
    }

    /// The copy arrives intact (checked after the device has run it); on a CPU-only build it is a move.
    #[test]
    fn upload_copies_the_values() {
        let host = tch::Tensor::from_slice(&[0u8, 1, 4, 255, 7, 3]).view([2, 3]);
        let device = if load_cuda_backend() && tch::Cuda::is_available() {
            tch::Device::Cuda(0)
        } else {
            tch::Device::Cpu
        };
        let on_device = upload(&host, device);
        assert_eq!(on_device.device(), device);
        assert_eq!(on_device.size(), vec![2, 3]);
        let back = Vec::<u8>::try_from(on_device.to_device(tch::Device::Cpu).view([-1])).unwrap();
        assert_eq!(back, vec![0, 1, 4, 255, 7, 3]);
    }

    /// The multi-tensor kernels run here and agree with one tensor at a time; a mis-sized factor list is
    /// refused without touching anything.
    #[test]
    fn foreach_norms_and_scaling_match_a_loop() {
        let tensors = [
            tch::Tensor::from_slice(&[3.0f32, 4.0]),
            tch::Tensor::from_slice(&[1.0f32, 2.0, 2.0]).view([3, 1]),
            tch::Tensor::from_slice(&[0.0f32]),
        ];
        let refs: Vec<&tch::Tensor> = tensors.iter().collect();
        let norms = foreach_norms(&refs).expect("libtorch's _foreach_norm");
        assert_eq!(Vec::<f32>::try_from(&norms).unwrap(), vec![5.0, 3.0, 0.0]);
        assert!(!foreach_scale_(&refs, &tch::Tensor::from_slice(&[2.0f32, 3.0])));
        assert_eq!(Vec::<f32>::try_from(&tensors[0]).unwrap(), vec![3.0, 4.0]);
        assert!(foreach_scale_(&refs, &tch::Tensor::from_slice(&[2.0f32, 0.5, 7.0])));
        assert_eq!(Vec::<f32>::try_from(&tensors[0]).unwrap(), vec![6.0, 8.0]);
        assert_eq!(
            Vec::<f32>::try_from(tensors[1].view([-1])).unwrap(),
            vec![0.5, 1.0, 1.0]
        );
        assert_eq!(foreach_norms(&[]).map(|t| t.size()), None);
    }

    /// ATen's batch-norm kernels (`BatchNormKernels::Aten`) on CUDA against their CPU stand-ins in f64, which
    /// `model::norm`'s tests hold to the elementwise mathematics: outputs, statistics and the gradients in the
    /// activations, weight and bias of two passes with padding that is not zero going in. f64 within 1e-12,
    /// f32 within 1e-5, bf16 activations (f32 weights, as under autocast) within 2e-2, each relative to the
    /// tensor's largest value. Without a GPU only the choice of implementation is checked.
    #[test]
    fn aten_batch_norm_kernels_on_cuda_equal_their_cpu_stand_ins() {
        use tch::{Device, Kind, Tensor};
        assert_eq!(
            BatchNormKernels::for_device(Device::Cpu),
            Some(BatchNormKernels::CpuLoops)
        );
        if !load_cuda_backend() || !tch::Cuda::is_available() {
            eprintln!("no CUDA device: ATen's batch-norm kernels were not run");
            return;
        }
        let cpu = (Kind::Double, Device::Cpu);
        let _generator = crate::model::lock_generator();
        tch::manual_seed(5);
        let c = 6;
        let lengths = [[300i64, 41, 1].as_slice(), [77, 5].as_slice()];
        let sizes = [300i64, 77];
        let masks: Vec<Tensor> = (lengths.iter().zip(sizes))
            .map(|(lens, l)| {
                let rows: Vec<Tensor> = (lens.iter())
                    .map(|&n| Tensor::arange(l, cpu).lt(n as f64).to_kind(Kind::Double))
                    .collect();
                Tensor::stack(&rows, 0).unsqueeze(1)
            })
            .collect();
        let xs = [
            Tensor::randn([3, c, 300], cpu) * 2.0 + 1.0,
            Tensor::randn([2, c, 77], cpu) * 0.5 - 3.0,
        ];
        let upstream = [Tensor::randn([3, c, 300], cpu), Tensor::randn([2, c, 77], cpu)];
        let (weight, bias) = (Tensor::randn([c], cpu), Tensor::randn([c], cpu));
        let run = |device: Device, kind: Kind, weight_kind: Kind| -> Vec<Tensor> {
            let leaf = |t: &Tensor, k: Kind| t.to_device(device).to_kind(k).detach().set_requires_grad(true);
            let (x1, x2) = (leaf(&xs[0], kind), leaf(&xs[1], kind));
            let (w, b) = (leaf(&weight, weight_kind), leaf(&bias, weight_kind));
            let m: Vec<Tensor> = masks.iter().map(|m| m.to_device(device).to_kind(kind)).collect();
            let out = masked_batch_norm(BatchNormKernels::Aten, &[&x1, &x2], &[&m[0], &m[1]], &w, &b, 1e-5)
                .expect("ATen's batch-norm kernels apply");
            let loss = (out.outputs.iter().zip(&upstream))
                .map(|(y, g)| (y.to_kind(Kind::Double) * g.to_device(device)).sum(Kind::Double))
                .fold(Tensor::zeros([], (Kind::Double, device)), |acc, l| acc + l);
            loss.backward();
            let home = |t: &Tensor| t.to_device(Device::Cpu).to_kind(Kind::Double);
            (out.outputs.iter().chain([&out.mean, &out.var, &out.count]))
                .map(home)
                .chain([x1.grad(), x2.grad(), w.grad(), b.grad()].iter().map(home))
                .collect()
        };
        let names = ["y1", "y2", "mean", "var", "count", "dx1", "dx2", "dweight", "dbias"];
        let want = run(Device::Cpu, Kind::Double, Kind::Double);
        for (kind, weight_kind, tolerance) in [
            (Kind::Double, Kind::Double, 1e-12),
            (Kind::Float, Kind::Float, 1e-5),
            (Kind::BFloat16, Kind::Float, 2e-2),
        ] {
            let got = run(Device::Cuda(0), kind, weight_kind);
            for (name, (got, want)) in names.iter().zip(got.iter().zip(&want)) {
                let scale = want.abs().max().double_value(&[]).max(1.0);
                let error = (got - want).abs().max().double_value(&[]) / scale;
                assert!(
                    error <= tolerance,
                    "{kind:?} {name}: relative error {error:e} > {tolerance:e}"
                );
            }
        }
    }

    /// Both implementations take an empty pass beside a real one as if it were not there: the same
    /// outputs, statistics and gradients.
    #[test]
    fn an_empty_pass_changes_nothing() {
        use tch::{Device, Kind, Tensor};
        let _generator = crate::model::lock_generator();
        tch::manual_seed(9);
        let f32s = (Kind::Float, Device::Cpu);
        let x = Tensor::randn([2, 3, 8], f32s);
        let mask = Tensor::ones([2, 1, 8], f32s);
        let (weight, bias) = (Tensor::randn([3], f32s), Tensor::randn([3], f32s));
        let empty = Tensor::zeros([0, 3, 8], f32s);
        let empty_mask = Tensor::zeros([0, 1, 8], f32s);
        for kernels in [BatchNormKernels::CpuLoops, BatchNormKernels::Aten] {
            let run = |with_empty: bool| {
                let leaf = |t: &Tensor| t.detach().copy().set_requires_grad(true);
                let (x, w, b) = (leaf(&x), leaf(&weight), leaf(&bias));
                let (xs, masks): (Vec<&Tensor>, Vec<&Tensor>) = if with_empty {
                    (vec![&x, &empty], vec![&mask, &empty_mask])
                } else {
                    (vec![&x], vec![&mask])
                };
                let out = masked_batch_norm(kernels, &xs, &masks, &w, &b, 1e-5).expect("the kernels apply");
                (&out.outputs[0] * &out.outputs[0]).sum(Kind::Float).backward();
                [
                    out.outputs[0].detach(),
                    out.mean,
                    out.var,
                    out.count,
                    x.grad(),
                    w.grad(),
                    b.grad(),
                ]
            };
            for (name, (with, without)) in ["y", "mean", "var", "count", "dx", "dweight", "dbias"]
                .iter()
                .zip(run(true).iter().zip(&run(false)))
            {
                assert!(with.allclose(without, 1e-6, 1e-6, false), "{kernels:?} {name}");
            }
        }
    }

    /// On CPU the statistics are cleanly unavailable; on a GPU they count a tensor's bytes and reset.
    #[test]
    fn cuda_peak_memory_counts_an_allocation_or_is_unavailable() {
        if !load_cuda_backend() || !tch::Cuda::is_available() {
            assert_eq!(cuda_peak_allocated_bytes(0), None);
            assert!(!reset_cuda_peak_memory(0));
            return;
        }
        let before = tch::Tensor::zeros([1], (tch::Kind::Float, tch::Device::Cuda(0)));
        assert!(reset_cuda_peak_memory(0));
        let base = cuda_peak_allocated_bytes(0).unwrap_or(0);
        let big = tch::Tensor::zeros([4 << 20], (tch::Kind::Float, tch::Device::Cuda(0)));
        let peak = cuda_peak_allocated_bytes(0).unwrap_or(0);
        assert!(
            peak >= base + (16 << 20),
            "peak {peak} after a 16 MiB tensor (base {base})"
        );
        drop((big, before));
        assert!(reset_cuda_peak_memory(0));
        assert!(cuda_peak_allocated_bytes(0).unwrap_or(u64::MAX) < peak);
        assert!(cuda_empty_cache());
    }
}
