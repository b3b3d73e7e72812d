//! Contrastive losses on projections (METHOD.md, "Loss"): decoupled contrastive learning (DCL, the default)
//! and NT-Xent, both symmetric, and contrastive accuracy.
//!
//! Every function takes the anchors of this process — rows `offset..offset + n` of the global batch — and
//! the whole global batch's projections of both views, so a distributed run computes each rank's share of
//! exactly the single-process loss. In one process `offset = 0` and the anchors are the whole batch.

use tch::{Kind, Tensor};

use crate::config::LossKind;

/// The positive-pair weight ln(n + 0.4) / 0.802 for a group of `n` transcripts (mean ≈ 1 over real data).
pub fn group_size_weight(n: u32) -> f64 {
    (f64::from(n) + 0.4).ln() / 0.802
}

/// Projections of one step, L2-normalised: `[N, P]` per view, rows in batch order.
#[derive(Debug)]
pub struct Views {
    /// View 1 of every pair of the global batch.
    pub z1: Tensor,
    /// View 2 of every pair of the global batch.
    pub z2: Tensor,
}

impl Views {
    /// Normalises raw projections `[N, P]` of each view to unit length (in `f32`).
    pub fn normalised(p1: &Tensor, p2: &Tensor) -> Self {
        let norm = |p: &Tensor| {
            let p = p.to_kind(Kind::Float);
            let length = p.norm_scalaropt_dim(2.0, [1i64].as_slice(), true).clamp_min(1e-12);
            p / length
        };
        Self {
            z1: norm(p1),
            z2: norm(p2),
        }
    }
}

/// `[n, N]` boolean mask, true at column `offset + i` of row `i` (each anchor's own column).
fn own_columns(n: i64, total: i64, offset: i64, device: tch::Device) -> Tensor {
    let rows = Tensor::arange(n, (Kind::Int64, device)) + offset;
    rows.unsqueeze(1)
        .eq_tensor(&Tensor::arange(total, (Kind::Int64, device)).unsqueeze(0))
}

/// Loss of one direction for anchors `a` (`[n, P]`, rows `offset..` of their view `same`), against their own
/// view `same` `[N, P]` and the other view `other` `[N, P]`; `weights` `[n]` scale the positive term.
/// Returns the per-anchor losses `[n]`.
fn direction(
    kind: LossKind,
    a: &Tensor,
    same: &Tensor,
    other: &Tensor,
    offset: i64,
    tau: f64,
    weights: Option<&Tensor>,
) -> Tensor {
    let (n, total) = (a.size()[0], same.size()[0]);
    let own = own_columns(n, total, offset, a.device());
    let s_same = (a.matmul(&same.tr()) / tau).masked_fill(&own, f64::NEG_INFINITY);
    let s_other = a.matmul(&other.tr()) / tau;
    let positive = (&s_other * own.to_kind(Kind::Float)).sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
    let positive = match weights {
        Some(w) => positive * w,
        None => positive,
    };
    let negatives = match kind {
        // Decoupled: the positive is in neither log-sum-exp.
        LossKind::Dcl => {
            s_same.logsumexp([1i64].as_slice(), false)
                + s_other
                    .masked_fill(&own, f64::NEG_INFINITY)
                    .logsumexp([1i64].as_slice(), false)
        }
        LossKind::Ntxent => Tensor::cat(&[&s_same, &s_other], 1).logsumexp([1i64].as_slice(), false),
    };
    negatives - positive
}

/// The symmetric contrastive loss of the anchors `offset..offset + n`, summed (not averaged) over them and
/// divided by `2 · N`: summing this over a partition of the global batch into anchor ranges gives
/// ½ (mean L(1→2) + mean L(2→1)) of the whole batch. `weights` `[n]` are the anchors' positive weights.
pub fn contrastive_loss(
    kind: LossKind,
    views: &Views,
    offset: i64,
    n: i64,
    tau: f64,
    weights: Option<&Tensor>,
) -> Tensor {
    let total = views.z1.size()[0];
    let a1 = views.z1.narrow(0, offset, n);
    let a2 = views.z2.narrow(0, offset, n);
    let l12 = direction(kind, &a1, &views.z1, &views.z2, offset, tau, weights);
    let l21 = direction(kind, &a2, &views.z2, &views.z1, offset, tau, weights);
    (l12.sum(Kind::Float) + l21.sum(Kind::Float)) / (2 * total) as f64
}

