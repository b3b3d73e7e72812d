//! The dilated 1-D ResNet encoder (METHOD.md, "Encoder"), written for one device.
//!
//! Input `[n, 6, L]` float tracks with real lengths; output `[n, F_last]` embeddings, the masked mean over
//! the real positions of the last stage. Padded positions are zeroed after every layer and normalisation
//! counts real positions only, so a sequence's embedding does not depend on the padding of its pass.
//! A packed pass ([`PackedLayout`], core/src/data/packing.rs) holds several sequences per line, far enough apart
//! that, for the same reason, none sees another; its embeddings are means over each sequence's own span.

use tch::{Kind, Tensor, nn};

use super::norm::{MaskedNorm, Positions, accumulation_kind};
use crate::config::{EncoderShape, ModelConfig, Pooling};
use crate::data::CODON_TRACK;

/// A convolution with PyTorch-style 'same' padding: `(k−1)·d` in total, floor half on the left.
#[derive(Debug)]
struct SameConv {
    conv: nn::Conv1D,
    left: i64,
    right: i64,
}

impl SameConv {
    fn new(path: &nn::Path, c_in: i64, c_out: i64, kernel: i64, dilation: i64, bias: bool) -> Self {
        let total = (kernel - 1) * dilation;
        // An even total pads equally on both sides, which the convolution does itself without a padded copy
        // of its input (a full-size kernel forward and backward); an odd one needs the explicit pad.
        let symmetric = total % 2 == 0;
        let config = nn::ConvConfig {
            dilation,
            bias,
            padding: if symmetric { total / 2 } else { 0 },
            ..Default::default()
        };
        let (left, right) = if symmetric {
            (0, 0)
        } else {
            (total / 2, total - total / 2)
        };
        Self {
            conv: nn::conv1d(path, c_in, c_out, kernel, config),
            left,
            right,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let padded = if self.left + self.right > 0 {
            x.constant_pad_nd([self.left, self.right])
        } else {
            x.shallow_clone()
        };
        padded.apply(&self.conv)
    }
}

/// Conv → Norm → ReLU → Dropout → Conv → Norm, plus the (projected) input, then ReLU.
#[derive(Debug)]
struct ResidualBlock {
    conv1: SameConv,
    norm1: MaskedNorm,
    conv2: SameConv,
    norm2: MaskedNorm,
    shortcut: Option<(SameConv, MaskedNorm)>,
    dropout: f64,
}

impl ResidualBlock {
    fn new(path: &nn::Path, c_in: i64, c_out: i64, kernel: i64, dilation: i64, config: &ModelConfig) -> Self {
        let norm = |p: &nn::Path| MaskedNorm::new(p, c_out, config.norm, config.norm_groups);
        let shortcut = (c_in != c_out).then(|| {
            (
                SameConv::new(&(path / "shortcut" / "conv"), c_in, c_out, 1, 1, false),
                norm(&(path / "shortcut" / "norm")),
            )
        });
        Self {
            conv1: SameConv::new(&(path / "conv1"), c_in, c_out, kernel, dilation, false),
            norm1: norm(&(path / "norm1")),
            conv2: SameConv::new(&(path / "conv2"), c_out, c_out, kernel, dilation, false),
            norm2: norm(&(path / "norm2")),
            shortcut,
            dropout: config.dropout,
        }
    }

