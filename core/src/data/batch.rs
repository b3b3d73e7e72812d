//! Batch payloads as plain buffers: a step's 2N views encoded, augmented and cut into micro-batches
//! (encoder passes): length-sorted, each padded only to its own longest member, or packed several
//! sequences to a line ([`super::packing`]).
//!
//! Rows are numbered view-major: row `r < N` is view 1 of pair `r`, row `N + r` is view 2 of pair `r`.
//! Micro-batching changes only how the encoder's work is cut, never which rows form the loss.

pub use super::packing::{LENGTH_MULTIPLE, padded_length};
use super::packing::{Placement, plan_packed_passes};
use super::sampler::{Augment, Pair, Sampler};
use super::transcript::{TRACK_ONE, TRACKS, Transcript, UNKNOWN_VALUE};
use super::{DataError, Dataset, Result};

/// One encoder pass: `lines` lines of `padded_len` positions holding `rows.len()` sequences, one per line
/// at offset 0 unless the pass is packed.
#[derive(Debug, Clone, PartialEq)]
pub struct MicroBatch {
    /// Row of each sequence in the step's view-major order.
    pub rows: Vec<usize>,
    /// Real length of each sequence (shift included).
    pub lengths: Vec<u32>,
    /// Where each sequence lies: line `i` at offset 0 for sequence `i` unless packed.
    pub placements: Vec<Placement>,
    /// Lines of the pass: `rows.len()` unless packed.
    pub lines: usize,
    /// Positions per line; a multiple of [`LENGTH_MULTIPLE`].
    pub padded_len: usize,
    /// `[lines][TRACKS][padded_len]` row-major track values in [`TRACK_UNIT`](super::TRACK_UNIT)s (bytes), zero
    /// outside the sequences.
    pub tracks: Vec<u8>,
    /// The nucleotide under every masked position of a known base (A, C, G, T), ascending by line and
    /// position: the targets of the masked-nucleotide objective (`model.mlm_weight`).
    pub masked_bases: Vec<MaskedBase>,
}

/// A masked position of a pass and the base masking hid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaskedBase {
    /// Line of the pass.
    pub line: u32,
    /// Position in the line.
    pub position: u32,
    /// 0–3 for A, C, G, T.
    pub base: u8,
}

impl MicroBatch {
    /// True when some line holds more than one sequence.
    pub fn is_packed(&self) -> bool {
        self.lines != self.rows.len()
    }
}

/// How a step's sequences are cut into encoder passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassLayout {
    /// Positions per pass (lines × line length) at most; a longer sequence gets a pass of its own.
    pub position_budget: usize,
    /// Several sequences to a line, at least this many positions apart; `None`: one sequence per line, in
    /// length-sorted passes ([`plan_micro_batches`]).
    pub packing_gap: Option<usize>,
}

impl PassLayout {
    /// How `config` trains: passes of `train.positions_per_pass`, packed when the model uses batch norm and
    /// `train.packing` is set, or is unset and batch norm takes its statistics over the whole step.
    pub fn of(config: &crate::config::Config) -> Self {
        use crate::config::{BatchStatistics, Norm};
        let t = &config.train;
        let packs =
            config.model.norm == Norm::Batch && t.packing.unwrap_or(t.batch_statistics == BatchStatistics::Step);
        Self {
            position_budget: config.train.positions_per_pass,
            packing_gap: packs.then(|| config.model.shape().packing_gap()),
        }
    }

    /// One sequence per line, length-sorted passes of at most `position_budget` positions.
    pub fn one_per_line(position_budget: usize) -> Self {
        Self {
            position_budget,
            packing_gap: None,
        }
    }
}

/// Everything one training step needs on one process: its pairs and their encoded, micro-batched views.
#[derive(Debug, Clone)]
pub struct StepBatch {
    /// Global step counted from 0.
    pub step: u64,
    /// Index in the global batch of this batch's first pair (0 in one process).
    pub offset: usize,
    /// Pairs in the global batch (N); equals `pairs.len()` in one process.
    pub global_pairs: usize,
    /// This process's pairs in batch order.
    pub pairs: Vec<Pair>,
    /// Micro-batches covering rows `0..2N` exactly once, shortest first.
    pub micro: Vec<MicroBatch>,
}

