//! The human-scale layout of the synthetic transcriptome: a genome of a given size (e.g. 3.1 Gb with
//! ~62 k genes and ~250 k transcripts, GENCODE human's scale), written one gene at a time so that
//! neither the genome nor a chromosome is ever held whole in memory.
//!
//! Chromosomes are `chr1`..`chr22`, `chrX`, `chrY` with GRCh38's relative lengths scaled to the
//! genome size, each framed by telomeric N runs (10 kb, or a twentieth of the chromosome when that is
//! shorter). Genes are shared out in proportion to chromosome length, in a random order; the DNA
//! between them has the composition of the default layout's spacers and fills each chromosome to its
//! share of the genome size (gap lengths in proportion to exponential draws, at least 200 bp), so a
//! chromosome is longer than its share only when its genes need more room. Genes, isoforms, paralog
//! families, planted N and label rules are those of the parent module; the files are the same six.
//! Paralog founders wait in memory until their last copy is placed; everything else of a gene is
//! written as soon as it is placed, except the two label values per transcript that the noise
//! (scaled to the whole population) needs at the end.
//!
//! Random streams: gene models use the seed's stream 0, intergenic DNA stream 2 and the label noise
//! stream 1 (as in the default layout), so the genes do not depend on the genome size.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::genome::{self, Placement};
use super::labels;
use super::model::{self, Kind, Model};
use super::{
    Gene, GeneNames, MAX_LEN, SynthOptions, SynthSummary, Tx, draw_isoforms, plan_families, random_kind, valid_model,
    validate, write_fasta, write_gene_gtf, write_gtf_header,
};
use crate::data::{DataError, Result};

/// GRCh38 primary chromosome lengths in kb: the relative sizes of the human-scale layout.
pub const HUMAN_CHROMOSOMES: [(&str, u64); 24] = [
    ("chr1", 248_956),
    ("chr2", 242_194),
    ("chr3", 198_295),
    ("chr4", 190_214),
    ("chr5", 181_538),
    ("chr6", 170_806),
    ("chr7", 159_346),
    ("chr8", 145_139),
    ("chr9", 138_395),
    ("chr10", 133_797),
    ("chr11", 135_086),
    ("chr12", 133_275),
    ("chr13", 114_364),
    ("chr14", 107_044),
    ("chr15", 101_991),
    ("chr16", 90_338),
    ("chr17", 83_257),
    ("chr18", 80_373),
    ("chr19", 58_617),
    ("chr20", 64_444),
    ("chr21", 46_710),
    ("chr22", 50_818),
    ("chrX", 156_041),
    ("chrY", 57_227),
];

/// Telomeric N run at each chromosome end (at most).
const TELOMERE: usize = 10_000;
/// Shortest stretch of intergenic DNA between two genes (or a gene and a telomere).
const MIN_GAP: usize = 200;
/// Intergenic DNA is generated and written in pieces of at most this many bases.
const CHUNK: usize = 1 << 20;

/// What each gene slot of the genome holds, decided before any gene is drawn.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Paralog family (index into the planned family sizes).
    family: Option<usize>,
    /// A planted over-length gene.
    giant: bool,
    /// Gets one N in its last exon.
    plant_n: bool,
}

/// A drawn gene before placement: its locus (sense orientation) and isoforms in locus coordinates.
struct Drawn {
    slot: Slot,
    coding: bool,
    minus: bool,
    locus: Vec<u8>,
    isoforms: Vec<model::Isoform>,
}

/// A file being written, with its path for error messages.
struct Sink {
    path: PathBuf,
    w: BufWriter<File>,
}

impl Sink {
    fn create(path: PathBuf) -> Result<Self> {
        let file = File::create(&path).map_err(DataError::io(&path))?;
        Ok(Self {
            w: BufWriter::with_capacity(1 << 20, file),
            path,
        })
    }

    fn put(&mut self, f: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>) -> Result<()> {
        f(&mut self.w).map_err(DataError::io(&self.path))
    }

