//! The contrastive sampler: which groups and transcripts form a step's global batch, and the
//! augmentations applied to them — a pure function of (seed, epoch, step, global batch size).
//!
//! Purity is what lets a coordinator hand out any step's batch (or one worker's shard of it) and lets a
//! resumed run replay exactly: nothing here keeps state between steps.

use rand::seq::index;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{DataError, Group, Result};

/// Domain tags keep the random streams of different purposes independent.
const PERMUTATION: u64 = 0x7065_726d;
const PAIR: u64 = 0x7061_6972;
const SHIFT: u64 = 0x7368_6966;
const MASK: u64 = 0x6d61_736b;

/// SplitMix64 finaliser: a well-mixed 64-bit hash of one word.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A generator seeded by a tuple of words (seed, purpose, epoch, step, ...).
pub fn rng_for(words: &[u64]) -> ChaCha8Rng {
    let h = words.iter().fold(0x243f_6a88_85a3_08d3_u64, |h, &w| mix(h ^ mix(w)));
    ChaCha8Rng::seed_from_u64(h)
}

/// One element of a global batch: a group and the two transcripts drawn as its views.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair {
    /// Group index.
    pub group: u32,
    /// Transcript indices of view 1 and view 2 (equal when the group has one transcript).
    pub views: [u32; 2],
    /// Number of transcripts in the group (`n_i` of the positive-pair weight).
    pub group_size: u32,
}

/// Draws global batches of groups: every epoch is a seeded permutation of all groups cut into batches of
/// `batch_size`, dropping the remainder, so a group appears at most once per batch.
///
/// A corpus of several datasets is drawn as several such streams at once ([`Sampler::mixed`]): each batch
/// takes a fixed number of groups from each stream (its quota, from the weights), and each stream runs
/// through its own epochs at its own pace, so a small dataset is revisited more often than a large one.
#[derive(Debug, Clone)]
pub struct Sampler {
    seed: u64,
    batch_size: usize,
    streams: Vec<Stream>,
}

/// One set of groups drawn from, with its share of every batch.
#[derive(Debug, Clone)]
struct Stream {
    groups: Vec<u32>,
    quota: usize,
}

impl Sampler {
    /// A sampler over all `group_count` groups. Errors when the batch is smaller than 2 or larger than the
    /// number of groups (a batch needs distinct groups).
    pub fn new(seed: u64, batch_size: usize, group_count: usize) -> Result<Self> {
        Self::over(seed, batch_size, (0..group_count as u32).collect())
    }

    /// A sampler over the listed groups only (held-out groups left out, or only those).
    pub fn over(seed: u64, batch_size: usize, groups: Vec<u32>) -> Result<Self> {
        if batch_size < 2 || batch_size > groups.len() {
            return Err(DataError::Invalid {
                what: "train.batch_size".into(),
                why: format!(
                    "must be between 2 and the dataset's number of homology groups ({}), got \
                     {batch_size} (every group of a batch is a distinct gene family): set a smaller \
                     train.batch_size, or use a larger dataset",
                    groups.len()
                ),
            });
        }
        Ok(Self {
            seed,
            batch_size,
            streams: vec![Stream {
                groups,
                quota: batch_size,
            }],
        })
    }

    /// A sampler that fills every batch from several sets of groups (`(name, groups, weight)`, e.g. the
    /// datasets of a corpus) in proportion to their weights: each set's quota per batch is its share of
    /// `batch_size`, rounded by largest remainder, at least 1. Errors when a weight is not positive and
    /// finite, or when a set has fewer groups than its quota.
    pub fn mixed(seed: u64, batch_size: usize, sets: Vec<(String, Vec<u32>, f64)>) -> Result<Self> {
        if sets.len() == 1 {
            let (_, groups, _) = sets.into_iter().next().unwrap_or_default();
            return Self::over(seed, batch_size, groups);
        }
        let total: f64 = sets.iter().map(|(_, _, w)| w).sum();
        if let Some((name, _, w)) = sets.iter().find(|(_, _, w)| !(w.is_finite() && *w > 0.0)) {
            return Err(DataError::Invalid {
                what: "data.weights".into(),
                why: format!("the weight of dataset {name} must be positive and finite, got {w}"),
            });
        }
        if batch_size < sets.len().max(2) {
            return Err(DataError::Invalid {
                what: "train.batch_size".into(),
                why: format!(
                    "{batch_size} is too small to draw from {} datasets: every batch takes at least one group of each",
                    sets.len()
                ),
            });
        }
        let quotas = largest_remainder(batch_size, &sets.iter().map(|(_, _, w)| w / total).collect::<Vec<_>>());
        let mut streams = Vec::with_capacity(sets.len());
        for ((name, groups, _), quota) in sets.into_iter().zip(quotas) {
            if quota > groups.len() {
                return Err(DataError::Invalid {
                    what: "train.batch_size".into(),
                    why: format!(
                        "dataset {name} has {} groups but its weight asks for {quota} of every batch of \
                         {batch_size}: lower its weight or train.batch_size",
                        groups.len()
                    ),
                });
            }
            streams.push(Stream { groups, quota });
        }
        Ok(Self {
            seed,
            batch_size,
            streams,
        })
    }

