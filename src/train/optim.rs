//! AdamW with decoupled weight decay, whose whole state is plain named tensors (so a checkpoint is a
//! safetensors file), and gradient clipping.
//!
//! Matches `torch.optim.AdamW` step for step (bias-corrected moments, `eps` added after the square root).

use tch::{Kind, Tensor};

use crate::config::{ClipKind, TrainConfig};

/// AdamW hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    /// β1.
    pub beta1: f64,
    /// β2.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// Decoupled weight decay, applied to tensors of two or more dimensions (kernels, matrices) only.
    pub weight_decay: f64,
}

impl From<&TrainConfig> for AdamWConfig {
    fn from(c: &TrainConfig) -> Self {
        Self {
            beta1: c.beta1,
            beta2: c.beta2,
            eps: c.eps,
            weight_decay: c.weight_decay,
        }
    }
}

/// AdamW over a fixed list of named parameters.
#[derive(Debug)]
pub struct AdamW {
    config: AdamWConfig,
    params: Vec<(String, Tensor)>,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
    step: i64,
}

impl AdamW {
    /// An optimiser for `params` (name, trainable tensor), moments zero.
    pub fn new(params: Vec<(String, Tensor)>, config: AdamWConfig) -> Self {
        let zeros = |p: &Tensor| Tensor::zeros_like(p).to_kind(Kind::Float);
        let exp_avg = params.iter().map(|(_, p)| zeros(p)).collect();
        let exp_avg_sq = params.iter().map(|(_, p)| zeros(p)).collect();
        Self {
            config,
            params,
            exp_avg,
            exp_avg_sq,
            step: 0,
        }
    }

    /// Steps taken so far.
    pub fn step_count(&self) -> i64 {
        self.step
    }

