//! Leakage-free train/validation/test splits that assign whole groups, and the low-data subsets of a
//! training split, all as lists of row indices. Knows no tensors and no files.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// Errors of splitting.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SplitError {
    /// Fewer than three groups cannot fill three splits without breaking a group.
    #[error("{groups} group(s): a train/validation/test split needs at least 3 groups")]
    TooFewGroups {
        /// Distinct groups present.
        groups: usize,
    },
    /// The fractions are not positive or do not sum to one.
    #[error("split fractions {train}/{validation}/{test}: {why}")]
    BadFractions {
        /// Training fraction.
        train: f64,
        /// Validation fraction.
        validation: f64,
        /// Test fraction.
        test: f64,
        /// What is wrong.
        why: &'static str,
    },
}

/// Target shares of rows in each split.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct SplitFractions {
    /// Share of rows for training.
    pub train: f64,
    /// Share of rows for validation (probe penalty, early stopping).
    pub validation: f64,
    /// Share of rows for the reported test metrics.
    pub test: f64,
}

impl Default for SplitFractions {
    /// 70/15/15, as in Orthrus (METHOD.md, "Evaluation").
    fn default() -> Self {
        Self {
            train: 0.70,
            validation: 0.15,
            test: 0.15,
        }
    }
}

impl SplitFractions {
    /// Checks every share is positive and finite and that they sum to one (within 1e-6).
    pub fn validate(&self) -> Result<(), SplitError> {
        let bad = |why| SplitError::BadFractions {
            train: self.train,
            validation: self.validation,
            test: self.test,
            why,
        };
        let all = [self.train, self.validation, self.test];
        if all.iter().any(|f| !f.is_finite() || *f <= 0.0) {
            return Err(bad("every fraction must be positive"));
        }
        if (all.iter().sum::<f64>() - 1.0).abs() > 1e-6 {
            return Err(bad("fractions must sum to 1"));
        }
        Ok(())
    }
}

/// Row indices of the three splits, each ascending; every group lies in exactly one of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// Training rows.
    pub train: Vec<usize>,
    /// Validation rows.
    pub validation: Vec<usize>,
    /// Test rows.
    pub test: Vec<usize>,
    /// The seed that made it (for the report).
    pub seed: u64,
}

/// Splits rows by group: `groups[i]` is row `i`'s group. Groups are shuffled with `seed`, the first three go
/// to test, validation and train (so no split is empty), and each further group goes to the split furthest
/// below its target row count. The result depends only on `groups`, `fractions` and `seed`.
///
/// Errors: [`SplitError::BadFractions`], and [`SplitError::TooFewGroups`] with fewer than three groups.
pub fn split_by_group(groups: &[u32], fractions: SplitFractions, seed: u64) -> Result<Split, SplitError> {
    fractions.validate()?;
    // Rows of each group, groups in first-appearance order so the shuffle below is the only source of order.
    let mut order: Vec<u32> = Vec::new();
    let mut members: std::collections::HashMap<u32, Vec<usize>> = std::collections::HashMap::new();
    for (row, &g) in groups.iter().enumerate() {
        members
            .entry(g)
            .or_insert_with(|| {
                order.push(g);
                Vec::new()
            })
            .push(row);
    }
    if order.len() < 3 {
        return Err(SplitError::TooFewGroups { groups: order.len() });
    }
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let n = groups.len() as f64;
    // Index 0 = test, 1 = validation, 2 = train: the order the first three groups are dealt in.
    let targets = [fractions.test * n, fractions.validation * n, fractions.train * n];
    let mut assigned: [Vec<usize>; 3] = Default::default();
    for (k, g) in order.iter().enumerate() {
        let rows = members.get(g).map(Vec::as_slice).unwrap_or_default();
        let split = if k < 3 {
            k
        } else {
            // Largest deficit first; ties go to the earlier split (test), a fixed rule, so results are stable.
            (0..3)
                .max_by(|&a, &b| {
                    let deficit = |s: usize| targets[s] - assigned[s].len() as f64;
                    deficit(a).total_cmp(&deficit(b)).then(b.cmp(&a))
                })
                .unwrap_or(2)
        };
        assigned[split].extend_from_slice(rows);
    }
    let [mut test, mut validation, mut train] = assigned;
    for s in [&mut test, &mut validation, &mut train] {
        s.sort_unstable();
    }
    Ok(Split {
        train,
        validation,
        test,
        seed,
    })
}