impl StepBatch {
    /// Positions holding sequence, over all micro-batches.
    pub fn real_positions(&self) -> u64 {
        self.micro.iter().flat_map(|m| &m.lengths).map(|&l| u64::from(l)).sum()
    }

    /// Positions computed, padding included.
    pub fn padded_positions(&self) -> u64 {
        self.micro.iter().map(|m| (m.lines * m.padded_len) as u64).sum()
    }

    /// Fraction of computed positions that are padding.
    pub fn pad_fraction(&self) -> f64 {
        let padded = self.padded_positions();
        if padded == 0 {
            0.0
        } else {
            1.0 - self.real_positions() as f64 / padded as f64
        }
    }
}

/// What planning charges for each pass beyond its positions, as a fraction of the budget (1/4): a pass
/// has a fixed cost, mostly the host dispatching its ~1,000 kernels one by one, so a split must save more
/// padding than this to be worth it. Measured on an H100 (docs/PERFORMANCE.md, "GPU check"): a pass of
/// the `small` preset costs ~16 ms on top of ~0.09 ms per 1,000 positions, about a quarter of its default
/// budget's worth; 1/64 cut a length mix into 6 passes with 14 % padding and ran 40 % slower than 2.
const PASS_OVERHEAD_DIVISOR: usize = 4;

/// Splits rows with the given lengths into micro-batches of at most `position_budget` padded positions
/// (`count × padded_length(longest)`; a row longer than the budget gets a pass of its own).
///
/// Rows are sorted by length (ties by row) and cut into consecutive runs; of all such cuts this takes the
/// one with the fewest padded positions plus a per-pass overhead of `position_budget / 4` positions, by
/// dynamic programming (O(rows × rows per pass)). Packing greedily from the shortest row instead filled
/// the first pass up to the budget whatever the lengths it mixed.
/// Returns groups of row indices, shortest first.
pub fn plan_micro_batches(lengths: &[u32], position_budget: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&r| (lengths[r], r));
    let padded: Vec<usize> = order.iter().map(|&r| padded_length(lengths[r] as usize)).collect();
    let overhead = position_budget / PASS_OVERHEAD_DIVISOR;
    // cost[j]: the cheapest plan of the j shortest rows; cut[j]: where its last pass starts.
    let mut cost = vec![0usize; order.len() + 1];
    let mut cut = vec![0usize; order.len() + 1];
    for j in 1..=order.len() {
        let longest = padded[j - 1];
        cost[j] = usize::MAX;
        for i in (0..j).rev() {
            let positions = (j - i) * longest;
            if i + 1 < j && positions > position_budget {
                break;
            }
            let total = cost[i].saturating_add(positions + overhead);
            if total < cost[j] {
                (cost[j], cut[j]) = (total, i);
            }
        }
    }
    let mut plan = Vec::new();
    let mut j = order.len();
    while j > 0 {
        plan.push(order[cut[j]..j].to_vec());
        j = cut[j];
    }
    plan.reverse();
    plan
}

/// One view to encode: a transcript with its augmentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewSpec {
    /// The transcript (owned, so a shard travels without the dataset).
    pub transcript: Transcript,
    /// Zero positions prepended (the step's random shift).
    pub shift: u32,
    /// Masked positions in the shifted sequence's coordinates, ascending, all below `len + shift`.
    pub masked: Vec<u32>,
}

impl ViewSpec {
    /// `transcript` as it is: no shift, nothing masked (embedding, benchmarks, tests).
    pub fn plain(transcript: &Transcript) -> Self {
        Self {
            transcript: transcript.clone(),
            shift: 0,
            masked: Vec::new(),
        }
    }

    /// Real length including the shift.
    pub fn len(&self) -> u32 {
        self.transcript.len + self.shift
    }