    /// The block on every pass of `xs`, with their `positions`; batch norms take joint statistics.
    fn forward(&self, xs: &[Tensor], positions: &[&Positions], train: bool) -> Vec<Tensor> {
        let norm =
            |norm: &MaskedNorm, hs: &[Tensor]| norm.forward_jointly(&hs.iter().collect::<Vec<_>>(), positions, train);
        let h: Vec<Tensor> = xs.iter().map(|x| self.conv1.forward(x)).collect();
        let h: Vec<Tensor> = (norm(&self.norm1, &h).into_iter())
            .map(|h| h.relu().dropout(self.dropout, train))
            .collect();
        let h: Vec<Tensor> = h.iter().map(|h| self.conv2.forward(h)).collect();
        let h = norm(&self.norm2, &h);
        let residual = match &self.shortcut {
            Some((conv, shortcut_norm)) => norm(shortcut_norm, &xs.iter().map(|x| conv.forward(x)).collect::<Vec<_>>()),
            None => xs.iter().map(Tensor::shallow_clone).collect(),
        };
        h.into_iter().zip(residual).map(|(h, r)| (h + r).relu()).collect()
    }
}

/// Max-pools by 2 without letting padding win: an output position is real when either input was, so the
/// mask follows the pooling, and a window of padding pools to 0. One fused kernel each way on the CPU
/// (`device::masked_max_pool`); elsewhere padded positions are −∞ going in.
fn masked_max_pool(x: &Tensor, mask: &Tensor) -> (Tensor, Tensor) {
    let pooled_mask = mask.max_pool1d([2], [2], [0], [1], false);
    let pooled = crate::device::masked_max_pool(x, mask).unwrap_or_else(|| {
        x.masked_fill(&mask.lt(0.5), f64::NEG_INFINITY)
            .max_pool1d([2], [2], [0], [1], false)
            .masked_fill(&pooled_mask.lt(0.5), 0.0)
    });
    (pooled, pooled_mask)
}

/// Max-pools by 2 a block's output, which is zero in padding and never negative (it leaves a ReLU): then
/// padding cannot win a window against a real position (real ≥ 0 = padding, and on a tie the first
/// position, the real one, wins, in the value and in the gradient), and a window of padding pools to 0.
/// Same result as [`masked_max_pool`] with three full-size kernels fewer.
fn max_pool_after_relu(x: &Tensor, mask: &Tensor) -> (Tensor, Tensor) {
    let halve = |t: &Tensor| t.max_pool1d([2], [2], [0], [1], false);
    (halve(x), halve(mask))
}

/// Masks `[n, 3, L]` of each sequence's 5'UTR, CDS and 3'UTR from the codon-start track of `x` `[n, 6, L]`
/// (within the real positions `mask` `[n, 1, L]`): the CDS runs from the first codon start to the last one
/// (the stop codon's, whose two further bases a pooled resolution cannot tell apart), the UTRs lie either side.
/// All three are empty for a sequence without codon starts (non-coding).
fn region_masks(x: &Tensor, mask: &Tensor) -> Tensor {
    let codon = x.narrow(1, CODON_TRACK as i64, 1).gt(0.5).to_kind(Kind::Float);
    let after_first = codon.cumsum(2, Kind::Float).gt(0.5).to_kind(Kind::Float);
    let before_last = codon
        .flip([2])
        .cumsum(2, Kind::Float)
        .flip([2])
        .gt(0.5)
        .to_kind(Kind::Float);
    let coding = codon.amax([2i64].as_slice(), true);
    let cds = &after_first * &before_last;
    let utr5 = (1.0 - &after_first) * &coding;
    let utr3 = (1.0 - &before_last) * &coding;
    Tensor::cat(&[utr5, cds, utr3], 1) * mask
}

/// Where the sequences of a packed pass lie in its `[lines, C, L]` input, on the device.
#[derive(Debug)]
pub struct PackedLayout {
    /// `[lines, 1, L]` `f32`: 1 at positions of a sequence.
    mask: Tensor,
    /// `[lines · L/32]` `i64`: the sequence owning each position of the last stage's output (its
    /// ×32-pooled windows), `sequences` where none does.
    owner: Tensor,
    sequences: i64,
}

impl PackedLayout {
    /// The layout of `lines` lines of `line_len` positions (a multiple of 32) holding sequence `i` at
    /// `spans[i] = (line, offset, length)`, offsets multiples of 32, spans inside their lines and apart.
    pub fn new(lines: usize, line_len: usize, spans: &[(usize, usize, usize)], device: tch::Device) -> Self {
        let pooled_len = line_len / 32;
        let mut mask = vec![0u8; lines * line_len];
        let mut owner = vec![spans.len() as i64; lines * pooled_len];
        for (i, &(line, offset, len)) in spans.iter().enumerate() {
            mask[line * line_len + offset..line * line_len + offset + len].fill(1);
            let first = line * pooled_len + offset / 32;
            owner[first..line * pooled_len + (offset + len).div_ceil(32)].fill(i as i64);
        }
        let mask = Tensor::from_slice(&mask).view([lines as i64, 1, line_len as i64]);
        Self {
            mask: crate::device::upload(&mask, device).to_kind(Kind::Float),
            owner: crate::device::upload(&Tensor::from_slice(&owner), device),
            sequences: spans.len() as i64,
        }
    }
}

/// The encoder: stem, stages of residual blocks each followed by max-pooling, masked mean pooling.
#[derive(Debug)]
pub struct Encoder {
    in_tracks: i64,
    stem_conv: SameConv,
    stem_norm: MaskedNorm,
    stages: Vec<Vec<ResidualBlock>>,
    out_dim: i64,
}

impl Encoder {
    /// Builds the encoder under `path` (tensor names `stem.conv.weight`, `stages.S.B.conv1.weight`, ...).
    pub fn new(path: &nn::Path, config: &ModelConfig) -> Self {
        let EncoderShape {
            filters,
            blocks,
            dilations,
            kernel,
        } = config.shape();
        let stem = path / "stem";
        let stem_conv = SameConv::new(&(&stem / "conv"), config.tracks, filters[0], kernel, 1, true);
        let stem_norm = MaskedNorm::new(&(&stem / "norm"), filters[0], config.norm, config.norm_groups);
        let mut c_in = filters[0];
        let mut stages = Vec::new();
        for (s, ((&c_out, &count), &dilation)) in filters.iter().zip(&blocks).zip(&dilations).enumerate() {
            let stage_path = path / "stages" / s;
            let stage = (0..count)
                .map(|b| {
                    let block = ResidualBlock::new(&(&stage_path / b), c_in, c_out, kernel, dilation, config);
                    c_in = c_out;
                    block
                })
                .collect();
            stages.push(stage);
        }
        Self {
            in_tracks: config.tracks,
            stem_conv,
            stem_norm,
            stages,
            out_dim: c_in,
        }
    }

