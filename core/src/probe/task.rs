//! Probe task definitions: the TOML files under `configs/probes/` that say what to predict, from which
//! table, with which splits, low-data sizes and baselines. Knows no tensors.
//!
//! ```toml
//! name = "half_life"               # names the report section and the plot files
//! kind = "regression"              # or "classification" (targets 0/1, one model per target)
//! transform = "log2"               # regression targets: "none" (default), "ln", "log2", "log10"
//! pooling = "regions"              # embeddings: "mean" (default) or "regions" (+ 5'UTR, CDS, 3'UTR means)
//!
//! [input]                          # exactly one of the three sources:
//! table = "half_life.tsv"          # 1. a table with id, sequence, … (paths relative to this file;
//!                                  #    TSV, CSV, optionally .gz, or Parquet)
//! targets = ["half_life"]          #    its target columns
//! # labels = "saluki.tsv"          # 2. a published label layout joined with a prepped dataset:
//! # layout = "half_life_per_gene"  #    half_life_per_gene, half_life_per_transcript, ribosome_load,
//!                                  #    essentiality_per_gene
//! # dataset = "data/ds"            #    (default: the dataset the encoder was trained on)
//! # synthetic = "half_life"        # 3. the planted labels of the synthetic transcriptome the encoder
//!                                  #    trained on: "half_life" or "ribosome_load"
//!
//! [split]                          # group-aware train/validation/test split
//! train = 0.7
//! validation = 0.15
//! test = 0.15
//! seed = 0
//!
//! [low_data]
//! fractions = [0.005, 0.01, 0.03, 0.1, 0.3, 0.5, 1.0]
//! counts = [30, 100, 300, 1000, 3000]
//! draws = 5
//! seed = 0
//!
//! [baselines]
//! random = true                    # same architecture, random weights
//! random_calibrated = true         # ... with batch-norm statistics calibrated on the task's sequences
//! random_seeds = 3                 # each random baseline at this many seeds
//! kmer = true                      # k-mer frequencies, k = 3…6
//! kmer_max_rows = 1500             # … on subsets up to this many rows (larger fits take minutes)
//! supervised = true                # same architecture trained from scratch on the labels
//!
//! [supervised]                     # the from-scratch baseline (costly: a training run per subset)
//! max_rows = 300                   # only subsets up to this many training rows
//! draws = 2                        # the first draws of each size
//! max_epochs = 40
//! patience = 5
//! lr = 0.001
//! batch_size = 32
//! ```
//!
//! Unknown keys are errors (naming the key and the file), so a typo never silently changes a run.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::published::LabelLayout;
use super::split::{LOW_DATA_COUNTS, LOW_DATA_FRACTIONS, SplitFractions};
use crate::config::Pooling;

/// Errors of reading a task file.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The task file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The TOML does not parse or does not fit the schema (the message names the key and line).
    #[error("{path}: {message}")]
    Parse {
        /// The task file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// A value out of its range, or settings that contradict each other.
    #[error("{path}: {key}: {why}")]
    Invalid {
        /// The task file.
        path: PathBuf,
        /// The offending key, dotted.
        key: &'static str,
        /// What is wrong.
        why: String,
    },
}

/// What a task predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    /// Real-valued targets: ridge regression, Pearson r / Spearman ρ / R².
    Regression,
    /// 0/1 targets: logistic regression, AUROC / AUPRC.
    Classification,
}

/// A transform applied to regression targets before fitting (half-lives are log-normal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transform {
    /// The values as they are.
    #[default]
    None,
    /// Natural logarithm.
    Ln,
    /// Base-2 logarithm.
    Log2,
    /// Base-10 logarithm.
    Log10,
}

impl Transform {
    /// Applies the transform; `None` for a value outside its domain (≤ 0 for a logarithm).
    pub fn apply(self, value: f64) -> Option<f64> {
        let log = |f: fn(f64) -> f64| (value > 0.0).then(|| f(value));
        match self {
            Self::None => Some(value),
            Self::Ln => log(f64::ln),
            Self::Log2 => log(f64::log2),
            Self::Log10 => log(f64::log10),
        }
    }
}

