//! The synthetic transcriptome: a small genome, its GENCODE-style annotation, a paralog table and
//! label tables with planted rules, written so that `isoclr prep` reads it like real data and linear
//! probes have something known to find. Deterministic: the same options give byte-identical files.
//!
//! Two layouts: by default a small genome held in memory (below); with a genome size
//! ([`SynthOptions::genome_size`]) the human-scale layout of [`streamed`], with the same genes and files
//! but 24 human-proportioned chromosomes written as they are generated.
//!
//! # Files written into `out`
//! - `genome.fa`: chromosomes `chr1`..`chr4`, 60 columns. Genes are separated by intergenic DNA (about
//!   3 kb × `length_scale`) with soft-masked (lower-case) repeat copies and microsatellites and rare N runs;
//!   every chromosome starts and ends with 1 kb of N. Exons and introns are upper-case ACGT.
//! - `annotation.gtf`: GTF2.2, 1-based inclusive, GENCODE-like: `gene`, `transcript`, `exon`, `CDS`,
//!   `start_codon`, `stop_codon`; attributes `gene_id`, `transcript_id`, `gene_type`, `gene_name`,
//!   `transcript_type` (`protein_coding`, `nonsense_mediated_decay`, `lncRNA`), `exon_number`. CDS
//!   records exclude the stop codon; start and stop codons split across an exon junction get two records.
//!   Features of a transcript are listed in transcript order (descending coordinates on the minus strand).
//! - `transcripts.fa`: the mature spliced sequences 5'→3', header = transcript id, in GTF order.
//! - `homology.tsv`: `gene_id\tgroup_id`, one row per gene of a paralog family (id `FAM0001`, ...);
//!   genes without paralogs are not listed.
//! - `labels/half_life.tsv` (`transcript_id\tgene_id\thalf_life`, every transcript) and
//!   `labels/ribosome_load.tsv` (`transcript_id\tgene_id\tmean_ribosome_load`, coding transcripts only).
//!
//! # Genes
//! About 10 % of genes are non-coding. A coding gene's reference transcript is a 5'UTR (median 160 nt ×
//! scale, no ATG except 0-3 planted upstream ATGs at random offsets, GC drawn per gene in 0.35-0.65), a Kozak
//! hexamer (`GCCACC`, or a weak one with C/T at −3), an ORF (ATG, then codons drawn from the 61 sense codons
//! with the optimal codons (below) up-weighted by a per-gene bias; the codon after ATG starts with G or not
//! per gene; median 450 codons × scale), a stop codon and an AU-rich 3'UTR (median 900 nt × scale) with a
//! Poisson number of planted ATTTA (per-gene mean 0 or exponential with mean 2.5) and an AATAAA near its end.
//! Exon junctions fall in the 5'UTR and CDS, the last exon holds the stop codon and the whole 3'UTR; 1-15
//! exons, introns 100 bp-5 kb × scale but at least 80 bp (GT…CAG). Reference mature lengths are at most 11.8
//! kb × min(scale, 1), and no transcript exceeds 12,288 nt except those of the planted over-length genes (0.5
//! % of genes, at least one; 12.8-15 kb at any scale) that `prep` must drop. Alternative isoforms (1-6 per
//! gene, each distinct) come from one or two events on the reference exons: exon skipping, alternative 5'/3'
//! splice sites (±3-60 nt), an alternative transcription start or polyadenylation site, and alternative first
//! (5'UTR-only) or last exons. Each isoform's CDS runs from the reference ATG to the first in-frame stop
//! (frame shifts give early stops, annotated `nonsense_mediated_decay` when more than 50 nt before the last
//! junction); isoforms losing the ATG, with no stop or under 20 codons, and isoforms under 150 nt are
//! discarded. About 20 % of genes form paralog families of 2-4: a founder plus copies with 5-15 %
//! substitutions (none creating a stop in the ORF), 1-6 small UTR indels and new introns, placed anywhere in
//! the genome on either strand. One gene in 300 (at least one) gets one N in its last exon (3'UTR of coding
//! genes).
//!
//! # Planted label rules (per transcript, from its mature sequence and annotation)
//! Features: `L` length; `E` exon count; `J = (E − 1)·1000 / L` junctions per kb; `A` overlapping
//! `ATTTA` occurrences in the 3'UTR (after the stop codon; the whole transcript when non-coding);
//! `F` = CDS length with stop / `L` and `C` its codons, stop included (0 when non-coding); `O` = fraction of CDS codons, ATG included and
//! stop excluded, in `OPTIMAL_CODONS` = {GCT, CGT, AAC, GAC, TGC, CAA, GAA, GGT, CAC, ATC, TTG, AAG,
//! TTC, CCA, TCT, ACC, TAC, GTC} (0 when non-coding). For coding transcripts: `U5` 5'UTR length; `GC5`
//! its G+C fraction; `Uout`/`Uin` ATGs in the 5'UTR out of / in frame with the CDS start; `K` =
//! 0.5·[base −3 is A or G] + 0.5·[base +4 is G] (the ATG's A is +1).
//!
//! - half-life (hours): `log2 h = 2.0 − 0.30·min(A, 6) + 1.5·F + 2.0·(O − 0.5) − 0.6·(log10 L − 3.4)
//!   + 0.15·J + ε`.
//! - mean ribosome load (ribosomes per mRNA: initiation, set by the 5'UTR, over elongation, times ORF
//!   length): `log2 MRL = 2.0 + 0.5·log2(C / 300) + 1.0·(O − 0.5) − 0.35·min(Uout, 5) −
//!   0.15·min(Uin, 5) + 0.8·K − 0.25·(log10(U5 + 10) − 2.2) − 1.2·(GC5 − 0.45) + ε`. An earlier rule had
//!   only the 5'UTR terms; no whole-transcript representation could read it (k-mers on every training row
//!   reached r = 0.17), unlike isoform MRL measured by polysome profiling, where ORF length and codon
//!   usage carry much of the signal.
//!
//! ε is Gaussian with standard deviation 0.8 × the population standard deviation of the rule's value over
//! all transcripts of the file (all coding transcripts for MRL), so the rule explains R² ≈ 1 / 1.64 ≈ 0.61
//! of the variance (of log2 h and log2 MRL). The noise comes from a separate random stream, so the
//! sequences do not depend on it. Paralogs and isoforms share most features: probe splits must keep
//! homology groups together.

