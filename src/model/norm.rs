//! Normalisation layers that see only real positions, so an embedding does not depend on how much
//! padding shares its pass.
//!
//! Shapes: activations `[n, C, L]` `f32` (or the autocast dtype), masks `[n, 1, L]` with 1 at real positions
//! and 0 in padding. Outputs are zero in padding.

use std::cell::OnceCell;

use tch::{Kind, Tensor, nn};

use crate::config::Norm;
use crate::device::BatchNormKernels;

/// PyTorch's convention: new = (1 − momentum)·running + momentum·batch statistic.
pub(crate) const MOMENTUM: f64 = 0.1;

/// The kind statistics are summed in: `f32` for `f32` and autocast's `bf16`, `f64` for a model run in
/// `f64` (the tests' reference computations).
pub(crate) fn accumulation_kind(x: &Tensor) -> Kind {
    if x.kind() == Kind::Double {
        Kind::Double
    } else {
        Kind::Float
    }
}

/// The kind batch norm sums its moments in: one-pass moments about 0 cancel on channels whose mean is far
/// from 0, and summed in f32 they left whole training gradients up to 27 % off (elementwise) against an f64
/// run (`model::tests::batch_statistics_keep_gradients_accurate_in_f32`).
const MOMENTS: Kind = Kind::Double;

/// The real positions of a pass at one resolution: the mask `[n, 1, L]` (1 at real positions, 0 in
/// padding) and, computed on first use and then shared by every batch norm at that resolution, their
/// count and Bessel factor. A pass's kernels are issued one at a time, and on a GPU a short pass is bound
/// by their number rather than their size, so what every layer would compute alike is computed once.
#[derive(Debug)]
pub struct Positions {
    mask: Tensor,
    /// `(count clamped to ≥ 1, count / (count − 1))`, 0-dimensional, in [`MOMENTS`].
    counts: OnceCell<(Tensor, Tensor)>,
}

impl Positions {
    /// The positions marked by `mask` `[n, 1, L]`.
    pub fn new(mask: Tensor) -> Self {
        Self {
            mask,
            counts: OnceCell::new(),
        }
    }

    /// The mask `[n, 1, L]`.
    pub fn mask(&self) -> &Tensor {
        &self.mask
    }

    fn counts(&self) -> &(Tensor, Tensor) {
        self.counts.get_or_init(|| {
            let count = self.mask.sum(MOMENTS).clamp_min(1.0);
            let bessel = &count / (&count - 1.0).clamp_min(1.0);
            (count, bessel)
        })
    }
}

/// A normalisation layer over `[n, C, L]` activations with a padding mask.
#[derive(Debug)]
pub enum MaskedNorm {
    /// Statistics per channel over the pass's real positions; running averages for evaluation.
    Batch {
        /// Scale γ, `[C]`.
        weight: Tensor,
        /// Shift β, `[C]`.
        bias: Tensor,
        /// Running mean, `[C]` (not trained).
        running_mean: Tensor,
        /// Running unbiased variance, `[C]` (not trained).
        running_var: Tensor,
        /// Added to the variance.
        eps: f64,
    },
    /// Statistics per sample and channel group over real positions (`groups = 1` is layer norm).
    Group {
        /// Scale γ, `[C]`.
        weight: Tensor,
        /// Shift β, `[C]`.
        bias: Tensor,
        /// Channel groups.
        groups: i64,
        /// Added to the variance.
        eps: f64,
    },
}

impl MaskedNorm {
    /// Creates the layer for `channels` channels under `path` (tensors `weight`, `bias`, and for batch norm
    /// `running_mean`, `running_var`).
    pub fn new(path: &nn::Path, channels: i64, kind: Norm, groups: i64) -> Self {
        let weight = path.ones("weight", &[channels]);
        let bias = path.zeros("bias", &[channels]);
        match kind {
            Norm::Batch => MaskedNorm::Batch {
                weight,
                bias,
                running_mean: path.zeros_no_train("running_mean", &[channels]),
                running_var: path.ones_no_train("running_var", &[channels]),
                eps: 1e-5,
            },
            Norm::Group => MaskedNorm::Group {
                weight,
                bias,
                groups,
                eps: 1e-5,
            },
            Norm::Layer => MaskedNorm::Group {
                weight,
                bias,
                groups: 1,
                eps: 1e-5,
            },
        }
    }