    /// Groups per global batch.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Groups each set contributes to every batch, in the order given to [`Sampler::mixed`].
    pub fn quotas(&self) -> Vec<usize> {
        self.streams.iter().map(|s| s.quota).collect()
    }

    /// Whole batches per epoch: the groups drawn from, over the batch size (the remainder is dropped). With
    /// several sets this is the steps that draw as many groups as all sets hold, the schedule's epoch.
    pub fn steps_per_epoch(&self) -> u64 {
        let groups: usize = self.streams.iter().map(|s| s.groups.len()).sum();
        ((groups / self.batch_size) as u64).max(1)
    }

    /// Epoch and step within it of a global step counted from 0.
    pub fn position(&self, global_step: u64) -> (u64, u64) {
        let per = self.steps_per_epoch();
        (global_step / per, global_step % per)
    }

    /// The pairs of global step `global_step`, in batch order (with several sets, each set's groups
    /// together, in the order of the sets).
    ///
    /// Each pair's two transcripts are distinct whenever its group has two or more, drawn uniformly.
    pub fn pairs(&self, groups: &[Group], global_step: u64) -> Vec<Pair> {
        let mut pairs = Vec::with_capacity(self.batch_size);
        for (set, stream) in self.streams.iter().enumerate() {
            // The first set keeps the random streams of a one-dataset sampler, so adding the mixing changed
            // no existing run; the others are told apart by their index.
            let tag = |words: &[u64]| -> Vec<u64> {
                let mut all = vec![self.seed];
                if set > 0 {
                    all.push(set as u64);
                }
                all.extend_from_slice(words);
                all
            };
            let per_epoch = (stream.groups.len() / stream.quota) as u64;
            let (epoch, step) = (global_step / per_epoch, global_step % per_epoch);
            // The permutation is recomputed per call (O(groups), ~1 ms for 230 k groups) to stay stateless.
            let mut order = stream.groups.clone();
            let mut rng = rng_for(&tag(&[PERMUTATION, epoch]));
            for i in (1..order.len()).rev() {
                let j = rng.random_range(0..=i);
                order.swap(i, j);
            }
            let start = step as usize * stream.quota;
            for &g in &order[start..start + stream.quota] {
                let slot = pairs.len() as u64;
                let members = &groups[g as usize].transcripts;
                let mut rng = rng_for(&tag(&[PAIR, epoch, step, slot]));
                let views = if members.len() >= 2 {
                    let picked = index::sample(&mut rng, members.len(), 2);
                    [members[picked.index(0)], members[picked.index(1)]]
                } else {
                    [members[0], members[0]]
                };
                pairs.push(Pair {
                    group: g,
                    views,
                    group_size: members.len() as u32,
                });
            }
        }
        pairs
    }
}

/// Splits `total` into integer parts proportional to `shares` (summing to 1), each at least 1, by largest
/// remainder (ties to the earlier share). Needs `total >= shares.len()`.
fn largest_remainder(total: usize, shares: &[f64]) -> Vec<usize> {
    let exact: Vec<f64> = shares.iter().map(|s| s * total as f64).collect();
    let mut parts: Vec<usize> = exact.iter().map(|e| (e.floor() as usize).max(1)).collect();
    let mut by_remainder: Vec<usize> = (0..shares.len()).collect();
    by_remainder.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())));
    let mut assigned: usize = parts.iter().sum();
    for &i in by_remainder.iter().cycle() {
        if assigned >= total {
            break;
        }
        parts[i] += 1;
        assigned += 1;
    }
    // Parts raised to 1 may overshoot: take back from the largest.
    while assigned > total {
        let Some((largest, _)) = parts
            .iter()
            .enumerate()
            .filter(|(_, p)| **p > 1)
            .max_by_key(|(i, p)| (**p, usize::MAX - i))
        else {
            break;
        };
        parts[largest] -= 1;
        assigned -= 1;
    }
    parts
}