/// Fraction of anchors whose most similar view-2 projection is their own pair (view 1 → view 2).
pub fn contrastive_accuracy(views: &Views) -> f64 {
    tch::no_grad(|| {
        let n = views.z1.size()[0];
        let best = views.z1.matmul(&views.z2.tr()).argmax(1, false);
        let hits = best.eq_tensor(&Tensor::arange(n, (Kind::Int64, best.device())));
        hits.to_kind(Kind::Float).mean(Kind::Float).double_value(&[])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Independent float64 reference of METHOD.md's formulas, plain loops, no tch.
    fn reference(kind: LossKind, z1: &[Vec<f64>], z2: &[Vec<f64>], tau: f64, w: &[f64]) -> f64 {
        let n = z1.len();
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>() / tau;
        let lse = |v: &[f64]| {
            let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
        };
        let one_direction = |a: &[Vec<f64>], b: &[Vec<f64>]| {
            (0..n)
                .map(|i| {
                    let same: Vec<f64> = (0..n).filter(|&j| j != i).map(|j| dot(&a[i], &a[j])).collect();
                    let pos = dot(&a[i], &b[i]);
                    match kind {
                        LossKind::Dcl => {
                            let other: Vec<f64> = (0..n).filter(|&j| j != i).map(|j| dot(&a[i], &b[j])).collect();
                            -w[i] * pos + lse(&same) + lse(&other)
                        }
                        LossKind::Ntxent => {
                            let mut all = same.clone();
                            all.extend((0..n).map(|j| dot(&a[i], &b[j])));
                            -pos + lse(&all)
                        }
                    }
                })
                .sum::<f64>()
                / n as f64
        };
        0.5 * (one_direction(z1, z2) + one_direction(z2, z1))
    }

    fn rows(t: &Tensor) -> Vec<Vec<f64>> {
        let t = t.to_kind(Kind::Double);
        (0..t.size()[0])
            .map(|i| Vec::<f64>::try_from(t.get(i)).unwrap())
            .collect()
    }

    #[test]
    fn losses_match_float64_reference_and_partition_exactly() {
        let _generator = crate::model::lock_generator();
        tch::manual_seed(3);
        for kind in [LossKind::Dcl, LossKind::Ntxent] {
            let (n, p) = (9, 16);
            let views = Views::normalised(
                &Tensor::randn([n, p], tch::kind::FLOAT_CPU),
                &Tensor::randn([n, p], tch::kind::FLOAT_CPU),
            );
            let sizes: Vec<u32> = (0..n as u32).map(|i| 1 + i % 4).collect();
            let w: Vec<f64> = sizes.iter().map(|&s| group_size_weight(s)).collect();
            let weighted = kind == LossKind::Dcl;
            let wt = Tensor::from_slice(&w).to_kind(Kind::Float);
            let ones = vec![1.0; n as usize];
            let expected = reference(
                kind,
                &rows(&views.z1),
                &rows(&views.z2),
                0.1,
                if weighted { &w } else { &ones },
            );
            let got = contrastive_loss(kind, &views, 0, n, 0.1, weighted.then_some(&wt)).double_value(&[]);
            // f32 similarities divided by τ = 0.1: agreement to ~1e-5 relative.
            assert!(
                (got - expected).abs() < 1e-4 * expected.abs().max(1.0),
                "{kind:?}: {got} vs {expected}"
            );
            // Anchor ranges 0..4 and 4..9 sum to the whole-batch loss: what a 2-rank run relies on.
            let part = |o: i64, k: i64| {
                let w = weighted.then(|| wt.narrow(0, o, k));
                contrastive_loss(kind, &views, o, k, 0.1, w.as_ref()).double_value(&[])
            };
            assert!((part(0, 4) + part(4, 5) - got).abs() < 1e-5, "{kind:?}");
        }
    }

    #[test]
    fn accuracy_counts_rows_whose_best_match_is_their_pair() {
        let z = Tensor::eye(4, tch::kind::FLOAT_CPU);
        let swapped = z.index_select(0, &Tensor::from_slice(&[0i64, 1, 3, 2]));
        assert_eq!(contrastive_accuracy(&Views::normalised(&z, &z)), 1.0);
        assert_eq!(contrastive_accuracy(&Views::normalised(&z, &swapped)), 0.5);
    }

    #[test]
    fn weight_has_mean_near_one_on_typical_group_sizes() {
        assert!((group_size_weight(2) - 1.0).abs() < 0.1);
        assert!(group_size_weight(1) < group_size_weight(5));
    }
}