    /// Width of the embedding.
    pub fn out_dim(&self) -> i64 {
        self.out_dim
    }

    /// Embeds `x` `[n, 6, L]` (L a multiple of 32) with real lengths `lengths` `[n]` (`i64`, on any device);
    /// returns `[n, out_dim]` `f32`.
    pub fn forward(&self, x: &Tensor, lengths: &Tensor, train: bool) -> Tensor {
        self.forward_pooled(x, lengths, Pooling::Mean, train)
    }

    /// As [`forward`](Self::forward), pooled as `pooling` says: `[n, pooling.dim(out_dim)]` `f32`.
    pub fn forward_pooled(&self, x: &Tensor, lengths: &Tensor, pooling: Pooling, train: bool) -> Tensor {
        let mut out = self.forward_passes(&[Pass::Padded { x, lengths, pooling }], train);
        out.swap_remove(0)
    }

    /// Embeds the sequences of a packed pass, `x` `[lines, 6, L]` laid out as `layout` says; returns
    /// `[sequences, out_dim]` `f32` (mean pooling; region pooling needs one sequence per line).
    pub fn forward_packed(&self, x: &Tensor, layout: &PackedLayout, train: bool) -> Tensor {
        let mut out = self.forward_passes(&[Pass::Packed { x, layout }], train);
        out.swap_remove(0)
    }

