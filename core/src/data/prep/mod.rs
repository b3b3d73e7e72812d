//! `isoclr prep`: builds a dataset directory (see [`crate::data::dataset`]) from real annotation and
//! sequence files, following METHOD.md ("Input encoding", "Pre-training data").
//!
//! Three modes ([`PrepInput`]):
//! - **genome**: a genome FASTA plus a GTF or GFF3 annotation; each transcript is spliced from its
//!   exons (minus-strand exons reverse-complemented, concatenated 5'→3');
//! - **transcripts**: a transcript FASTA plus a GTF/GFF3 whose exon and CDS records carry the same
//!   transcript ids (the FASTA header's first word, or the part before its first `|`); the
//!   annotation supplies exon boundaries and the CDS;
//! - **table**: a transcript table (TSV/CSV/Parquet), read by the same code as probe tables.
//!
//! Where the input has no CDS (de-novo assemblies, mRNA collections), [`CdsSource::LongestOrf`] infers one.
//!
//! A group is a gene, or a homology group when a homology table maps genes to groups. Annotation,
//! FASTA and table are parsed with the field's own crates (noodles) and may be gzipped. The output
//! is deterministic: the same inputs give byte-identical files.
//!
//! This module must not import tch, tonic or tokio.

mod annotation;
pub(crate) mod input;
mod sequence;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use self::annotation::{Annotation, Model, StopRule};
use super::dataset::{Dropped, Provenance};
use super::orf;
use super::table::{NO_CDS_COLUMNS, TranscriptTable};
use super::transcript::reverse_complement;
use super::{DataError, Dataset, Group, Manifest, Result, Transcript};

/// What `prep` reads transcripts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrepInput {
    /// A genome FASTA plus a GTF or GFF3 annotation: each transcript is spliced from its exons.
    Genome {
        /// GTF, or GFF3 (by extension `.gff`/`.gff3` or a `##gff-version 3` first line); plain or gzipped.
        annotation: PathBuf,
        /// Genome FASTA, plain or gzipped.
        genome: PathBuf,
    },
    /// A transcript FASTA plus a GTF/GFF3 whose exon and CDS records carry the same transcript ids.
    Transcripts {
        /// GTF or GFF3, plain or gzipped.
        annotation: PathBuf,
        /// Transcript FASTA, plain or gzipped.
        transcripts: PathBuf,
    },
    /// A transcript table ([`crate::data::table`]: `id`, `sequence`, optional `gene`, `group`, `cds_start`,
    /// `cds_end`, `exon_ends`), the format probe inputs use: for inputs without an annotation file.
    Table(PathBuf),
}

/// Where coding regions come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CdsSource {
    /// The annotation's CDS records (or the table's `cds_start`/`cds_end`); none elsewhere.
    Annotation,
    /// The annotation's CDS where there is one, else the longest ATG…stop ORF on the forward strand with at
    /// least `min_codons` codons ([`crate::data::orf::longest_orf`]).
    LongestOrf {
        /// Minimum ORF length in codons, the ATG counted and the stop not.
        min_codons: u32,
    },
}

/// What to do with annotated transcripts whose strand is unknown (`.`, or `?` in GFF3), such as StringTie's
/// single-exon assemblies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unstranded {
    /// Keep them as given (5'→3' in ascending coordinates); their number is noted in the manifest.
    Keep,
    /// Leave them out, each recorded with the reason [`UNKNOWN_STRAND`].
    Drop,
}

/// Inputs and settings of `isoclr prep`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepOptions {
    /// The transcripts' source.
    pub input: PrepInput,
    /// Optional homology table: `gene_id<TAB>group_id` per line, optional header line starting with
    /// `gene_id`, `#` comment lines. With a table input it maps the `gene` column (or the group).
    pub homology: Option<PathBuf>,
    /// Output dataset directory (created if missing).
    pub out: PathBuf,
    /// Transcripts longer than this many nucleotides are dropped (not truncated).
    pub max_len: u32,
    /// Where coding regions come from.
    pub cds: CdsSource,
    /// What to do with transcripts of unknown strand.
    pub unstranded: Unstranded,
}

