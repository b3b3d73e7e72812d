//! Transcript tables: TSV or CSV files (optionally gzipped) or Parquet files of transcripts, with optional
//! targets, read into checked rows that hold a [`Transcript`] each. The one table format of the project: probe
//! inputs and `isoclr prep --table` read it with this code. Knows no tensors and no models.
//!
//! Columns (header names are exact, cells are trimmed):
//! - `id` (required): unique per table;
//! - `sequence` (required): the mature RNA 5'→3'; A, C, G, T/U and the IUPAC ambiguity codes, any case;
//! - `cds_start`, `cds_end` (optional, together): the coding region in transcript coordinates, 0-based and
//!   half-open (`cds_start` is the A of the start codon, `cds_end` is one past the stop codon's last base), as
//!   in [`Transcript::cds`]; both cells empty means non-coding;
//! - `exon_ends` (optional): comma-separated transcript coordinates (0-based) of each exon's last nucleotide,
//!   strictly ascending; the last exon's end (`len − 1`) may be left out, as tables often list only the
//!   splice junctions; an empty cell means a single exon;
//! - `gene` (optional): the gene a transcript belongs to (its [`Transcript::gene_id`]);
//! - `group` (optional): homology group, so that splits keep similar transcripts on one side and `prep` makes
//!   them positives; without it the group is the `gene` cell, and without both every row is its own group;
//! - the target columns the caller names: numbers, with an empty cell, `NA`, `N/A`, `NaN` or `null` (any case)
//!   for a missing value, read as NaN and left out of that target's fits and metrics.
//!
//! Parquet cells are read as the text a TSV would hold ([`super::parquet_rows`]): nulls are empty cells, and a
//! list column may hold `exon_ends`.
//!
//! Every error names the file, the 1-based line in the file (the 1-based row of a Parquet file) and the
//! column.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::parquet_rows::ParquetRows;
use super::transcript::{NUCLEOTIDE_LETTERS, is_nucleotide_letter};
use super::{DataError, Transcript};

/// The start of the note a table without CDS columns gets (`prep --cds longest-orf` replaces it).
pub const NO_CDS_COLUMNS: &str = "no cds_start/cds_end columns";

/// Where a record sits in its file: a 1-based line of a text table, or a 1-based row of a Parquet file.
/// Displays as `3` or `row 3` after `path:`, as compilers and `grep -n` write positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A line of a TSV or CSV file (the header is line 1).
    Line(u64),
    /// A data row of a Parquet file (the first row is row 1).
    Row(u64),
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Line(n) => write!(f, "{n}"),
            Self::Row(n) => write!(f, "row {n}"),
        }
    }
}

impl Place {
    /// `line 3` or `row 3`, for prose.
    pub fn described(self) -> String {
        match self {
            Self::Line(n) => format!("line {n}"),
            Self::Row(n) => format!("row {n}"),
        }
    }
}

/// Errors of reading a probe table or joining labels; each names the file and, for a cell, its line and column.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file name does not say which format the table is in.
    #[error("{path}: unknown table format: expected a name ending in .tsv, .csv, .tsv.gz, .csv.gz or .parquet")]
    UnknownFormat {
        /// The file involved.
        path: PathBuf,
    },
    /// A column the table needs is not in the header.
    #[error("{path}: no column `{column}` in the header (columns: {header})")]
    MissingColumn {
        /// The file involved.
        path: PathBuf,
        /// The missing column.
        column: String,
        /// The header as read, comma-separated, to spot typos and wrong delimiters.
        header: String,
    },
    /// A record that is not well-formed (wrong number of fields, bad quoting, not UTF-8).
    #[error("{path}:{at}: {why}")]
    Record {
        /// The file involved.
        path: PathBuf,
        /// The record's line or row.
        at: Place,
        /// What is wrong.
        why: String,
    },
    /// A cell whose value is not acceptable.
    #[error("{path}:{at}: column `{column}`: {why}")]
    Cell {
        /// The file involved.
        path: PathBuf,
        /// The cell's line or row.
        at: Place,
        /// The column's header name.
        column: String,
        /// What is wrong.
        why: String,
    },
    /// Input that parsed but cannot be used as a whole (no rows, nothing joined, ...).
    #[error("{what}: {why}")]
    Invalid {
        /// The file or dataset involved.
        what: String,
        /// What is wrong.
        why: String,
    },
    /// A file named `.parquet` that is not a readable Parquet file.
    #[error("{path}: not a readable Parquet file: {why}")]
    Parquet {
        /// The file involved.
        path: PathBuf,
        /// The reader's reason.
        why: String,
    },
    /// A dataset made by `isoclr prep` could not be read.
    #[error(transparent)]
    Data(#[from] DataError),
}