    /// Embeds several passes as one batch: layer by layer over all of them, so that in training every batch
    /// norm takes its statistics over the real positions of every pass (`train.batch_statistics = "step"`).
    /// With one pass, the same as [`forward_pooled`](Self::forward_pooled) or
    /// [`forward_packed`](Self::forward_packed). Returns one tensor per pass, as those do.
    pub fn forward_passes(&self, passes: &[Pass<'_>], train: bool) -> Vec<Tensor> {
        (self.forward_passes_with_trunk(passes, train).into_iter())
            .map(|(pooled, _)| pooled)
            .collect()
    }

    /// Positions of the input per position of the last stage's output (the stem and every stage halve).
    pub fn stride(&self) -> i64 {
        1 << (1 + self.stages.len())
    }

    /// As [`forward_passes`](Self::forward_passes), each pass with its last stage's output `[n, out_dim,
    /// L / stride]` beside its embeddings (zero outside sequences): what a per-position objective reads.
    pub fn forward_passes_with_trunk(&self, passes: &[Pass<'_>], train: bool) -> Vec<(Tensor, Tensor)> {
        let inputs: Vec<(Tensor, Tensor, Option<Tensor>)> = (passes.iter())
            .map(|pass| match pass {
                Pass::Padded { x, lengths, pooling } => {
                    let l = x.size()[2];
                    let positions = Tensor::arange(l, (Kind::Int64, x.device()));
                    let mask = positions
                        .unsqueeze(0)
                        .lt_tensor(&lengths.to_device(x.device()).unsqueeze(1))
                        .unsqueeze(1)
                        .to_kind(Kind::Float);
                    let regions = match pooling {
                        Pooling::Mean => None,
                        Pooling::Regions => Some(region_masks(x, &mask)),
                    };
                    (x.shallow_clone(), mask, regions)
                }
                Pass::Packed { x, layout } => (x.shallow_clone(), layout.mask.shallow_clone(), None),
            })
            .collect();
        (self.trunk(inputs, train).into_iter().zip(passes))
            .map(|((h, mask, regions), pass)| {
                let pooled = match pass {
                    Pass::Padded { .. } => pool_padded(&h, &mask, regions.as_ref()),
                    Pass::Packed { layout, .. } => pool_packed(&h, &mask, layout),
                };
                (pooled, h)
            })
            .collect()
    }

    /// Stem and stages on every pass `(x [n, 6, L], mask [n, 1, L] of its sequence positions, regions)`;
    /// returns each pass's last stage output, its mask, and its regions pooled along.
    fn trunk(
        &self,
        passes: Vec<(Tensor, Tensor, Option<Tensor>)>,
        train: bool,
    ) -> Vec<(Tensor, Tensor, Option<Tensor>)> {
        let halve = |m: &Tensor| m.max_pool1d([2], [2], [0], [1], false);
        let (mut hs, mut masks, mut regions): (Vec<Tensor>, Vec<Tensor>, Vec<Option<Tensor>>) =
            (Vec::new(), Vec::new(), Vec::new());
        for (x, mask, r) in passes {
            hs.push(self.stem_conv.forward(&(x.narrow(1, 0, self.in_tracks) * &mask)));
            masks.push(mask);
            regions.push(r);
        }
        let positions: Vec<Positions> = masks.iter().map(|m| Positions::new(m.shallow_clone())).collect();
        let stem = self.stem_norm.forward_jointly(
            &hs.iter().collect::<Vec<_>>(),
            &positions.iter().collect::<Vec<_>>(),
            train,
        );
        (hs, masks) = stem.iter().zip(&masks).map(|(h, m)| masked_max_pool(h, m)).unzip();
        regions = regions.into_iter().map(|r| r.map(|r| halve(&r))).collect();
        for stage in &self.stages {
            let positions: Vec<Positions> = masks.iter().map(|m| Positions::new(m.shallow_clone())).collect();
            let positions: Vec<&Positions> = positions.iter().collect();
            for block in stage {
                hs = block.forward(&hs, &positions, train);
            }
            (hs, masks) = hs.iter().zip(&masks).map(|(h, m)| max_pool_after_relu(h, m)).unzip();
            regions = regions.into_iter().map(|r| r.map(|r| halve(&r))).collect();
        }
        (hs.into_iter().zip(masks).zip(regions))
            .map(|((h, m), r)| (h, m, r))
            .collect()
    }
}

/// One encoder pass's input for [`Encoder::forward_passes`].
#[derive(Debug)]
pub enum Pass<'a> {
    /// One sequence per line, `x` `[n, 6, L]` with real lengths `lengths` `[n]` (`i64`), pooled as `pooling` says.
    Padded {
        /// The tracks.
        x: &'a Tensor,
        /// Real lengths.
        lengths: &'a Tensor,
        /// How to pool.
        pooling: Pooling,
    },
    /// A packed pass, `x` `[lines, 6, L]` laid out as `layout` says; mean pooling.
    Packed {
        /// The tracks.
        x: &'a Tensor,
        /// Where the sequences lie.
        layout: &'a PackedLayout,
    },
}

/// Mean-pools the last stage `h` of a padded pass over its real positions `mask`, and over each of `regions`.
fn pool_padded(h: &Tensor, mask: &Tensor, regions: Option<&Tensor>) -> Tensor {
    let kind = accumulation_kind(h);
    let h = h.to_kind(kind);
    let mean_over = |m: &Tensor| {
        let count = m.sum_dim_intlist([2i64].as_slice(), false, kind).clamp_min(1.0);
        (&h * m).sum_dim_intlist([2i64].as_slice(), false, kind) / count
    };
    let whole = mean_over(mask);
    match regions {
        None => whole,
        Some(r) => {
            let mut parts = vec![whole];
            parts.extend((0..3).map(|k| mean_over(&r.narrow(1, k, 1))));
            Tensor::cat(&parts, 1)
        }
    }
}

/// Mean-pools the last stage `h` of a packed pass over each sequence's own span.
fn pool_packed(h: &Tensor, mask: &Tensor, layout: &PackedLayout) -> Tensor {
    // Sum each sequence's span of the last stage (h is zero outside spans) by its owner index; the
    // row past the last sequence collects the positions that belong to none.
    let (lines, channels, pooled_len) = h.size3().unwrap_or((0, 0, 0));
    let flat = |t: &Tensor, c: i64| t.permute([0, 2, 1]).reshape([lines * pooled_len, c]);
    let rows = layout.sequences + 1;
    let kind = accumulation_kind(h);
    let sums = Tensor::zeros([rows, channels], (kind, h.device())).index_add(
        0,
        &layout.owner,
        &flat(&(h.to_kind(kind) * mask), channels),
    );
    let counts =
        Tensor::zeros([rows, 1], (kind, h.device())).index_add(0, &layout.owner, &flat(&mask.to_kind(kind), 1));
    (sums / counts.clamp_min(1.0)).narrow(0, 0, layout.sequences)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Norm, Preset};