    /// Normalises `x` `[n, C, L]` over the real `positions`; in training, batch norm uses (and records) the
    /// statistics of this pass, in evaluation its running averages.
    pub fn forward(&self, x: &Tensor, positions: &Positions, train: bool) -> Tensor {
        let mut out = self.forward_jointly(&[x], &[positions], train);
        out.swap_remove(0)
    }

    /// Normalises several passes `xs[i]` (each `[n_i, C, L_i]`) over their real `positions[i]`; in training,
    /// batch norm takes one set of statistics over the real positions of all of them (and records it once), as
    /// if they were one pass. Group and layer norm are per sample, so this is each pass on its own.
    pub fn forward_jointly(&self, xs: &[&Tensor], positions: &[&Positions], train: bool) -> Vec<Tensor> {
        match self {
            MaskedNorm::Batch {
                weight,
                bias,
                running_mean,
                running_var,
                eps,
            } => {
                let c = weight.size()[0];
                let kind = xs.first().map_or(Kind::Float, |x| accumulation_kind(x));
                // The running averages of this step's mean and unbiased variance, for evaluation.
                let record = |mean: &Tensor, var: &Tensor, bessel: &Tensor| {
                    tch::no_grad(|| {
                        let _ = running_mean
                            .shallow_clone()
                            .lerp_(&mean.to_kind(kind).view([c]), MOMENTUM);
                        let unbiased = var.to_kind(kind).view([c]) * bessel;
                        let _ = running_var.shallow_clone().lerp_(&unbiased, MOMENTUM);
                    });
                };
                if train {
                    let masks: Vec<&Tensor> = positions.iter().map(|p| p.mask()).collect();
                    let kernels = xs.first().and_then(|x| BatchNormKernels::for_device(x.device()));
                    if let Some(fused) =
                        kernels.and_then(|k| crate::device::masked_batch_norm(k, xs, &masks, weight, bias, *eps))
                    {
                        record(
                            &fused.mean,
                            &fused.var,
                            &(&fused.count / (&fused.count - 1.0).clamp_min(1.0)),
                        );
                        return fused.outputs;
                    }
                }
                let (mean, var) = if train {
                    let (mean, var, bessel) = batch_moments(xs, positions);
                    let (mean, var) = (mean.to_kind(kind), var.to_kind(kind));
                    record(&mean, &var, &bessel);
                    (mean, var)
                } else {
                    (running_mean.view([1, c, 1]), running_var.view([1, c, 1]))
                };
                // y = (x − mean)·scale + bias as one fused x·scale + shift per channel.
                let scale = (var + *eps).rsqrt() * weight.view([1, c, 1]);
                let shift = bias.view([1, c, 1]) - mean * &scale;
                let (scale_c, shift_c) = (scale.view([c]), shift.view([c]));
                (xs.iter().zip(positions))
                    .map(|(x, p)| {
                        crate::device::masked_affine(x, p.mask(), &scale_c, &shift_c)
                            .unwrap_or_else(|| shift.addcmul(x, &scale) * p.mask())
                    })
                    .collect()
            }
            MaskedNorm::Group {
                weight,
                bias,
                groups,
                eps,
            } => (xs.iter().zip(positions))
                .map(|(x, p)| group_norm(x, p.mask(), weight, bias, *groups, *eps))
                .collect(),
        }
    }
}