/// Result alias of the probe table layer.
pub type Result<T, E = TableError> = std::result::Result<T, E>;

/// One checked row: the transcript and its targets.
#[derive(Debug, Clone, PartialEq)]
pub struct TableRow {
    /// The transcript. `id` is the row's id; `group` indexes [`TranscriptTable::groups`]; `gene_id` is the
    /// `gene` cell, or else the group's name (the row id when the table has neither column).
    pub transcript: Transcript,
    /// One value per [`TranscriptTable::targets`], in that order; NaN where missing.
    pub targets: Vec<f64>,
    /// The row's line (or Parquet row) in the source file, for messages about it later on.
    pub place: Place,
}

/// A probe table: rows in file order, with what a report should say about the input.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptTable {
    /// Where the rows came from (a path, or a label table joined with a dataset).
    pub source: String,
    /// Names of the target columns, in the order of [`TableRow::targets`].
    pub targets: Vec<String>,
    /// Group names; [`Transcript::group`] of each row indexes this list (first-appearance order).
    pub groups: Vec<String>,
    /// The rows, in file order.
    pub rows: Vec<TableRow>,
    /// Caveats for the report (missing annotation tracks, missing targets, unmatched labels).
    pub notes: Vec<String>,
}

impl TranscriptTable {
    /// Reads a table from `path`, the format chosen by the name: `.tsv` or `.csv`, each optionally `.gz`, or
    /// `.parquet`.
    ///
    /// Errors: [`TableError::UnknownFormat`] for another name, [`TableError::Io`] when it cannot be read,
    /// [`TableError::Parquet`] for a broken Parquet file, and otherwise those of [`TranscriptTable::from_reader`].
    pub fn read(path: &Path, targets: &[&str]) -> Result<Self> {
        Self::from_records(Records::open(path)?, path, targets)
    }

    /// Reads a table from `reader` with the given field delimiter (`b'\t'` or `b','`); `path` names it in
    /// messages.
    ///
    /// Errors: [`TableError::MissingColumn`] when `id`, `sequence`, one of `cds_start`/`cds_end` without the
    /// other, or a named target is not in the header; [`TableError::Record`] for malformed records or a
    /// repeated header name; [`TableError::Cell`] for a non-numeric target, an empty id, a duplicate id, an
    /// empty or illegal sequence (naming the letter and its position), an empty group cell, a CDS that is
    /// half given, not a number, empty or outside the sequence, and exon ends that are not numbers, not
    /// strictly ascending or beyond the sequence; [`TableError::Invalid`] when the table has no rows.
    pub fn from_reader(reader: impl Read, delimiter: u8, path: &Path, targets: &[&str]) -> Result<Self> {
        Self::from_records(Records::new(reader, delimiter, path)?, path, targets)
    }