    /// Tracks `[2, 6, 32]`: row 0 coding with codon starts at 8, 11 and 14 (length 30), row 1 non-coding
    /// (length 20).
    fn two_rows() -> (Tensor, Tensor) {
        let mut tracks = vec![0f32; 2 * 6 * 32];
        for p in [8usize, 11, 14] {
            tracks[CODON_TRACK * 32 + p] = 1.0;
        }
        (
            Tensor::from_slice(&tracks).view([2, 6, 32]),
            Tensor::from_slice(&[30i64, 20]),
        )
    }

    /// 'Same' padding, by the convolution itself or by an explicit pad, equals padding the input by hand
    /// ((k−1)·d zeros, the floor half on the left) and convolving without padding.
    #[test]
    fn same_convolution_pads_floor_half_left_for_every_kernel_and_dilation() {
        let _generator = crate::model::lock_generator();
        tch::manual_seed(9);
        let x = Tensor::randn([2, 3, 20], (Kind::Float, tch::Device::Cpu));
        for (kernel, dilation) in [(2, 1), (2, 2), (2, 8), (3, 1), (3, 4), (4, 3), (1, 1), (5, 2)] {
            let vs = nn::VarStore::new(tch::Device::Cpu);
            let conv = SameConv::new(&vs.root(), 3, 4, kernel, dilation, true);
            let total = (kernel - 1) * dilation;
            let by_hand = x.constant_pad_nd([total / 2, total - total / 2]).conv1d(
                &conv.conv.ws,
                conv.conv.bs.as_ref(),
                [1],
                [0],
                [dilation],
                1,
            );
            let got = conv.forward(&x);
            assert_eq!(got.size(), vec![2, 4, 20], "k {kernel} d {dilation}");
            let diff = (&got - &by_hand).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "k {kernel} d {dilation}: {diff}");
        }
    }

