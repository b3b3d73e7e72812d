//! Loaders for the published label tables' layouts (mRNA half-life per gene or per transcript, mean ribosome
//! load per isoform), joined with a dataset made by `isoclr prep` into the same [`TranscriptTable`] that
//! [`crate::data::table`] reads. Knows no tensors.
//!
//! Supported layouts (TSV or CSV, optionally gzipped; chosen by [`LabelLayout`]):
//! - half-life per gene, Saluki style (Agarwal & Kelley 2022): one row per gene, gene id columns (`ENSID`,
//!   `gene_id`, `ensembl_gene_id`, or a symbol: `gene_name`, `external_gene_name`, `symbol`; of those present,
//!   the one matching the most dataset genes joins) and either one summary column (`half_life`, `PC1`, or
//!   `human_PC1`/`mouse_PC1` as in the released `all_HLs_human_PC1.txt`) or one column per experiment,
//!   averaged over the experiments present in a row; any other names can be given to [`LabelLayout`];
//! - half-life per transcript: `transcript_id` and `half_life` (the layout `isoclr synth` writes in
//!   `labels/half_life.tsv`);
//! - mean ribosome load per isoform: `transcript_id` and `mrl` or `mean_ribosome_load` (the synthetic
//!   `labels/ribosome_load.tsv`);
//! - gene essentiality per gene: a gene id or symbol column and `essential` (0/1), as
//!   `scripts/fetch-human-data.sh` writes it from egbench's DepMap table.
//!
//! Ids are matched without their version suffix (`ENST00000456328.2` matches `ENST00000456328`), since label
//! tables and annotations seldom share a release. A gene-level label goes to the gene's longest transcript in
//! the dataset (one row per gene, as Saluki trains on one isoform per gene), or to all of them on request.
//! Rows take their group from the dataset (homology group, else gene), so splits stay leakage-free.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use crate::data::Dataset;
use crate::data::table::{
    Place, Records, Result, TableError, TableRow, TranscriptTable, cell_error, is_missing, parse_target,
};

/// Which dataset id the label table's id column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKey {
    /// Transcript ids: one label per transcript.
    Transcript,
    /// Gene ids: one label per gene, given to the transcripts chosen by [`GeneTranscripts`].
    Gene,
}

/// Which transcripts of a gene receive a gene-level label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeneTranscripts {
    /// The longest one (ties: the smallest id), so every gene counts once.
    Longest,
    /// Every transcript of the gene (same group, so they stay on one side of a split).
    All,
}

/// How the values of a row are taken from its value columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combine {
    /// The first of the listed columns present in the header (alternative names of one column).
    FirstPresent,
    /// The mean of all listed columns (all required), over the values present in the row; missing when none
    /// is (replicates or experiments).
    Mean,
}

/// The layout of a label table.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelLayout {
    /// Alternative names of the id column; the first present is used.
    pub id_columns: Vec<String>,
    /// What the ids are.
    pub key: JoinKey,
    /// The value column(s).
    pub value_columns: Vec<String>,
    /// How value columns become one value.
    pub combine: Combine,
    /// The target's name in the resulting table.
    pub target: String,
    /// Which transcripts a gene-level label goes to (ignored for [`JoinKey::Transcript`]).
    pub gene_transcripts: GeneTranscripts,
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

impl LabelLayout {
    /// Half-life per gene from one summary column (`half_life` or `PC1`), gene id in `gene_id`, `ENSID` or
    /// `ensembl_gene_id`.
    pub fn half_life_per_gene() -> Self {
        Self {
            id_columns: names(&[
                "gene_id",
                "ENSID",
                "ensembl_gene_id",
                "gene_name",
                "external_gene_name",
                "symbol",
            ]),
            key: JoinKey::Gene,
            value_columns: names(&["half_life", "PC1", "human_PC1", "mouse_PC1"]),
            combine: Combine::FirstPresent,
            target: "half_life".into(),
            gene_transcripts: GeneTranscripts::Longest,
        }
    }

    /// Gene essentiality per gene (1 essential, 0 not): `essential`, gene id in `gene_id`, `ensembl_gene_id`,
    /// `gene_symbol` or `gene_name` (the best-matching one joins), to the gene's longest transcript.
    pub fn essentiality_per_gene() -> Self {
        Self {
            id_columns: names(&["gene_id", "ensembl_gene_id", "gene_symbol", "gene_name"]),
            value_columns: names(&["essential"]),
            target: "essential".into(),
            ..Self::half_life_per_gene()
        }
    }