    fn finish(mut self) -> Result<PathBuf> {
        self.w.flush().map_err(DataError::io(&self.path))?;
        Ok(self.path)
    }
}

/// `genome.fa` written in pieces: chromosome sequences wrapped at 60 columns, with the 0-based offset
/// of the next base in the current chromosome and the intergenic DNA generator.
struct GenomeWriter {
    sink: Sink,
    column: usize,
    offset: usize,
    filler: ChaCha8Rng,
    repeats: Vec<Vec<u8>>,
    buffer: Vec<u8>,
}

impl GenomeWriter {
    /// Ends the current chromosome's last line and starts a new record.
    fn chromosome(&mut self, name: &str) -> Result<()> {
        self.end()?;
        self.offset = 0;
        self.sink.put(|w| writeln!(w, ">{name}"))
    }

    fn bases(&mut self, mut seq: &[u8]) -> Result<()> {
        self.offset += seq.len();
        let column = &mut self.column;
        self.sink.put(|w| {
            while !seq.is_empty() {
                let k = (60 - *column).min(seq.len());
                w.write_all(&seq[..k])?;
                *column += k;
                if *column == 60 {
                    w.write_all(b"\n")?;
                    *column = 0;
                }
                seq = &seq[k..];
            }
            Ok(())
        })
    }

    /// Appends `len` bases of intergenic DNA, generated a chunk at a time.
    fn intergenic(&mut self, len: usize) -> Result<()> {
        let mut buffer = std::mem::take(&mut self.buffer);
        let mut left = len;
        while left > 0 {
            let k = left.min(CHUNK);
            buffer.clear();
            genome::intergenic(&mut self.filler, k, &self.repeats, &mut buffer);
            self.bases(&buffer)?;
            left -= k;
        }
        self.buffer = buffer;
        Ok(())
    }

    fn end(&mut self) -> Result<()> {
        if self.column > 0 {
            self.column = 0;
            self.sink.put(|w| w.write_all(b"\n"))?;
        }
        Ok(())
    }
}

/// `total` split in proportion to the cumulative `weights` (one bound per entry, 0 before the first):
/// the integer shares sum to exactly `total`.
fn shares(total: u64, weights: &[f64]) -> Vec<u64> {
    let sum: f64 = weights.iter().sum();
    let mut cumulative = 0.0;
    let mut bounds = Vec::with_capacity(weights.len() + 1);
    bounds.push(0);
    for (i, w) in weights.iter().enumerate() {
        cumulative += w;
        bounds.push(if i + 1 == weights.len() {
            total
        } else {
            ((total as f64) * cumulative / sum).floor() as u64
        });
    }
    bounds.windows(2).map(|b| b[1] - b[0]).collect()
}