    /// On what a block emits (the ReLU of something zero in padding; odd lengths, so windows straddle the
    /// end of a sequence; exact zeros among the real values) the short pool equals the masked one: the
    /// values, and the gradient through the ReLU (ReLU passes none at 0, so whatever the short pool sends
    /// to a padded position stops there, as in the encoder).
    #[test]
    fn pooling_after_relu_equals_the_masked_pool() {
        let _generator = crate::model::lock_generator();
        tch::manual_seed(5);
        let mask = Tensor::arange(16, (Kind::Int64, tch::Device::Cpu))
            .unsqueeze(0)
            .lt_tensor(&Tensor::from_slice(&[16i64, 9, 1]).unsqueeze(1))
            .unsqueeze(1)
            .to_kind(Kind::Float);
        let mut z = (Tensor::randn([3, 4, 16], (Kind::Float, tch::Device::Cpu)) * &mask).set_requires_grad(true);
        let weights = Tensor::randn([3, 4, 8], (Kind::Float, tch::Device::Cpu));
        let mut results = Vec::new();
        for pool in [masked_max_pool, max_pool_after_relu] {
            z.zero_grad();
            let (pooled, pooled_mask) = pool(&z.relu(), &mask);
            (&pooled * &weights).sum(Kind::Float).backward();
            results.push((pooled.detach(), pooled_mask, z.grad().copy()));
        }
        let (a, b) = (&results[0], &results[1]);
        assert!(a.0.equal(&b.0) && a.1.equal(&b.1), "values");
        assert!(a.2.equal(&b.2), "gradients");
        assert!(a.2.abs().sum(Kind::Float).double_value(&[]) > 0.0);
    }

