//! Reading a GTF or GFF3 annotation into one exon/CDS model per transcript.
//!
//! Records are parsed with noodles (`noodles::gtf`, `noodles::gff`), one line at a time, so every
//! error names the file and its 1-based line. Only `exon`, `CDS`, `start_codon` and `stop_codon`
//! records shape a transcript; every other record is still checked for well-formed columns.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use noodles::gff::feature::record::{Phase, Strand};

use super::input;
use crate::data::{DataError, Result};

/// The annotation dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    /// GTF (GFF2 with `gene_id`/`transcript_id` attributes).
    Gtf,
    /// GFF3 (`ID`/`Parent` attributes).
    Gff3,
}

impl Format {
    /// The format implied by the file name (`.gtf`, `.gff`, `.gff3`, each optionally `.gz`), if any.
    fn from_extension(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        if name.ends_with(".gff3") || name.ends_with(".gff") {
            Some(Self::Gff3)
        } else if name.ends_with(".gtf") {
            Some(Self::Gtf)
        } else {
            None
        }
    }
}

/// One record's interval in 1-based inclusive genomic coordinates, with the line it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    /// First base (1-based).
    pub start: u64,
    /// Last base (1-based, inclusive).
    pub end: u64,
    /// 1-based line number in the annotation.
    pub line: usize,
}

impl Span {
    fn len(&self) -> u64 {
        self.end - self.start + 1
    }
}

/// The record types that shape a transcript.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Exon,
    Cds,
    StartCodon,
    StopCodon,
}

impl Kind {
    fn from_type(ty: &[u8]) -> Option<Self> {
        [
            (&b"exon"[..], Self::Exon),
            (b"CDS", Self::Cds),
            (b"start_codon", Self::StartCodon),
            (b"stop_codon", Self::StopCodon),
        ]
        .into_iter()
        .find(|(name, _)| ty.eq_ignore_ascii_case(name))
        .map(|(_, kind)| kind)
    }

    fn name(self) -> &'static str {
        match self {
            Self::Exon => "exon",
            Self::Cds => "CDS",
            Self::StartCodon => "start_codon",
            Self::StopCodon => "stop_codon",
        }
    }
}

/// The columns of one record that matter here.
#[derive(Clone)]
struct Rec {
    kind: Option<Kind>,
    seqname: String,
    span: Span,
    reverse: bool,
    /// Strand `.` (or GFF3's `?`): read as `+`, and counted or dropped by `prep`.
    unstranded: bool,
    phase: Option<u8>,
}

/// One transcript as annotated: exons in transcript order (5'→3') and its coding records.
#[derive(Debug, Clone)]
pub(super) struct Model {
    /// Transcript id.
    pub id: String,
    /// Gene id.
    pub gene_id: String,
    /// Reference sequence (chromosome) name.
    pub seqname: String,
    /// Minus strand.
    pub reverse: bool,
    /// Strand unknown (`.` or `?`): exons are read 5'→3' in ascending coordinates, as on `+`.
    pub unstranded: bool,
    /// Line of the transcript's first record.
    line: usize,
    /// Exons; in transcript order once the annotation is finished.
    pub exons: Vec<Span>,
    cds: Vec<(Span, Option<u8>)>,
    codons: Vec<(Kind, Span)>,
    stop_codons: Vec<Span>,
}

impl Model {
    /// Summed exon length in nucleotides.
    pub fn len(&self) -> u64 {
        self.exons.iter().map(Span::len).sum()
    }

    /// The line of the transcript's first exon record (the lowest line number).
    pub fn exon_line(&self) -> usize {
        self.exons.iter().map(|e| e.line).min().unwrap_or(self.line)
    }

    /// Last nucleotide of each exon in transcript coordinates (cumulative exon lengths − 1).
    /// Call only for transcripts whose length fits in `u32` (longer ones are dropped before).
    pub fn exon_ends(&self) -> Vec<u32> {
        let mut total = 0u64;
        self.exons
            .iter()
            .map(|e| {
                total += e.len();
                (total - 1) as u32
            })
            .collect()
    }

    /// A genomic interval's transcript interval `(first, last)`, both inclusive (0-based, 5'→3'),
    /// if it lies within one exon.
    fn map_span(&self, span: &Span) -> Option<(u64, u64)> {
        let mut offset = 0;
        for e in &self.exons {
            if e.start <= span.start && span.end <= e.end {
                let (first, last) = if self.reverse {
                    (e.end - span.end, e.end - span.start)
                } else {
                    (span.start - e.start, span.end - e.start)
                };
                return Some((offset + first, offset + last));
            }
            offset += e.len();
        }
        None
    }