/// Writes the human-scale layout described in the module documentation. Errors as [`super::synth`].
pub(super) fn synth(opts: &SynthOptions, genome_size: u64) -> Result<SynthSummary> {
    validate(opts)?;
    let n = opts.genes;
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut filler = ChaCha8Rng::seed_from_u64(opts.seed);
    filler.set_stream(2);

    // The plan: which slot (in genome order) is a family member, a giant or a singleton, and which
    // ordinary genes get an N.
    let (giants, sizes) = plan_families(&mut rng, n);
    let mut slots: Vec<Slot> = Vec::with_capacity(n);
    for (f, &size) in sizes.iter().enumerate() {
        slots.extend(std::iter::repeat_n(
            Slot {
                family: Some(f),
                ..Slot::default()
            },
            size,
        ));
    }
    slots.extend(std::iter::repeat_n(
        Slot {
            giant: true,
            ..Slot::default()
        },
        giants,
    ));
    slots.resize(n, Slot::default());
    slots.shuffle(&mut rng);
    let mut ordinary: Vec<usize> = (0..n).filter(|&i| !slots[i].giant).collect();
    ordinary.shuffle(&mut rng);
    for &i in ordinary.iter().take((n / 300).max(1)) {
        slots[i].plant_n = true;
    }

    let out = &opts.out;
    let labels_dir = out.join("labels");
    std::fs::create_dir_all(&labels_dir).map_err(DataError::io(&labels_dir))?;
    let repeats = genome::repeat_families(&mut filler);
    let mut genome_out = GenomeWriter {
        sink: Sink::create(out.join("genome.fa"))?,
        column: 0,
        offset: 0,
        filler,
        repeats,
        buffer: Vec::with_capacity(CHUNK + 1024),
    };
    let mut gtf_out = Sink::create(out.join("annotation.gtf"))?;
    let mut tx_out = Sink::create(out.join("transcripts.fa"))?;
    let mut homology_out = Sink::create(out.join("homology.tsv"))?;
    gtf_out.put(|w| write_gtf_header(w, opts))?;
    homology_out.put(|w| writeln!(w, "gene_id\tgroup_id"))?;

    let weights: Vec<f64> = HUMAN_CHROMOSOMES.iter().map(|&(_, kb)| kb as f64).collect();
    let chrom_sizes = shares(genome_size, &weights);
    let chrom_genes = shares(n as u64, &weights);
    let mut founders: Vec<Option<(Model, usize)>> = vec![None; sizes.len()];
    let mut names = GeneNames::new(sizes.len());
    // Per transcript: gene rank, log2 half-life and log2 ribosome load before noise.
    let mut rules: Vec<(u32, f64, Option<f64>)> = Vec::new();
    let (mut rank, mut tx_count, mut over_length) = (0usize, 0usize, 0usize);
    let mut next_slot = 0;
    for (c, &(chrom_name, _)) in HUMAN_CHROMOSOMES.iter().enumerate() {
        let count = chrom_genes[c] as usize;
        let mut drawn = Vec::with_capacity(count);
        for &slot in &slots[next_slot..next_slot + count] {
            drawn.push(draw(&mut rng, opts, slot, &sizes, &mut founders)?);
        }
        next_slot += count;

        let size = usize::try_from(chrom_sizes[c]).unwrap_or(usize::MAX);
        let telomere = TELOMERE.min(size / 20);
        let genic: usize = drawn.iter().map(|d| d.locus.len()).sum();
        let free = size.saturating_sub(2 * telomere + genic + (count + 1) * MIN_GAP);
        let gap_weights: Vec<f64> = (0..=count)
            .map(|_| -(1.0 - genome_out.filler.random::<f64>()).ln())
            .collect();
        let gaps = shares(free as u64, &gap_weights);

        genome_out.chromosome(chrom_name)?;
        let telomere_ns = vec![b'N'; telomere];
        genome_out.bases(&telomere_ns)?;
        genome_out.intergenic(MIN_GAP + gaps[0] as usize)?;
        for (k, d) in drawn.into_iter().enumerate() {
            let place = Placement {
                chrom: c,
                offset: genome_out.offset,
                len: d.locus.len(),
                minus: d.minus,
            };
            if d.minus {
                genome_out.bases(&genome::revcomp(&d.locus))?;
            } else {
                genome_out.bases(&d.locus)?;
            }

            rank += 1;
            let id = format!("SYNG{rank:05}");
            let (family, name) = names.next(d.slot.family, rank);
            let transcripts: Vec<Tx> = d
                .isoforms
                .into_iter()
                .map(|iso| {
                    tx_count += 1;
                    Tx::placed(iso, place, tx_count)
                })
                .collect();
            let gene = Gene {
                id,
                name,
                chrom: c,
                minus: d.minus,
                coding: d.coding,
                family,
                transcripts,
            };
            gtf_out.put(|w| write_gene_gtf(w, chrom_name, &gene))?;
            tx_out.put(|w| gene.transcripts.iter().try_for_each(|t| write_fasta(w, &t.id, &t.seq)))?;
            if let Some(f) = gene.family {
                homology_out.put(|w| writeln!(w, "{}\tFAM{f:04}", gene.id))?;
            }
            for t in &gene.transcripts {
                over_length += usize::from(t.seq.len() > MAX_LEN);
                rules.push((
                    rank as u32,
                    t.features.log2_half_life(),
                    t.features.log2_ribosome_load(),
                ));
            }
            genome_out.intergenic(MIN_GAP + gaps[k + 1] as usize)?;
        }
        genome_out.bases(&telomere_ns)?;
    }
    genome_out.end()?;
    let genome = genome_out.sink.finish()?;
    let gtf = gtf_out.finish()?;
    let transcripts_fasta = tx_out.finish()?;
    let homology = homology_out.finish()?;
    let label_files = write_labels(opts.seed, &labels_dir, &rules)?;
    Ok(SynthSummary {
        genome,
        gtf,
        transcripts_fasta,
        homology,
        labels: label_files,
        genes: n,
        transcripts: tx_count,
        families: names.families,
        over_length,
    })
}