    /// The fused CPU kernel of the masked pool gives the same values and gradients, bit for bit, as the
    /// composite (padding −∞ going in, windows of padding 0 after), in f32 and f64, for an odd length and
    /// masks with padding at the end, gaps inside (a packed line: windows whose real position is the
    /// second), windows of padding only, and ties.
    #[test]
    fn the_fused_masked_pool_equals_the_composite() {
        let _generator = crate::model::lock_generator();
        tch::manual_seed(13);
        let l = 15;
        // Each row's real positions as (start, end) spans.
        let pattern = |real: &[(i64, i64)]| {
            let mut row = vec![0f32; l as usize];
            real.iter().flat_map(|&(a, b)| a..b).for_each(|j| row[j as usize] = 1.0);
            row
        };
        let rows = [
            pattern(&[(0, 15)]),
            pattern(&[(0, 9)]),
            pattern(&[(0, 3), (5, 10), (13, 14)]),
            pattern(&[(1, 2), (7, 11)]),
        ];
        let mask = Tensor::from_slice(&rows.concat()).view([4, 1, l]);
        for kind in [Kind::Float, Kind::Double] {
            let cpu = (kind, tch::Device::Cpu);
            // Values rounded to halves, so that windows tie.
            let mut x = ((Tensor::randn([4, 3, l], cpu) * 2.0).round() / 2.0).set_requires_grad(true);
            let mask = mask.to_kind(kind);
            let upstream = Tensor::randn([4, 3, l / 2], cpu);
            let composite = |x: &Tensor| {
                let pooled_mask = mask.max_pool1d([2], [2], [0], [1], false);
                x.masked_fill(&mask.lt(0.5), f64::NEG_INFINITY)
                    .max_pool1d([2], [2], [0], [1], false)
                    .masked_fill(&pooled_mask.lt(0.5), 0.0)
            };
            let mut results = Vec::new();
            for fused in [true, false] {
                x.zero_grad();
                let pooled = if fused {
                    crate::device::masked_max_pool(&x, &mask).expect("fused pool on the CPU")
                } else {
                    composite(&x)
                };
                (&pooled * &upstream).sum(kind).backward();
                results.push((pooled.detach(), x.grad().copy()));
            }
            let ((fused, fused_grad), (want, want_grad)) = (&results[0], &results[1]);
            assert_eq!(fused.size(), vec![4, 3, 7]);
            assert!(fused.equal(want), "{kind:?} values");
            assert!(fused_grad.equal(want_grad), "{kind:?} gradients");
        }
        // A NaN wins its window, as in max_pool1d.
        let x = Tensor::from_slice(&[1.0f32, f32::NAN, 2.0, 3.0]).view([1, 1, 4]);
        let pooled = crate::device::masked_max_pool(&x, &Tensor::ones([1, 1, 4], (Kind::Float, tch::Device::Cpu)));
        let pooled = pooled.expect("fused pool");
        assert!(pooled.double_value(&[0, 0, 0]).is_nan() && pooled.double_value(&[0, 0, 1]) == 3.0);
    }

    #[test]
    fn region_masks_follow_the_codon_track() {
        let (x, lengths) = two_rows();
        let mask = Tensor::arange(32, (Kind::Int64, tch::Device::Cpu))
            .unsqueeze(0)
            .lt_tensor(&lengths.unsqueeze(1))
            .unsqueeze(1)
            .to_kind(Kind::Float);
        let r = region_masks(&x, &mask);
        let row = |i: i64, k: i64| Vec::<f32>::try_from(r.get(i).get(k)).unwrap();
        let expect = |range: std::ops::Range<usize>| (0..32).map(|p| f32::from(range.contains(&p))).collect::<Vec<_>>();
        assert_eq!(row(0, 0), expect(0..8), "5'UTR");
        assert_eq!(row(0, 1), expect(8..15), "CDS: first to last codon start");
        assert_eq!(row(0, 2), expect(15..30), "3'UTR, up to the real length");
        for k in 0..3 {
            assert_eq!(row(1, k), vec![0.0; 32], "a non-coding row has no regions");
        }
    }

    #[test]
    fn region_pooling_extends_the_mean_embedding() {
        let config = ModelConfig {
            preset: Preset::Tiny,
            norm: Norm::Layer,
            ..ModelConfig::default()
        };
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let encoder = Encoder::new(&vs.root(), &config);
        let (x, lengths) = two_rows();
        let mean = encoder.forward(&x, &lengths, false);
        let regions = encoder.forward_pooled(&x, &lengths, Pooling::Regions, false);
        let f = encoder.out_dim();
        assert_eq!(regions.size(), [2, 4 * f]);
        assert_eq!(Pooling::Regions.dim(f as usize), 4 * f as usize);
        // The first block is the whole-transcript mean; a non-coding row's region blocks are zero.
        let diff = (regions.narrow(1, 0, f) - &mean).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "{diff}");
        let region_blocks = |row: i64| {
            regions
                .get(row)
                .narrow(0, f, 3 * f)
                .abs()
                .sum(Kind::Float)
                .double_value(&[])
        };
        assert_eq!(region_blocks(1), 0.0);
        assert!(region_blocks(0) > 0.0);
    }
}