/// Training augmentations (METHOD.md): masking a fraction of positions and one random right shift per batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Augment {
    /// Fraction of the padded length (`max_len`) masked per view; 0 disables masking.
    pub mask_fraction: f64,
    /// Largest right shift in positions (inclusive); 0 disables shifting.
    pub max_shift: u32,
    /// The padded length masking positions are drawn over (12,288 by default).
    pub max_len: u32,
}

impl Augment {
    /// No augmentation: what evaluation and embedding use.
    pub const NONE: Augment = Augment {
        mask_fraction: 0.0,
        max_shift: 0,
        max_len: 0,
    };

    /// The right shift of a whole step, in `0..=max_shift`.
    pub fn shift(&self, seed: u64, global_step: u64) -> u32 {
        if self.max_shift == 0 {
            return 0;
        }
        rng_for(&[seed, SHIFT, global_step]).random_range(0..=self.max_shift)
    }

    /// Masked positions of one view (ascending, in the shifted sequence's coordinates), keeping only those
    /// below `len`: positions are drawn uniformly over `max_len` as in IsoCLR, and the ones that fall in
    /// padding have no effect because padding is zero everywhere in the model.
    pub fn masked_positions(&self, seed: u64, global_step: u64, row: u64, len: u32) -> Vec<u32> {
        let count = (self.mask_fraction * f64::from(self.max_len)).round() as usize;
        if count == 0 {
            return Vec::new();
        }
        let mut rng = rng_for(&[seed, MASK, global_step, row]);
        let mut positions: Vec<u32> = index::sample(&mut rng, self.max_len as usize, count.min(self.max_len as usize))
            .into_iter()
            .map(|p| p as u32)
            .filter(|&p| p < len)
            .collect();
        positions.sort_unstable();
        positions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(sizes: &[usize]) -> Vec<Group> {
        let mut next = 0;
        sizes
            .iter()
            .enumerate()
            .map(|(g, &n)| {
                let transcripts = (next..next + n as u32).collect();
                next += n as u32;
                Group {
                    id: format!("g{g}"),
                    transcripts,
                }
            })
            .collect()
    }

    #[test]
    fn batches_are_pure_distinct_and_cover_each_epoch_once() {
        let gs = groups(&[1, 2, 3, 1, 5, 2, 2, 1, 4, 3, 1]);
        let s = Sampler::new(7, 3, gs.len()).unwrap();
        assert_eq!(s.steps_per_epoch(), 3);
        let mut seen = std::collections::HashSet::new();
        for step in 0..3 {
            let b = s.pairs(&gs, step);
            assert_eq!(b, s.pairs(&gs, step), "same inputs, same batch");
            assert_eq!(b, Sampler::new(7, 3, gs.len()).unwrap().pairs(&gs, step));
            for p in &b {
                assert!(seen.insert(p.group), "group {} twice in an epoch", p.group);
                let members = &gs[p.group as usize].transcripts;
                assert!(members.contains(&p.views[0]) && members.contains(&p.views[1]));
                assert_eq!(members.len() >= 2, p.views[0] != p.views[1]);
                assert_eq!(p.group_size as usize, members.len());
            }
        }
        assert_eq!(seen.len(), 9, "remainder of 2 groups dropped");
        assert_ne!(s.pairs(&gs, 0), s.pairs(&gs, 3), "next epoch reshuffles");
        assert_ne!(s.pairs(&gs, 0), Sampler::new(8, 3, gs.len()).unwrap().pairs(&gs, 0));
    }

    #[test]
    fn views_are_uniform_over_distinct_transcripts() {
        let gs = groups(&[3, 1]);
        let s = Sampler::new(1, 2, 2).unwrap();
        let mut counts = std::collections::HashMap::new();
        for step in 0..3000 {
            let p = s.pairs(&gs, step).into_iter().find(|p| p.group == 0).unwrap();
            *counts.entry(p.views).or_insert(0) += 1;
        }
        assert_eq!(
            counts.len(),
            6,
            "all ordered pairs of 3 distinct transcripts: {counts:?}"
        );
        for &c in counts.values() {
            assert!((400..600).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn mixed_batches_keep_quotas_purity_and_each_sets_epochs() {
        // Set A: groups 0..20, set B: groups 20..26; weights 3:1 of a batch of 8 -> quotas 6 and 2.
        let gs = groups(&[1; 26]);
        let a: Vec<u32> = (0..20).collect();
        let b: Vec<u32> = (20..26).collect();
        let s = Sampler::mixed(5, 8, vec![("a".into(), a.clone(), 3.0), ("b".into(), b.clone(), 1.0)]).unwrap();
        assert_eq!(s.quotas(), [6, 2]);
        assert_eq!(s.steps_per_epoch(), 3);
        let mut from_b = std::collections::HashMap::new();
        for step in 0..300 {
            let batch = s.pairs(&gs, step);
            assert_eq!(batch, s.pairs(&gs, step), "pure");
            let ids: std::collections::HashSet<u32> = batch.iter().map(|p| p.group).collect();
            assert_eq!(ids.len(), 8, "distinct groups in a batch");
            assert!(batch[..6].iter().all(|p| a.contains(&p.group)));
            assert!(batch[6..].iter().all(|p| b.contains(&p.group)));
            for p in &batch[6..] {
                *from_b.entry(p.group).or_insert(0) += 1;
            }
        }
        // B's 6 groups make 3 batches of 2 per epoch of B: every group once per B epoch, 100 epochs.
        assert!(from_b.values().all(|&n| n == 100), "{from_b:?}");
        let again = Sampler::mixed(5, 8, vec![("a".into(), a, 3.0), ("b".into(), b, 1.0)]).unwrap();
        assert_eq!(
            again.pairs(&gs, 123),
            s.pairs(&gs, 123),
            "a resumed run draws the same batch"
        );
    }

    #[test]
    fn one_set_is_the_plain_sampler_and_bad_mixes_are_refused() {
        let gs = groups(&[2, 1, 3, 1, 2, 2]);
        let plain = Sampler::new(3, 3, 6).unwrap();
        let one = Sampler::mixed(3, 3, vec![("x".into(), (0..6).collect(), 7.0)]).unwrap();
        for step in 0..5 {
            assert_eq!(plain.pairs(&gs, step), one.pairs(&gs, step));
        }
        let sets = |wa: f64, wb: f64, nb: u32| {
            vec![
                ("a".to_owned(), (0..4).collect(), wa),
                ("b".to_owned(), (4..4 + nb).collect(), wb),
            ]
        };
        let err = Sampler::mixed(0, 4, sets(1.0, 0.0, 2)).unwrap_err().to_string();
        assert!(err.contains("weight of dataset b must be positive"), "{err}");
        let err = Sampler::mixed(0, 4, sets(1.0, 3.0, 2)).unwrap_err().to_string();
        assert!(
            err.contains("dataset b has 2 groups but its weight asks for 3"),
            "{err}"
        );
        assert!(Sampler::mixed(0, 1, sets(1.0, 1.0, 2)).is_err());
    }

    #[test]
    fn quotas_follow_the_weights_and_sum_to_the_batch() {
        assert_eq!(largest_remainder(10, &[0.5, 0.3, 0.2]), [5, 3, 2]);
        assert_eq!(largest_remainder(10, &[0.55, 0.45]), [6, 4]);
        assert_eq!(largest_remainder(4, &[0.97, 0.01, 0.01, 0.01]), [1, 1, 1, 1]);
        assert_eq!(largest_remainder(5, &[0.98, 0.01, 0.01]), [3, 1, 1]);
        for total in 3..50 {
            assert_eq!(largest_remainder(total, &[0.6, 0.3, 0.1]).iter().sum::<usize>(), total);
        }
    }

    #[test]
    fn rejects_impossible_batch_sizes() {
        assert!(Sampler::new(0, 5, 4).is_err());
        assert!(Sampler::new(0, 1, 4).is_err());
    }

    #[test]
    fn masking_and_shift_follow_the_method() {
        let a = Augment {
            mask_fraction: 0.15,
            max_shift: 3,
            max_len: 12_288,
        };
        let full = a.masked_positions(3, 10, 0, 12_288);
        assert_eq!(full.len(), 1843);
        assert!(full.windows(2).all(|w| w[0] < w[1]));
        let short = a.masked_positions(3, 10, 0, 1000);
        assert_eq!(short, full.iter().copied().filter(|&p| p < 1000).collect::<Vec<_>>());
        assert_ne!(full, a.masked_positions(3, 10, 1, 12_288));
        let shifts: std::collections::HashSet<u32> = (0..200).map(|s| a.shift(1, s)).collect();
        assert_eq!(shifts, (0..=3).collect());
        assert!(Augment::NONE.masked_positions(3, 10, 0, 500).is_empty());
        assert_eq!(Augment::NONE.shift(3, 10), 0);
    }
}