    /// Always false: a view holds at least one nucleotide.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One process's share of a global step, self-contained: what a coordinator ships to a worker.
///
/// The global batch's N pairs are cut into `world_size` contiguous ranges of `N / world_size` pairs; this
/// shard holds range `rank`. Masks are drawn per global row, so a view is augmented identically whatever
/// the world size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// Global step counted from 0.
    pub step: u64,
    /// Index of the shard's first pair in the global batch.
    pub offset: usize,
    /// Pairs in the global batch (N).
    pub global_pairs: usize,
    /// This shard's pairs, in batch order.
    pub pairs: Vec<Pair>,
    /// `2 · pairs.len()` views, view-major: view 1 of every local pair, then view 2.
    pub views: Vec<ViewSpec>,
}

/// Plans shard `rank` of `world_size` of global step `global_step`: draws the pairs and augmentations.
///
/// Errors when the global batch does not split evenly or the group index refers to a missing transcript.
pub fn plan_shard(
    dataset: &Dataset,
    sampler: &Sampler,
    augment: &Augment,
    seed: u64,
    global_step: u64,
    rank: usize,
    world_size: usize,
) -> Result<Shard> {
    let all = sampler.pairs(&dataset.groups, global_step);
    let global_pairs = all.len();
    if world_size == 0 || rank >= world_size || !global_pairs.is_multiple_of(world_size) {
        return Err(DataError::Invalid {
            what: "train.batch_size".into(),
            why: format!("{global_pairs} groups per batch do not split into {world_size} equal shards (rank {rank})"),
        });
    }
    let n = global_pairs / world_size;
    let offset = rank * n;
    let pairs = all[offset..offset + n].to_vec();
    let shift = augment.shift(seed, global_step);
    let mut views = Vec::with_capacity(2 * n);
    for view in 0..2 {
        for (i, pair) in pairs.iter().enumerate() {
            let transcript = dataset
                .transcripts
                .get(pair.views[view] as usize)
                .ok_or_else(|| DataError::Invalid {
                    what: dataset.dir.display().to_string(),
                    why: format!("group index refers to missing transcript {}", pair.views[view]),
                })?;
            let row = (view * global_pairs + offset + i) as u64;
            let masked = augment.masked_positions(seed, global_step, row, transcript.len + shift);
            views.push(ViewSpec {
                transcript: transcript.clone(),
                shift,
                masked,
            });
        }
    }
    Ok(Shard {
        step: global_step,
        offset,
        global_pairs,
        pairs,
        views,
    })
}

/// Encodes `views` into one micro-batch holding the listed rows where `placements` say, in `lines` lines of
/// `padded_len` positions.
fn encode_micro_batch(
    rows: Vec<usize>,
    placements: Vec<Placement>,
    lines: usize,
    padded_len: usize,
    views: &[ViewSpec],
) -> MicroBatch {
    let lengths: Vec<u32> = rows.iter().map(|&r| views[r].len()).collect();
    let mut tracks = vec![0u8; lines * TRACKS * padded_len];
    let mut masked_bases = Vec::new();
    for (&r, place) in rows.iter().zip(&placements) {
        let view = &views[r];
        let line = place.line as usize;
        let offset = place.offset as usize;
        let sample = &mut tracks[line * TRACKS * padded_len..(line + 1) * TRACKS * padded_len];
        view.transcript
            .write_tracks(sample, padded_len, offset + view.shift as usize);
        for &p in &view.masked {
            let position = offset + p as usize;
            // A known base is one-hot in the first four tracks; shift padding and ambiguous letters are not.
            if let Some(base) = (0..4).find(|&t| sample[t * padded_len + position] == TRACK_ONE) {
                masked_bases.push(MaskedBase {
                    line: line as u32,
                    position: position as u32,
                    base: base as u8,
                });
            }
            for t in 0..TRACKS {
                sample[t * padded_len + position] = UNKNOWN_VALUE;
            }
        }
    }
    masked_bases.sort_unstable_by_key(|m| (m.line, m.position));
    MicroBatch {
        rows,
        lengths,
        placements,
        lines,
        padded_len,
        tracks,
        masked_bases,
    }
}