    fn from_records<R: Read>(mut records: Records<R>, path: &Path, targets: &[&str]) -> Result<Self> {
        let col = |name: &str| records.header.index(name);
        let required = |name: &str| records.header.require(name, path);
        let id_col = required("id")?;
        let seq_col = required("sequence")?;
        let cds_cols = match (col("cds_start"), col("cds_end")) {
            (Some(s), Some(e)) => Some((s, e)),
            (None, None) => None,
            (Some(_), None) => return Err(records.header.missing("cds_end", path)),
            (None, Some(_)) => return Err(records.header.missing("cds_start", path)),
        };
        let exon_col = col("exon_ends");
        let group_col = col("group");
        let gene_col = col("gene");
        let target_cols = targets.iter().map(|t| required(t)).collect::<Result<Vec<_>>>()?;

        let mut rows = Vec::new();
        let mut group_index: HashMap<String, u32> = HashMap::new();
        let mut groups = Vec::new();
        let mut seen: HashMap<String, Place> = HashMap::new();
        while let Some(record) = records.next_record()? {
            let place = record.place;
            let cell = |c: usize| record.fields.get(c).map(String::as_str).unwrap_or("");
            let err = |column: &str, why: String| cell_error(path, place, column, why);
            let id = cell(id_col);
            if id.is_empty() {
                return Err(err("id", "empty id".into()));
            }
            if let Some(first) = seen.insert(id.to_owned(), place) {
                return Err(err(
                    "id",
                    format!("duplicate id {id:?} (first on {})", first.described()),
                ));
            }
            let sequence = cell(seq_col).as_bytes();
            check_sequence(sequence).map_err(|why| err("sequence", why))?;
            let len = sequence.len() as u64;
            let cds = match cds_cols {
                Some((s, e)) => parse_cds(cell(s), cell(e), len).map_err(|(column, why)| err(column, why))?,
                None => None,
            };
            let exon_ends = match exon_col {
                Some(c) => parse_exon_ends(cell(c), len).map_err(|why| err("exon_ends", why))?,
                None => vec![last_position(len)],
            };
            let gene = match gene_col {
                Some(c) if cell(c).is_empty() => return Err(err("gene", "empty gene".into())),
                Some(c) => Some(cell(c)),
                None => None,
            };
            let group_name = match group_col {
                Some(c) if cell(c).is_empty() => return Err(err("group", "empty group".into())),
                Some(c) => cell(c),
                None => gene.unwrap_or(id),
            };
            let next = groups.len() as u32;
            let group = *group_index.entry(group_name.to_owned()).or_insert_with(|| {
                groups.push(group_name.to_owned());
                next
            });
            let values = targets
                .iter()
                .zip(&target_cols)
                .map(|(name, &c)| parse_target(cell(c)).map_err(|why| err(name, why)))
                .collect::<Result<Vec<_>>>()?;
            // The checks above cover everything `Transcript::new` rejects; this error is a fallback only.
            let transcript = Transcript::new(id, gene.unwrap_or(group_name), group, sequence, exon_ends, cds)
                .map_err(|e| err("sequence", e.to_string()))?;
            rows.push(TableRow {
                transcript,
                targets: values,
                place,
            });
        }
        let mut notes = Vec::new();
        if cds_cols.is_none() {
            notes.push(format!("{NO_CDS_COLUMNS}: the codon track is zeros"));
        }
        if exon_col.is_none() {
            notes.push("no exon_ends column: every transcript is read as one exon (splice track marks only the last nucleotide)".to_owned());
        }
        if group_col.is_none() && gene_col.is_none() {
            notes.push(
                "no group column: every row is its own group, so similar transcripts may fall on both sides of a split"
                    .to_owned(),
            );
        }
        let table = Self {
            source: path.display().to_string(),
            targets: targets.iter().map(|t| (*t).to_owned()).collect(),
            groups,
            rows,
            notes,
        };
        table.finish()
    }

    /// Checks the table is usable and adds a note per target with missing values.
    pub(crate) fn finish(mut self) -> Result<Self> {
        if self.rows.is_empty() {
            return Err(TableError::Invalid {
                what: self.source,
                why: "no rows".into(),
            });
        }
        for (j, name) in self.targets.iter().enumerate() {
            let missing = self.rows.iter().filter(|r| r.targets[j].is_nan()).count();
            if missing > 0 {
                self.notes.push(format!(
                    "target {name}: {missing} of {} rows missing, left out of its probes",
                    self.rows.len()
                ));
            }
        }
        Ok(self)
    }

    /// Group index of every row, in row order (the input of [`crate::probe::split::split_by_group`]).
    pub fn row_groups(&self) -> Vec<u32> {
        self.rows.iter().map(|r| r.transcript.group).collect()
    }

    /// Indices of the rows where target `target` is present (not NaN); empty when `target` is out of range.
    pub fn observed(&self, target: usize) -> Vec<usize> {
        (0..self.rows.len())
            .filter(|&i| self.rows[i].targets.get(target).is_some_and(|v| !v.is_nan()))
            .collect()
    }
}