impl PrepOptions {
    /// Options with the defaults of the command line: annotated CDS only, unknown strands kept, 12,288 nt.
    pub fn new(input: PrepInput, out: impl Into<PathBuf>) -> Self {
        Self {
            input,
            homology: None,
            out: out.into(),
            max_len: super::dataset::DEFAULT_MAX_LEN,
            cds: CdsSource::Annotation,
            unstranded: Unstranded::Keep,
        }
    }
}

/// Builds the dataset described by `opts` and returns its manifest.
///
/// Transcripts longer than `max_len`, annotation transcripts without sequence ("no sequence in
/// FASTA", transcript mode), FASTA records without annotation, annotated transcripts without exon
/// records ("no exons in annotation") and, with [`Unstranded::Drop`], transcripts of unknown strand are left
/// out and recorded with their reason in the manifest. Groups are ordered by group id, transcripts by group,
/// then transcript id.
///
/// Coordinates: exon ends are the cumulative exon lengths − 1 in transcript order; the CDS is the
/// span `[start, end)` of the `CDS` records in transcript coordinates, stop codon included. GTF
/// `CDS` records leave the stop out: a `stop_codon` record is added to the span; a GTF file without
/// any `stop_codon` record gets the 3 nt after the CDS added when they are within the transcript
/// and the CDS does not already end on a stop codon (details on the annotation model's `cds`).
/// With [`CdsSource::LongestOrf`] a transcript without a CDS gets its longest ORF; the manifest says so.
///
/// The genome is streamed one chromosome at a time (only the chromosome being read, the parsed
/// annotation and the 2-bit packed transcripts are in memory).
///
/// Errors: [`DataError::Invalid`] when an input holds no records or when nothing is left to write;
/// [`DataError::Parse`] naming the file and line for a malformed record, a `CDS` outside the exons, an exon
/// on a sequence the genome lacks ("unknown sequence name") or beyond its end, a transcript whose FASTA
/// length differs from its summed exon lengths, or a bad homology line; [`DataError::Table`] naming the file,
/// line and column for a bad transcript table; [`DataError::Io`] when a file cannot be read or written.
pub fn prep(opts: &PrepOptions) -> Result<Manifest> {
    if opts.max_len == 0 {
        return Err(DataError::Invalid {
            what: "prep options".into(),
            why: "max_len must be at least 1".into(),
        });
    }
    let homology = match &opts.homology {
        Some(path) => read_homology(path)?,
        None => HashMap::new(),
    };
    let mut dropped = Vec::new();
    let mut notes = Vec::new();
    let (built, first_input) = match &opts.input {
        PrepInput::Genome { annotation, genome } => (
            from_annotation(annotation, Source::Genome(genome), opts, &mut dropped, &mut notes)?,
            annotation,
        ),
        PrepInput::Transcripts {
            annotation,
            transcripts,
        } => (
            from_annotation(
                annotation,
                Source::Transcripts(transcripts),
                opts,
                &mut dropped,
                &mut notes,
            )?,
            annotation,
        ),
        PrepInput::Table(path) => (from_table(path, opts.max_len, &mut dropped, &mut notes)?, path),
    };
    let (built, cds_source, cds_inferred) = infer_cds(built, opts.cds);
    if cds_inferred > 0 {
        notes.retain(|n| !n.starts_with(NO_CDS_COLUMNS));
    }
    let mut by_group: BTreeMap<String, Vec<Transcript>> = BTreeMap::new();
    for (t, group) in built {
        let group = homology.get(&t.gene_id).cloned().unwrap_or(group);
        by_group.entry(group).or_default().push(t);
    }
    dropped.sort_by(|a, b| (&a.id, &a.reason).cmp(&(&b.id, &b.reason)));
    if by_group.is_empty() {
        return Err(DataError::Invalid {
            what: first_input.display().to_string(),
            why: format!(
                "no transcript left to write ({} left out: {})",
                dropped.len(),
                reasons(&dropped)
            ),
        });
    }
    let mut groups = Vec::with_capacity(by_group.len());
    let mut transcripts = Vec::new();
    for (index, (id, mut members)) in by_group.into_iter().enumerate() {
        members.sort_by(|a, b| a.id.cmp(&b.id));
        let mut indices = Vec::with_capacity(members.len());
        for mut t in members {
            t.group = index as u32;
            indices.push(transcripts.len() as u32);
            transcripts.push(t);
        }
        groups.push(Group {
            id,
            transcripts: indices,
        });
    }
    let inputs: Vec<&PathBuf> = match &opts.input {
        PrepInput::Genome { annotation, genome } => vec![annotation, genome],
        PrepInput::Transcripts {
            annotation,
            transcripts,
        } => vec![annotation, transcripts],
        PrepInput::Table(path) => vec![path],
    };
    let sources = inputs
        .into_iter()
        .chain(opts.homology.as_ref())
        .map(|p| p.display().to_string())
        .collect();
    Dataset::write(
        &opts.out,
        &groups,
        &transcripts,
        Provenance {
            max_len: opts.max_len,
            dropped,
            sources,
            cds_source,
            cds_inferred,
            notes,
        },
    )
}