mod genome;
mod labels;
mod model;
pub mod streamed;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::dataset::DEFAULT_MAX_LEN;
use super::{DataError, Result};
use labels::Features;
use model::{Kind, Model};

/// Maximum mature length `prep` keeps; only the planted over-length genes exceed it.
const MAX_LEN: usize = DEFAULT_MAX_LEN as usize;
/// Number of chromosomes.
const CHROMOSOMES: usize = 4;

/// Settings of [`synth`].
#[derive(Debug, Clone, PartialEq)]
pub struct SynthOptions {
    /// Output directory (created if missing; existing files are overwritten).
    pub out: PathBuf,
    /// Number of genes (default 600).
    pub genes: usize,
    /// Seed of the generator; the same options give byte-identical files.
    pub seed: u64,
    /// Scales UTR, CDS, exon, intron and intergenic lengths: 1.0 gives realistic lengths, ~0.25 a fast
    /// smoke data set. Allowed range 0.05-2.0. The over-length genes are over 12,288 nt at any scale.
    pub length_scale: f64,
    /// Mean number of transcripts per gene: `None` keeps the default mix (1-6, mean about 2.6); a value
    /// `m` in 1.0-20.0 draws 1 + Poisson(m − 1) per gene (distinct isoforms are not always found, so
    /// the mean achieved is a little lower).
    pub isoforms_per_gene: Option<f64>,
    /// Genome size in bases: `None` keeps the four-chromosome genome held in memory (intergenic DNA
    /// about 3 kb × `length_scale` per gene); a size switches to the human-scale layout of
    /// [`streamed`]: chromosomes `chr1`..`chr22`, `chrX`, `chrY` in GRCh38's proportions, written one
    /// gene at a time. At least 1 Mb.
    pub genome_size: Option<u64>,
}

impl Default for SynthOptions {
    fn default() -> Self {
        Self {
            out: PathBuf::from("synth"),
            genes: 600,
            seed: 0,
            length_scale: 1.0,
            isoforms_per_gene: None,
            genome_size: None,
        }
    }
}