/// Training-set fractions of the low-data curves (METHOD.md, issue 6).
pub const LOW_DATA_FRACTIONS: [f64; 7] = [0.005, 0.01, 0.03, 0.1, 0.3, 0.5, 1.0];
/// Fixed training-set sizes of the low-data curves.
pub const LOW_DATA_COUNTS: [usize; 5] = [30, 100, 300, 1000, 3000];

/// The size of a low-data subset, as asked for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SubsetSize {
    /// A share of the training rows (at least one row).
    Fraction(f64),
    /// A number of training rows.
    Count(usize),
}

/// One random draw of a low-data subset.
#[derive(Debug, Clone, PartialEq)]
pub struct Subset {
    /// The size asked for.
    pub size: SubsetSize,
    /// Which draw (0-based) of this size.
    pub draw: usize,
    /// Row indices (a subset of the training rows), ascending.
    pub rows: Vec<usize>,
}

/// Low-data subsets of `train` (row indices): for each of `fractions` and of `counts` not larger than `train`
/// (the defaults are [`LOW_DATA_FRACTIONS`] and [`LOW_DATA_COUNTS`]), `draws` random draws, made from `seed`.
///
/// Subsets are drawn by rows, not groups: the test and validation rows are already separated by group, so a
/// subset of the training rows cannot leak into them whichever way it is drawn; drawing rows makes the sizes
/// exact (the fixed counts are numbers of examples, as in the paper) and keeps the smallest fractions from
/// hinging on a few large groups.
///
/// Within one draw the subsets are nested (prefixes of one shuffle of `train`): the curve then compares
/// sizes on shared rows, without extra sampling noise between points. The full training set (fraction 1.0,
/// or a count equal to its size) is the same in every draw, so it is listed once, as draw 0.
pub fn low_data_subsets(train: &[usize], fractions: &[f64], counts: &[usize], draws: usize, seed: u64) -> Vec<Subset> {
    let n = train.len();
    let mut sizes: Vec<(SubsetSize, usize)> = fractions
        .iter()
        .map(|&f| {
            (
                SubsetSize::Fraction(f),
                ((f * n as f64).round() as usize).clamp(1, n.max(1)),
            )
        })
        .chain(counts.iter().filter(|&&c| c <= n).map(|&c| (SubsetSize::Count(c), c)))
        .collect();
    if n == 0 {
        sizes.clear();
    }
    let mut subsets = Vec::new();
    for draw in 0..draws {
        let mut shuffled = train.to_vec();
        // One stream per draw: adding draws leaves the earlier ones unchanged.
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(draw as u64);
        shuffled.shuffle(&mut rng);
        for &(size, k) in &sizes {
            if k == n && draw > 0 {
                continue;
            }
            let mut rows = shuffled[..k].to_vec();
            rows.sort_unstable();
            subsets.push(Subset { size, draw, rows });
        }
    }
    subsets
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups_of(sizes: &[usize]) -> Vec<u32> {
        sizes
            .iter()
            .enumerate()
            .flat_map(|(g, &s)| std::iter::repeat_n(g as u32, s))
            .collect()
    }

    #[test]
    fn split_keeps_groups_whole_and_hits_the_fractions() {
        let sizes: Vec<usize> = (0..400).map(|g| 1 + g % 5).collect();
        let groups = groups_of(&sizes);
        let s = split_by_group(&groups, SplitFractions::default(), 7).unwrap();
        let n = groups.len();
        assert_eq!(s.train.len() + s.validation.len() + s.test.len(), n);
        let side = |rows: &[usize]| {
            rows.iter()
                .map(|&r| groups[r])
                .collect::<std::collections::HashSet<_>>()
        };
        let (a, b, c) = (side(&s.train), side(&s.validation), side(&s.test));
        assert!(a.is_disjoint(&b) && a.is_disjoint(&c) && b.is_disjoint(&c));
        for (rows, want) in [(&s.train, 0.70), (&s.validation, 0.15), (&s.test, 0.15)] {
            let got = rows.len() as f64 / n as f64;
            assert!((got - want).abs() < 0.02, "{got} vs {want}");
            assert!(rows.windows(2).all(|w| w[0] < w[1]));
        }
    }

    #[test]
    fn split_is_deterministic_and_seed_dependent() {
        let groups = groups_of(&[3; 50]);
        let a = split_by_group(&groups, SplitFractions::default(), 1).unwrap();
        assert_eq!(a, split_by_group(&groups, SplitFractions::default(), 1).unwrap());
        assert_ne!(
            a.test,
            split_by_group(&groups, SplitFractions::default(), 2).unwrap().test
        );
    }

    #[test]
    fn three_groups_fill_three_splits_and_fewer_is_an_error() {
        let s = split_by_group(&[5, 5, 9, 1, 1, 1], SplitFractions::default(), 0).unwrap();
        assert!(!s.train.is_empty() && !s.validation.is_empty() && !s.test.is_empty());
        let e = split_by_group(&[1, 1, 2], SplitFractions::default(), 0).unwrap_err();
        assert_eq!(e, SplitError::TooFewGroups { groups: 2 });
        assert!(e.to_string().contains("at least 3 groups"));
        assert!(split_by_group(&[], SplitFractions::default(), 0).is_err());
    }

    #[test]
    fn bad_fractions_are_rejected() {
        for (train, validation, test) in [(0.8, 0.15, 0.15), (1.0, 0.0, 0.0), (f64::NAN, 0.5, 0.5)] {
            let f = SplitFractions {
                train,
                validation,
                test,
            };
            assert!(matches!(
                split_by_group(&[0, 1, 2], f, 0),
                Err(SplitError::BadFractions { .. })
            ));
        }
    }

    #[test]
    fn low_data_subsets_sizes_nesting_and_determinism() {
        let train: Vec<usize> = (0..1000).map(|i| i * 2).collect();
        let subsets = low_data_subsets(&train, &LOW_DATA_FRACTIONS, &LOW_DATA_COUNTS, 3, 11);
        assert_eq!(
            subsets,
            low_data_subsets(&train, &LOW_DATA_FRACTIONS, &LOW_DATA_COUNTS, 3, 11)
        );
        // 7 fractions + counts 30, 100, 300, 1000 (3000 skipped) per draw; the full set (fraction 1.0 and
        // count 1000) only in draw 0.
        assert_eq!(subsets.len(), 11 + 2 * 9);
        let of = |size: SubsetSize, draw: usize| {
            subsets
                .iter()
                .find(|s| s.size == size && s.draw == draw)
                .map(|s| s.rows.clone())
                .unwrap()
        };
        assert_eq!(of(SubsetSize::Fraction(0.005), 0).len(), 5);
        assert_eq!(of(SubsetSize::Count(300), 1).len(), 300);
        assert_eq!(of(SubsetSize::Fraction(1.0), 0), train);
        let small = of(SubsetSize::Fraction(0.01), 2);
        let large = of(SubsetSize::Fraction(0.1), 2);
        assert!(small.iter().all(|r| large.contains(r)));
        assert_ne!(of(SubsetSize::Count(30), 0), of(SubsetSize::Count(30), 1));
        assert!(subsets.iter().all(|s| s.rows.iter().all(|r| r % 2 == 0)));
        // Earlier draws do not change when more are asked for.
        let more = low_data_subsets(&train, &LOW_DATA_FRACTIONS, &LOW_DATA_COUNTS, 4, 11);
        assert_eq!(&more[..subsets.len()], &subsets[..]);
    }

    #[test]
    fn low_data_subsets_of_tiny_and_empty_training_sets() {
        let subsets = low_data_subsets(&[4, 5, 6], &LOW_DATA_FRACTIONS, &LOW_DATA_COUNTS, 2, 0);
        assert!(subsets.iter().all(|s| !s.rows.is_empty()));
        assert!(subsets.iter().all(|s| !matches!(s.size, SubsetSize::Count(_))));
        assert!(low_data_subsets(&[], &LOW_DATA_FRACTIONS, &LOW_DATA_COUNTS, 2, 0).is_empty());
    }
}
