//! What `isoclr inspect` shows: a dataset's manifest in brief, one transcript with its six tracks, and the
//! corpus a configuration trains on. Each writes text to any writer; the command prints it.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{DataError, Dataset, Manifest, Result};
use crate::config::Config;

/// A failed write of the inspection's output (a closed pipe included, which callers may treat as the end).
fn output(source: std::io::Error) -> DataError {
    DataError::Io {
        path: PathBuf::from("<output>"),
        source,
    }
}

/// The manifest of the dataset in `dir` as pretty JSON, the list of dropped transcripts as its count and
/// without the file list. Opening checks every file: a damaged dataset is refused, not summarised.
pub fn write_summary(dir: &Path, out: &mut impl Write) -> Result<()> {
    let manifest = Dataset::open(dir)?.manifest;
    let invalid = |e: serde_json::Error| DataError::Invalid {
        what: dir.display().to_string(),
        why: format!("the manifest cannot be shown: {e}"),
    };
    let mut summary = serde_json::to_value(&manifest).map_err(invalid)?;
    if let Some(fields) = summary.as_object_mut() {
        fields.insert("dropped".into(), serde_json::json!(manifest.dropped.len()));
        fields.remove("files");
    }
    let text = serde_json::to_string_pretty(&summary).map_err(invalid)?;
    writeln!(out, "{text}").map_err(output)
}

/// One transcript of the dataset in `dir`: a header line, and with `tracks` its encoding, one position a
/// line (position, base, the six track values), tab-separated.
pub fn write_transcript(dir: &Path, id: &str, tracks: bool, out: &mut impl Write) -> Result<()> {
    let data = Dataset::open(dir)?;
    let t = data.transcript(id).ok_or_else(|| DataError::Invalid {
        what: dir.display().to_string(),
        why: format!("no transcript {id:?} in this dataset"),
    })?;
    let group = &data.groups[t.group as usize].id;
    let cds = t.cds.map_or("none".to_owned(), |(s, e)| format!("[{s}, {e})"));
    let exons = t.exon_ends.len();
    writeln!(
        out,
        "# {} gene {} group {group} length {} exons {exons} cds {cds}",
        t.id, t.gene_id, t.len
    )
    .map_err(output)?;
    if tracks {
        let bases = t.sequence();
        writeln!(out, "pos\tbase\tA\tC\tG\tT\tcodon\tsplice").map_err(output)?;
        for (pos, row) in t.tracks().iter().enumerate() {
            let values: Vec<String> = row.iter().map(|v| v.to_string()).collect();
            writeln!(out, "{pos}\t{}\t{}", char::from(bases[pos]), values.join("\t")).map_err(output)?;
        }
    }
    Ok(())
}

/// The corpus `config` trains on, as a table: per dataset its groups, groups with several transcripts,
/// coding share, lengths, weight, share of every batch and held-out groups; then the corpus as a whole,
/// its notes and its fingerprint.
pub fn write_corpus(config: &Config, out: &mut impl Write) -> Result<()> {
    if config.data.path.is_none() && config.data.paths.is_empty() {
        return Err(DataError::Invalid {
            what: "the configuration".into(),
            why: "it names no dataset: set data.path or data.paths".into(),
        });
    }
    let corpus = super::resolve_dataset(&config.data, Path::new("."))?;
    let quotas = corpus
        .training_sampler(config.train.seed, config.train.batch_size)
        .map(|s| s.quotas())
        .unwrap_or_default();
    let held_out: HashSet<u32> = corpus.held_out_groups().into_iter().collect();
    writeln!(
        out,
        "dataset\tgroups\tmulti_isoform_groups\ttranscripts\tcoding\tmedian_len\tmean_len\tmax_len\tweight\tper_batch\theld_out_groups"
    )
    .map_err(output)?;
    let mut row = |name: &str, m: &Manifest, weight: String, per_batch: String, held_out: usize| {
        writeln!(
            out,
            "{name}\t{}\t{}\t{}\t{:.3}\t{}\t{:.0}\t{}\t{weight}\t{per_batch}\t{held_out}",
            m.groups,
            m.groups_with_multiple,
            m.transcripts,
            m.coding_transcripts as f64 / m.transcripts.max(1) as f64,
            m.lengths.median,
            m.lengths.mean,
            m.lengths.max,
        )
        .map_err(output)
    };
    for (i, part) in corpus.parts.iter().enumerate() {
        row(
            &part.name,
            &part.manifest,
            part.weight.to_string(),
            quotas.get(i).map_or("-".to_owned(), |q| q.to_string()),
            part.groups.iter().filter(|g| held_out.contains(g)).count(),
        )?;
    }
    let m = &corpus.manifest;
    row(
        "corpus",
        m,
        "-".to_owned(),
        config.train.batch_size.to_string(),
        held_out.len(),
    )?;
    for note in &m.notes {
        writeln!(out, "# {note}").map_err(output)?;
    }
    writeln!(out, "# fingerprint {}", m.fingerprint).map_err(output)
}
