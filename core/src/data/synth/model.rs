//! Gene models: founders, paralog copies, the genomic locus of a model and its splice isoforms.
//!
//! Everything here is in the gene's sense orientation; `genome` places loci on either strand.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// The fixed table of "optimal" codons, one per amino acid except Met and Trp.
pub(super) const OPTIMAL_CODONS: [[u8; 3]; 18] = [
    *b"GCT", *b"CGT", *b"AAC", *b"GAC", *b"TGC", *b"CAA", *b"GAA", *b"GGT", *b"CAC", *b"ATC", *b"TTG", *b"AAG",
    *b"TTC", *b"CCA", *b"TCT", *b"ACC", *b"TAC", *b"GTC",
];

/// Shortest exon any event may leave.
const MIN_EXON: usize = 25;
/// Shortest intron an alternative splice site may leave.
const MIN_INTRON: usize = 50;
/// Shortest isoform (unless the reference itself is shorter).
const MIN_LEN: usize = 150;
/// Shortest ORF (codons before the stop) an isoform may keep.
const MIN_CODONS: usize = 20;
/// GC fraction of CDS bodies, non-coding exons and intergenic DNA is close to this.
const GC_EXON: f64 = 0.45;
/// 3'UTRs and introns are a little AU-richer.
const GC_AT_RICH: f64 = 0.40;

/// What a gene model encodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Protein-coding, mature length capped below the maximum.
    Coding,
    /// No CDS.
    NonCoding,
    /// Protein-coding and deliberately longer than the maximum length (every isoform).
    Giant,
}

/// A gene's reference transcript with its exon structure, introns and optional alternative terminal exons.
#[derive(Debug, Clone)]
pub(super) struct Model {
    pub kind: Kind,
    /// Reference mature sequence, 5'→3'.
    pub seq: Vec<u8>,
    /// Reference CDS as (first base of the ATG, first base of the stop codon).
    pub cds: Option<(usize, usize)>,
    /// Exclusive exon ends in `seq` coordinates; the last is `seq.len()`.
    pub cuts: Vec<usize>,
    /// Introns between consecutive exons (`cuts.len() - 1`).
    pub introns: Vec<Vec<u8>>,
    /// Alternative first exon (pure 5'UTR) and the intron that follows it.
    pub alt_first: Option<(Vec<u8>, Vec<u8>)>,
    /// The intron before an alternative last exon, and that exon.
    pub alt_last: Option<(Vec<u8>, Vec<u8>)>,
}

/// A model laid out as genomic DNA (sense orientation), with candidate exons as `[start, end)` intervals.
pub(super) struct Locus {
    pub seq: Vec<u8>,
    pub core: Vec<(usize, usize)>,
    pub alt_first: Option<(usize, usize)>,
    pub alt_last: Option<(usize, usize)>,
    /// Locus positions of the reference ATG's A and of the end of the reference stop codon.
    pub cds: Option<(usize, usize)>,
}

/// One transcript of a gene: exons in locus coordinates (ascending), the spliced sequence and its CDS as
/// (first base of the ATG, first base of the stop codon) in transcript coordinates.
#[derive(Debug, Clone)]
pub(super) struct Isoform {
    pub exons: Vec<(usize, usize)>,
    pub seq: Vec<u8>,
    pub cds: Option<(usize, usize)>,
}

/// A standard normal draw (Box-Muller).
pub(super) fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn lognormal(rng: &mut ChaCha8Rng, median: f64, sigma: f64) -> f64 {
    median * (sigma * normal(rng)).exp()
}

fn exponential(rng: &mut ChaCha8Rng, mean: f64) -> f64 {
    -mean * (1.0 - rng.random::<f64>()).ln()
}

/// Rounds and clamps a sampled length.
pub(super) fn clamp_len(x: f64, lo: usize, hi: usize) -> usize {
    let x = if x.is_finite() { x.round().max(0.0) as usize } else { lo };
    x.clamp(lo, hi.max(lo))
}

/// A Poisson draw (Knuth's method; for the small means used here).
fn poisson(rng: &mut ChaCha8Rng, mean: f64) -> usize {
    if mean <= 0.0 {
        return 0;
    }
    let limit = (-mean.min(30.0)).exp();
    let (mut k, mut p) = (0, 1.0);
    loop {
        p *= rng.random::<f64>();
        if p <= limit {
            return k;
        }
        k += 1;
    }
}