    /// Half-life per gene as the mean of the named per-experiment (or per-replicate) columns.
    pub fn half_life_per_gene_mean_of(columns: &[&str]) -> Self {
        Self {
            value_columns: names(columns),
            combine: Combine::Mean,
            ..Self::half_life_per_gene()
        }
    }

    /// Half-life per transcript: `transcript_id` and `half_life`.
    pub fn half_life_per_transcript() -> Self {
        Self {
            id_columns: names(&["transcript_id"]),
            key: JoinKey::Transcript,
            value_columns: names(&["half_life"]),
            combine: Combine::FirstPresent,
            target: "half_life".into(),
            gene_transcripts: GeneTranscripts::Longest,
        }
    }

    /// Mean ribosome load per isoform: `transcript_id` and `mrl` or `mean_ribosome_load`.
    pub fn ribosome_load() -> Self {
        Self {
            id_columns: names(&["transcript_id"]),
            key: JoinKey::Transcript,
            value_columns: names(&["mrl", "mean_ribosome_load"]),
            combine: Combine::FirstPresent,
            target: "mean_ribosome_load".into(),
            gene_transcripts: GeneTranscripts::Longest,
        }
    }
}

/// An id without its version suffix (`ENST00000456328.2` → `ENST00000456328`).
fn unversioned(id: &str) -> &str {
    match id.rsplit_once('.') {
        Some((stem, version)) if !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()) => stem,
        _ => id,
    }
}

/// Reads the label table at `path` and joins it with `dataset`.
///
/// The label table may be TSV or CSV (optionally `.gz`) or Parquet, chosen by its name.
///
/// Errors: those of [`join_labels_from_reader`], and [`TableError::UnknownFormat`], [`TableError::Io`] or
/// [`TableError::Parquet`] for the file.
pub fn join_labels(dataset: &Dataset, path: &Path, layout: &LabelLayout) -> Result<TranscriptTable> {
    join_records(dataset, Records::open(path)?, path, layout)
}

/// Joins the label table read from `reader` (delimiter `b'\t'` or `b','`; `path` names it) with `dataset`.
///
/// Label rows whose id is not in the dataset are left out and counted in a note. Errors:
/// [`TableError::MissingColumn`] for the id or value columns, [`TableError::Cell`] for an empty or duplicate
/// id or a non-numeric value (naming line and column), [`TableError::Invalid`] when no label row matches.
pub fn join_labels_from_reader(
    dataset: &Dataset,
    reader: impl Read,
    delimiter: u8,
    path: &Path,
    layout: &LabelLayout,
) -> Result<TranscriptTable> {
    join_records(dataset, Records::new(reader, delimiter, path)?, path, layout)
}