    /// Zeroes every parameter's gradient.
    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            p.zero_grad();
        }
    }

    /// Clips gradients in place; returns the global gradient norm before clipping, as a scalar tensor on
    /// the parameters' device: reading it waits for the device, so a step reads it once everything is queued.
    pub fn clip_gradients(&mut self, kind: ClipKind, max_norm: f64) -> Tensor {
        tch::no_grad(|| {
            let grads: Vec<Tensor> = self
                .params
                .iter()
                .map(|(_, p)| p.grad())
                .filter(|g| g.defined())
                .collect();
            if grads.is_empty() {
                return Tensor::from(0.0f32);
            }
            // Multi-tensor kernels where libtorch has them (a few launches, not one or two per tensor).
            let refs: Vec<&Tensor> = grads.iter().collect();
            let norms = crate::device::foreach_norms(&refs)
                .unwrap_or_else(|| Tensor::stack(&grads.iter().map(Tensor::norm).collect::<Vec<_>>(), 0))
                .to_kind(Kind::Float);
            let total = norms.square().sum(Kind::Float).sqrt();
            // Same formula as torch.nn.utils.clip_grad_norm_, per tensor or for all.
            let coefs = match kind {
                ClipKind::None => return total,
                ClipKind::Global => (max_norm / (&total + 1e-6))
                    .clamp_max(1.0)
                    .expand([norms.size()[0]], false),
                ClipKind::PerTensor => (max_norm / (&norms + 1e-6)).clamp_max(1.0),
            };
            let coefs = coefs.to_kind(grads[0].kind()).contiguous();
            if !crate::device::foreach_scale_(&refs, &coefs) {
                for (i, g) in grads.iter().enumerate() {
                    let _ = g.shallow_clone().g_mul_(&coefs.get(i as i64));
                }
            }
            total
        })
    }

    /// One AdamW update of every parameter that has a gradient, at learning rate `lr`: by libtorch's fused
    /// multi-tensor kernel, one call for the tensors with weight decay and one for those without, or,
    /// for a group where libtorch refuses, tensor by tensor (the same arithmetic).
    pub fn step(&mut self, lr: f64) {
        self.step += 1;
        for decay in [true, false] {
            if !self.fused_update(lr, decay) {
                self.update_each(lr, decay);
            }
        }
    }

    /// Whether a parameter belongs to the group with weight decay: kernels and matrices, not biases and
    /// norm scales.
    fn decays(p: &Tensor) -> bool {
        p.dim() >= 2
    }

    /// The fused update of one group; false, with nothing updated, if libtorch refused.
    fn fused_update(&mut self, lr: f64, decay: bool) -> bool {
        fn pick<'a>(all: impl Iterator<Item = &'a Tensor>, chosen: &[usize]) -> Vec<&'a Tensor> {
            let all: Vec<&Tensor> = all.collect();
            chosen.iter().map(|&i| all[i]).collect()
        }
        let c = self.config;
        let grads: Vec<Tensor> = self.params.iter().map(|(_, p)| p.grad()).collect();
        let chosen: Vec<usize> = (0..self.params.len())
            .filter(|&i| grads[i].defined() && Self::decays(&self.params[i].1) == decay)
            .collect();
        crate::device::fused_adamw(
            &pick(self.params.iter().map(|(_, p)| p), &chosen),
            &pick(grads.iter(), &chosen),
            &pick(self.exp_avg.iter(), &chosen),
            &pick(self.exp_avg_sq.iter(), &chosen),
            self.step,
            crate::device::FusedAdamW {
                lr,
                betas: (c.beta1, c.beta2),
                weight_decay: if decay { c.weight_decay } else { 0.0 },
                eps: c.eps,
            },
        )
    }

    /// The update tensor by tensor of the group with (or without) weight decay, for the step counted in
    /// `self.step`.
    fn update_each(&mut self, lr: f64, decay: bool) {
        let AdamWConfig {
            beta1,
            beta2,
            eps,
            weight_decay,
        } = self.config;
        let bias1 = 1.0 - beta1.powi(self.step as i32);
        let bias2 = 1.0 - beta2.powi(self.step as i32);
        tch::no_grad(|| {
            for (((_, p), m), v) in self.params.iter_mut().zip(&mut self.exp_avg).zip(&mut self.exp_avg_sq) {
                let g = p.grad();
                if !g.defined() || Self::decays(p) != decay {
                    continue;
                }
                if weight_decay > 0.0 && decay {
                    let _ = p.g_mul_scalar_(1.0 - lr * weight_decay);
                }
                // In-place forms: the naive expressions made ~8 temporaries per tensor and ran the
                // optimiser 1.4-2.7x slower than torch.optim.AdamW (docs/PERFORMANCE.md).
                let _ = m.lerp_(&g, 1.0 - beta1);
                let _ = v.g_mul_scalar_(beta2).addcmul_(&g, &(&g * (1.0 - beta2)));
                let mut denom = v.sqrt();
                let _ = denom
                    .g_div_scalar_(bias2.sqrt())
                    .g_add_scalar_(eps)
                    .g_mul_scalar_(-bias1 / lr);
                let _ = p.addcdiv_(m, &denom);
            }
        });
    }

    /// The moment tensors, every `exp_avg` then every `exp_avg_sq`, sharing storage with the optimiser:
    /// writing into them sets its state (a rank receiving another's state does).
    pub fn moments(&self) -> Vec<Tensor> {
        self.exp_avg
            .iter()
            .chain(&self.exp_avg_sq)
            .map(Tensor::shallow_clone)
            .collect()
    }

    /// Sets the count of steps taken (it drives the bias correction), with [`AdamW::moments`] written.
    pub fn set_step_count(&mut self, step: i64) {
        self.step = step;
    }

    /// Restores the state written by [`AdamW::state`]; errors name a missing or mis-shaped entry.
    pub fn load_state(&mut self, state: Vec<(String, Tensor)>) -> Result<(), String> {
        let state: std::collections::HashMap<String, Tensor> = state.into_iter().collect();
        let step = state.get("step").ok_or("optimizer state has no step")?;
        let get = |name: String, like: &Tensor| -> Result<&Tensor, String> {
            let t = state
                .get(&name)
                .ok_or_else(|| format!("optimizer state has no {name}"))?;
            if t.size() != like.size() {
                return Err(format!("{name} has shape {:?}, expected {:?}", t.size(), like.size()));
            }
            Ok(t)
        };
        tch::no_grad(|| {
            for (((name, p), m), v) in self.params.iter().zip(&mut self.exp_avg).zip(&mut self.exp_avg_sq) {
                m.copy_(get(format!("{name}.exp_avg"), p)?);
                v.copy_(get(format!("{name}.exp_avg_sq"), p)?);
            }
            Ok::<(), String>(())
        })?;
        self.step = step.int64_value(&[]);
        Ok(())
    }

    /// The whole state as named tensors: `NAME.exp_avg`, `NAME.exp_avg_sq` per parameter and `step`.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut state = vec![("step".to_owned(), Tensor::from(self.step))];
        for ((name, _), (m, v)) in self.params.iter().zip(self.exp_avg.iter().zip(&self.exp_avg_sq)) {
            state.push((format!("{name}.exp_avg"), m.shallow_clone()));
            state.push((format!("{name}.exp_avg_sq"), v.shallow_clone()));
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// float64 AdamW by the textbook (Loshchilov & Hutter with PyTorch's bias correction), scalar loops.
    fn reference(p0: &[f64], grads: &[Vec<f64>], lr: f64, c: AdamWConfig, decay: bool) -> Vec<f64> {
        let mut p = p0.to_vec();
        let mut m = vec![0.0; p.len()];
        let mut v = vec![0.0; p.len()];
        for (t, g) in grads.iter().enumerate() {
            let t = (t + 1) as i32;
            for i in 0..p.len() {
                if decay {
                    p[i] *= 1.0 - lr * c.weight_decay;
                }
                m[i] = c.beta1 * m[i] + (1.0 - c.beta1) * g[i];
                v[i] = c.beta2 * v[i] + (1.0 - c.beta2) * g[i] * g[i];
                let mh = m[i] / (1.0 - c.beta1.powi(t));
                let vh = v[i] / (1.0 - c.beta2.powi(t));
                p[i] -= lr * mh / (vh.sqrt() + c.eps);
            }
        }
        p
    }

    #[test]
    fn matches_float64_adamw_for_matrices_and_vectors() {
        let c = AdamWConfig {
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.1,
        };
        let w0 = [0.5, -1.0, 2.0, 0.25];
        let b0 = [0.1, -0.2];
        let w = Tensor::from_slice(&w0)
            .to_kind(Kind::Float)
            .view([2, 2])
            .set_requires_grad(true);
        let b = Tensor::from_slice(&b0).to_kind(Kind::Float).set_requires_grad(true);
        let mut opt = AdamW::new(
            vec![("w".into(), w.shallow_clone()), ("b".into(), b.shallow_clone())],
            c,
        );
        let (mut gw, mut gb) = (Vec::new(), Vec::new());
        for step in 0..5 {
            opt.zero_grad();
            let scale = 1.0 + step as f64;
            let loss = (&w * &w).sum(Kind::Float) * scale + (&b * 3.0).sum(Kind::Float);
            gw.push(Vec::<f64>::try_from(w.detach().to_kind(Kind::Double).view([-1]) * 2.0 * scale).unwrap());
            gb.push(vec![3.0, 3.0]);
            loss.backward();
            opt.step(0.01);
        }
        let want_w = reference(&w0, &gw, 0.01, c, true);
        let want_b = reference(&b0, &gb, 0.01, c, false);
        let got_w = Vec::<f64>::try_from(w.detach().to_kind(Kind::Double).view([-1])).unwrap();
        let got_b = Vec::<f64>::try_from(b.detach().to_kind(Kind::Double)).unwrap();
        for (g, e) in got_w.iter().zip(&want_w).chain(got_b.iter().zip(&want_b)) {
            assert!((g - e).abs() < 1e-6, "{g} vs {e}");
        }
        let names: Vec<String> = opt.state().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            ["step", "w.exp_avg", "w.exp_avg_sq", "b.exp_avg", "b.exp_avg_sq"]
        );
        assert_eq!(opt.step_count(), 5);
    }

    /// The fused kernel runs here (CPU) and computes what the tensor-by-tensor loop computes, over steps
    /// with both groups (weight decay on the matrix, none on the vector) and a parameter without gradient.
    #[test]
    fn fused_update_equals_the_loop() {
        let _generator = crate::model::lock_generator();
        tch::manual_seed(3);
        let c = AdamWConfig {
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-6,
            weight_decay: 0.05,
        };
        let init = [
            Tensor::randn([3, 5], (Kind::Float, tch::Device::Cpu)),
            Tensor::randn([7], (Kind::Float, tch::Device::Cpu)),
            Tensor::randn([2], (Kind::Float, tch::Device::Cpu)),
        ];
        let make = || {
            let params: Vec<Tensor> = init.iter().map(|t| t.copy().set_requires_grad(true)).collect();
            let named = params
                .iter()
                .enumerate()
                .map(|(i, p)| (format!("p{i}"), p.shallow_clone()))
                .collect();
            (params, AdamW::new(named, c))
        };
        let ((a, mut fused), (b, mut each)) = (make(), make());
        for step in 1..=4 {
            let lr = 0.01 * step as f64;
            for (params, opt) in [(&a, &mut fused), (&b, &mut each)] {
                opt.zero_grad();
                // p2 takes no part: no gradient, no update.
                ((&params[0] * &params[0]).sum(Kind::Float) * step as f64 + params[1].sin().sum(Kind::Float))
                    .backward();
                opt.step += 1;
            }
            for decay in [true, false] {
                assert!(fused.fused_update(lr, decay), "libtorch ran the fused kernel");
                each.update_each(lr, decay);
            }
        }
        let worst = |x: &Tensor, y: &Tensor| (x - y).abs().max().double_value(&[]);
        // Relative to the largest value: f32 rounding of differently ordered arithmetic.
        let relative = |x: &Tensor, y: &Tensor| worst(x, y) / y.abs().max().double_value(&[]).max(1e-30);
        for i in 0..3 {
            assert!(
                relative(&a[i], &b[i]) < 1e-6,
                "parameter {i}: {}",
                relative(&a[i], &b[i])
            );
            assert!(relative(&fused.exp_avg[i], &each.exp_avg[i]) < 1e-6 || i == 2);
            assert!(relative(&fused.exp_avg_sq[i], &each.exp_avg_sq[i]) < 1e-6 || i == 2);
        }
        assert!(worst(&a[0], &init[0]) > 1e-3 && worst(&a[2], &init[2]) == 0.0);
    }

    #[test]
    fn clipping_per_tensor_and_global() {
        let a = Tensor::from_slice(&[3.0f32, 4.0]).set_requires_grad(true);
        let b = Tensor::from_slice(&[0.3f32, 0.4]).set_requires_grad(true);
        let run = |kind| {
            let mut opt = AdamW::new(
                vec![("a".into(), a.shallow_clone()), ("b".into(), b.shallow_clone())],
                AdamWConfig {
                    beta1: 0.9,
                    beta2: 0.999,
                    eps: 1e-8,
                    weight_decay: 0.0,
                },
            );
            opt.zero_grad();
            ((&a * &a.detach()).sum(Kind::Float) + (&b * &b.detach()).sum(Kind::Float)).backward();
            let total = opt.clip_gradients(kind, 1.0);
            (
                total.double_value(&[]),
                a.grad().norm().double_value(&[]),
                b.grad().norm().double_value(&[]),
            )
        };
        let (total, na, nb) = run(ClipKind::PerTensor);
        assert!((total - (25.0f64 + 0.25).sqrt()).abs() < 1e-5);
        assert!((na - 1.0).abs() < 1e-5 && (nb - 0.5).abs() < 1e-6);
        let (_, na, nb) = run(ClipKind::Global);
        let coef = 1.0 / (25.25f64.sqrt() + 1e-6);
        assert!((na - 5.0 * coef).abs() < 1e-5 && (nb - 0.5 * coef).abs() < 1e-6);
    }
}