/// One random base with the given GC fraction.
pub(super) fn base(rng: &mut ChaCha8Rng, gc: f64) -> u8 {
    let r = rng.random::<f64>();
    if r < gc / 2.0 {
        b'G'
    } else if r < gc {
        b'C'
    } else if r < gc + (1.0 - gc) / 2.0 {
        b'A'
    } else {
        b'T'
    }
}

/// `len` random bases with the given GC fraction.
pub(super) fn random_seq(rng: &mut ChaCha8Rng, len: usize, gc: f64) -> Vec<u8> {
    (0..len).map(|_| base(rng, gc)).collect()
}

/// True for TAA, TAG and TGA.
pub(super) fn is_stop(codon: &[u8]) -> bool {
    matches!(codon, b"TAA" | b"TAG" | b"TGA")
}

/// The 61 sense codons and, per gene, cumulative sampling weights favouring optimal codons.
struct CodonTable {
    codons: Vec<[u8; 3]>,
    cumulative: Vec<f64>,
}

impl CodonTable {
    /// Optimal codons get weight `1 + 3·bias`, the others 1.
    fn new(bias: f64) -> Self {
        let mut codons = Vec::with_capacity(61);
        let mut cumulative = Vec::with_capacity(61);
        let mut total = 0.0;
        for a in b"ACGT" {
            for b in b"ACGT" {
                for c in b"ACGT" {
                    let codon = [*a, *b, *c];
                    if is_stop(&codon) {
                        continue;
                    }
                    total += if OPTIMAL_CODONS.contains(&codon) {
                        1.0 + 3.0 * bias
                    } else {
                        1.0
                    };
                    codons.push(codon);
                    cumulative.push(total);
                }
            }
        }
        Self { codons, cumulative }
    }

    fn pick(&self, rng: &mut ChaCha8Rng) -> [u8; 3] {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let x = rng.random::<f64>() * total;
        let i = self.cumulative.partition_point(|&c| c <= x).min(self.codons.len() - 1);
        self.codons[i]
    }
}

/// Replaces every ATG by ACG (T→C never creates a new ATG).
fn deplete_atg(seq: &mut [u8]) {
    for i in 0..seq.len().saturating_sub(2) {
        if &seq[i..i + 3] == b"ATG" {
            seq[i + 1] = b'C';
        }
    }
}

/// Writes `motif` at `count` random positions of `seq[lo..hi)`.
fn plant(rng: &mut ChaCha8Rng, seq: &mut [u8], lo: usize, hi: usize, motif: &[u8], count: usize) {
    if hi < lo + motif.len() {
        return;
    }
    for _ in 0..count {
        let p = rng.random_range(lo..=hi - motif.len());
        seq[p..p + motif.len()].copy_from_slice(motif);
    }
}

/// A 3'UTR-like stretch: AU-rich, `are` planted ATTTA motifs, a polyadenylation signal near its end.
fn utr3_like(rng: &mut ChaCha8Rng, len: usize, are_mean: f64) -> Vec<u8> {
    let mut v = random_seq(rng, len, GC_AT_RICH);
    let n = poisson(rng, are_mean).min(len / 12);
    plant(rng, &mut v, 0, len.saturating_sub(30), b"ATTTA", n);
    if len >= 40 {
        v[len - 25..len - 19].copy_from_slice(b"AATAAA");
    }
    v
}

/// A 5'UTR-like stretch ending in `kozak` (if given), without ATG, then `uatg` planted upstream ATGs,
/// never in the last 6 bases.
fn utr5_like(rng: &mut ChaCha8Rng, len: usize, gc: f64, kozak: Option<&[u8]>, uatg: usize) -> Vec<u8> {
    let mut v = random_seq(rng, len, gc);
    if let Some(k) = kozak {
        v[len - k.len()..].copy_from_slice(k);
    }
    deplete_atg(&mut v);
    plant(rng, &mut v, 0, len.saturating_sub(6), b"ATG", uatg);
    v
}

/// An intron: a GT donor, an AU-rich body, a pyrimidine tract and a CAG acceptor; 100 bp-5 kb × scale.
pub(super) fn intron(rng: &mut ChaCha8Rng, scale: f64) -> Vec<u8> {
    let hi = ((5000.0 * scale) as usize).max(200);
    let lo = ((100.0 * scale) as usize).clamp(80, hi);
    let len = clamp_len(lognormal(rng, 900.0 * scale, 0.9), lo, hi);
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(if rng.random_bool(0.6) { b"GTAAGT" } else { b"GTGAGT" });
    v.extend(random_seq(rng, len - 19, GC_AT_RICH));
    v.extend((0..10).map(|_| if rng.random_bool(0.5) { b'C' } else { b'T' }));
    v.extend_from_slice(b"CAG");
    v
}