/// Opens `path` as a delimited text table (the delimiter from the extension, `.gz` decompressed); `None`
/// for a `.parquet` name. Errors for any other name and when the file cannot be opened.
fn open_text(path: &Path) -> Result<Option<(Box<dyn Read>, u8)>> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if name.ends_with(".parquet") {
        return Ok(None);
    }
    let (stem, gzipped) = match name.strip_suffix(".gz") {
        Some(stem) => (stem, true),
        None => (name.as_str(), false),
    };
    let delimiter = if stem.ends_with(".tsv") {
        b'\t'
    } else if stem.ends_with(".csv") {
        b','
    } else {
        return Err(TableError::UnknownFormat { path: path.to_owned() });
    };
    let file = File::open(path).map_err(|source| TableError::Io {
        path: path.to_owned(),
        source,
    })?;
    let reader: Box<dyn Read> = if gzipped {
        // Multi-member: `bgzip` and concatenated gzip files are common for tables.
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };
    Ok(Some((reader, delimiter)))
}

/// The header of a table: names to column indices.
pub(crate) struct Header {
    names: Vec<String>,
}

impl Header {
    /// Index of column `name`, if present.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// Index of column `name`, or [`TableError::MissingColumn`].
    pub fn require(&self, name: &str, path: &Path) -> Result<usize> {
        self.index(name).ok_or_else(|| self.missing(name, path))
    }

    /// The first of `names` present in the header, or [`TableError::MissingColumn`] naming all of them.
    pub fn first_of(&self, names: &[String], path: &Path) -> Result<(usize, String)> {
        names
            .iter()
            .find_map(|n| self.index(n).map(|i| (i, n.clone())))
            .ok_or_else(|| self.missing(&names.join("` or `"), path))
    }

    /// The error for a missing column.
    pub fn missing(&self, name: &str, path: &Path) -> TableError {
        TableError::MissingColumn {
            path: path.to_owned(),
            column: name.to_owned(),
            header: self.names.join(", "),
        }
    }
}

/// One data record: its cells (trimmed) and where it is in the file.
pub(crate) struct Record {
    pub fields: Vec<String>,
    pub place: Place,
}

/// Reads the header, then data records, with their places and the file named in every error.
pub(crate) struct Records<R: Read> {
    source: Source<R>,
    path: PathBuf,
    /// The header names.
    pub header: Header,
}

/// Where records come from: a delimited text reader, or the rows of a Parquet file.
enum Source<R: Read> {
    Text {
        reader: csv::Reader<R>,
        record: csv::StringRecord,
    },
    Parquet {
        rows: ParquetRows,
        /// Rows read so far.
        read: u64,
    },
}

impl Records<Box<dyn Read>> {
    /// Opens `path` by its name: `.tsv`/`.csv` (optionally `.gz`) or `.parquet`.
    ///
    /// Errors: [`TableError::UnknownFormat`], [`TableError::Io`], [`TableError::Parquet`], and those of
    /// [`Records::new`].
    pub fn open(path: &Path) -> Result<Self> {
        match open_text(path)? {
            Some((reader, delimiter)) => Self::new(reader, delimiter, path),
            None => {
                let file = File::open(path).map_err(|source| TableError::Io {
                    path: path.to_owned(),
                    source,
                })?;
                let rows = ParquetRows::new(file).map_err(|why| TableError::Parquet {
                    path: path.to_owned(),
                    why,
                })?;
                let header = checked_header(rows.columns.clone(), path, None)?;
                Ok(Self {
                    source: Source::Parquet { rows, read: 0 },
                    path: path.to_owned(),
                    header,
                })
            }
        }
    }
}

impl<R: Read> Records<R> {
    /// Reads the header of a delimited text table; errors when it is missing, malformed or repeats a name.
    pub fn new(reader: R, delimiter: u8, path: &Path) -> Result<Self> {
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(true)
            .trim(csv::Trim::All)
            .from_reader(reader);
        let names: Vec<String> = reader
            .headers()
            .map_err(|e| csv_error(path, e))?
            .iter()
            .map(str::to_owned)
            .collect();
        Ok(Self {
            header: checked_header(names, path, Some(Place::Line(1)))?,
            source: Source::Text {
                reader,
                record: csv::StringRecord::new(),
            },
            path: path.to_owned(),
        })
    }

