//! Chromosome assembly: loci on either strand separated by intergenic DNA with repeats and N runs.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::model::{base, clamp_len, normal, random_seq};

/// Where a locus landed: chromosome index, 0-based offset of its first base, length, strand.
#[derive(Debug, Clone, Copy)]
pub(super) struct Placement {
    pub chrom: usize,
    pub offset: usize,
    pub len: usize,
    pub minus: bool,
}

impl Placement {
    /// 1-based inclusive genomic coordinates of the locus interval `[a, b)`.
    pub(super) fn genomic(self, (a, b): (usize, usize)) -> (usize, usize) {
        if self.minus {
            (self.offset + self.len - b + 1, self.offset + self.len - a)
        } else {
            (self.offset + a + 1, self.offset + b)
        }
    }
}

/// Reverse complement (N and other letters map to themselves, case kept).
pub(super) fn revcomp(seq: &[u8]) -> Vec<u8> {
    seq.iter()
        .rev()
        .map(|&b| match b {
            b'A' => b'T',
            b'C' => b'G',
            b'G' => b'C',
            b'T' => b'A',
            b'a' => b't',
            b'c' => b'g',
            b'g' => b'c',
            b't' => b'a',
            other => other,
        })
        .collect()
}

/// Soft-masked (lower-case) copy of a repeat family member with 12 % substitutions, possibly truncated
/// at its 5' end, on either strand.
fn repeat_copy(rng: &mut ChaCha8Rng, consensus: &[u8]) -> Vec<u8> {
    let from = if rng.random_bool(0.5) {
        rng.random_range(0..consensus.len() / 2)
    } else {
        0
    };
    let mut v: Vec<u8> = consensus[from..]
        .iter()
        .map(|&b| if rng.random_bool(0.12) { base(rng, 0.45) } else { b })
        .collect();
    if rng.random_bool(0.5) {
        v = revcomp(&v);
    }
    v.make_ascii_lowercase();
    v
}

/// Appends intergenic DNA (about 3 kb × scale): unique sequence, soft-masked interspersed repeats and
/// microsatellites, and rarely a run of N.
fn spacer(rng: &mut ChaCha8Rng, scale: f64, repeats: &[Vec<u8>], out: &mut Vec<u8>) {
    let target = clamp_len(
        3000.0 * scale * (0.7 * normal(rng)).exp(),
        200,
        ((30_000.0 * scale) as usize).max(400),
    );
    intergenic_elements(rng, out.len() + target, repeats, out, |rng, n, out| {
        out.extend(random_seq(rng, n, 0.41));
    });
}

/// Appends intergenic elements until `out` reaches `end` (the last one may run past it): unique sequence
/// (written by `unique`, given its length), soft-masked repeat copies and microsatellites, rare N runs.
fn intergenic_elements(
    rng: &mut ChaCha8Rng,
    end: usize,
    repeats: &[Vec<u8>],
    out: &mut Vec<u8>,
    mut unique: impl FnMut(&mut ChaCha8Rng, usize, &mut Vec<u8>),
) {
    while out.len() < end {
        let r = rng.random::<f64>();
        if r < 0.005 {
            let n = rng.random_range(50..=500);
            out.extend(std::iter::repeat_n(b'N', n));
        } else if r < 0.08 {
            let family = rng.random_range(0..repeats.len());
            out.extend(repeat_copy(rng, &repeats[family]));
        } else if r < 0.11 {
            const UNITS: [&[u8]; 5] = [b"ca", b"tg", b"a", b"at", b"ggc"];
            let unit = UNITS[rng.random_range(0..UNITS.len())];
            for _ in 0..rng.random_range(10..=40) {
                out.extend_from_slice(unit);
            }
        } else {
            let n = rng.random_range(50..=400usize);
            unique(rng, n, out);
        }
    }
}

/// Consensus sequences of three interspersed repeat families (SINE/LINE-like, with a poly-A tail).
pub(super) fn repeat_families(rng: &mut ChaCha8Rng) -> Vec<Vec<u8>> {
    [310usize, 520, 180]
        .iter()
        .map(|&len| {
            let mut r = random_seq(rng, len, 0.52);
            r.extend(std::iter::repeat_n(b'A', 20));
            r
        })
        .collect()
}

/// Unique intergenic bases at 41 % GC: a random byte indexes 256 slots, 52 G, 53 C, 76 A and 75 T, so
/// one 64-bit draw makes eight bases (the per-base draw of [`random_seq`] is too slow for gigabases).
const UNIQUE: [u8; 256] = {
    let mut table = [b'T'; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = if i < 52 {
            b'G'
        } else if i < 105 {
            b'C'
        } else if i < 181 {
            b'A'
        } else {
            b'T'
        };
        i += 1;
    }
    table
};

/// Appends exactly `len` bases of intergenic DNA with the composition of the spacers between genes
/// (unique sequence, soft-masked repeat copies and microsatellites, rare N runs), the unique part
/// drawn eight bases at a time. The last element is cut at `len`.
pub(super) fn intergenic(rng: &mut ChaCha8Rng, len: usize, repeats: &[Vec<u8>], out: &mut Vec<u8>) {
    let end = out.len() + len;
    intergenic_elements(rng, end, repeats, out, |rng, mut n, out| {
        while n > 0 {
            let bytes = rng.random::<u64>().to_le_bytes();
            let k = n.min(8);
            out.extend(bytes[..k].iter().map(|&b| UNIQUE[usize::from(b)]));
            n -= k;
        }
    });
    out.truncate(end);
}

/// Builds `n_chrom` chromosomes holding the loci in `order` (indices into `loci`), split into equal runs,
/// each chromosome framed by 1 kb of N; returns the sequences and, per locus index, its placement.
pub(super) fn assemble(
    rng: &mut ChaCha8Rng,
    scale: f64,
    loci: &[&[u8]],
    minus: &[bool],
    order: &[usize],
    n_chrom: usize,
) -> (Vec<Vec<u8>>, Vec<Placement>) {
    let repeats = repeat_families(rng);
    let mut placements = vec![
        Placement {
            chrom: 0,
            offset: 0,
            len: 0,
            minus: false
        };
        loci.len()
    ];
    let mut chroms = Vec::with_capacity(n_chrom);
    for c in 0..n_chrom {
        let mut seq = vec![b'N'; 1000];
        spacer(rng, scale, &repeats, &mut seq);
        for &g in &order[c * order.len() / n_chrom..(c + 1) * order.len() / n_chrom] {
            let locus = loci[g];
            placements[g] = Placement {
                chrom: c,
                offset: seq.len(),
                len: locus.len(),
                minus: minus[g],
            };
            if minus[g] {
                seq.extend(revcomp(locus));
            } else {
                seq.extend_from_slice(locus);
            }
            spacer(rng, scale, &repeats, &mut seq);
        }
        seq.extend(std::iter::repeat_n(b'N', 1000));
        chroms.push(seq);
    }
    (chroms, placements)
}