fn join_records<R: Read>(
    dataset: &Dataset,
    mut records: Records<R>,
    path: &Path,
    layout: &LabelLayout,
) -> Result<TranscriptTable> {
    // The id column: of the listed names present, the one that matches the most dataset ids (a gene table
    // often has both an Ensembl id and a symbol column, and the dataset may use either).
    let present: Vec<(usize, String)> = (layout.id_columns.iter())
        .filter_map(|name| records.header.index(name).map(|i| (i, name.clone())))
        .collect();
    if present.is_empty() {
        records.header.first_of(&layout.id_columns, path)?;
    }
    let value_cols: Vec<(usize, String)> = match layout.combine {
        Combine::FirstPresent => vec![records.header.first_of(&layout.value_columns, path)?],
        Combine::Mean => layout
            .value_columns
            .iter()
            .map(|c| records.header.require(c, path).map(|i| (i, c.clone())))
            .collect::<Result<_>>()?,
    };

    // Dataset side: unversioned id → transcript indices.
    let mut index: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, t) in dataset.transcripts.iter().enumerate() {
        let id = match layout.key {
            JoinKey::Transcript => &t.id,
            JoinKey::Gene => &t.gene_id,
        };
        index.entry(unversioned(id)).or_default().push(i);
    }

    let mut all = Vec::new();
    while let Some(record) = records.next_record()? {
        all.push(record);
    }
    let matches = |column: usize| {
        (all.iter())
            .filter(|r| index.contains_key(unversioned(r.fields.get(column).map_or("", String::as_str))))
            .count()
    };
    let (id_col, id_name) = (present.iter().enumerate())
        .max_by_key(|(k, (column, _))| (matches(*column), std::cmp::Reverse(*k)))
        .map(|(_, found)| found.clone())
        .ok_or_else(|| records.header.missing(&layout.id_columns.join("` or `"), path))?;

    let mut seen: HashMap<String, Place> = HashMap::new();
    let (mut labelled, mut unmatched, mut without_id) = (Vec::new(), 0usize, 0usize);
    for record in all {
        let place = record.place;
        let cell = |c: usize| record.fields.get(c).map(String::as_str).unwrap_or("");
        let id = cell(id_col);
        if id.is_empty() {
            // With several id columns, a row may lack the one that joins (a gene without a symbol).
            if present.len() > 1 {
                without_id += 1;
                continue;
            }
            return Err(cell_error(path, place, &id_name, "empty id".into()));
        }
        if let Some(first) = seen.insert(unversioned(id).to_owned(), place) {
            return Err(cell_error(
                path,
                place,
                &id_name,
                format!("duplicate id {id:?} (first on {})", first.described()),
            ));
        }
        let mut values = Vec::with_capacity(value_cols.len());
        for (c, name) in &value_cols {
            let v = parse_target(cell(*c)).map_err(|why| cell_error(path, place, name, why))?;
            if !is_missing(cell(*c)) {
                values.push(v);
            }
        }
        let value = if values.is_empty() {
            f64::NAN
        } else {
            values.iter().sum::<f64>() / values.len() as f64
        };
        let Some(members) = index.get(unversioned(id)) else {
            unmatched += 1;
            continue;
        };
        let chosen: Vec<usize> = match (layout.key, layout.gene_transcripts) {
            (JoinKey::Gene, GeneTranscripts::Longest) => members
                .iter()
                .copied()
                .max_by(|&a, &b| {
                    let (ta, tb) = (&dataset.transcripts[a], &dataset.transcripts[b]);
                    ta.len.cmp(&tb.len).then_with(|| tb.id.cmp(&ta.id))
                })
                .into_iter()
                .collect(),
            _ => members.clone(),
        };
        labelled.extend(chosen.into_iter().map(|t| (t, value, place)));
    }
    let total = seen.len();
    let source = format!("{} joined with {}", path.display(), dataset.dir.display());
    if labelled.is_empty() {
        return Err(TableError::Invalid {
            what: source,
            why: format!(
                "none of the {total} label rows matches a {:?} id in the dataset",
                layout.key
            ),
        });
    }

    // Groups renumbered over the rows kept, in first-appearance order.
    let mut group_index: HashMap<u32, u32> = HashMap::new();
    let mut groups = Vec::new();
    let mut rows = Vec::with_capacity(labelled.len());
    for (t, value, place) in labelled {
        let mut transcript = dataset.transcripts[t].clone();
        let next = groups.len() as u32;
        let old = transcript.group;
        transcript.group = *group_index.entry(old).or_insert_with(|| {
            let name = dataset
                .groups
                .get(old as usize)
                .map_or_else(|| transcript.gene_id.clone(), |g| g.id.clone());
            groups.push(name);
            next
        });
        rows.push(TableRow {
            transcript,
            targets: vec![value],
            place,
        });
    }
    let mut notes = Vec::new();
    if present.len() > 1 {
        notes.push(format!(
            "joined on the label column `{id_name}`, the one matching the most dataset ids"
        ));
    }
    if without_id > 0 {
        notes.push(format!(
            "{without_id} label rows have an empty `{id_name}` and are left out"
        ));
    }
    if unmatched > 0 {
        notes.push(format!(
            "{unmatched} of {total} label rows have no {} in the dataset and are left out",
            match layout.key {
                JoinKey::Transcript => "transcript",
                JoinKey::Gene => "gene",
            }
        ));
    }
    TranscriptTable {
        source,
        targets: vec![layout.target.clone()],
        groups,
        rows,
        notes,
    }
    .finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::dataset::{Group, Provenance};
    use crate::data::{Manifest, Transcript};

    /// A dataset on disk: genes ENSG1 (two isoforms, homology group FAM1 with ENSG2), ENSG2, ENSG3.
    fn dataset(dir: &Path) -> Dataset {
        let t = vec![
            Transcript::new("ENST1.1", "ENSG1.3", 0, b"ACGTACGT", vec![3, 7], Some((0, 6))).unwrap(),
            Transcript::new("ENST2.1", "ENSG1.3", 0, b"ACGTACGTAA", vec![9], None).unwrap(),
            Transcript::new("ENST3.2", "ENSG2.1", 0, b"ACG", vec![2], None).unwrap(),
            Transcript::new("ENST4.1", "ENSG3.1", 1, b"GGGG", vec![3], None).unwrap(),
        ];
        let g = vec![
            Group {
                id: "FAM1".into(),
                transcripts: vec![0, 1, 2],
            },
            Group {
                id: "ENSG3".into(),
                transcripts: vec![3],
            },
        ];
        let _: Manifest = Dataset::write(dir, &g, &t, Provenance::default()).unwrap();
        Dataset::open(dir).unwrap()
    }

    fn join(ds: &Dataset, text: &str, layout: &LabelLayout) -> Result<TranscriptTable> {
        join_labels_from_reader(ds, text.as_bytes(), b'\t', Path::new("labels.tsv"), layout)
    }

    #[test]
    fn the_released_saluki_layout_joins_on_whichever_id_column_the_dataset_uses() {
        let dir = tempfile::tempdir().unwrap();
        let by_ensembl = dataset(&dir.path().join("ensembl"));
        // The same transcripts under gene symbols, as a dataset made from RefSeq mRNAs has them.
        let t = vec![
            Transcript::new("NM_1", "SYMA", 0, b"ACGTACGT", vec![7], None).unwrap(),
            Transcript::new("NM_2", "SYMC", 1, b"GGGG", vec![3], None).unwrap(),
        ];
        let g = vec![
            Group {
                id: "SYMA".into(),
                transcripts: vec![0],
            },
            Group {
                id: "SYMC".into(),
                transcripts: vec![1],
            },
        ];
        Dataset::write(&dir.path().join("symbols"), &g, &t, Provenance::default()).unwrap();
        let by_symbol = Dataset::open(&dir.path().join("symbols")).unwrap();
        // The columns of all_HLs_human_PC1.txt.
        let text = "ensembl_gene_id\texternal_gene_name\thuman_PC1\n\
                    ENSG1\tSYMA\t0.5\n\
                    ENSG3\tSYMC\t-1.25\n\
                    ENSG8\t\t7\n\
                    ENSG9\tSYMZ\t2\n";
        let layout = LabelLayout::half_life_per_gene();
        let on_symbols = join(&by_symbol, text, &layout).unwrap();
        let got: Vec<(&str, f64)> = (on_symbols.rows.iter())
            .map(|r| (r.transcript.id.as_str(), r.targets[0]))
            .collect();
        assert_eq!(got, [("NM_1", 0.5), ("NM_2", -1.25)]);
        assert!(
            on_symbols.notes.iter().any(|n| n.contains("`external_gene_name`")),
            "{:?}",
            on_symbols.notes
        );
        assert!(
            (on_symbols.notes.iter()).any(|n| n == "1 label rows have an empty `external_gene_name` and are left out"),
            "{:?}",
            on_symbols.notes
        );
        let on_ensembl = join(&by_ensembl, text, &layout).unwrap();
        let got: Vec<(&str, f64)> = (on_ensembl.rows.iter())
            .map(|r| (r.transcript.id.as_str(), r.targets[0]))
            .collect();
        assert_eq!(
            got,
            [("ENST2.1", 0.5), ("ENST4.1", -1.25)],
            "the longest isoform of each gene"
        );
        assert!(
            on_ensembl.notes.iter().any(|n| n.contains("`ensembl_gene_id`")),
            "{:?}",
            on_ensembl.notes
        );
    }

    #[test]
    fn saluki_style_gene_table_mean_of_experiments_to_longest_isoform() {
        let dir = tempfile::tempdir().unwrap();
        let ds = dataset(dir.path());
        let text = "ENSID\tGENE\texp1\texp2\texp3\n\
                    ENSG1\tA\t1.0\t2.0\tNA\n\
                    ENSG2.1\tB\t\t\t\n\
                    ENSG3\tC\t-1\t0\t1\n\
                    ENSG9\tD\t5\t5\t5\n";
        let t = join(
            &ds,
            text,
            &LabelLayout::half_life_per_gene_mean_of(&["exp1", "exp2", "exp3"]),
        )
        .unwrap();
        let ids: Vec<&str> = t.rows.iter().map(|r| r.transcript.id.as_str()).collect();
        assert_eq!(ids, vec!["ENST2.1", "ENST3.2", "ENST4.1"]);
        assert_eq!(t.rows[0].targets, vec![1.5]);
        assert!(t.rows[1].targets[0].is_nan());
        assert_eq!(t.rows[2].targets, vec![0.0]);
        assert_eq!(t.groups, vec!["FAM1", "ENSG3"]);
        assert_eq!(t.row_groups(), vec![0, 0, 1]);
        assert_eq!(t.rows[0].transcript.cds, None);
        assert_eq!(t.targets, vec!["half_life"]);
        assert!(
            t.notes
                .iter()
                .any(|n| n == "1 of 4 label rows have no gene in the dataset and are left out")
        );
        assert!(t.notes.iter().any(|n| n.contains("1 of 3 rows missing")));
    }

    #[test]
    fn gene_table_summary_column_to_all_isoforms() {
        let dir = tempfile::tempdir().unwrap();
        let ds = dataset(dir.path());
        let layout = LabelLayout {
            gene_transcripts: GeneTranscripts::All,
            ..LabelLayout::half_life_per_gene()
        };
        let t = join(&ds, "ENSID\tPC1\nENSG1\t0.7\n", &layout).unwrap();
        let ids: Vec<&str> = t.rows.iter().map(|r| r.transcript.id.as_str()).collect();
        assert_eq!(ids, vec!["ENST1.1", "ENST2.1"]);
        assert!(t.rows.iter().all(|r| r.targets == vec![0.7]));
    }

    #[test]
    fn synthetic_layouts_per_transcript() {
        let dir = tempfile::tempdir().unwrap();
        let ds = dataset(dir.path());
        let hl = "transcript_id\tgene_id\thalf_life\nENST1.1\tENSG1.3\t3.5\nENST4\tENSG3.1\t1.25\n";
        let t = join(&ds, hl, &LabelLayout::half_life_per_transcript()).unwrap();
        assert_eq!(t.rows.len(), 2);
        assert_eq!(t.rows[0].transcript.cds, Some((0, 6)));
        assert_eq!(t.rows[1].targets, vec![1.25]);
        assert!(t.notes.is_empty(), "{:?}", t.notes);
        let mrl = "transcript_id,mrl\nENST3.2,4.5\n";
        let t = join_labels_from_reader(
            &ds,
            mrl.as_bytes(),
            b',',
            Path::new("mrl.csv"),
            &LabelLayout::ribosome_load(),
        )
        .unwrap();
        assert_eq!(
            (t.rows[0].transcript.id.as_str(), t.rows[0].targets[0]),
            ("ENST3.2", 4.5)
        );
        assert_eq!(t.targets, vec!["mean_ribosome_load"]);
    }

    #[test]
    fn reads_the_label_files_synth_writes() {
        let dir = tempfile::tempdir().unwrap();
        let ds = dataset(&dir.path().join("ds"));
        let path = dir.path().join("ribosome_load.tsv");
        std::fs::write(
            &path,
            "transcript_id\tgene_id\tmean_ribosome_load\nENST1.1\tENSG1.3\t2.0\n",
        )
        .unwrap();
        let t = join_labels(&ds, &path, &LabelLayout::ribosome_load()).unwrap();
        assert_eq!(t.rows[0].targets, vec![2.0]);
    }

    #[test]
    fn errors_name_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let ds = dataset(dir.path());
        let layout = LabelLayout::ribosome_load();
        let e = join(&ds, "transcript_id\tmrl\nENST1\t1\nENST2\tfast\n", &layout)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("labels.tsv:3: column `mrl`: \"fast\" is not a number"),
            "{e}"
        );
        let e = join(&ds, "transcript_id\tmrl\nENST1\t1\nENST1.1\t2\n", &layout)
            .unwrap_err()
            .to_string();
        assert!(e.contains("labels.tsv:3: column `transcript_id`: duplicate id"), "{e}");
        let e = join(&ds, "transcript_id\tmrl\n\t1\n", &layout).unwrap_err().to_string();
        assert!(e.contains("labels.tsv:2: column `transcript_id`: empty id"), "{e}");
        let e = join(&ds, "id\tmrl\nENST1\t1\n", &layout).unwrap_err().to_string();
        assert!(e.contains("no column `transcript_id`"), "{e}");
        let e = join(&ds, "transcript_id\tload\nENST1\t1\n", &layout)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no column `mrl` or `mean_ribosome_load`"), "{e}");
        let mean = LabelLayout::half_life_per_gene_mean_of(&["r1", "r2"]);
        let e = join(&ds, "gene_id\tr1\nENSG1\t1\n", &mean).unwrap_err().to_string();
        assert!(e.contains("no column `r2`"), "{e}");
        let e = join(&ds, "transcript_id\tmrl\nENSTX\t1\n", &layout)
            .unwrap_err()
            .to_string();
        assert!(e.contains("none of the 1 label rows matches"), "{e}");
    }

    #[test]
    fn version_suffixes() {
        assert_eq!(unversioned("ENST00000456328.2"), "ENST00000456328");
        assert_eq!(unversioned("ENST00000456328"), "ENST00000456328");
        assert_eq!(unversioned("gene.a"), "gene.a");
        assert_eq!(unversioned("x."), "x.");
    }
}