/// Encodes views into micro-batches as `layout` says; rows are numbered in the order given.
pub fn encode_views(views: &[ViewSpec], layout: PassLayout) -> Vec<MicroBatch> {
    let lengths: Vec<u32> = views.iter().map(ViewSpec::len).collect();
    match layout.packing_gap {
        None => plan_micro_batches(&lengths, layout.position_budget)
            .into_iter()
            .map(|rows| {
                let padded_len = padded_length(rows.iter().map(|&r| lengths[r]).max().unwrap_or(1) as usize);
                let placements = (0..rows.len() as u32)
                    .map(|line| Placement { line, offset: 0 })
                    .collect();
                let lines = rows.len();
                encode_micro_batch(rows, placements, lines, padded_len, views)
            })
            .collect(),
        Some(gap) => plan_packed_passes(&lengths, gap, layout.position_budget)
            .into_iter()
            .map(|pass| encode_micro_batch(pass.rows, pass.placements, pass.lines, pass.line_len, views))
            .collect(),
    }
}

impl Shard {
    /// Encodes the shard's views into a [`StepBatch`] of micro-batches laid out as `layout` says.
    pub fn encode(&self, layout: PassLayout) -> StepBatch {
        StepBatch {
            step: self.step,
            offset: self.offset,
            global_pairs: self.global_pairs,
            pairs: self.pairs.clone(),
            micro: encode_views(&self.views, layout),
        }
    }
}

/// Builds the whole of global step `global_step` for one process: [`plan_shard`] with one shard, encoded.
pub fn build_step(
    dataset: &Dataset,
    sampler: &Sampler,
    augment: &Augment,
    seed: u64,
    global_step: u64,
    layout: PassLayout,
) -> Result<StepBatch> {
    Ok(plan_shard(dataset, sampler, augment, seed, global_step, 0, 1)?.encode(layout))
}

/// Encodes transcripts without augmentation, for embedding: length-sorted micro-batches, one sequence per
/// line (region pooling needs that), rows numbered in the order given.
pub fn encode_for_embedding(transcripts: &[&Transcript], position_budget: usize) -> Vec<MicroBatch> {
    let views: Vec<ViewSpec> = transcripts.iter().map(|&t| ViewSpec::plain(t)).collect();
    encode_views(&views, PassLayout::one_per_line(position_budget))
}