    /// The coding region `[start, end)` in transcript coordinates, stop codon included, given the
    /// transcript's letters (5'→3').
    ///
    /// - The CDS is the span of all `CDS` records mapped to transcript coordinates. When the 5'-most
    ///   `CDS` record has phase 1 or 2 (an incomplete 5' end), the start moves by the phase so the
    ///   codon track marks whole codons.
    /// - A `stop_codon` record of the transcript extends the end to cover it (no change when it is
    ///   already inside the `CDS` records).
    /// - GTF `CDS` records leave the stop codon out. When a GTF file has no `stop_codon` records at
    ///   all ([`StopRule::ExtendGtf`]), the end moves 3 nt further when those 3 nt are within the
    ///   transcript — unless the CDS's last codon already is a stop (TAA, TAG, TGA: a GTF converted
    ///   from GFF3 keeps the stop inside the CDS), so the stop is never counted twice. A GTF file
    ///   that does carry `stop_codon` records is taken at its word: a transcript without one has no
    ///   annotated stop (e.g. GENCODE's `cds_end_NF`) and is not extended.
    /// - GFF3 `CDS` records include the stop codon; nothing is added.
    ///
    /// `None` for a transcript without `CDS` records.
    pub fn cds(&self, letters: &[u8], rule: StopRule) -> Option<(u32, u32)> {
        let mapped: Vec<((u64, u64), Option<u8>)> = self
            .cds
            .iter()
            .filter_map(|(s, phase)| Some((self.map_span(s)?, *phase)))
            .collect();
        let ((first, _), phase) = *mapped.iter().min_by_key(|((lo, _), _)| *lo)?;
        let start = first + u64::from(phase.unwrap_or(0));
        let mut end = mapped.iter().map(|((_, hi), _)| hi + 1).max()?;
        for s in &self.stop_codons {
            if let Some((_, hi)) = self.map_span(s) {
                end = end.max(hi + 1);
            }
        }
        let len = letters.len() as u64;
        if rule == StopRule::ExtendGtf && self.stop_codons.is_empty() {
            let last = end.checked_sub(3).filter(|&s| s >= start);
            let last_is_stop = last
                .and_then(|s| letters.get(s as usize..end as usize))
                .is_some_and(is_stop);
            if !last_is_stop && end + 3 <= len {
                end += 3;
            }
        }
        // start >= end: a phase larger than the whole CDS leaves no complete codon.
        (start < end && end <= len).then_some((start as u32, end as u32))
    }
}

fn is_stop(codon: &[u8]) -> bool {
    let c: Vec<u8> = codon
        .iter()
        .map(|b| {
            if b.eq_ignore_ascii_case(&b'u') {
                b'T'
            } else {
                b.to_ascii_uppercase()
            }
        })
        .collect();
    matches!(c.as_slice(), b"TAA" | b"TAG" | b"TGA")
}

/// How a missing stop codon is treated (see [`Model::cds`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StopRule {
    /// Take `CDS` and `stop_codon` records as they are.
    AsAnnotated,
    /// GTF without any `stop_codon` record: add the 3 nt after the CDS.
    ExtendGtf,
}

/// A parsed annotation.
#[derive(Debug)]
pub(super) struct Annotation {
    /// The file it was read from.
    pub path: PathBuf,
    /// Its dialect.
    pub format: Format,
    /// Transcripts with at least one exon, sorted by id; exons in transcript order.
    pub models: Vec<Model>,
    /// Ids of transcripts that have coding records but no exon record.
    pub without_exons: Vec<String>,
    /// Whether the file has any `stop_codon` record.
    pub has_stop_codons: bool,
}

impl Annotation {
    /// The stop-codon rule for this file (see [`Model::cds`]).
    pub fn stop_rule(&self) -> StopRule {
        if self.format == Format::Gtf && !self.has_stop_codons {
            StopRule::ExtendGtf
        } else {
            StopRule::AsAnnotated
        }
    }
}