    /// The next data record, `None` at the end; blank lines of a text table are skipped.
    pub fn next_record(&mut self) -> Result<Option<Record>> {
        match &mut self.source {
            Source::Text { reader, record } => {
                if !reader.read_record(record).map_err(|e| csv_error(&self.path, e))? {
                    return Ok(None);
                }
                let line = record.position().map(|p| p.line()).unwrap_or(0);
                Ok(Some(Record {
                    fields: record.iter().map(str::to_owned).collect(),
                    place: Place::Line(line),
                }))
            }
            Source::Parquet { rows, read } => {
                let Some(row) = rows.next_row() else {
                    return Ok(None);
                };
                *read += 1;
                let place = Place::Row(*read);
                match row {
                    Ok(fields) => Ok(Some(Record { fields, place })),
                    Err((Some(column), why)) => Err(cell_error(&self.path, place, &column, why)),
                    Err((None, why)) => Err(TableError::Record {
                        path: self.path.clone(),
                        at: place,
                        why,
                    }),
                }
            }
        }
    }
}

/// The header as read, unless it is empty or repeats a name; `at` is the header line of a text table (a
/// Parquet file's names come from its schema).
fn checked_header(names: Vec<String>, path: &Path, at: Option<Place>) -> Result<Header> {
    if names.iter().all(String::is_empty) {
        return Err(TableError::Invalid {
            what: path.display().to_string(),
            why: "empty file: no header line".into(),
        });
    }
    for (i, name) in names.iter().enumerate() {
        if names[..i].contains(name) {
            let why = format!("column `{name}` appears twice in the header");
            return Err(match at {
                Some(at) => TableError::Record {
                    path: path.to_owned(),
                    at,
                    why,
                },
                None => TableError::Invalid {
                    what: path.display().to_string(),
                    why,
                },
            });
        }
    }
    Ok(Header { names })
}

/// Turns a csv error into one naming the file and line.
fn csv_error(path: &Path, e: csv::Error) -> TableError {
    let line = e.position().map(|p| p.line()).unwrap_or(0);
    let why = match e.kind() {
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            format!("{len} fields where the header has {expected_len} (wrong delimiter or stray tab/comma?)")
        }
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_owned(),
        csv::ErrorKind::Io(io) => {
            return TableError::Io {
                path: path.to_owned(),
                source: std::io::Error::new(io.kind(), io.to_string()),
            };
        }
        _ => e.to_string(),
    };
    TableError::Record {
        path: path.to_owned(),
        at: Place::Line(line),
        why,
    }
}

/// A [`TableError::Cell`].
pub(crate) fn cell_error(path: &Path, at: Place, column: &str, why: String) -> TableError {
    TableError::Cell {
        path: path.to_owned(),
        at,
        column: column.to_owned(),
        why,
    }
}

/// Reads a target cell: a finite number, or NaN for a missing value.
///
/// Errors with the reason for anything else (text, infinities).
pub(crate) fn parse_target(cell: &str) -> std::result::Result<f64, String> {
    if is_missing(cell) {
        return Ok(f64::NAN);
    }
    match cell.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(format!("{cell:?} is not a finite number")),
        Err(_) => Err(format!(
            "{cell:?} is not a number (use an empty cell or NA for a missing value)"
        )),
    }
}

/// Whether a cell stands for a missing value.
pub(crate) fn is_missing(cell: &str) -> bool {
    cell.is_empty()
        || ["na", "n/a", "nan", "null"]
            .iter()
            .any(|m| cell.eq_ignore_ascii_case(m))
}