/// Exon ends for a mature sequence of `len`: a first exon (or `forced_first`), internal exons, and a last
/// exon holding everything from the last cut on; cuts stay below `limit`.
fn build_cuts(
    rng: &mut ChaCha8Rng,
    scale: f64,
    len: usize,
    limit: usize,
    forced_first: Option<usize>,
    single: f64,
    extra_exons: f64,
) -> Vec<usize> {
    let n = if forced_first.is_none() && rng.random_bool(single) {
        1
    } else {
        (2 + poisson(rng, extra_exons)).min(15)
    };
    let mut cuts = Vec::with_capacity(n);
    if n > 1 {
        let first = forced_first.unwrap_or_else(|| clamp_len(lognormal(rng, 200.0 * scale.sqrt(), 0.6), 30, 2000));
        if first < limit {
            cuts.push(first);
            let mut pos = first;
            while cuts.len() + 1 < n {
                let exon = clamp_len(lognormal(rng, 130.0 * scale.sqrt(), 0.45), 30, 600);
                if pos + exon >= limit {
                    break;
                }
                pos += exon;
                cuts.push(pos);
            }
        }
    }
    cuts.push(len);
    cuts
}

/// A new gene model of the given kind.
pub(super) fn founder(rng: &mut ChaCha8Rng, kind: Kind, scale: f64) -> Model {
    let are_mean = if rng.random_bool(0.35) {
        0.0
    } else {
        exponential(rng, 2.5)
    };
    let (seq, cds, forced_first) = match kind {
        Kind::NonCoding => {
            let len = clamp_len(
                lognormal(rng, 1500.0 * scale, 0.8),
                ((200.0 * scale) as usize).max(100),
                ((9000.0 * scale) as usize).max(300),
            );
            let mut seq = random_seq(rng, len, GC_EXON);
            let n = poisson(rng, are_mean).min(len / 12);
            plant(rng, &mut seq, 0, len, b"ATTTA", n);
            let forced = (len >= 240 && rng.random_bool(0.15)).then(|| rng.random_range(40..=len / 3));
            (seq, None, forced)
        }
        Kind::Coding | Kind::Giant => {
            let s = if kind == Kind::Giant { 1.0 } else { scale };
            let mut u5 = clamp_len(lognormal(rng, 160.0 * s, 0.7), 12, ((1500.0 * s) as usize).max(12));
            let mut codons = clamp_len(lognormal(rng, 450.0 * s, 0.6), 30, ((3000.0 * s) as usize).max(30));
            let mut u3 = clamp_len(lognormal(rng, 900.0 * s, 0.9), 40, ((7000.0 * s) as usize).max(40));
            if kind == Kind::Giant {
                u3 = rng.random_range(12_800..=15_000) - u5 - 3 * codons - 3;
            } else {
                let cap = (11_800.0 * scale).min(11_800.0) as usize;
                if u5 + 3 * codons + 3 + u3 > cap {
                    u3 = cap.saturating_sub(u5 + 3 * codons + 3).max(40);
                }
                if u5 + 3 * codons + 3 + u3 > cap {
                    u5 = u5.min(cap / 4).max(12);
                    codons = (cap.saturating_sub(u5 + 3 + u3) / 3).max(30);
                }
            }
            let strong_m3 = rng.random_bool(0.55);
            let strong_p4 = rng.random_bool(0.55);
            let uatg = match rng.random::<f64>() {
                x if x < 0.5 => 0,
                x if x < 0.75 => 1,
                x if x < 0.9 => 2,
                _ => 3,
            };
            let gc5 = rng.random_range(0.35..0.65);
            // Strong context GCCACC (A at -3); weak ones have C or T at -3.
            let kozak = if strong_m3 {
                *b"GCCACC"
            } else {
                let [a, b, c] = [base(rng, gc5), base(rng, gc5), base(rng, gc5)];
                [a, b, c, if rng.random_bool(0.5) { b'T' } else { b'C' }, b'C', b'C']
            };
            let mut seq = utr5_like(rng, u5, gc5, Some(&kozak), uatg);
            let table = CodonTable::new(rng.random::<f64>());
            seq.extend_from_slice(b"ATG");
            let second = loop {
                let c = table.pick(rng);
                if (c[0] == b'G') == strong_p4 {
                    break c;
                }
            };
            seq.extend_from_slice(&second);
            for _ in 2..codons {
                seq.extend_from_slice(&table.pick(rng));
            }
            let stop = seq.len();
            seq.extend_from_slice(match rng.random::<f64>() {
                x if x < 0.5 => b"TGA",
                x if x < 0.8 => b"TAA",
                _ => b"TAG",
            });
            seq.extend(utr3_like(rng, u3, are_mean));
            let forced = (u5 >= 60 && rng.random_bool(0.25)).then(|| rng.random_range(25..=u5 - 10));
            (seq, Some((u5, stop)), forced)
        }
    };
    let len = seq.len();
    let cuts = match cds {
        Some((_, stop)) => build_cuts(rng, scale, len, stop - 15, forced_first, 0.08, 6.5),
        None => build_cuts(rng, scale, len, len - 60, forced_first, 0.2, 1.5),
    };
    let introns = (1..cuts.len()).map(|_| intron(rng, scale)).collect();
    let alt_first = (forced_first.is_some() && cuts.len() > 1 && Some(cuts[0]) == forced_first).then(|| {
        let len = clamp_len(lognormal(rng, 120.0 * scale.sqrt(), 0.5), 30, 400);
        let uatg = usize::from(cds.is_some() && rng.random_bool(0.4));
        (utr5_like(rng, len, GC_EXON, None, uatg), intron(rng, scale))
    });
    let alt_last = (cuts.len() > 1 && rng.random_bool(if cds.is_some() { 0.2 } else { 0.15 })).then(|| {
        let len = clamp_len(
            lognormal(rng, 600.0 * scale, 0.7),
            60,
            ((3000.0 * scale) as usize).max(60),
        );
        (intron(rng, scale), utr3_like(rng, len, are_mean))
    });
    Model {
        kind,
        seq,
        cds,
        cuts,
        introns,
        alt_first,
        alt_last,
    }
}