/// What [`synth`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthSummary {
    /// `genome.fa`.
    pub genome: PathBuf,
    /// `annotation.gtf`.
    pub gtf: PathBuf,
    /// `transcripts.fa`.
    pub transcripts_fasta: PathBuf,
    /// `homology.tsv`.
    pub homology: PathBuf,
    /// `labels/half_life.tsv` and `labels/ribosome_load.tsv`.
    pub labels: Vec<PathBuf>,
    /// Number of genes.
    pub genes: usize,
    /// Number of transcripts, over-length ones included.
    pub transcripts: usize,
    /// Number of paralog families.
    pub families: usize,
    /// Transcripts longer than 12,288 nt (planted for `prep` to drop).
    pub over_length: usize,
}

/// One transcript: exons as 1-based inclusive genomic intervals in transcript order, the mature sequence,
/// its CDS as (ATG position, stop codon position) in transcript coordinates, and its labels.
struct Tx {
    id: String,
    exons: Vec<(usize, usize)>,
    seq: Vec<u8>,
    cds: Option<(usize, usize)>,
    features: Features,
    half_life: f64,
    ribosome_load: Option<f64>,
}

impl Tx {
    /// Transcript number `number` (`SYNT000001`, …): `iso` placed on the genome at `place`, its labels not yet
    /// drawn. Locus order is transcript order; on the minus strand the coordinates descend.
    fn placed(iso: model::Isoform, place: genome::Placement, number: usize) -> Self {
        let exons: Vec<(usize, usize)> = iso.exons.iter().map(|&iv| place.genomic(iv)).collect();
        Tx {
            id: format!("SYNT{number:06}"),
            features: Features::of(&iso.seq, exons.len(), iso.cds),
            exons,
            seq: iso.seq,
            cds: iso.cds,
            half_life: 0.0,
            ribosome_load: None,
        }
    }
}

/// One gene after placement.
struct Gene {
    id: String,
    name: String,
    chrom: usize,
    minus: bool,
    coding: bool,
    /// Family number (1-based, in order of first appearance in the genome).
    family: Option<usize>,
    transcripts: Vec<Tx>,
}

/// The whole data set in memory.
struct Synth {
    chroms: Vec<Vec<u8>>,
    genes: Vec<Gene>,
    families: usize,
}

/// Generates the synthetic transcriptome described in the module documentation and writes it to
/// `opts.out`. Errors with [`DataError::Invalid`] for settings out of range and [`DataError::Io`] when a
/// file cannot be written.
pub fn synth(opts: &SynthOptions) -> Result<SynthSummary> {
    match opts.genome_size {
        Some(size) => streamed::synth(opts, size),
        None => {
            let data = generate(opts)?;
            write(opts, &data)
        }
    }
}

/// Smallest genome of the human-scale layout: room for the 24 chromosomes' telomeric N runs and genes.
const MIN_GENOME_SIZE: u64 = 1_000_000;

/// Checks the options shared by both layouts; errors with [`DataError::Invalid`] naming the option.
fn validate(opts: &SynthOptions) -> Result<()> {
    let invalid = |why: String| DataError::Invalid {
        what: "synth options".into(),
        why,
    };
    if opts.genes == 0 {
        return Err(invalid("genes must be at least 1".into()));
    }
    if !(0.05..=2.0).contains(&opts.length_scale) {
        return Err(invalid(format!("length_scale {} outside 0.05-2.0", opts.length_scale)));
    }
    if let Some(m) = opts.isoforms_per_gene
        && !(1.0..=20.0).contains(&m)
    {
        return Err(invalid(format!("isoforms_per_gene {m} outside 1.0-20.0")));
    }
    if let Some(size) = opts.genome_size
        && size < MIN_GENOME_SIZE
    {
        return Err(invalid(format!("genome_size {size} is under {MIN_GENOME_SIZE} bases")));
    }
    Ok(())
}

/// Gene names in placement order: a paralog family is numbered when its first member is placed and its
/// members lettered in turn (`FAM3A`, `FAM3B`), other genes are `SYN<rank>`.
pub(super) struct GeneNames {
    number: Vec<Option<usize>>,
    members: Vec<u8>,
    /// Families numbered so far.
    pub families: usize,
}

impl GeneNames {
    /// Names for genes of `family_count` planned families.
    pub fn new(family_count: usize) -> Self {
        Self {
            number: vec![None; family_count],
            members: vec![0; family_count],
            families: 0,
        }
    }

    /// The family number (if any) and name of the gene placed at 1-based `rank`, of planned family `family`.
    pub fn next(&mut self, family: Option<usize>, rank: usize) -> (Option<usize>, String) {
        match family {
            Some(f) => {
                let families = &mut self.families;
                let number = *self.number[f].get_or_insert_with(|| {
                    *families += 1;
                    *families
                });
                let letter = char::from(b'A' + self.members[f]);
                self.members[f] += 1;
                (Some(number), format!("FAM{number}{letter}"))
            }
            None => (None, format!("SYN{rank}")),
        }
    }
}