/// A published label layout, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayoutName {
    /// [`LabelLayout::half_life_per_gene`].
    HalfLifePerGene,
    /// [`LabelLayout::half_life_per_transcript`].
    HalfLifePerTranscript,
    /// [`LabelLayout::ribosome_load`].
    RibosomeLoad,
    /// [`LabelLayout::essentiality_per_gene`].
    EssentialityPerGene,
}

impl LayoutName {
    /// The layout itself.
    pub fn layout(self) -> LabelLayout {
        match self {
            Self::HalfLifePerGene => LabelLayout::half_life_per_gene(),
            Self::HalfLifePerTranscript => LabelLayout::half_life_per_transcript(),
            Self::RibosomeLoad => LabelLayout::ribosome_load(),
            Self::EssentialityPerGene => LabelLayout::essentiality_per_gene(),
        }
    }
}

/// The planted label sets of the synthetic transcriptome (`isoclr synth`, `labels/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyntheticLabels {
    /// `labels/half_life.tsv`, per transcript.
    HalfLife,
    /// `labels/ribosome_load.tsv`, per coding transcript.
    RibosomeLoad,
}

impl SyntheticLabels {
    /// The file name under the synthetic transcriptome's `labels/` directory.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::HalfLife => "half_life.tsv",
            Self::RibosomeLoad => "ribosome_load.tsv",
        }
    }

    /// The layout of that file.
    pub fn layout(self) -> LabelLayout {
        match self {
            Self::HalfLife => LabelLayout::half_life_per_transcript(),
            Self::RibosomeLoad => LabelLayout::ribosome_load(),
        }
    }
}

/// Where a task's rows and targets come from, resolved against the task file's directory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum TaskInput {
    /// A probe table (`id`, `sequence`, optional annotation and `group` columns) and its target columns.
    Table {
        /// The table file.
        path: PathBuf,
        /// Target columns.
        targets: Vec<String>,
    },
    /// A label table in a published layout joined with a dataset made by `isoclr prep`.
    Labels {
        /// The label table.
        path: PathBuf,
        /// Its layout.
        layout: LayoutName,
        /// The dataset; `None` means the one the encoder was trained on.
        dataset: Option<PathBuf>,
    },
    /// The planted labels of the synthetic transcriptome the encoder was trained on.
    Synthetic(SyntheticLabels),
}

/// Low-data curve settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LowData {
    /// Shares of the training split.
    pub fractions: Vec<f64>,
    /// Fixed numbers of training rows (those above the training split's size are skipped).
    pub counts: Vec<usize>,
    /// Random draws per size.
    pub draws: usize,
    /// Seed of the draws.
    pub seed: u64,
}

impl Default for LowData {
    fn default() -> Self {
        Self {
            fractions: LOW_DATA_FRACTIONS.to_vec(),
            counts: LOW_DATA_COUNTS.to_vec(),
            draws: 5,
            seed: 0,
        }
    }
}

/// Which baselines run beside the pre-trained encoder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Baselines {
    /// The same architecture with random weights.
    pub random: bool,
    /// The same random weights with batch-norm statistics calibrated on the task's sequences (models with
    /// batch norm only).
    pub random_calibrated: bool,
    /// Seeds of each random-weight baseline (the runner's seed and the ones after it): the report gives the
    /// mean and spread over them, and compares the pre-trained encoder with their pooled draws and with the
    /// best seed alone.
    pub random_seeds: usize,
    /// k-mer frequency features (k = 3…6).
    pub kmer: bool,
    /// The k-mer probe only on subsets up to this many training rows: its 5,440 features make each larger
    /// fit an eigendecomposition of the rows' Gram matrix per cross-validation fold (minutes at a few
    /// thousand rows on a CPU), and the comparison that matters is at the small sizes.
    pub kmer_max_rows: usize,
    /// The same architecture trained from scratch on the labels.
    pub supervised: bool,
}

impl Default for Baselines {
    fn default() -> Self {
        Self {
            random: true,
            random_calibrated: true,
            random_seeds: 3,
            kmer: true,
            kmer_max_rows: 1500,
            supervised: true,
        }
    }
}