/// Substitutes each base with probability `rate`, never touching `[keep_lo, keep_hi)`; inside the ORF
/// `[orf_lo, orf_hi)` a substitution that would create a stop codon is skipped.
fn substitute(rng: &mut ChaCha8Rng, seq: &mut [u8], rate: f64, orf: Option<(usize, usize)>) {
    for i in 0..seq.len() {
        if !rng.random_bool(rate) {
            continue;
        }
        let new = loop {
            let b = base(rng, GC_EXON);
            if b != seq[i] {
                break b;
            }
        };
        match orf {
            Some((start, stop)) if i >= start && i < stop + 3 => {
                if i < start + 3 || i >= stop {
                    continue;
                }
                let c = start + (i - start) / 3 * 3;
                let mut codon = [seq[c], seq[c + 1], seq[c + 2]];
                codon[i - c] = new;
                if !is_stop(&codon) {
                    seq[i] = new;
                }
            }
            _ => seq[i] = new,
        }
    }
}

/// A paralog: the founder with 5-15 % point substitutions (none creating a stop in the ORF, start and stop
/// codons kept), 1-6 small indels in the UTRs (none in the Kozak hexamer), and new introns.
pub(super) fn paralog(rng: &mut ChaCha8Rng, founder: &Model, scale: f64) -> Model {
    let rate = rng.random_range(0.05..0.15);
    let mut m = founder.clone();
    substitute(rng, &mut m.seq, rate, m.cds);
    for _ in 0..1 + poisson(rng, 2.0) {
        let len = m.seq.len();
        // Positions allowed to change: the 5'UTR before the Kozak hexamer, or the 3'UTR.
        let (lo, hi) = match m.cds {
            Some((start, stop)) => {
                if rng.random_bool(0.3) {
                    (0, start.saturating_sub(6))
                } else {
                    (stop + 3, len)
                }
            }
            None => (0, len),
        };
        if hi < lo + 20 {
            continue;
        }
        let pos = rng.random_range(lo..hi - 10);
        let k = rng.random_range(1..=8);
        let exon = m.cuts.partition_point(|&c| c <= pos);
        let exon_start = if exon == 0 { 0 } else { m.cuts[exon - 1] };
        if rng.random_bool(0.5) {
            let ins = random_seq(rng, k, GC_AT_RICH);
            m.seq.splice(pos..pos, ins);
            shift(&mut m, pos, k as isize);
        } else if pos + k < m.cuts[exon] && m.cuts[exon] - exon_start >= MIN_EXON + k && hi - lo >= 20 + k {
            m.seq.drain(pos..pos + k);
            shift(&mut m, pos, -(k as isize));
        }
    }
    m.introns = m.introns.iter().map(|_| intron(rng, scale)).collect();
    if let Some((exon, intr)) = &mut m.alt_first {
        substitute(rng, exon, rate, None);
        *intr = intron(rng, scale);
    }
    if let Some((intr, exon)) = &mut m.alt_last {
        substitute(rng, exon, rate, None);
        *intr = intron(rng, scale);
    }
    m
}