/// Reads a GTF or GFF3 file, plain or gzipped. GFF3 is recognised by the extension (`.gff`, `.gff3`,
/// optionally `.gz`) or a first line `##gff-version 3`; anything else is read as GTF.
///
/// In GTF, records are grouped by their `transcript_id` and `gene_id` attributes. In GFF3, the
/// transcript is the feature named by an exon's (or CDS's) `Parent` (several parents: the record
/// belongs to each); its id is its `transcript_id` attribute when it has one (and no other
/// transcript shares it), else its `ID`; the gene is its own `Parent`'s `gene_id` attribute, else
/// its own `gene_id` attribute, else the `Parent` id, else the transcript itself. Reading stops at a
/// GFF3 `##FASTA` line. A strand of `.` (or `?` in GFF3) is read as `+` and marked [`Model::unstranded`].
///
/// Errors: [`DataError::Parse`] with the line for a malformed record (columns, coordinates, strand,
/// phase, attributes), a missing `transcript_id`/`gene_id` (GTF) or `Parent` (GFF3), a transcript
/// whose records disagree on gene, sequence or strand, overlapping exons, or a `CDS`/codon record
/// outside the exons; [`DataError::Invalid`] naming the file when it holds no transcript.
pub(super) fn read(path: &Path) -> Result<Annotation> {
    let mut input = input::open(path)?;
    let mut format = Format::from_extension(path);
    let mut builder = Builder::new(path);
    let mut gff3 = Gff3State::default();
    let mut line = Vec::new();
    while let Some(n) = input.next_line(&mut line).map_err(DataError::io(path))? {
        let format = *format.get_or_insert(if line.starts_with(b"##gff-version 3") {
            Format::Gff3
        } else {
            Format::Gtf
        });
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match format {
            Format::Gtf => builder.gtf_line(n, &line)?,
            Format::Gff3 => {
                if line.starts_with(b"##FASTA") {
                    break;
                }
                builder.gff3_line(n, &line, &mut gff3)?;
            }
        }
    }
    let format = format.unwrap_or(Format::Gtf);
    if format == Format::Gff3 {
        builder.resolve_gff3(gff3)?;
    }
    builder.finish(format)
}

/// A GFF3 feature that may be a transcript or a gene: what its children need to know.
#[derive(Debug)]
struct Feature {
    parents: Vec<String>,
    transcript_id: Option<String>,
    gene_id: Option<String>,
}

/// GFF3 records are resolved after the whole file is read (a `Parent` may come after its child).
#[derive(Default)]
struct Gff3State {
    features: HashMap<String, Feature>,
    children: Vec<(Vec<String>, Rec)>,
}

struct Builder {
    path: PathBuf,
    index: HashMap<String, usize>,
    models: Vec<Model>,
    has_stop_codons: bool,
    records: usize,
}