/// The reason recorded for a transcript left out by [`Unstranded::Drop`].
pub const UNKNOWN_STRAND: &str = "unknown strand (.)";

/// Gives transcripts without a CDS their longest ORF when asked; returns them with the manifest's description
/// of where coding regions came from and the number inferred.
fn infer_cds(mut built: Vec<(Transcript, String)>, cds: CdsSource) -> (Vec<(Transcript, String)>, String, usize) {
    let CdsSource::LongestOrf { min_codons } = cds else {
        return (built, "annotation".to_owned(), 0);
    };
    let mut inferred = 0;
    for (t, _) in built.iter_mut().filter(|(t, _)| t.cds.is_none()) {
        if let Some(orf) = orf::longest_orf(&t.sequence(), min_codons) {
            t.cds = Some(orf);
            inferred += 1;
        }
    }
    let how = format!(
        "annotation; longest ATG…stop ORF of at least {min_codons} codons (forward strand) where the annotation has none"
    );
    (built, how, inferred)
}

/// Table mode: every row of a transcript table, its group the table's `group` (or `gene`) cell.
fn from_table(
    path: &Path,
    max_len: u32,
    dropped: &mut Vec<Dropped>,
    notes: &mut Vec<String>,
) -> Result<Vec<(Transcript, String)>> {
    let table = TranscriptTable::read(path, &[]).map_err(|e| DataError::Table(Box::new(e)))?;
    notes.extend(table.notes.iter().cloned());
    let mut kept = Vec::with_capacity(table.rows.len());
    for row in table.rows {
        let t = row.transcript;
        if t.len > max_len {
            dropped.push(Dropped {
                id: t.id.clone(),
                reason: format!("longer than {max_len} nt"),
            });
            continue;
        }
        let group = table.groups[t.group as usize].clone();
        kept.push((t, group));
    }
    Ok(kept)
}

/// Annotation modes: reads the annotation, drops what cannot or should not be built, and builds the rest from
/// the genome or transcript FASTA. Each transcript comes with its group (its gene id).
fn from_annotation(
    path: &Path,
    source: Source<'_>,
    opts: &PrepOptions,
    dropped: &mut Vec<Dropped>,
    notes: &mut Vec<String>,
) -> Result<Vec<(Transcript, String)>> {
    let annotation = annotation::read(path)?;
    dropped.extend(annotation.without_exons.iter().map(|id| Dropped {
        id: id.clone(),
        reason: NO_EXONS.into(),
    }));
    let mut skip = vec![false; annotation.models.len()];
    let mut unstranded = 0;
    for (m, skip) in annotation.models.iter().zip(&mut skip) {
        if m.len() > u64::from(opts.max_len) {
            *skip = true;
            dropped.push(Dropped {
                id: m.id.clone(),
                reason: format!("longer than {} nt", opts.max_len),
            });
        } else if m.unstranded {
            match opts.unstranded {
                Unstranded::Keep => unstranded += 1,
                Unstranded::Drop => {
                    *skip = true;
                    dropped.push(Dropped {
                        id: m.id.clone(),
                        reason: UNKNOWN_STRAND.into(),
                    });
                }
            }
        }
    }
    if unstranded > 0 {
        notes.push(format!(
            "{unstranded} transcripts of unknown strand (.) kept as given: 5'→3' in ascending genome coordinates"
        ));
    }
    let built = match source {
        Source::Genome(genome) => from_genome(&annotation, genome, &skip)?,
        Source::Transcripts(fasta) => from_transcripts(&annotation, fasta, &skip, dropped)?,
    };
    Ok(built
        .into_iter()
        .flatten()
        .map(|t| {
            let gene = t.gene_id.clone();
            (t, gene)
        })
        .collect())
}