/// How many over-length genes to plant (0.5 % of `n`, at least one when there are two genes or more)
/// and the sizes (2-4) of the paralog families that take about 20 % of the other genes.
fn plan_families(rng: &mut ChaCha8Rng, n: usize) -> (usize, Vec<usize>) {
    let giants = if n >= 2 {
        ((n as f64 * 0.005).round() as usize).max(1)
    } else {
        0
    };
    let mut left = ((n as f64 * 0.2).round() as usize).min(n - giants);
    let mut sizes = Vec::new();
    while left >= 2 {
        let k = rng.random_range(2..=left.min(4));
        let k = if left - k == 1 {
            if k < 4 { k + 1 } else { k - 1 }
        } else {
            k
        };
        sizes.push(k);
        left -= k;
    }
    (giants, sizes)
}

/// Draws a model until its reference transcript is valid.
fn valid_model(rng: &mut ChaCha8Rng, mut make: impl FnMut(&mut ChaCha8Rng) -> Model) -> Result<Model> {
    for _ in 0..200 {
        let m = make(rng);
        if model::is_valid(&m, MAX_LEN) {
            return Ok(m);
        }
    }
    Err(DataError::Invalid {
        what: "synthetic gene".into(),
        why: "no valid gene model in 200 draws".into(),
    })
}

fn random_kind(rng: &mut ChaCha8Rng) -> Kind {
    if rng.random_bool(0.1) {
        Kind::NonCoding
    } else {
        Kind::Coding
    }
}

fn generate(opts: &SynthOptions) -> Result<Synth> {
    validate(opts)?;
    let (n, scale) = (opts.genes, opts.length_scale);
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);

    // Plan: paralog families (about 20 % of genes, 2-4 each), over-length genes, then singletons.
    let (giants, sizes) = plan_families(&mut rng, n);
    let mut models: Vec<(Model, Option<usize>)> = Vec::with_capacity(n);
    for (f, &size) in sizes.iter().enumerate() {
        let kind = random_kind(&mut rng);
        let founder = valid_model(&mut rng, |r| model::founder(r, kind, scale))?;
        for _ in 1..size {
            models.push((valid_model(&mut rng, |r| model::paralog(r, &founder, scale))?, Some(f)));
        }
        models.push((founder, Some(f)));
    }
    for _ in 0..giants {
        models.push((valid_model(&mut rng, |r| model::founder(r, Kind::Giant, scale))?, None));
    }
    while models.len() < n {
        let kind = random_kind(&mut rng);
        models.push((valid_model(&mut rng, |r| model::founder(r, kind, scale))?, None));
    }
    let mut ordinary: Vec<usize> = (0..n).filter(|&i| models[i].0.kind != Kind::Giant).collect();
    ordinary.shuffle(&mut rng);
    for &i in ordinary.iter().take((n / 300).max(1)) {
        model::plant_n(&mut rng, &mut models[i].0);
    }

    let mut loci = Vec::with_capacity(n);
    let mut isoforms = Vec::with_capacity(n);
    for (m, _) in &models {
        let locus = model::locus(m);
        let iso = draw_isoforms(&mut rng, m.kind, &locus, opts.isoforms_per_gene)?;
        loci.push(locus);
        isoforms.push(iso);
    }
    let minus: Vec<bool> = (0..n).map(|_| rng.random_bool(0.5)).collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    let seqs: Vec<&[u8]> = loci.iter().map(|l| l.seq.as_slice()).collect();
    let (chroms, placements) = genome::assemble(&mut rng, scale, &seqs, &minus, &order, CHROMOSOMES);

    // Genes in genome order (chromosome, then position), with ids and names.
    let mut names = GeneNames::new(sizes.len());
    let mut genes = Vec::with_capacity(n);
    let mut tx_count = 0;
    for (rank, &g) in order.iter().enumerate() {
        let (m, plan_family) = &models[g];
        let place = placements[g];
        let id = format!("SYNG{:05}", rank + 1);
        let (family, name) = names.next(*plan_family, rank + 1);
        let transcripts = isoforms[g]
            .iter()
            .map(|iso| {
                tx_count += 1;
                Tx::placed(iso.clone(), place, tx_count)
            })
            .collect();
        genes.push(Gene {
            id,
            name,
            chrom: place.chrom,
            minus: place.minus,
            coding: m.cds.is_some(),
            family,
            transcripts,
        });
    }

    // Labels, with noise from their own stream.
    let mut noise = ChaCha8Rng::seed_from_u64(opts.seed);
    noise.set_stream(1);
    let all = || genes.iter().flat_map(|g| &g.transcripts);
    let half_life: Vec<f64> = all().map(|t| t.features.log2_half_life()).collect();
    let mrl: Vec<f64> = all().filter_map(|t| t.features.log2_ribosome_load()).collect();
    let half_life = labels::add_noise(&mut noise, &half_life);
    let mrl = labels::add_noise(&mut noise, &mrl);
    let (mut h, mut r) = (half_life.into_iter(), mrl.into_iter());
    for t in genes.iter_mut().flat_map(|g| &mut g.transcripts) {
        t.half_life = h.next().unwrap_or(0.0).exp2();
        if t.cds.is_some() {
            t.ribosome_load = r.next().map(f64::exp2);
        }
    }
    Ok(Synth {
        chroms,
        genes,
        families: names.families,
    })
}