/// Moves every coordinate after `pos` by `by` after an indel at `pos`.
fn shift(m: &mut Model, pos: usize, by: isize) {
    let mv = |x: &mut usize| {
        if *x > pos {
            *x = x.saturating_add_signed(by);
        }
    };
    m.cuts.iter_mut().for_each(mv);
    if let Some((start, stop)) = &mut m.cds {
        mv(start);
        mv(stop);
    }
}

/// Replaces one base of the last exon's 3' end region (3'UTR for coding genes) by N.
pub(super) fn plant_n(rng: &mut ChaCha8Rng, m: &mut Model) {
    let last_start = if m.cuts.len() > 1 { m.cuts[m.cuts.len() - 2] } else { 0 };
    let lo = m.cds.map_or(last_start, |(_, stop)| (stop + 3).max(last_start));
    if lo < m.seq.len() {
        let p = rng.random_range(lo..m.seq.len());
        m.seq[p] = b'N';
    }
}

/// Lays the model out as genomic DNA: [alt first exon, intron,] exons and introns [, intron, alt last exon].
pub(super) fn locus(m: &Model) -> Locus {
    let mut seq = Vec::new();
    let push = |seq: &mut Vec<u8>, part: &[u8]| {
        let start = seq.len();
        seq.extend_from_slice(part);
        (start, seq.len())
    };
    let alt_first = m.alt_first.as_ref().map(|(exon, intr)| {
        let iv = push(&mut seq, exon);
        push(&mut seq, intr);
        iv
    });
    let mut core = Vec::with_capacity(m.cuts.len());
    let mut start = 0;
    for (i, &end) in m.cuts.iter().enumerate() {
        core.push(push(&mut seq, &m.seq[start..end]));
        if let Some(intr) = m.introns.get(i) {
            push(&mut seq, intr);
        }
        start = end;
    }
    let alt_last = m.alt_last.as_ref().map(|(intr, exon)| {
        push(&mut seq, intr);
        push(&mut seq, exon)
    });
    let to_locus = |t: usize| {
        let i = m.cuts.partition_point(|&c| c <= t).min(core.len() - 1);
        let exon_start = if i == 0 { 0 } else { m.cuts[i - 1] };
        core[i].0 + t - exon_start
    };
    let cds = m.cds.map(|(atg, stop)| (to_locus(atg), to_locus(stop + 2) + 1));
    Locus {
        seq,
        core,
        alt_first,
        alt_last,
        cds,
    }
}

/// Splices `exons` and finds the ORF from the reference ATG to the first in-frame stop. `None` when the
/// ATG is lost, no stop follows, the ORF is too short, the isoform is under 150 nt (and shorter than the
/// reference), or the length is on the wrong side of `max_len` (giants must exceed it, all others must not).
fn evaluate(kind: Kind, locus: &Locus, exons: Vec<(usize, usize)>, max_len: usize) -> Option<Isoform> {
    let len: usize = exons.iter().map(|(a, b)| b - a).sum();
    let reference_len: usize = locus.core.iter().map(|(a, b)| b - a).sum();
    if (kind == Kind::Giant) != (len > max_len) || len < MIN_LEN.min(reference_len) {
        return None;
    }
    let mut seq = Vec::with_capacity(len);
    for &(a, b) in &exons {
        seq.extend_from_slice(&locus.seq[a..b]);
    }
    let cds = match locus.cds {
        None => None,
        Some((atg, _)) => {
            let mut offset = 0;
            let mut start = None;
            for &(a, b) in &exons {
                if (a..b).contains(&atg) {
                    start = Some(offset + atg - a);
                    break;
                }
                offset += b - a;
            }
            let start = start?;
            if seq.get(start..start + 3)? != b"ATG" {
                return None;
            }
            let mut j = start;
            while !is_stop(seq.get(j..j + 3)?) {
                j += 3;
            }
            if (j - start) / 3 < MIN_CODONS {
                return None;
            }
            Some((start, j))
        }
    };
    Some(Isoform { exons, seq, cds })
}