/// Checks a sequence is non-empty, fits `u32` and holds only nucleotide letters.
fn check_sequence(sequence: &[u8]) -> std::result::Result<(), String> {
    if sequence.is_empty() {
        return Err("empty sequence".into());
    }
    if u32::try_from(sequence.len()).is_err() {
        return Err("sequence longer than 4 Gb".into());
    }
    if let Some(pos) = sequence.iter().position(|&b| !is_nucleotide_letter(b)) {
        // The cell is UTF-8, so a non-ASCII byte starts a multi-byte character: show that character.
        let shown = std::str::from_utf8(&sequence[pos..])
            .ok()
            .and_then(|s| s.chars().next())
            .unwrap_or(char::from(sequence[pos]));
        return Err(format!(
            "illegal letter {shown:?} at position {pos} ({NUCLEOTIDE_LETTERS})"
        ));
    }
    Ok(())
}

/// The last position of a sequence of `len` ≥ 1 nucleotides.
fn last_position(len: u64) -> u32 {
    len.saturating_sub(1) as u32
}

/// Reads the CDS cells: both empty → non-coding; errors name the column at fault.
fn parse_cds(start: &str, end: &str, len: u64) -> std::result::Result<Option<(u32, u32)>, (&'static str, String)> {
    match (start.is_empty(), end.is_empty()) {
        (true, true) => return Ok(None),
        (true, false) => return Err(("cds_start", "empty while cds_end is given".into())),
        (false, true) => return Err(("cds_end", "empty while cds_start is given".into())),
        (false, false) => {}
    }
    let number = |column: &'static str, cell: &str| {
        cell.parse::<u32>()
            .map_err(|_| (column, format!("{cell:?} is not a non-negative integer coordinate")))
    };
    let (s, e) = (number("cds_start", start)?, number("cds_end", end)?);
    if u64::from(e) > len {
        return Err((
            "cds_end",
            format!("{e} beyond the sequence of length {len} (coordinates are 0-based, end exclusive)"),
        ));
    }
    if s >= e {
        return Err(("cds_start", format!("{s} not before cds_end {e}: empty CDS")));
    }
    Ok(Some((s, e)))
}