/// A gene's isoforms (see [`model::isoforms`]); errors when its reference transcript became invalid.
fn draw_isoforms(
    rng: &mut ChaCha8Rng,
    kind: Kind,
    locus: &model::Locus,
    mean: Option<f64>,
) -> Result<Vec<model::Isoform>> {
    model::isoforms(rng, kind, locus, MAX_LEN, mean).ok_or_else(|| DataError::Invalid {
        what: "synthetic gene".into(),
        why: "reference transcript became invalid".into(),
    })
}

/// Writes a file through a buffered writer, naming the path in errors.
fn write_file(path: &Path, body: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>) -> Result<()> {
    let file = File::create(path).map_err(DataError::io(path))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    body(&mut w).and_then(|()| w.flush()).map_err(DataError::io(path))
}

fn write_fasta(w: &mut impl Write, name: &str, seq: &[u8]) -> std::io::Result<()> {
    writeln!(w, ">{name}")?;
    for line in seq.chunks(60) {
        w.write_all(line)?;
        w.write_all(b"\n")?;
    }
    Ok(())
}

/// Genomic pieces (1-based inclusive, transcript order) of the transcript range `[x, y)`.
fn segments(exons: &[(usize, usize)], minus: bool, x: usize, y: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut offset = 0;
    for &(s, e) in exons {
        let len = e - s + 1;
        let (lo, hi) = (x.max(offset), y.min(offset + len));
        if lo < hi {
            out.push(if minus {
                (e - (hi - 1 - offset), e - (lo - offset))
            } else {
                (s + lo - offset, s + hi - 1 - offset)
            });
        }
        offset += len;
    }
    out
}

/// The GTF header: a `##description` line naming the options, `##provider` and `##format`.
fn write_gtf_header(w: &mut impl Write, opts: &SynthOptions) -> std::io::Result<()> {
    write!(
        w,
        "##description: isoclr synthetic transcriptome (seed {}, {} genes, length_scale {}",
        opts.seed, opts.genes, opts.length_scale
    )?;
    if let Some(m) = opts.isoforms_per_gene {
        write!(w, ", isoforms_per_gene {m}")?;
    }
    if let Some(size) = opts.genome_size {
        write!(w, ", genome_size {size}")?;
    }
    writeln!(w, ")")?;
    writeln!(w, "##provider: isoclr synth\n##format: gtf")
}

fn write_gtf(w: &mut impl Write, opts: &SynthOptions, data: &Synth) -> std::io::Result<()> {
    write_gtf_header(w, opts)?;
    for gene in &data.genes {
        write_gene_gtf(w, &format!("chr{}", gene.chrom + 1), gene)?;
    }
    Ok(())
}