/// Draws the gene of one slot: a paralog copy of its family's founder (the family's first slot is the
/// founder itself), a planted over-length gene, or a new gene; then its isoforms and strand.
fn draw(
    rng: &mut ChaCha8Rng,
    opts: &SynthOptions,
    slot: Slot,
    sizes: &[usize],
    founders: &mut [Option<(Model, usize)>],
) -> Result<Drawn> {
    let scale = opts.length_scale;
    let mut m = match slot.family {
        Some(f) => match founders[f].take() {
            None => {
                let kind = random_kind(rng);
                let founder = valid_model(rng, |r| model::founder(r, kind, scale))?;
                if sizes[f] > 1 {
                    founders[f] = Some((founder.clone(), sizes[f] - 1));
                }
                founder
            }
            Some((founder, left)) => {
                let copy = valid_model(rng, |r| model::paralog(r, &founder, scale))?;
                // The founder is dropped with the family's last copy.
                if left > 1 {
                    founders[f] = Some((founder, left - 1));
                }
                copy
            }
        },
        None if slot.giant => valid_model(rng, |r| model::founder(r, Kind::Giant, scale))?,
        None => {
            let kind = random_kind(rng);
            valid_model(rng, |r| model::founder(r, kind, scale))?
        }
    };
    if slot.plant_n {
        model::plant_n(rng, &mut m);
    }
    let locus = model::locus(&m);
    let isoforms = draw_isoforms(rng, m.kind, &locus, opts.isoforms_per_gene)?;
    Ok(Drawn {
        slot,
        coding: m.cds.is_some(),
        minus: rng.random_bool(0.5),
        locus: locus.seq,
        isoforms,
    })
}

/// Adds the label noise (stream 1 of the seed, as in the default layout) and writes both label tables.
fn write_labels(seed: u64, dir: &Path, rules: &[(u32, f64, Option<f64>)]) -> Result<Vec<PathBuf>> {
    let mut noise = ChaCha8Rng::seed_from_u64(seed);
    noise.set_stream(1);
    let half_life: Vec<f64> = rules.iter().map(|r| r.1).collect();
    let load: Vec<f64> = rules.iter().filter_map(|r| r.2).collect();
    let half_life = labels::add_noise(&mut noise, &half_life);
    let load = labels::add_noise(&mut noise, &load);
    let mut half_life_out = Sink::create(dir.join("half_life.tsv"))?;
    let mut load_out = Sink::create(dir.join("ribosome_load.tsv"))?;
    half_life_out.put(|w| writeln!(w, "transcript_id\tgene_id\thalf_life"))?;
    load_out.put(|w| writeln!(w, "transcript_id\tgene_id\tmean_ribosome_load"))?;
    let mut loads = load.into_iter();
    for (i, (&(gene, _, log2_load), h)) in rules.iter().zip(half_life).enumerate() {
        let (t, g) = (i + 1, gene);
        half_life_out.put(|w| writeln!(w, "SYNT{t:06}\tSYNG{g:05}\t{:.4}", h.exp2()))?;
        if log2_load.is_some()
            && let Some(x) = loads.next()
        {
            load_out.put(|w| writeln!(w, "SYNT{t:06}\tSYNG{g:05}\t{:.4}", x.exp2()))?;
        }
    }
    Ok(vec![half_life_out.finish()?, load_out.finish()?])
}
