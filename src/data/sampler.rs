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
#[derive(Debug, Clone)]
pub struct Sampler {
    seed: u64,
    batch_size: usize,
    group_count: usize,
}

impl Sampler {
    /// A sampler over `group_count` groups. Errors when the batch is empty or larger than the number of
    /// groups (a batch needs distinct groups).
    pub fn new(seed: u64, batch_size: usize, group_count: usize) -> Result<Self> {
        if batch_size < 2 || batch_size > group_count {
            return Err(DataError::Invalid {
                what: "train.batch_size".into(),
                why: format!(
                    "must be between 2 and the dataset's number of homology groups ({group_count}), got \
                     {batch_size} (every group of a batch is a distinct gene family): set a smaller \
                     train.batch_size, or use a larger dataset"
                ),
            });
        }
        Ok(Self {
            seed,
            batch_size,
            group_count,
        })
    }

    /// Groups per global batch.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Whole batches per epoch (the remainder of the permutation is dropped).
    pub fn steps_per_epoch(&self) -> u64 {
        (self.group_count / self.batch_size) as u64
    }

    /// Epoch and step within it of a global step counted from 0.
    pub fn position(&self, global_step: u64) -> (u64, u64) {
        let per = self.steps_per_epoch();
        (global_step / per, global_step % per)
    }

    /// The pairs of global step `global_step`, in batch order.
    ///
    /// Each pair's two transcripts are distinct whenever its group has two or more, drawn uniformly.
    pub fn pairs(&self, groups: &[Group], global_step: u64) -> Vec<Pair> {
        let (epoch, step) = self.position(global_step);
        // The permutation is recomputed per call (O(groups), ~1 ms for 230 k groups) to stay stateless.
        let mut order: Vec<u32> = (0..self.group_count as u32).collect();
        let mut rng = rng_for(&[self.seed, PERMUTATION, epoch]);
        for i in (1..order.len()).rev() {
            let j = rng.random_range(0..=i);
            order.swap(i, j);
        }
        let start = step as usize * self.batch_size;
        order[start..start + self.batch_size]
            .iter()
            .enumerate()
            .map(|(slot, &g)| {
                let members = &groups[g as usize].transcripts;
                let mut rng = rng_for(&[self.seed, PAIR, epoch, step, slot as u64]);
                let views = if members.len() >= 2 {
                    let picked = index::sample(&mut rng, members.len(), 2);
                    [members[picked.index(0)], members[picked.index(1)]]
                } else {
                    [members[0], members[0]]
                };
                Pair {
                    group: g,
                    views,
                    group_size: members.len() as u32,
                }
            })
            .collect()
    }
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