/// One gene's GTF records: the gene, then each transcript with its exons and coding records.
fn write_gene_gtf(w: &mut impl Write, chrom: &str, gene: &Gene) -> std::io::Result<()> {
    let strand = if gene.minus { '-' } else { '+' };
    let gene_type = if gene.coding { "protein_coding" } else { "lncRNA" };
    let mut line = |feature: &str, (start, end): (usize, usize), frame: &str, attrs: &str| {
        writeln!(
            w,
            "{chrom}\tisoclr\t{feature}\t{start}\t{end}\t.\t{strand}\t{frame}\t{attrs}"
        )
    };
    let span = |exons: &mut dyn Iterator<Item = &(usize, usize)>| {
        exons.fold((usize::MAX, 0), |(lo, hi), &(s, e)| (lo.min(s), hi.max(e)))
    };
    let gene_span = span(&mut gene.transcripts.iter().flat_map(|t| &t.exons));
    let (gid, gname) = (&gene.id, &gene.name);
    line(
        "gene",
        gene_span,
        ".",
        &format!("gene_id \"{gid}\"; gene_type \"{gene_type}\"; gene_name \"{gname}\";"),
    )?;
    for t in &gene.transcripts {
        let last_exon = t.exons.last().map_or(0, |&(s, e)| e - s + 1);
        let tx_type = match t.cds {
            None => "lncRNA",
            Some((_, stop)) if stop + 3 + 50 < t.seq.len() - last_exon => "nonsense_mediated_decay",
            Some(_) => "protein_coding",
        };
        let attrs = format!(
            "gene_id \"{gid}\"; transcript_id \"{}\"; gene_type \"{gene_type}\"; gene_name \"{gname}\"; \
             transcript_type \"{tx_type}\";",
            t.id
        );
        line("transcript", span(&mut t.exons.iter()), ".", &attrs)?;
        for (k, &exon) in t.exons.iter().enumerate() {
            line("exon", exon, ".", &format!("{attrs} exon_number \"{}\";", k + 1))?;
        }
        if let Some((start, stop)) = t.cds {
            for (feature, x, y) in [
                ("CDS", start, stop),
                ("start_codon", start, start + 3),
                ("stop_codon", stop, stop + 3),
            ] {
                let mut done = 0;
                for seg in segments(&t.exons, gene.minus, x, y) {
                    let phase = (3 - done % 3) % 3;
                    line(feature, seg, &phase.to_string(), &attrs)?;
                    done += seg.1 - seg.0 + 1;
                }
            }
        }
    }
    Ok(())
}

fn write(opts: &SynthOptions, data: &Synth) -> Result<SynthSummary> {
    let out = &opts.out;
    let labels_dir = out.join("labels");
    std::fs::create_dir_all(&labels_dir).map_err(DataError::io(&labels_dir))?;
    let txs = || {
        data.genes
            .iter()
            .flat_map(|g| g.transcripts.iter().map(move |t| (g, t)))
    };

    let genome = out.join("genome.fa");
    write_file(&genome, |w| {
        for (c, seq) in data.chroms.iter().enumerate() {
            write_fasta(w, &format!("chr{}", c + 1), seq)?;
        }
        Ok(())
    })?;
    let gtf = out.join("annotation.gtf");
    write_file(&gtf, |w| write_gtf(w, opts, data))?;
    let transcripts_fasta = out.join("transcripts.fa");
    write_file(&transcripts_fasta, |w| {
        txs().try_for_each(|(_, t)| write_fasta(w, &t.id, &t.seq))
    })?;
    let homology = out.join("homology.tsv");
    write_file(&homology, |w| {
        writeln!(w, "gene_id\tgroup_id")?;
        for g in &data.genes {
            if let Some(f) = g.family {
                writeln!(w, "{}\tFAM{f:04}", g.id)?;
            }
        }
        Ok(())
    })?;
    let half_life = labels_dir.join("half_life.tsv");
    write_file(&half_life, |w| {
        writeln!(w, "transcript_id\tgene_id\thalf_life")?;
        txs().try_for_each(|(g, t)| writeln!(w, "{}\t{}\t{:.4}", t.id, g.id, t.half_life))
    })?;
    let ribosome_load = labels_dir.join("ribosome_load.tsv");
    write_file(&ribosome_load, |w| {
        writeln!(w, "transcript_id\tgene_id\tmean_ribosome_load")?;
        txs().try_for_each(|(g, t)| match t.ribosome_load {
            Some(x) => writeln!(w, "{}\t{}\t{x:.4}", t.id, g.id),
            None => Ok(()),
        })
    })?;
    Ok(SynthSummary {
        genome,
        gtf,
        transcripts_fasta,
        homology,
        labels: vec![half_life, ribosome_load],
        genes: data.genes.len(),
        transcripts: txs().count(),
        families: data.families,
        over_length: txs().filter(|(_, t)| t.seq.len() > MAX_LEN).count(),
    })
}