/// Group norm of `x` `[n, C, L]` over the real positions `mask` of each sample and channel group.
fn group_norm(x: &Tensor, mask: &Tensor, weight: &Tensor, bias: &Tensor, groups: i64, eps: f64) -> Tensor {
    let kind = accumulation_kind(x);
    let (n, c, l) = x.size3().unwrap_or((0, 0, 0));
    let xg = x.view([n, groups, c / groups, l]);
    let m = mask.view([n, 1, 1, l]);
    let count = (m.sum_dim_intlist([2i64, 3].as_slice(), true, kind) * (c / groups) as f64).clamp_min(1.0);
    let mean = (&xg * &m).sum_dim_intlist([2i64, 3].as_slice(), true, kind) / &count;
    let centred = (&xg - &mean) * &m;
    let var = centred.square().sum_dim_intlist([2i64, 3].as_slice(), true, kind) / &count;
    let y = (centred / (var + eps).sqrt()).view([n, c, l]) * weight.view([1, c, 1]) + bias.view([1, c, 1]);
    y * mask
}

/// Per-channel mean and biased variance `[1, C, 1]` (in [`MOMENTS`]) over the real positions of every pass,
/// and the Bessel factor of their count.
///
/// One pass of moments: x·m and its square (m is 0/1) summed, var = E[x²] − E[x]², in `MOMENTS` (x·m itself
/// stays f32, promoted from a bf16 x by the f32 mask). Fewer full-size kernels than centring first, which
/// mattered on the GPU. A single pass reuses its positions' cached count.
fn batch_moments(xs: &[&Tensor], positions: &[&Positions]) -> (Tensor, Tensor, Tensor) {
    let dims = [0i64, 2].as_slice();
    let mut sums: Option<(Tensor, Tensor)> = None;
    for (x, p) in xs.iter().zip(positions) {
        let xm = *x * p.mask();
        let (sum, square) = (
            xm.sum_dim_intlist(dims, true, MOMENTS),
            xm.square().sum_dim_intlist(dims, true, MOMENTS),
        );
        sums = Some(match sums {
            None => (sum, square),
            Some((s, q)) => (s + sum, q + square),
        });
    }
    let (count, bessel) = match positions {
        [p] => {
            let (count, bessel) = p.counts();
            (count.shallow_clone(), bessel.shallow_clone())
        }
        _ => {
            let count = (positions.iter())
                .map(|p| p.mask().sum(MOMENTS))
                .reduce(|a, b| a + b)
                .map_or_else(|| Tensor::from(1.0f64), |c| c.clamp_min(1.0));
            let bessel = &count / (&count - 1.0).clamp_min(1.0);
            (count, bessel)
        }
    };
    let (sum, square) = sums.unwrap_or_else(|| (Tensor::from(0.0f64), Tensor::from(0.0f64)));
    let mean = sum / &count;
    let var = (square / &count - mean.square()).clamp_min(0.0);
    (mean, var, bessel)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(kind: Norm, groups: i64) -> (nn::VarStore, MaskedNorm) {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let norm = MaskedNorm::new(&vs.root(), 4, kind, groups);
        (vs, norm)
    }

    fn mask(lengths: &[i64], l: i64) -> Tensor {
        let rows: Vec<Tensor> = lengths
            .iter()
            .map(|&len| {
                Tensor::arange(l, (Kind::Float, tch::Device::Cpu))
                    .lt(len as f64)
                    .to_kind(Kind::Float)
            })
            .collect();
        Tensor::stack(&rows, 0).unsqueeze(1)
    }

    #[test]
    fn batch_norm_ignores_padding_and_tracks_running_stats() {
        let _generator = crate::model::lock_generator();
        let (_vs, norm) = layer(Norm::Batch, 1);
        tch::manual_seed(0);
        let x = Tensor::randn([2, 4, 8], (Kind::Float, tch::Device::Cpu));
        let m = mask(&[5, 3], 8);
        let y = norm.forward(&(&x * &m), &Positions::new(m.shallow_clone()), true);
        // Padding content must not matter: fill it with garbage and compare.
        let garbage = &x * &m + (1.0 - &m) * 1000.0;
        let y2 = norm.forward(&(garbage * &m), &Positions::new(m.shallow_clone()), true);
        assert!(y.allclose(&y2, 1e-6, 1e-6, false));
        // Real positions of every channel have mean 0, variance 1.
        let count = 8.0;
        let mean = (&y * &m).sum_dim_intlist([0i64, 2].as_slice(), false, Kind::Float) / count;
        let var = ((&y * &m).square()).sum_dim_intlist([0i64, 2].as_slice(), false, Kind::Float) / count;
        assert!(mean.abs().max().double_value(&[]) < 1e-5);
        assert!((var - 1.0).abs().max().double_value(&[]) < 1e-3);
        assert_eq!(
            y.masked_select(&m.lt(0.5).expand([2, 4, 8], false))
                .abs()
                .sum(Kind::Float)
                .double_value(&[]),
            0.0
        );
        if let MaskedNorm::Batch { running_mean, .. } = &norm {
            assert!(running_mean.abs().sum(Kind::Float).double_value(&[]) > 0.0);
        }
    }

    /// Batch norm, its running statistics and its input gradient against the textbook two-pass formula
    /// in float64, on channels whose mean is up to 50 standard deviations from zero (where one-pass
    /// moments in f32 lose the most). Tolerance: 1e-3 of the output's scale (unit variance).
    #[test]
    fn batch_norm_matches_a_float64_two_pass_computation() {
        let _generator = crate::model::lock_generator();
        let (_vs, norm) = layer(Norm::Batch, 1);
        tch::manual_seed(1);
        let (n, c, l) = (3, 4, 40);
        let offsets = Tensor::from_slice(&[0.0f32, -3.0, 12.0, 50.0]).view([1, c, 1]);
        let m = mask(&[40, 17, 29], l);
        let x = (Tensor::randn([n, c, l], (Kind::Float, tch::Device::Cpu)) + &offsets) * &m;
        let x = x.set_requires_grad(true);
        let r = Tensor::randn([n, c, l], (Kind::Float, tch::Device::Cpu));
        let y = norm.forward(&x, &Positions::new(m.shallow_clone()), true);
        (&y * &r).sum(Kind::Float).backward();

        let x64 = x.detach().to_kind(Kind::Double).set_requires_grad(true);
        let m64 = m.to_kind(Kind::Double);
        let count = m64.sum(Kind::Double).double_value(&[]);
        let mean = (&x64 * &m64).sum_dim_intlist([0i64, 2].as_slice(), true, Kind::Double) / count;
        let var = ((&x64 - &mean) * &m64)
            .square()
            .sum_dim_intlist([0i64, 2].as_slice(), true, Kind::Double)
            / count;
        let y64 = (&x64 - &mean) / (&var + 1e-5).sqrt() * &m64;
        (&y64 * r.to_kind(Kind::Double)).sum(Kind::Double).backward();

        let worst = |a: &Tensor, b: &Tensor| (a.to_kind(Kind::Double) - b).abs().max().double_value(&[]);
        assert!(worst(&y, &y64) < 1e-3, "output {}", worst(&y, &y64));
        assert!(
            worst(&x.grad(), &x64.grad()) < 1e-3,
            "gradient {}",
            worst(&x.grad(), &x64.grad())
        );
        if let MaskedNorm::Batch {
            running_mean,
            running_var,
            ..
        } = &norm
        {
            let unbiased = &var * count / (count - 1.0);
            let want_mean = mean.view([c]) * MOMENTUM;
            let want_var = unbiased.view([c]) * MOMENTUM + (1.0 - MOMENTUM);
            assert!(worst(running_mean, &want_mean) < 1e-4);
            // Relative to the variance: the offset channels' moments cancel most there.
            assert!(worst(running_var, &want_var) < 1e-3 * MOMENTUM);
        }
    }

    #[test]
    fn group_and_layer_norm_are_per_sample() {
        let _generator = crate::model::lock_generator();
        for (kind, groups) in [(Norm::Group, 2), (Norm::Layer, 1)] {
            let (_vs, norm) = layer(kind, groups);
            let x = Tensor::randn([2, 4, 8], (Kind::Float, tch::Device::Cpu));
            let m = mask(&[6, 8], 8);
            let both = norm.forward(&(&x * &m), &Positions::new(m.shallow_clone()), true);
            let alone = norm.forward(
                &(x.narrow(0, 0, 1).narrow(2, 0, 6)),
                &Positions::new(mask(&[6], 6)),
                true,
            );
            assert!(
                both.narrow(0, 0, 1).narrow(2, 0, 6).allclose(&alone, 1e-5, 1e-5, false),
                "{kind:?}"
            );
        }
    }

    /// The fused batch norms (`device::masked_batch_norm` over two passes at once, by the CPU loops and by
    /// ATen's batch-norm kernels, here their CPU stand-ins) and `device::masked_affine` against the same
    /// mathematics written as elementwise ops in f64: outputs, statistics, and the gradients of a loss
    /// through them in every input, for f64 activations within 1e-12 (relative to each tensor's largest
    /// value) and for f32 within 1e-5. Kinds the loops do not take (bf16) are left to the composite.
    #[test]
    fn the_fused_cpu_kernels_equal_the_elementwise_composite_in_f64() {
        let _generator = crate::model::lock_generator();
        tch::manual_seed(7);
        let c = 5;
        let cpu = (Kind::Double, tch::Device::Cpu);
        let masks = [mask(&[37, 20, 1], 37), mask(&[29, 3], 29)].map(|m| m.to_kind(Kind::Double));
        let xs = [
            Tensor::randn([3, c, 37], cpu) * 3.0 + 1.5,
            Tensor::randn([2, c, 29], cpu) * 0.5 - 4.0,
        ];
        let (weight, bias) = (Tensor::randn([c], cpu), Tensor::randn([c], cpu));
        let (scale, shift) = (Tensor::randn([c], cpu), Tensor::randn([c], cpu));
        let upstream = [Tensor::randn([3, c, 37], cpu), Tensor::randn([2, c, 29], cpu)];
        let eps = 1e-5;
        // Outputs, statistics and gradients (x1, x2, weight, bias, then x1 and scale, shift of the affine).
        let run = |kind: Kind, fused: Option<BatchNormKernels>| {
            let leaf = |t: &Tensor| t.to_kind(kind).detach().set_requires_grad(true);
            let (x1, x2) = (leaf(&xs[0]), leaf(&xs[1]));
            let (w, b, a, s) = (leaf(&weight), leaf(&bias), leaf(&scale), leaf(&shift));
            let m: Vec<Tensor> = masks.iter().map(|m| m.to_kind(kind)).collect();
            let (ys, stats, affine) = if let Some(kernels) = fused {
                let out = crate::device::masked_batch_norm(kernels, &[&x1, &x2], &[&m[0], &m[1]], &w, &b, eps)
                    .expect("fused batch norm");
                let affine = crate::device::masked_affine(&x1, &m[0], &a, &s).expect("fused affine");
                (out.outputs, vec![out.mean, out.var, out.count], affine)
            } else {
                let wide = |t: &Tensor| t.to_kind(Kind::Double);
                let (x1, x2, w, b, a, s) = (wide(&x1), wide(&x2), wide(&w), wide(&b), wide(&a), wide(&s));
                let dims = [0i64, 2].as_slice();
                let (xm1, xm2) = (&x1 * &masks[0], &x2 * &masks[1]);
                let count = masks[0].sum(Kind::Double) + masks[1].sum(Kind::Double);
                let mean = (xm1.sum_dim_intlist(dims, false, Kind::Double)
                    + xm2.sum_dim_intlist(dims, false, Kind::Double))
                    / &count;
                let var = (xm1.square().sum_dim_intlist(dims, false, Kind::Double)
                    + xm2.square().sum_dim_intlist(dims, false, Kind::Double))
                    / &count
                    - mean.square();
                let norm = |x: &Tensor, m: &Tensor| {
                    ((x - mean.view([1, c, 1])) / (&var + eps).sqrt().view([1, c, 1]) * w.view([1, c, 1])
                        + b.view([1, c, 1]))
                        * m
                };
                let ys = vec![norm(&x1, &masks[0]), norm(&x2, &masks[1])];
                let affine = (&x1 * a.view([1, c, 1]) + s.view([1, c, 1])) * &masks[0];
                (ys, vec![mean.detach(), var.detach(), count], affine)
            };
            let loss = (ys.iter().zip(&upstream))
                .map(|(y, g)| (y.to_kind(Kind::Double) * g).sum(Kind::Double))
                .fold(Tensor::zeros([], cpu), |acc, l| acc + l)
                + (affine.to_kind(Kind::Double) * &upstream[0]).sum(Kind::Double);
            loss.backward();
            let values: Vec<Tensor> = (ys.iter().chain([&affine]).chain(&stats))
                .map(|t| t.to_kind(Kind::Double))
                .collect();
            let grads: Vec<Tensor> = [x1, x2, w, b, a, s]
                .iter()
                .map(|t| t.grad().to_kind(Kind::Double))
                .collect();
            (values, grads)
        };
        let close = |got: &Tensor, want: &Tensor, tolerance: f64, what: &str| {
            let scale = want.abs().max().double_value(&[]).max(1.0);
            let error = (got - want).abs().max().double_value(&[]) / scale;
            assert!(error <= tolerance, "{what}: relative error {error:e} > {tolerance:e}");
        };
        let (want_values, want_grads) = run(Kind::Double, None);
        for kernels in [BatchNormKernels::CpuLoops, BatchNormKernels::Aten] {
            for (kind, tolerance) in [(Kind::Double, 1e-12), (Kind::Float, 1e-5)] {
                let (values, grads) = run(kind, Some(kernels));
                let names = ["y1", "y2", "affine", "mean", "var", "count"];
                for (name, (got, want)) in names.iter().zip(values.iter().zip(&want_values)) {
                    close(got, want, tolerance, &format!("{kernels:?} {kind:?} {name}"));
                }
                let names = ["dx1", "dx2", "dweight", "dbias", "dscale", "dshift"];
                for (name, (got, want)) in names.iter().zip(grads.iter().zip(&want_grads)) {
                    close(got, want, tolerance, &format!("{kernels:?} {kind:?} {name}"));
                }
            }
        }
        let bf16 = |t: &Tensor| t.to_kind(Kind::BFloat16);
        let (x, m) = (bf16(&xs[0]), bf16(&masks[0]));
        let loops = crate::device::masked_batch_norm(BatchNormKernels::CpuLoops, &[&x], &[&m], &weight, &bias, eps);
        assert!(loops.is_none());
    }

    /// The fused batch norm's sums do not depend on how many threads make them: one thread and two give
    /// the same bits for outputs, statistics and gradients.
    #[test]
    fn the_fused_batch_norm_gives_the_same_bits_on_one_thread_and_on_two() {
        let _generator = crate::model::lock_generator();
        tch::manual_seed(11);
        let (c, cpu) = (24, (Kind::Float, tch::Device::Cpu));
        let m = mask(&[300, 17, 251], 300);
        let x = Tensor::randn([3, c, 300], cpu) * 2.0 + 0.5;
        let (weight, bias) = (Tensor::randn([c], cpu), Tensor::randn([c], cpu));
        let upstream = Tensor::randn([3, c, 300], cpu);
        let run = |threads: i32| {
            tch::set_num_threads(threads);
            let leaf = |t: &Tensor| t.detach().copy().set_requires_grad(true);
            let (x, w, b) = (leaf(&x), leaf(&weight), leaf(&bias));
            let out = crate::device::masked_batch_norm(BatchNormKernels::CpuLoops, &[&x], &[&m], &w, &b, 1e-5)
                .expect("fused batch norm");
            (&out.outputs[0] * &upstream).sum(Kind::Float).backward();
            [out.outputs[0].detach(), out.mean, out.var, x.grad(), w.grad(), b.grad()]
        };
        let threads = tch::get_num_threads();
        let (one, two) = (run(1), run(2));
        tch::set_num_threads(threads);
        for (name, (a, b)) in ["y", "mean", "var", "dx", "dweight", "dbias"]
            .iter()
            .zip(one.iter().zip(&two))
        {
            assert!(a.equal(b), "{name} differs between one thread and two");
        }
    }
}