const NO_EXONS: &str = "no exons in annotation";
const NO_SEQUENCE: &str = "no sequence in FASTA";

enum Source<'a> {
    Genome(&'a Path),
    Transcripts(&'a Path),
}

fn reasons(dropped: &[Dropped]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for d in dropped {
        *counts.entry(&d.reason).or_default() += 1;
    }
    counts
        .iter()
        .map(|(r, n)| format!("{n} {r}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Packs one transcript (group index set later) with its exon ends and CDS.
fn build(m: &Model, letters: &[u8], rule: StopRule) -> Result<Transcript> {
    Transcript::new(&m.id, &m.gene_id, 0, letters, m.exon_ends(), m.cds(letters, rule))
}

/// Genome mode: streams the genome FASTA and splices every transcript of each chromosome as it comes.
/// Returns one entry per annotation model (`None` where dropped).
fn from_genome(ann: &Annotation, path: &Path, skip: &[bool]) -> Result<Vec<Option<Transcript>>> {
    let mut on_sequence: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, m) in ann.models.iter().enumerate() {
        on_sequence.entry(m.seqname.as_str()).or_default().push(i);
    }
    let rule = ann.stop_rule();
    let mut built: Vec<Option<Transcript>> = ann.models.iter().map(|_| None).collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let records = sequence::for_each_record(path, |name, line, chromosome| {
        if let Some(first) = seen.insert(name.to_owned(), line) {
            return Err(DataError::Parse {
                path: path.to_owned(),
                line,
                why: format!("duplicate sequence name {name} (first at line {first})"),
            });
        }
        for &i in on_sequence.get(name).map(Vec::as_slice).unwrap_or_default() {
            let m = &ann.models[i];
            if let Some(e) = m.exons.iter().find(|e| e.end > chromosome.len() as u64) {
                return Err(DataError::Parse {
                    path: ann.path.clone(),
                    line: e.line,
                    why: format!(
                        "exon {}-{} of transcript {} extends beyond the end of {name} ({} nt in {})",
                        e.start,
                        e.end,
                        m.id,
                        chromosome.len(),
                        path.display()
                    ),
                });
            }
            if skip[i] {
                continue;
            }
            let mut letters = Vec::with_capacity(m.len() as usize);
            for e in &m.exons {
                let piece = &chromosome[(e.start - 1) as usize..e.end as usize];
                if m.reverse {
                    letters.extend(reverse_complement(piece));
                } else {
                    letters.extend_from_slice(piece);
                }
            }
            built[i] = Some(build(m, &letters, rule)?);
        }
        Ok(())
    })?;
    if records == 0 {
        return Err(DataError::Invalid {
            what: path.display().to_string(),
            why: "no FASTA records".into(),
        });
    }
    if let Some(m) = ann
        .models
        .iter()
        .filter(|m| !seen.contains_key(&m.seqname))
        .min_by_key(|m| m.exon_line())
    {
        return Err(DataError::Parse {
            path: ann.path.clone(),
            line: m.exon_line(),
            why: format!(
                "unknown sequence name {} (transcript {}): not in the genome FASTA {}",
                m.seqname,
                m.id,
                path.display()
            ),
        });
    }
    Ok(built)
}

/// Transcript mode: matches FASTA records to annotation models by id and checks their lengths.
fn from_transcripts(
    ann: &Annotation,
    path: &Path,
    skip: &[bool],
    dropped: &mut Vec<Dropped>,
) -> Result<Vec<Option<Transcript>>> {
    let by_id: HashMap<&str, usize> = ann.models.iter().enumerate().map(|(i, m)| (m.id.as_str(), i)).collect();
    let without_exons: HashSet<&str> = ann.without_exons.iter().map(String::as_str).collect();
    let rule = ann.stop_rule();
    let mut built: Vec<Option<Transcript>> = ann.models.iter().map(|_| None).collect();
    let mut fasta_line: Vec<Option<usize>> = vec![None; ann.models.len()];
    let records = sequence::for_each_record(path, |name, line, letters| {
        let key = if by_id.contains_key(name) {
            name
        } else {
            name.split('|').next().unwrap_or(name)
        };
        let Some(&i) = by_id.get(key) else {
            if !without_exons.contains(key) {
                dropped.push(Dropped {
                    id: key.to_owned(),
                    reason: NO_EXONS.into(),
                });
            }
            return Ok(());
        };
        if let Some(first) = fasta_line[i].replace(line) {
            return Err(DataError::Parse {
                path: path.to_owned(),
                line,
                why: format!("second sequence for transcript {key} (first at line {first})"),
            });
        }
        let m = &ann.models[i];
        if letters.len() as u64 != m.len() {
            return Err(DataError::Parse {
                path: ann.path.clone(),
                line: m.exon_line(),
                why: format!(
                    "transcript {}: its FASTA record ({}:{line}) has {} nt but its exons sum to {} nt",
                    m.id,
                    path.display(),
                    letters.len(),
                    m.len()
                ),
            });
        }
        if !skip[i] {
            built[i] = Some(build(m, letters, rule)?);
        }
        Ok(())
    })?;
    if records == 0 {
        return Err(DataError::Invalid {
            what: path.display().to_string(),
            why: "no FASTA records".into(),
        });
    }
    for ((m, line), skipped) in ann.models.iter().zip(&fasta_line).zip(skip) {
        if line.is_none() && !skipped {
            dropped.push(Dropped {
                id: m.id.clone(),
                reason: NO_SEQUENCE.into(),
            });
        }
    }
    Ok(built)
}

/// Reads a homology table: `gene_id<TAB>group_id` per line (plain or gzipped). Blank lines and lines
/// starting with `#` are skipped, and so is a first line starting with `gene_id` (a header).
/// Errors with [`DataError::Parse`] naming the line for a line without exactly two non-empty
/// columns, or a gene listed in two different groups.
fn read_homology(path: &Path) -> Result<HashMap<String, String>> {
    let mut input = input::open(path)?;
    let mut groups: HashMap<String, (String, usize)> = HashMap::new();
    let mut line = Vec::new();
    let mut first = true;
    while let Some(n) = input.next_line(&mut line).map_err(DataError::io(path))? {
        let parse = |why: String| DataError::Parse {
            path: path.to_owned(),
            line: n,
            why,
        };
        let text = std::str::from_utf8(&line).map_err(|_| parse("not UTF-8".into()))?;
        if text.trim().is_empty() || text.starts_with('#') {
            continue;
        }
        if std::mem::take(&mut first) && text.starts_with("gene_id") {
            continue;
        }
        let fields: Vec<&str> = text.trim_end_matches(['\r', '\n']).split('\t').map(str::trim).collect();
        let [gene, group] = fields[..] else {
            return Err(parse(format!(
                "expected gene_id<TAB>group_id, found {} columns",
                fields.len()
            )));
        };
        if gene.is_empty() || group.is_empty() {
            return Err(parse("empty gene_id or group_id".into()));
        }
        match groups.get(gene) {
            Some((other, at)) if other != group => {
                return Err(parse(format!(
                    "gene {gene} is in group {other} at line {at} and in group {group} here"
                )));
            }
            Some(_) => {}
            None => {
                groups.insert(gene.to_owned(), (group.to_owned(), n));
            }
        }
    }
    Ok(groups.into_iter().map(|(gene, (group, _))| (gene, group)).collect())
}

#[cfg(test)]
mod input_tests;
#[cfg(test)]
mod tests;