impl Baselines {
    /// No baseline: the encoder alone.
    pub fn none() -> Self {
        Self {
            random: false,
            random_calibrated: false,
            kmer: false,
            supervised: false,
            ..Self::default()
        }
    }
}

/// Settings of the from-scratch supervised baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SupervisedSettings {
    /// Only low-data subsets with at most this many training rows (each is a training run).
    pub max_rows: usize,
    /// Only the first this many draws of each size.
    pub draws: usize,
    /// Epoch cap.
    pub max_epochs: usize,
    /// Epochs without a better validation loss before stopping.
    pub patience: usize,
    /// AdamW learning rate.
    pub lr: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Transcripts per optimiser step.
    pub batch_size: usize,
}

impl Default for SupervisedSettings {
    fn default() -> Self {
        Self {
            max_rows: 300,
            draws: 2,
            max_epochs: 40,
            patience: 5,
            lr: 1e-3,
            weight_decay: 1e-4,
            batch_size: 32,
        }
    }
}

/// A probe task, read from TOML and checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeTask {
    /// Short name (letters, digits, `_`, `-`): the report section and file names.
    pub name: String,
    /// Free text for the report.
    pub description: String,
    /// Regression or classification.
    pub kind: TaskKind,
    /// Target transform (regression only).
    pub transform: Transform,
    /// How the encoders' embeddings are pooled.
    pub pooling: Pooling,
    /// The rows and targets.
    pub input: TaskInput,
    /// Split fractions.
    pub split: SplitFractions,
    /// Seed of the split.
    pub split_seed: u64,
    /// Low-data curve sizes and draws.
    pub low_data: LowData,
    /// Baselines to run.
    pub baselines: Baselines,
    /// The supervised baseline's settings.
    pub supervised: SupervisedSettings,
    /// The file it came from.
    pub path: PathBuf,
}

