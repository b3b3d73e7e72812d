//! The planted label rules (documented in the parent module) and the features they read.

use rand_chacha::ChaCha8Rng;

use super::model::{OPTIMAL_CODONS, normal};

/// Noise standard deviation as a multiple of the signal's standard deviation: R² = 1 / (1 + 0.8²) ≈ 0.61.
pub(super) const NOISE_RATIO: f64 = 0.8;

/// Everything the rules read from one transcript.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Features {
    /// Length in nucleotides.
    pub len: usize,
    /// Exon count.
    pub exons: usize,
    /// Overlapping ATTTA occurrences in the 3'UTR (the whole transcript when non-coding).
    pub are: usize,
    /// CDS length (stop codon included) over transcript length; 0 when non-coding.
    pub cds_fraction: f64,
    /// Codons of the CDS, the stop codon included; 0 when non-coding.
    pub cds_codons: usize,
    /// Fraction of CDS codons (ATG included, stop excluded) in [`OPTIMAL_CODONS`]; 0 when non-coding.
    pub optimal: f64,
    /// Coding only: 5'UTR length, its GC fraction, in-frame and out-of-frame upstream ATGs, Kozak score.
    pub coding: Option<Utr5>,
}

/// 5'UTR features of a coding transcript.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Utr5 {
    pub len: usize,
    pub gc: f64,
    pub uatg_in_frame: usize,
    pub uatg_out_of_frame: usize,
    /// 0.5·[base −3 is A or G] + 0.5·[base +4 is G].
    pub kozak: f64,
}

/// Overlapping occurrences of `motif` in `seq`.
pub(super) fn count_motif(seq: &[u8], motif: &[u8]) -> usize {
    seq.windows(motif.len()).filter(|w| *w == motif).count()
}

impl Features {
    /// Reads the features of a transcript; `cds` is (ATG position, stop codon position).
    pub(super) fn of(seq: &[u8], exons: usize, cds: Option<(usize, usize)>) -> Self {
        let len = seq.len();
        let Some((start, stop)) = cds else {
            let are = count_motif(seq, b"ATTTA");
            return Self {
                len,
                exons,
                are,
                cds_fraction: 0.0,
                cds_codons: 0,
                optimal: 0.0,
                coding: None,
            };
        };
        let codons = seq[start..stop].chunks_exact(3);
        let n_codons = codons.len().max(1);
        let optimal = codons.filter(|c| OPTIMAL_CODONS.iter().any(|o| o == c)).count();
        let utr5 = &seq[..start];
        let (mut uatg_in_frame, mut uatg_out_of_frame) = (0, 0);
        for (p, w) in utr5.windows(3).enumerate() {
            if w == b"ATG" {
                if (start - p) % 3 == 0 {
                    uatg_in_frame += 1;
                } else {
                    uatg_out_of_frame += 1;
                }
            }
        }
        let gc = if start == 0 {
            0.45
        } else {
            utr5.iter().filter(|&&b| b == b'G' || b == b'C').count() as f64 / start as f64
        };
        let m3 = start >= 3 && matches!(seq[start - 3], b'A' | b'G');
        let p4 = seq.get(start + 3) == Some(&b'G');
        let kozak = 0.5 * f64::from(u8::from(m3)) + 0.5 * f64::from(u8::from(p4));
        Self {
            len,
            exons,
            are: count_motif(&seq[stop + 3..], b"ATTTA"),
            cds_fraction: (stop + 3 - start) as f64 / len as f64,
            cds_codons: (stop + 3 - start) / 3,
            optimal: optimal as f64 / n_codons as f64,
            coding: Some(Utr5 {
                len: start,
                gc,
                uatg_in_frame,
                uatg_out_of_frame,
                kozak,
            }),
        }
    }

    /// The planted log2 half-life before noise.
    pub(super) fn log2_half_life(&self) -> f64 {
        let len = self.len as f64;
        let junctions_per_kb = (self.exons - 1) as f64 * 1000.0 / len;
        2.0 - 0.30 * self.are.min(6) as f64 + 1.5 * self.cds_fraction + 2.0 * (self.optimal - 0.5)
            - 0.6 * (len.log10() - 3.4)
            + 0.15 * junctions_per_kb
    }

    /// The planted log2 mean ribosome load before noise; `None` when non-coding.
    ///
    /// Ribosomes per mRNA are initiation over elongation times ORF length: the 5'UTR terms set
    /// initiation, the count grows sub-linearly with ORF length (density falls on long ORFs) and with
    /// codon optimality, as in endogenous polysome profiles.
    pub(super) fn log2_ribosome_load(&self) -> Option<f64> {
        let u = self.coding.as_ref()?;
        Some(
            2.0 + 0.5 * (self.cds_codons as f64 / 300.0).log2() + 1.0 * (self.optimal - 0.5)
                - 0.35 * u.uatg_out_of_frame.min(5) as f64
                - 0.15 * u.uatg_in_frame.min(5) as f64
                + 0.8 * u.kozak
                - 0.25 * ((u.len as f64 + 10.0).log10() - 2.2)
                - 1.2 * (u.gc - 0.45),
        )
    }
}

/// Adds Gaussian noise with standard deviation `NOISE_RATIO` × the (population) standard deviation of
/// `signal` to every value.
pub(super) fn add_noise(rng: &mut ChaCha8Rng, signal: &[f64]) -> Vec<f64> {
    let n = signal.len().max(1) as f64;
    let mean = signal.iter().sum::<f64>() / n;
    let sd = (signal.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
    signal.iter().map(|x| x + NOISE_RATIO * sd * normal(rng)).collect()
}