/// Reads an `exon_ends` cell (see the module documentation) into ends that finish at `len − 1`.
fn parse_exon_ends(cell: &str, len: u64) -> std::result::Result<Vec<u32>, String> {
    let last = last_position(len);
    if cell.is_empty() {
        return Ok(vec![last]);
    }
    let mut ends = Vec::new();
    for (i, part) in cell.split(',').enumerate() {
        let part = part.trim();
        let end: u32 = part
            .parse()
            .map_err(|_| format!("entry {} {part:?} is not a non-negative integer coordinate", i + 1))?;
        if u64::from(end) >= len {
            return Err(format!(
                "exon end {end} beyond the sequence of length {len} (0-based: the last position is {last})"
            ));
        }
        if let Some(&prev) = ends.last()
            && end <= prev
        {
            return Err(format!("exon ends not strictly ascending: {end} after {prev}"));
        }
        ends.push(end);
    }
    if ends.last() != Some(&last) {
        ends.push(last);
    }
    Ok(ends)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, targets: &[&str]) -> Result<TranscriptTable> {
        TranscriptTable::from_reader(text.as_bytes(), b'\t', Path::new("t.tsv"), targets)
    }

    fn err(text: &str, targets: &[&str]) -> String {
        read(text, targets).unwrap_err().to_string()
    }

    #[test]
    fn reads_full_table_with_annotation_groups_and_missing_targets() {
        let text = "id\tsequence\tcds_start\tcds_end\texon_ends\tgroup\thl\tmrl\n\
                    t1\tccATGaaaTAAg\t2\t11\t4\tg1\t1.5\tNA\n\
                    t2\tACGUN\t\t\t1,4\tg2\t\t2\n\
                    t3\tACGT\t0\t3\t\tg1\t-0.25\t3e-1\n";
        let t = read(text, &["hl", "mrl"]).unwrap();
        assert_eq!(t.rows.len(), 3);
        assert_eq!(t.groups, vec!["g1", "g2"]);
        assert_eq!(t.row_groups(), vec![0, 1, 0]);
        let r0 = &t.rows[0].transcript;
        assert_eq!(
            (r0.cds, r0.exon_ends.clone(), r0.gene_id.as_str()),
            (Some((2, 11)), vec![4, 11], "g1")
        );
        assert_eq!(t.rows[1].transcript.cds, None);
        assert_eq!(t.rows[1].transcript.exon_ends, vec![1, 4]);
        assert_eq!(t.rows[1].transcript.ambiguous, vec![(4, b'N')]);
        assert_eq!(t.rows[2].transcript.exon_ends, vec![3]);
        assert_eq!(t.rows[0].targets[0], 1.5);
        assert!(t.rows[0].targets[1].is_nan() && t.rows[1].targets[0].is_nan());
        assert_eq!(t.rows[2].targets, vec![-0.25, 0.3]);
        assert_eq!(
            t.rows.iter().map(|r| r.place).collect::<Vec<_>>(),
            [2, 3, 4].map(Place::Line)
        );
        assert_eq!(t.observed(0), vec![0, 2]);
        assert_eq!(t.observed(1), vec![1, 2]);
        assert_eq!(t.notes.len(), 2, "{:?}", t.notes);
        assert!(t.notes.iter().all(|n| n.contains("1 of 3 rows missing")));
    }

    #[test]
    fn bare_table_gets_notes_and_one_group_per_row() {
        let t = read("id\tsequence\ta\nx\tACGT\t1\ny\tAC\t2\n", &["a"]).unwrap();
        assert_eq!(t.row_groups(), vec![0, 1]);
        assert_eq!(t.rows[0].transcript.exon_ends, vec![3]);
        assert!(
            t.notes
                .contains(&"no cds_start/cds_end columns: the codon track is zeros".to_owned())
        );
        assert!(t.notes.iter().any(|n| n.starts_with("no exon_ends column")));
        assert!(t.notes.iter().any(|n| n.starts_with("no group column")));
    }

    #[test]
    fn csv_with_quotes_and_spaces() {
        let text = "id,sequence,exon_ends,y\n\"a\", ACGTACGT ,\"3, 7\",1\n";
        let t = TranscriptTable::from_reader(text.as_bytes(), b',', Path::new("t.csv"), &["y"]).unwrap();
        assert_eq!(t.rows[0].transcript.exon_ends, vec![3, 7]);
        assert_eq!(t.rows[0].transcript.len, 8);
    }

    #[test]
    fn missing_columns_are_named() {
        let e = err("id\tseq\ty\na\tA\t1\n", &["y"]);
        assert!(
            e.contains("t.tsv: no column `sequence`") && e.contains("columns: id, seq, y"),
            "{e}"
        );
        let e = err("id\tsequence\ny\tA\n", &["half_life"]);
        assert!(e.contains("no column `half_life`"), "{e}");
        let e = err("id\tsequence\tcds_start\na\tACG\t0\n", &[]);
        assert!(e.contains("no column `cds_end`"), "{e}");
        let e = err("sequence\nACGT\n", &[]);
        assert!(e.contains("no column `id`"), "{e}");
    }

    #[test]
    fn cell_errors_name_file_line_and_column() {
        let head = "id\tsequence\tcds_start\tcds_end\texon_ends\tgroup\ty\n";
        let cases = [
            (
                "a\tACGT\t\t\t\tg\tabc\n",
                "t.tsv:3: column `y`: \"abc\" is not a number",
            ),
            (
                "a\tACGT\t\t\t\tg\tinf\n",
                "t.tsv:3: column `y`: \"inf\" is not a finite number",
            ),
            (
                "a\tACXT\t\t\t\tg\t1\n",
                "t.tsv:3: column `sequence`: illegal letter 'X' at position 2",
            ),
            (
                "a\tAC-T\t\t\t\tg\t1\n",
                "t.tsv:3: column `sequence`: illegal letter '-' at position 2",
            ),
            (
                "a\tACéT\t\t\t\tg\t1\n",
                "t.tsv:3: column `sequence`: illegal letter 'é' at position 2",
            ),
            ("a\t\t\t\t\tg\t1\n", "t.tsv:3: column `sequence`: empty sequence"),
            ("a\tACGT\t\t\t\t\t1\n", "t.tsv:3: column `group`: empty group"),
            ("\tACGT\t\t\t\tg\t1\n", "t.tsv:3: column `id`: empty id"),
            (
                "z\tACGT\t\t\t\tg\t1\n",
                "t.tsv:3: column `id`: duplicate id \"z\" (first on line 2)",
            ),
            (
                "a\tACGT\t0\t5\t\tg\t1\n",
                "t.tsv:3: column `cds_end`: 5 beyond the sequence of length 4",
            ),
            (
                "a\tACGT\t3\t3\t\tg\t1\n",
                "t.tsv:3: column `cds_start`: 3 not before cds_end 3",
            ),
            (
                "a\tACGT\t1\t\t\tg\t1\n",
                "t.tsv:3: column `cds_end`: empty while cds_start is given",
            ),
            (
                "a\tACGT\t-1\t3\t\tg\t1\n",
                "t.tsv:3: column `cds_start`: \"-1\" is not a non-negative",
            ),
            (
                "a\tACGT\t\t\t2,1\tg\t1\n",
                "t.tsv:3: column `exon_ends`: exon ends not strictly ascending: 1 after 2",
            ),
            (
                "a\tACGT\t\t\t1,4\tg\t1\n",
                "t.tsv:3: column `exon_ends`: exon end 4 beyond the sequence of length 4",
            ),
            (
                "a\tACGT\t\t\t1,x\tg\t1\n",
                "t.tsv:3: column `exon_ends`: entry 2 \"x\" is not",
            ),
        ];
        for (row, want) in cases {
            let text = format!("{head}z\tACGT\t\t\t\tg\t1\n{row}");
            let e = err(&text, &["y"]);
            assert!(e.contains(want), "row {row:?}: got {e:?}, want {want:?}");
        }
    }

    #[test]
    fn malformed_records_and_headers() {
        let e = err("id\tsequence\na\tACGT\textra\n", &[]);
        assert!(e.starts_with("t.tsv:2: 3 fields where the header has 2"), "{e}");
        let e = err("id\tsequence\tid\na\tACGT\tb\n", &[]);
        assert!(e.contains("t.tsv:1: column `id` appears twice"), "{e}");
        let e = err("id\tsequence\n", &[]);
        assert_eq!(e, "t.tsv: no rows");
        let e = err("", &[]);
        assert!(e.contains("empty file"), "{e}");
        let bad_utf8: &[u8] = b"id\tsequence\na\tAC\xffGT\n";
        let e = TranscriptTable::from_reader(bad_utf8, b'\t', Path::new("t.tsv"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.tsv:2: not valid UTF-8"), "{e}");
    }

    #[test]
    fn no_panic_on_odd_inputs() {
        for text in [
            "\n\n\n",
            "id\tsequence\n\n\n",
            "id\tsequence\n\"unterminated\tA\n",
            "id\n",
            "id\tsequence\tcds_start\tcds_end\na\tA\t4294967295\t4294967296\n",
            "id\tsequence\texon_ends\na\tA\t,,,\n",
            "id\tsequence\texon_ends\na\tA\t0,0\n",
        ] {
            let _ = read(text, &["nope"]);
            let _ = read(text, &[]);
        }
    }

    #[test]
    fn reads_files_by_extension_including_gzip() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let body = "id,sequence,y\na,ACGT,1\n";
        std::fs::write(dir.path().join("x.csv"), body).unwrap();
        let gz = dir.path().join("x.tsv.gz");
        let mut enc = flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::fast());
        enc.write_all(body.replace(',', "\t").as_bytes()).unwrap();
        enc.finish().unwrap();
        for name in ["x.csv", "x.tsv.gz"] {
            let t = TranscriptTable::read(&dir.path().join(name), &["y"]).unwrap();
            assert_eq!(t.rows[0].targets, vec![1.0], "{name}");
        }
        let e = TranscriptTable::read(&dir.path().join("x.xlsx"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown table format"), "{e}");
        for absent in ["absent.tsv", "absent.parquet"] {
            let e = TranscriptTable::read(&dir.path().join(absent), &[]).unwrap_err();
            assert!(matches!(e, TableError::Io { .. }), "{e}");
            assert!(e.to_string().contains(absent), "{e}");
        }
    }
}