impl Builder {
    fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            index: HashMap::new(),
            models: Vec::new(),
            has_stop_codons: false,
            records: 0,
        }
    }

    fn parse_error(&self, line: usize, why: impl Into<String>) -> DataError {
        DataError::Parse {
            path: self.path.clone(),
            line,
            why: why.into(),
        }
    }

    /// Checks and extracts the columns shared by GTF and GFF3 records.
    /// `strands` lists the strand values the format allows, for the error message.
    fn columns<R: noodles::gff::feature::Record>(
        &self,
        n: usize,
        text: &[u8],
        record: &R,
        strands: &str,
    ) -> Result<Rec> {
        let column =
            |i: usize| String::from_utf8_lossy(text.split(|&b| b == b'\t').nth(i).unwrap_or_default()).into_owned();
        let start = record
            .feature_start()
            .map_err(|_| self.parse_error(n, format!("start {:?} is not a positive integer", column(3))))?;
        let end = record
            .feature_end()
            .map_err(|_| self.parse_error(n, format!("end {:?} is not a positive integer", column(4))))?;
        let (start, end) = (usize::from(start) as u64, usize::from(end) as u64);
        if start > end {
            return Err(self.parse_error(n, format!("start {start} is greater than end {end}")));
        }
        let (reverse, unstranded) = match record.strand() {
            Ok(Strand::Reverse) => (true, false),
            Ok(Strand::Forward) => (false, false),
            Ok(_) => (false, true),
            Err(_) => {
                return Err(self.parse_error(n, format!("invalid strand {:?} (expected {strands})", column(6))));
            }
        };
        let phase = match record.phase() {
            None => None,
            Some(Ok(Phase::Zero)) => Some(0),
            Some(Ok(Phase::One)) => Some(1),
            Some(Ok(Phase::Two)) => Some(2),
            Some(Err(_)) => {
                return Err(self.parse_error(n, format!("invalid phase {:?} (expected 0, 1, 2 or .)", column(7))));
            }
        };
        let seqname = utf8(&record.reference_sequence_name()).map_err(|why| self.parse_error(n, why))?;
        let kind = Kind::from_type(&record.ty());
        Ok(Rec {
            kind,
            seqname,
            span: Span { start, end, line: n },
            reverse,
            unstranded,
            phase,
        })
    }

    fn column_count_error(&self, n: usize, text: &[u8]) -> DataError {
        let found = text.split(|&b| b == b'\t').count();
        self.parse_error(n, format!("expected 9 tab-separated columns, found {found}"))
    }

    fn gtf_line(&mut self, n: usize, text: &[u8]) -> Result<()> {
        if text.starts_with(b"#") {
            return Ok(());
        }
        let mut line = noodles::gtf::Line::default();
        noodles::gtf::io::Reader::new(text)
            .read_line(&mut line)
            .map_err(|e| self.parse_error(n, e.to_string()))?;
        let Some(record) = line.as_record() else {
            return Ok(());
        };
        let record = record.map_err(|_| self.column_count_error(n, text))?;
        let rec = self.columns(n, text, &record, "+, - or .")?;
        self.records += 1;
        // Every line's attributes are read, also of the features not kept: a malformed line is refused
        // whatever its type.
        let attributes = record
            .attributes()
            .map_err(|e| self.parse_error(n, format!("malformed attributes: {e}")))?;
        if rec.kind.is_none() {
            return Ok(());
        }
        let get = |key: &str| -> Result<String> {
            let value = match attributes.get(key.as_bytes()) {
                Some(Ok(noodles::gtf::record::attributes::field::Value::String(s))) => utf8(s),
                Some(Ok(_)) => Err(format!("attribute {key} given more than once")),
                Some(Err(e)) => Err(format!("malformed attribute {key}: {e}")),
                None => Ok(String::new()),
            }
            .map_err(|why| self.parse_error(n, why))?;
            if value.is_empty() {
                return Err(self.parse_error(n, format!("missing {key} attribute")));
            }
            Ok(value)
        };
        let transcript_id = get("transcript_id")?;
        let gene_id = get("gene_id")?;
        self.add(transcript_id, gene_id, rec)
    }

    fn gff3_line(&mut self, n: usize, text: &[u8], state: &mut Gff3State) -> Result<()> {
        let mut line = noodles::gff::Line::default();
        noodles::gff::io::Reader::new(text)
            .read_line(&mut line)
            .map_err(|e| self.parse_error(n, e.to_string()))?;
        let Some(record) = line.as_record() else {
            return Ok(());
        };
        let record = record.map_err(|_| self.column_count_error(n, text))?;
        let rec = self.columns(n, text, &record, "+, -, . or ?")?;
        self.records += 1;
        let attributes = record.attributes();
        let one = |key: &str| -> Result<Option<String>> {
            match attributes.get(key.as_bytes()) {
                None => Ok(None),
                Some(Ok(value)) => utf8(value.as_ref()).map(Some).map_err(|why| self.parse_error(n, why)),
                Some(Err(e)) => Err(self.parse_error(n, format!("malformed attribute {key}: {e}"))),
            }
        };
        let parents: Vec<String> = match attributes.get(b"Parent") {
            None => Vec::new(),
            Some(Ok(noodles::gff::record::attributes::field::Value::String(s))) => {
                vec![utf8(&s).map_err(|why| self.parse_error(n, why))?]
            }
            Some(Ok(noodles::gff::record::attributes::field::Value::Array(values))) => values
                .iter()
                .map(|s| utf8(&s).map_err(|why| self.parse_error(n, why)))
                .collect::<Result<_>>()?,
            Some(Err(e)) => {
                return Err(self.parse_error(n, format!("malformed attribute Parent: {e}")));
            }
        };
        // Exon/CDS/codon features are never parents: only the others are kept, to spare memory.
        if rec.kind.is_none()
            && let Some(id) = one("ID")?.filter(|id| !id.is_empty())
            && let Entry::Vacant(slot) = state.features.entry(id)
        {
            slot.insert(Feature {
                parents: parents.clone(),
                transcript_id: one("transcript_id")?,
                gene_id: one("gene_id")?,
            });
        }
        if let Some(kind) = rec.kind {
            if parents.is_empty() {
                return Err(self.parse_error(n, format!("{} record without a Parent attribute", kind.name())));
            }
            state.children.push((parents, rec));
        }
        Ok(())
    }

    /// Attaches GFF3 exon/CDS/codon records to their transcripts, named as [`read`] describes.
    fn resolve_gff3(&mut self, state: Gff3State) -> Result<()> {
        let Gff3State { features, children } = state;
        let mut names: BTreeMap<&str, String> = BTreeMap::new();
        for (parents, rec) in &children {
            for p in parents {
                let Some(feature) = features.get(p) else {
                    return Err(self.parse_error(
                        rec.span.line,
                        format!("Parent {p} is not the ID of any feature in the file"),
                    ));
                };
                names.entry(p.as_str()).or_insert_with(|| {
                    feature
                        .transcript_id
                        .clone()
                        .filter(|t| !t.is_empty())
                        .unwrap_or_else(|| p.clone())
                });
            }
        }
        let mut uses: HashMap<&str, usize> = HashMap::new();
        for name in names.values() {
            *uses.entry(name.as_str()).or_default() += 1;
        }
        let shared: Vec<&str> = names
            .iter()
            .filter(|(_, name)| uses[name.as_str()] > 1)
            .map(|(&p, _)| p)
            .collect();
        for p in shared {
            names.insert(p, p.to_owned());
        }
        let mut seen: HashMap<&str, &str> = HashMap::new();
        for (&p, name) in &names {
            if let Some(other) = seen.insert(name.as_str(), p) {
                return Err(DataError::Invalid {
                    what: self.path.display().to_string(),
                    why: format!("features {other} and {p} both resolve to transcript id {name}"),
                });
            }
        }
        for (parents, rec) in &children {
            for p in parents {
                let feature = &features[p];
                let gene_id = match feature.parents.first() {
                    Some(g) => features
                        .get(g)
                        .and_then(|gene| gene.gene_id.clone())
                        .or_else(|| feature.gene_id.clone())
                        .unwrap_or_else(|| g.clone()),
                    None => feature.gene_id.clone().unwrap_or_else(|| names[p.as_str()].clone()),
                };
                self.add(names[p.as_str()].clone(), gene_id, rec.clone())?;
            }
        }
        Ok(())
    }

    /// Adds one exon/CDS/codon record to its transcript, checking that the transcript's records agree.
    fn add(&mut self, id: String, gene_id: String, rec: Rec) -> Result<()> {
        let Some(kind) = rec.kind else { return Ok(()) };
        let n = rec.span.line;
        let i = match self.index.get(&id) {
            Some(&i) => {
                let m = &self.models[i];
                if m.gene_id != gene_id {
                    return Err(self.parse_error(
                        n,
                        format!(
                            "transcript {id}: gene {gene_id} here but {} at line {}",
                            m.gene_id, m.line
                        ),
                    ));
                }
                if m.seqname != rec.seqname {
                    return Err(self.parse_error(
                        n,
                        format!(
                            "transcript {id}: on {} here but on {} at line {}",
                            rec.seqname, m.seqname, m.line
                        ),
                    ));
                }
                if (m.reverse, m.unstranded) != (rec.reverse, rec.unstranded) {
                    return Err(self.parse_error(n, format!("transcript {id}: strand differs from line {}", m.line)));
                }
                i
            }
            None => {
                self.models.push(Model {
                    id: id.clone(),
                    gene_id,
                    seqname: rec.seqname,
                    reverse: rec.reverse,
                    unstranded: rec.unstranded,
                    line: n,
                    exons: Vec::new(),
                    cds: Vec::new(),
                    codons: Vec::new(),
                    stop_codons: Vec::new(),
                });
                self.index.insert(id, self.models.len() - 1);
                self.models.len() - 1
            }
        };
        let m = &mut self.models[i];
        match kind {
            Kind::Exon => m.exons.push(rec.span),
            Kind::Cds => m.cds.push((rec.span, rec.phase)),
            Kind::StartCodon => m.codons.push((kind, rec.span)),
            Kind::StopCodon => {
                self.has_stop_codons = true;
                m.stop_codons.push(rec.span);
                m.codons.push((kind, rec.span));
            }
        }
        Ok(())
    }

    /// Sorts exons into transcript order and checks them and the coding records.
    fn finish(self, format: Format) -> Result<Annotation> {
        let path = self.path.clone();
        let mut models = Vec::with_capacity(self.models.len());
        let mut without_exons = Vec::new();
        for mut m in self.models {
            if m.exons.is_empty() {
                without_exons.push(m.id);
                continue;
            }
            m.exons.sort_by_key(|e| (e.start, e.end, e.line));
            for w in m.exons.windows(2) {
                if w[1].start <= w[0].end {
                    return Err(DataError::Parse {
                        path,
                        line: w[0].line.max(w[1].line),
                        why: format!(
                            "exon {}-{} of transcript {} overlaps its exon {}-{} at line {}",
                            w[1].start,
                            w[1].end,
                            m.id,
                            w[0].start,
                            w[0].end,
                            w[0].line.min(w[1].line)
                        ),
                    });
                }
            }
            if m.reverse {
                m.exons.reverse();
            }
            let coding = m
                .cds
                .iter()
                .map(|(s, _)| (Kind::Cds, s))
                .chain(m.codons.iter().map(|(k, s)| (*k, s)));
            if let Some((kind, s)) = coding.into_iter().find(|(_, s)| m.map_span(s).is_none()) {
                return Err(DataError::Parse {
                    path,
                    line: s.line,
                    why: format!(
                        "CDS outside the exons: {} {}-{} of transcript {} is not within one of its exons",
                        kind.name(),
                        s.start,
                        s.end,
                        m.id
                    ),
                });
            }
            models.push(m);
        }
        if models.is_empty() && without_exons.is_empty() {
            let why = if self.records == 0 {
                "no records: empty annotation"
            } else {
                "no transcripts: no exon, CDS or codon record with a transcript"
            };
            return Err(DataError::Invalid {
                what: path.display().to_string(),
                why: why.into(),
            });
        }
        models.sort_by(|a, b| a.id.cmp(&b.id));
        without_exons.sort();
        Ok(Annotation {
            path,
            format,
            models,
            without_exons,
            has_stop_codons: self.has_stop_codons,
        })
    }
}