/// The file's shape, before paths are resolved and values checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskFile {
    name: String,
    #[serde(default)]
    description: String,
    kind: TaskKind,
    #[serde(default)]
    transform: Transform,
    #[serde(default)]
    pooling: Pooling,
    input: InputFile,
    #[serde(default)]
    split: SplitFile,
    #[serde(default)]
    low_data: LowData,
    #[serde(default)]
    baselines: Baselines,
    #[serde(default)]
    supervised: SupervisedSettings,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputFile {
    table: Option<PathBuf>,
    targets: Option<Vec<String>>,
    labels: Option<PathBuf>,
    layout: Option<LayoutName>,
    dataset: Option<PathBuf>,
    synthetic: Option<SyntheticLabels>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SplitFile {
    train: f64,
    validation: f64,
    test: f64,
    seed: u64,
}

impl Default for SplitFile {
    fn default() -> Self {
        let f = SplitFractions::default();
        Self {
            train: f.train,
            validation: f.validation,
            test: f.test,
            seed: 0,
        }
    }
}

impl ProbeTask {
    /// Reads and checks the task file at `path`; relative paths inside it are taken from its directory.
    pub fn read(path: &Path) -> Result<Self, TaskError> {
        let text = std::fs::read_to_string(path).map_err(|source| TaskError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&text, path)
    }

    /// Reads and checks every task file of `paths`, in order, before any work is done.
    pub fn read_all(paths: &[PathBuf]) -> Result<Vec<Self>, TaskError> {
        paths.iter().map(|p| Self::read(p)).collect()
    }

    /// Parses and checks task TOML `text`; `path` names it in errors and anchors relative paths.
    pub fn from_toml_str(text: &str, path: &Path) -> Result<Self, TaskError> {
        let file: TaskFile = toml::from_str(text).map_err(|e| TaskError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let invalid = |key: &'static str, why: String| TaskError::Invalid {
            path: path.to_owned(),
            key,
            why,
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };

        if file.name.is_empty()
            || !file
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(invalid(
                "name",
                format!("{:?} must be non-empty letters, digits, '_' or '-'", file.name),
            ));
        }
        if file.kind == TaskKind::Classification && file.transform != Transform::None {
            return Err(invalid(
                "transform",
                "only regression targets can be transformed".into(),
            ));
        }
        let i = file.input;
        let input = match (&i.table, &i.labels, &i.synthetic) {
            (Some(_), None, None) => {
                if i.layout.is_some() || i.dataset.is_some() {
                    return Err(invalid("input", "layout and dataset go with labels, not table".into()));
                }
                let targets = i.targets.clone().unwrap_or_default();
                if targets.is_empty() {
                    return Err(invalid(
                        "input.targets",
                        "a table needs at least one target column".into(),
                    ));
                }
                if let Some((k, t)) = (targets.iter().enumerate()).find(|(k, t)| targets[..*k].contains(t)) {
                    return Err(invalid(
                        "input.targets",
                        format!(
                            "{t:?} is listed twice (entries {} and {})",
                            targets[..k].iter().position(|x| x == t).map_or(0, |p| p + 1),
                            k + 1
                        ),
                    ));
                }
                TaskInput::Table {
                    path: resolve(i.table.clone().unwrap_or_default()),
                    targets,
                }
            }
            (None, Some(labels), None) => {
                let layout = i
                    .layout
                    .ok_or_else(|| invalid("input.layout", "labels need a layout".into()))?;
                if i.targets.is_some() {
                    return Err(invalid("input.targets", "the layout names the target".into()));
                }
                TaskInput::Labels {
                    path: resolve(labels.clone()),
                    layout,
                    dataset: i.dataset.clone().map(resolve),
                }
            }
            (None, None, Some(labels)) => {
                if i.targets.is_some() || i.layout.is_some() || i.dataset.is_some() {
                    return Err(invalid("input", "synthetic takes no targets, layout or dataset".into()));
                }
                TaskInput::Synthetic(*labels)
            }
            _ => {
                return Err(invalid(
                    "input",
                    "give exactly one of table, labels or synthetic".into(),
                ));
            }
        };
        let split = SplitFractions {
            train: file.split.train,
            validation: file.split.validation,
            test: file.split.test,
        };
        split.validate().map_err(|e| invalid("split", e.to_string()))?;
        let low = &file.low_data;
        if low.fractions.is_empty() && low.counts.is_empty() {
            return Err(invalid("low_data", "no fractions and no counts".into()));
        }
        if let Some(f) = low.fractions.iter().find(|f| !(**f > 0.0 && **f <= 1.0)) {
            return Err(invalid("low_data.fractions", format!("{f} is not in (0, 1]")));
        }
        if low.counts.contains(&0) {
            return Err(invalid("low_data.counts", "0 is not a training-set size".into()));
        }
        if low.draws == 0 {
            return Err(invalid("low_data.draws", "must be at least 1".into()));
        }
        if file.baselines.random_seeds == 0 && (file.baselines.random || file.baselines.random_calibrated) {
            return Err(invalid(
                "baselines.random_seeds",
                "must be at least 1 (set baselines.random and baselines.random_calibrated to false to leave the \
                 random-weight baselines out)"
                    .into(),
            ));
        }
        let sup = &file.supervised;
        if sup.max_epochs == 0 || sup.batch_size == 0 || sup.draws == 0 {
            return Err(invalid(
                "supervised",
                "max_epochs, batch_size and draws must be at least 1".into(),
            ));
        }
        let settings_ok = sup.lr.is_finite() && sup.lr > 0.0 && sup.weight_decay.is_finite() && sup.weight_decay >= 0.0;
        if !settings_ok {
            return Err(invalid(
                "supervised",
                "lr must be positive and weight_decay non-negative".into(),
            ));
        }
        Ok(Self {
            name: file.name,
            description: file.description,
            kind: file.kind,
            transform: file.transform,
            pooling: file.pooling,
            input,
            split,
            split_seed: file.split.seed,
            low_data: file.low_data,
            baselines: file.baselines,
            supervised: file.supervised,
            path: path.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ProbeTask, TaskError> {
        ProbeTask::from_toml_str(text, Path::new("/tasks/t.toml"))
    }

    #[test]
    fn a_table_task_resolves_paths_and_takes_defaults() {
        let t = parse("name = \"hl\"\nkind = \"regression\"\ntransform = \"log2\"\n[input]\ntable = \"x.tsv\"\ntargets = [\"half_life\"]\n")
            .unwrap();
        assert_eq!(
            t.input,
            TaskInput::Table {
                path: PathBuf::from("/tasks/x.tsv"),
                targets: vec!["half_life".into()]
            }
        );
        assert_eq!(t.transform, Transform::Log2);
        assert_eq!(t.low_data, LowData::default());
        assert_eq!(t.split, SplitFractions::default());
        assert!(t.baselines.supervised);
    }

    #[test]
    fn labels_and_synthetic_inputs() {
        let t = parse(
            "name = \"mrl\"\nkind = \"regression\"\n[input]\nlabels = \"/abs/mrl.csv\"\nlayout = \"ribosome_load\"\ndataset = \"ds\"\n",
        )
        .unwrap();
        assert_eq!(
            t.input,
            TaskInput::Labels {
                path: PathBuf::from("/abs/mrl.csv"),
                layout: LayoutName::RibosomeLoad,
                dataset: Some(PathBuf::from("/tasks/ds")),
            }
        );
        let t = parse("name = \"s\"\nkind = \"regression\"\n[input]\nsynthetic = \"half_life\"\n").unwrap();
        assert_eq!(t.input, TaskInput::Synthetic(SyntheticLabels::HalfLife));
    }

    #[test]
    fn mistakes_name_the_key() {
        let cases = [
            (
                "name = \"a b\"\nkind = \"regression\"\n[input]\nsynthetic = \"half_life\"\n",
                "name",
            ),
            ("name = \"a\"\nkind = \"regression\"\n[input]\n", "exactly one of"),
            (
                "name = \"a\"\nkind = \"regression\"\n[input]\ntable = \"x.tsv\"\n",
                "input.targets",
            ),
            (
                "name = \"a\"\nkind = \"regression\"\n[input]\nlabels = \"x.tsv\"\n",
                "input.layout",
            ),
            (
                "name = \"a\"\nkind = \"regression\"\n[input]\ntable = \"x.tsv\"\ntargets = [\"hl\", \"hl\"]\n",
                "\"hl\" is listed twice (entries 1 and 2)",
            ),
            (
                "name = \"a\"\nkind = \"regression\"\n[input]\nsynthetic = \"half_life\"\n[baselines]\nrandom_seeds = 0\n",
                "baselines.random_seeds",
            ),
            (
                "name = \"a\"\nkind = \"classification\"\ntransform = \"log2\"\n[input]\nsynthetic = \"half_life\"\n",
                "transform",
            ),
            (
                "name = \"a\"\nkind = \"regression\"\n[input]\nsynthetic = \"half_life\"\n[low_data]\nfractions = [1.5]\n",
                "low_data.fractions",
            ),
            (
                "name = \"a\"\nkind = \"regression\"\n[input]\nsynthetic = \"half_life\"\n[split]\ntrain = 0.9\n",
                "split",
            ),
            (
                "name = \"a\"\nkind = \"regression\"\n[input]\nsynthetic = \"half_life\"\n[baselines]\nkmers = true\n",
                "kmers",
            ),
            (
                "name = \"a\"\nkind = \"regresion\"\n[input]\nsynthetic = \"half_life\"\n",
                "regresion",
            ),
        ];
        for (text, needle) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} should mention {needle:?}");
            assert!(err.contains("/tasks/t.toml"), "{err:?} should name the file");
        }
    }

    #[test]
    fn transforms_reject_values_outside_their_domain() {
        assert_eq!(Transform::Log2.apply(8.0), Some(3.0));
        assert_eq!(Transform::Log10.apply(0.0), None);
        assert_eq!(Transform::Ln.apply(-1.0), None);
        assert_eq!(Transform::None.apply(-1.0), Some(-1.0));
    }

    #[test]
    fn shipped_tasks_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/probes");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                ProbeTask::read(&path).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
        assert!(n >= 2, "expected the shipped probe tasks in {}", dir.display());
    }
}