/// True when the model's reference transcript is valid (ORF intact, length on the right side of `max_len`).
pub(super) fn is_valid(m: &Model, max_len: usize) -> bool {
    let l = locus(m);
    evaluate(m.kind, &l, l.core.clone(), max_len).is_some()
}

/// Applies one random splicing event to the exon list: exon skipping, an alternative 5' or 3' splice
/// site, an alternative transcription start or polyadenylation site, or an alternative first/last exon.
fn alter(rng: &mut ChaCha8Rng, locus: &Locus, iv: &mut Vec<(usize, usize)>) {
    let n = iv.len();
    let mut events: Vec<u8> = vec![3, 4];
    if n >= 3 {
        events.extend([0, 0, 0, 0]);
    }
    if n >= 2 {
        events.extend([1, 1, 2, 2]);
    }
    if locus.alt_first.is_some_and(|a| a != iv[0]) {
        events.extend([5, 5]);
    }
    if locus.alt_last.is_some_and(|a| a != iv[n - 1]) {
        events.extend([6, 6]);
    }
    let shift = |rng: &mut ChaCha8Rng| {
        let d = rng.random_range(3..=60);
        let d = if rng.random_bool(0.6) { d / 3 * 3 } else { d };
        if rng.random_bool(0.5) {
            d as isize
        } else {
            -(d as isize)
        }
    };
    match events[rng.random_range(0..events.len())] {
        0 => {
            iv.remove(rng.random_range(1..n - 1));
        }
        1 => {
            let i = rng.random_range(0..n - 1);
            let end = iv[i].1.saturating_add_signed(shift(rng));
            if end >= iv[i].0 + MIN_EXON && end + MIN_INTRON <= iv[i + 1].0 {
                iv[i].1 = end;
            }
        }
        2 => {
            let i = rng.random_range(1..n);
            let start = iv[i].0.saturating_add_signed(shift(rng));
            if start >= iv[i - 1].1 + MIN_INTRON && start + MIN_EXON <= iv[i].1 {
                iv[i].0 = start;
            }
        }
        3 => {
            let (a, b) = iv[0];
            let room = match locus.cds {
                Some((atg, _)) if (a..b).contains(&atg) => (atg - a).saturating_sub(12),
                _ => (b - a).saturating_sub(MIN_EXON),
            };
            if room > 0 {
                iv[0].0 += rng.random_range(1..=room);
            }
        }
        4 => {
            let (a, b) = iv[n - 1];
            let min_end = match locus.cds {
                Some((_, stop_end)) if stop_end > a && stop_end <= b => stop_end + 30,
                _ => a + MIN_EXON,
            };
            if b > min_end {
                iv[n - 1].1 = rng.random_range(min_end..b);
            }
        }
        5 => iv[0] = locus.alt_first.unwrap_or(iv[0]),
        _ => iv[n - 1] = locus.alt_last.unwrap_or(iv[n - 1]),
    }
}

/// The reference isoform (or `None` when it is invalid) followed by alternative ones, distinct in
/// exon structure, each made by one or two events: 0-5 of them, or with a `mean` number of isoforms
/// per gene, Poisson(mean − 1).
pub(super) fn isoforms(
    rng: &mut ChaCha8Rng,
    kind: Kind,
    locus: &Locus,
    max_len: usize,
    mean: Option<f64>,
) -> Option<Vec<Isoform>> {
    let reference = evaluate(kind, locus, locus.core.clone(), max_len)?;
    let want = match mean {
        Some(m) => 1 + poisson(rng, m - 1.0),
        None => match rng.random::<f64>() {
            x if x < 0.33 => 1,
            x if x < 0.55 => 2,
            x if x < 0.72 => 3,
            x if x < 0.85 => 4,
            x if x < 0.94 => 5,
            _ => 6,
        },
    };
    let mut out = vec![reference];
    for _ in 0..15 * want {
        if out.len() >= want {
            break;
        }
        let mut iv = locus.core.clone();
        for _ in 0..1 + usize::from(rng.random_bool(0.3)) {
            alter(rng, locus, &mut iv);
        }
        if out.iter().any(|o| o.exons == iv) {
            continue;
        }
        if let Some(iso) = evaluate(kind, locus, iv, max_len) {
            out.push(iso);
        }
    }
    Some(out)
}