fn utf8(bytes: &[u8]) -> std::result::Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| format!("not UTF-8: {:?}", String::from_utf8_lossy(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn minus_strand_exons_come_in_transcript_order_and_map_backwards() {
        let dir = tempfile::tempdir().unwrap();
        let gtf = "c\tx\texon\t10\t14\t.\t-\t.\tgene_id \"g\"; transcript_id \"t\";\n\
                   c\tx\texon\t20\t29\t.\t-\t.\tgene_id \"g\"; transcript_id \"t\";\n";
        let a = read(&write(dir.path(), "a.gtf", gtf)).unwrap();
        let m = &a.models[0];
        assert_eq!(m.exons.iter().map(|e| e.start).collect::<Vec<_>>(), vec![20, 10]);
        assert_eq!(m.exon_ends(), vec![9, 14]);
        let at = |start, end| m.map_span(&Span { start, end, line: 0 });
        assert_eq!(at(29, 29), Some((0, 0)));
        assert_eq!(at(20, 29), Some((0, 9)));
        assert_eq!(at(14, 14), Some((10, 10)));
        assert_eq!(at(10, 12), Some((12, 14)));
        assert_eq!(at(15, 15), None);
        assert_eq!(at(14, 20), None);
    }

    #[test]
    fn format_follows_extension_or_first_line() {
        assert_eq!(Format::from_extension(Path::new("x/a.GFF3.gz")), Some(Format::Gff3));
        assert_eq!(Format::from_extension(Path::new("a.gff")), Some(Format::Gff3));
        assert_eq!(Format::from_extension(Path::new("a.gtf.gz")), Some(Format::Gtf));
        assert_eq!(Format::from_extension(Path::new("a.txt")), None);
        let dir = tempfile::tempdir().unwrap();
        let text = "##gff-version 3\nc\tx\tmRNA\t1\t5\t.\t+\t.\tID=t\nc\tx\texon\t1\t5\t.\t+\t.\tParent=t\n";
        let a = read(&write(dir.path(), "a.txt", text)).unwrap();
        assert_eq!(a.format, Format::Gff3);
        assert_eq!((a.models[0].id.as_str(), a.models[0].gene_id.as_str()), ("t", "t"));
    }

    #[test]
    fn is_stop_reads_u_and_lower_case() {
        assert!(is_stop(b"uaa") && is_stop(b"TGA") && is_stop(b"tag") && !is_stop(b"TGG"));
    }
}