/// `n` lengths drawn log-normally between 300 and 12,288 (median near 3 kb), as human mRNAs: a step's
/// realistic mix, for the planners' tests.
#[cfg(test)]
pub(crate) fn mrna_like_lengths(seed: u64, n: usize) -> Vec<u32> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            // A sum of 12 uniforms less 6 is close to a standard normal.
            let z: f64 = (0..12).map(|_| rng.random::<f64>()).sum::<f64>() - 6.0;
            (2900.0 * (0.6 * z).exp()).clamp(300.0, 12_288.0) as u32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Group;
    use crate::data::TRACK_UNIT;
    use crate::data::dataset::Provenance;
    use rand::{Rng, SeedableRng};

    /// Packing by default exactly where it changes nothing but the time: batch norm with step-wide
    /// statistics. An explicit setting wins; group and layer norm never pack.
    #[test]
    fn passes_are_packed_by_default_only_with_step_wide_batch_statistics() {
        let packs = |sets: &[&str]| {
            let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            let config = crate::config::Config::load(None, &sets).unwrap();
            PassLayout::of(&config).packing_gap.is_some()
        };
        let step = "train.batch_statistics=\"step\"";
        assert!(!packs(&[]), "per-pass statistics (the default): one sequence per line");
        assert!(packs(&[step]));
        assert!(!packs(&[step, "train.packing=false"]));
        assert!(packs(&["train.packing=true"]));
        assert!(!packs(&["train.packing=true", "model.norm=\"layer\""]));
        assert!(!packs(&["model.norm=\"group\""]));
    }

    #[test]
    fn plan_sorts_by_length_and_respects_the_budget() {
        let lengths = [100, 5000, 40, 3000, 33, 64];
        let plan = plan_micro_batches(&lengths, 200);
        assert_eq!(plan, vec![vec![4, 2, 5], vec![0], vec![3], vec![1]]);
        let all: Vec<usize> = plan.concat();
        assert_eq!(all.len(), lengths.len());
        // A budget that holds every row: one pass pads the four short rows to 5,024 (20,096 positions more),
        // less than a second pass is charged (2^20 / 4); at a budget of 2^16 the split is worth it.
        let big = plan_micro_batches(&lengths, 1 << 20);
        assert_eq!(big, vec![vec![4, 2, 5, 0, 3, 1]]);
        assert_eq!(
            plan_micro_batches(&lengths, 1 << 16),
            vec![vec![4, 2, 5, 0], vec![3, 1]]
        );
    }

    /// Padded positions plus the per-pass overhead: what the planner minimises.
    fn plan_cost(plan: &[Vec<usize>], lengths: &[u32], budget: usize) -> usize {
        plan.iter()
            .map(|pass| {
                let longest = pass.iter().map(|&r| padded_length(lengths[r] as usize)).max().unwrap();
                pass.len() * longest + budget / PASS_OVERHEAD_DIVISOR
            })
            .sum()
    }

    /// Against every way of cutting the sorted rows into consecutive passes (2^(n-1) of them), on random
    /// lengths: the plan is within budget, covers each row once, and is the cheapest.
    #[test]
    fn plan_is_the_cheapest_cut_of_the_sorted_rows() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for case in 0..300 {
            let n = 1 + case % 9;
            let lengths: Vec<u32> = (0..n)
                .map(|_| {
                    if rng.random_bool(0.2) {
                        rng.random_range(1..4000)
                    } else {
                        rng.random_range(1..600)
                    }
                })
                .collect();
            let budget = [256, 1024, 4096][case % 3];
            let plan = plan_micro_batches(&lengths, budget);
            let mut rows: Vec<usize> = plan.concat();
            rows.sort();
            assert_eq!(rows, (0..n).collect::<Vec<_>>());
            for pass in &plan {
                let longest = pass.iter().map(|&r| padded_length(lengths[r] as usize)).max().unwrap();
                assert!(
                    pass.len() == 1 || pass.len() * longest <= budget,
                    "{lengths:?} {plan:?}"
                );
            }
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by_key(|&r| (lengths[r], r));
            let best = (0..1u32 << (n - 1))
                .map(|cuts| {
                    let mut passes = vec![vec![order[0]]];
                    for (k, &row) in order.iter().enumerate().skip(1) {
                        if cuts & (1 << (k - 1)) != 0 {
                            passes.push(Vec::new());
                        }
                        passes.last_mut().unwrap().push(row);
                    }
                    passes
                })
                .filter(|passes| {
                    passes.iter().all(|p| {
                        let longest = p.iter().map(|&r| padded_length(lengths[r] as usize)).max().unwrap();
                        p.len() == 1 || p.len() * longest <= budget
                    })
                })
                .map(|passes| plan_cost(&passes, &lengths, budget))
                .min()
                .unwrap();
            assert_eq!(
                plan_cost(&plan, &lengths, budget),
                best,
                "{lengths:?} budget {budget}: {plan:?}"
            );
        }
    }

    /// A realistic spread of lengths in one step: less padding than packing greedily from the shortest
    /// row (which filled one pass with everything up to the budget), in no more passes.
    #[test]
    fn plan_pads_a_length_mix_less_than_greedy_packing() {
        let lengths = mrna_like_lengths(3, 128);
        let budget = 64 * 12_288;
        let real: usize = lengths.iter().map(|&l| l as usize).sum();
        let padded = |plan: &[Vec<usize>]| -> usize {
            plan.iter()
                .map(|p| p.len() * p.iter().map(|&r| padded_length(lengths[r] as usize)).max().unwrap())
                .sum()
        };
        let plan = plan_micro_batches(&lengths, budget);
        // The old greedy packing, for comparison.
        let mut order: Vec<usize> = (0..lengths.len()).collect();
        order.sort_by_key(|&r| (lengths[r], r));
        let mut greedy: Vec<Vec<usize>> = vec![Vec::new()];
        for r in order {
            let longest = padded_length(lengths[r] as usize);
            if (greedy.last().unwrap().len() + 1) * longest > budget {
                greedy.push(Vec::new());
            }
            greedy.last_mut().unwrap().push(r);
        }
        let (ours, theirs) = (padded(&plan) as f64 / real as f64, padded(&greedy) as f64 / real as f64);
        let counts = (plan.len(), greedy.len());
        assert!(
            ours < 0.85 * theirs && counts.0 <= counts.1,
            "padded/real: plan {ours:.2}, greedy {theirs:.2}; passes {counts:?}"
        );
    }

    #[test]
    fn step_covers_every_row_once_with_masks_and_shift() {
        let dir = tempfile::tempdir().unwrap();
        let seqs: [&[u8]; 4] = [
            b"ACGTACGTAC",
            b"ACGTAC",
            b"GGGGGGGGGGGGGGGGGGGG",
            b"TTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTT",
        ];
        let transcripts: Vec<Transcript> = seqs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                Transcript::new(
                    format!("t{i}"),
                    format!("g{}", i / 2),
                    (i / 2) as u32,
                    s,
                    vec![s.len() as u32 - 1],
                    None,
                )
                .unwrap()
            })
            .collect();
        let groups = vec![
            Group {
                id: "g0".into(),
                transcripts: vec![0, 1],
            },
            Group {
                id: "g1".into(),
                transcripts: vec![2, 3],
            },
        ];
        Dataset::write(dir.path(), &groups, &transcripts, Provenance::default()).unwrap();
        let ds = Dataset::open(dir.path()).unwrap();
        let sampler = Sampler::new(5, 2, 2).unwrap();
        let augment = Augment {
            mask_fraction: 0.15,
            max_shift: 3,
            max_len: 64,
        };
        let shift = augment.shift(5, 4);
        let packed = PassLayout {
            position_budget: 256,
            packing_gap: Some(2),
        };
        for (layout, budget) in [(PassLayout::one_per_line(64), 64), (packed, 256)] {
            let step = build_step(&ds, &sampler, &augment, 5, 4, layout).unwrap();
            assert!(
                step.micro.iter().any(|m| !m.masked_bases.is_empty()),
                "something is masked"
            );
            let mut rows: Vec<usize> = step.micro.iter().flat_map(|m| m.rows.clone()).collect();
            rows.sort();
            assert_eq!(rows, vec![0, 1, 2, 3]);
            for m in &step.micro {
                // The masked-nucleotide targets: every masked position past the shift, with the base it hid.
                let mut expected = Vec::new();
                for (i, &r) in m.rows.iter().enumerate() {
                    let t = &ds.transcripts[step.pairs[r % 2].views[r / 2] as usize];
                    let bases = t.sequence();
                    let (line, offset) = (m.placements[i].line, m.placements[i].offset);
                    for p in augment.masked_positions(5, 4, r as u64, t.len + shift) {
                        if p >= shift {
                            let base = b"ACGT".iter().position(|&b| b == bases[(p - shift) as usize]).unwrap();
                            expected.push(MaskedBase {
                                line,
                                position: offset + p,
                                base: base as u8,
                            });
                        }
                    }
                }
                expected.sort_unstable_by_key(|m| (m.line, m.position));
                assert_eq!(m.masked_bases, expected);
                assert!(m.lines * m.padded_len <= budget || m.lines == 1);
                assert_eq!(m.tracks.len(), m.lines * 6 * m.padded_len);
                // Each line's positions outside its sequences must be zero: count what the sequences cover.
                let mut covered = vec![false; m.lines * m.padded_len];
                for (i, &r) in m.rows.iter().enumerate() {
                    let pair = step.pairs[r % 2];
                    let t = &ds.transcripts[pair.views[r / 2] as usize];
                    assert_eq!(m.lengths[i], t.len + shift);
                    let (line, offset) = (m.placements[i].line as usize, m.placements[i].offset as usize);
                    let sample = &m.tracks[line * 6 * m.padded_len..(line + 1) * 6 * m.padded_len];
                    let masked = augment.masked_positions(5, 4, r as u64, t.len + shift);
                    for p in 0..(t.len + shift) as usize {
                        covered[line * m.padded_len + offset + p] = true;
                        let col: Vec<f32> = (0..6)
                            .map(|c| f32::from(sample[c * m.padded_len + offset + p]) * TRACK_UNIT)
                            .collect();
                        if masked.contains(&(p as u32)) {
                            assert_eq!(col, vec![0.25; 6]);
                        } else if p < shift as usize {
                            assert_eq!(col, vec![0.0; 6], "the shift prefix is zero");
                        } else {
                            assert_eq!(col.iter().take(4).sum::<f32>(), 1.0);
                        }
                    }
                }
                for (k, _) in covered.iter().enumerate().filter(|(_, c)| !**c) {
                    let (line, p) = (k / m.padded_len, k % m.padded_len);
                    let sample = &m.tracks[line * 6 * m.padded_len..(line + 1) * 6 * m.padded_len];
                    assert!(
                        (0..6).all(|c| sample[c * m.padded_len + p] == 0),
                        "padding at {line}:{p}"
                    );
                }
            }
            assert!(step.pad_fraction() >= 0.0 && step.pad_fraction() < 1.0);
            let again = build_step(&ds, &sampler, &augment, 5, 4, layout).unwrap();
            assert_eq!(again.micro, step.micro, "a step is a pure function of (seed, step)");
            if layout.packing_gap.is_some() {
                assert!(step.micro.iter().any(MicroBatch::is_packed), "{:?}", step.micro);
            }
        }
    }

    #[test]
    fn shards_partition_the_global_step_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let transcripts: Vec<Transcript> = (0..12)
            .map(|i| {
                let seq: Vec<u8> = (0..20 + 7 * i).map(|p| b"ACGT"[(p * (i + 1)) % 4]).collect();
                Transcript::new(
                    format!("t{i}"),
                    format!("g{}", i / 2),
                    (i / 2) as u32,
                    &seq,
                    vec![seq.len() as u32 - 1],
                    None,
                )
                .unwrap()
            })
            .collect();
        let groups: Vec<Group> = (0..6)
            .map(|g| Group {
                id: format!("g{g}"),
                transcripts: vec![2 * g, 2 * g + 1],
            })
            .collect();
        Dataset::write(dir.path(), &groups, &transcripts, Provenance::default()).unwrap();
        let ds = Dataset::open(dir.path()).unwrap();
        let sampler = Sampler::new(9, 6, 6).unwrap();
        let augment = Augment {
            mask_fraction: 0.15,
            max_shift: 3,
            max_len: 128,
        };
        let whole = plan_shard(&ds, &sampler, &augment, 9, 3, 0, 1).unwrap();
        for world in [2, 3] {
            let n = 6 / world;
            for rank in 0..world {
                let shard = plan_shard(&ds, &sampler, &augment, 9, 3, rank, world).unwrap();
                assert_eq!(shard.offset, rank * n);
                assert_eq!(shard.pairs, whole.pairs[rank * n..(rank + 1) * n]);
                for view in 0..2 {
                    for i in 0..n {
                        assert_eq!(shard.views[view * n + i], whole.views[view * 6 + rank * n + i]);
                    }
                }
            }
        }
        assert!(
            plan_shard(&ds, &sampler, &augment, 9, 3, 0, 4).is_err(),
            "6 pairs do not split in 4"
        );
    }
}
