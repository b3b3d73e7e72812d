//! Property-based tests over every parser and validator that reads user input: valid samples damaged by
//! random edits (bytes replaced, inserted or deleted, lines duplicated, the file cut short), and random
//! `--set` overrides. Each must end in bounded time, without a panic, with either a result or an error that
//! names the file (or the configuration key). Longer runs of the same properties: `cargo fuzz` (docs/FUZZ.md).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use isoclr::config::Config;
use isoclr::data::Dataset;
use isoclr::data::prep::{PrepInput, PrepOptions, prep};
use isoclr::data::table::TranscriptTable;
use isoclr::probe::task::ProbeTask;
use proptest::prelude::*;

/// Every case must finish within this (debug build, a shared 2-core machine).
const BOUND: Duration = Duration::from_secs(10);

/// Bytes a damaged file is most likely to trip on: separators, quotes, signs, digits, letters, UTF-8 lead
/// bytes, NUL.
const INTERESTING: &[u8] = b"\t\n\r \";=.,-+?#>*/\\0123456789ACGTNXacgtn[]{}\x00\xff\xc3";

/// One edit of a file's bytes.
#[derive(Debug, Clone)]
enum Edit {
    Replace(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    DuplicateLine(usize),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let byte = prop_oneof![
        4 => (0..INTERESTING.len()).prop_map(|i| INTERESTING[i]),
        1 => any::<u8>(),
    ];
    prop_oneof![
        4 => (any::<usize>(), byte.clone()).prop_map(|(p, b)| Edit::Replace(p, b)),
        2 => (any::<usize>(), byte).prop_map(|(p, b)| Edit::Insert(p, b)),
        2 => any::<usize>().prop_map(Edit::Delete),
        1 => any::<usize>().prop_map(Edit::DuplicateLine),
        1 => any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    proptest::collection::vec(edit(), 1..6)
}

/// `text` with `edits` applied (positions taken modulo the current length).
fn damaged(text: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut bytes = text.to_vec();
    for e in edits {
        let len = bytes.len().max(1);
        match *e {
            Edit::Replace(p, b) if !bytes.is_empty() => bytes[p % len] = b,
            Edit::Insert(p, b) => bytes.insert(p % (bytes.len() + 1), b),
            Edit::Delete(p) if !bytes.is_empty() => {
                bytes.remove(p % len);
            }
            Edit::DuplicateLine(p) => {
                let lines: Vec<&[u8]> = bytes.split_inclusive(|&b| b == b'\n').collect();
                if !lines.is_empty() {
                    let k = p % lines.len();
                    let mut out: Vec<u8> = Vec::new();
                    for (i, l) in lines.iter().enumerate() {
                        out.extend_from_slice(l);
                        if i == k {
                            out.extend_from_slice(l);
                        }
                    }
                    bytes = out;
                }
            }
            Edit::Truncate(p) => bytes.truncate(p % len),
            _ => {}
        }
    }
    bytes
}

/// Runs `f`, failing the case if it takes longer than [`BOUND`]; panics fail it on their own.
fn bounded<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, TestCaseError> {
    let started = Instant::now();
    let out = f();
    let took = started.elapsed();
    prop_assert!(took < BOUND, "{what} took {took:?}");
    Ok(out)
}

/// An error must name one of `names` (file names, or configuration keys).
fn names_one_of(err: &str, names: &[&str]) -> Result<(), TestCaseError> {
    prop_assert!(
        names.iter().any(|n| err.contains(n)),
        "the error names none of {names:?}: {err}"
    );
    Ok(())
}

const GENOME: &str = ">chr1 test\nACGTTGCAATGGCCAAGGTTCCAGATGAAACCCGGGTTTAAACCCGGGTTTACGATCGATCGTAGCTAGCTAGGATCCATGCAAGCTTGCA\n\
ACGTAGCTAGCTAGCTAGGGATCCCGATCGATCGATTTAGCGCGCGATATATCGCGATTAGCCGATCGATCGAATTCGGCCGGTTAACC\n>chr2\nACGTACGTAAACCCGGGTTT\n";

const GTF: &str = "#!genome-build test\n\
chr1\tt\tgene\t1\t150\t.\t+\t.\tgene_id \"g1\";\n\
chr1\tt\ttranscript\t1\t150\t.\t+\t.\tgene_id \"g1\"; transcript_id \"tx1\";\n\
chr1\tt\texon\t1\t40\t.\t+\t.\tgene_id \"g1\"; transcript_id \"tx1\";\n\
chr1\tt\texon\t61\t150\t.\t+\t.\tgene_id \"g1\"; transcript_id \"tx1\";\n\
chr1\tt\tCDS\t9\t40\t.\t+\t0\tgene_id \"g1\"; transcript_id \"tx1\";\n\
chr1\tt\tCDS\t61\t84\t.\t+\t1\tgene_id \"g1\"; transcript_id \"tx1\";\n\
chr1\tt\texon\t1\t40\t.\t+\t.\tgene_id \"g1\"; transcript_id \"tx2\";\n\
chr1\tt\texon\t101\t170\t.\t+\t.\tgene_id \"g1\"; transcript_id \"tx2\";\n\
chr1\tt\texon\t20\t90\t.\t-\t.\tgene_id \"g2\"; transcript_id \"tx3\";\n\
chr2\tt\texon\t2\t19\t.\t.\t.\tgene_id \"g3\"; transcript_id \"tx4\";\n";

const GFF3: &str = "##gff-version 3\n\
chr1\tt\tgene\t1\t150\t.\t+\t.\tID=g1\n\
chr1\tt\tmRNA\t1\t150\t.\t+\t.\tID=tx1;Parent=g1\n\
chr1\tt\texon\t1\t40\t.\t+\t.\tParent=tx1\n\
chr1\tt\texon\t61\t150\t.\t+\t.\tParent=tx1\n\
chr1\tt\tCDS\t9\t40\t.\t+\t0\tParent=tx1\n\
chr1\tt\tmRNA\t1\t170\t.\t+\t.\tID=tx2;Parent=g1\n\
chr1\tt\texon\t1\t40\t.\t+\t.\tParent=tx2\n\
chr1\tt\texon\t101\t170\t.\t+\t.\tParent=tx2\n";

const HOMOLOGY: &str = "gene_id\tgroup_id\ng1\tH1\ng2\tH1\ng3\tH2\n";

const TABLE: &str = "id\tsequence\tgroup\tcds_start\tcds_end\texon_ends\thalf_life\n\
a\tACGTACGTATGAAATAG\tG1\t8\t17\t7,16\t1.5\n\
b\tACGUACGUNNRY\tG1\t\t\t\t-0.25\n\
c\tGGGCCCAAATTT\tG2\t0\t12\t11\tNA\n";

const TASK: &str = "name = \"t\"\nkind = \"regression\"\ntransform = \"log2\"\n[input]\ntable = \"x.tsv\"\n\
targets = [\"half_life\"]\n[split]\ntrain = 0.7\nvalidation = 0.15\ntest = 0.15\nseed = 1\n\
[low_data]\nfractions = [0.1, 1.0]\ncounts = [30]\ndraws = 2\n[baselines]\nkmer = false\nrandom_seeds = 2\n";

const CONFIG: &str = "[data]\nsynth_genes = 50\n[model]\npreset = \"tiny\"\nnorm = \"batch\"\nhead_hidden = 64\n\
[train]\nsteps = 10\nbatch_size = 8\nlr = 0.001\nbeta2 = 0.99\nlog_every = 5\nmax_shift = 3\n\
[checkpoint]\nevery_steps = 5\n";

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn out(&self) -> PathBuf {
        let out = self.dir.path().join("out");
        let _ = std::fs::remove_dir_all(&out);
        out
    }
}

/// `prep` from a genome and an annotation, with a homology table.
fn prep_genome(f: &Files, annotation: &Path, genome: &Path, homology: &Path) -> Result<(), String> {
    let mut opts = PrepOptions::new(
        PrepInput::Genome {
            annotation: annotation.to_owned(),
            genome: genome.to_owned(),
        },
        f.out(),
    );
    opts.homology = Some(homology.to_owned());
    prep(&opts).map(|_| ()).map_err(|e| e.to_string())
}

/// One of `prep`'s three inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    Annotation,
    Genome,
    Homology,
}

/// `prep` on the genome, `annotation` (file name and valid text) and the homology table, with `damaged_input`
/// edited by `edits`: it must end in bounded time, and an error must name one of `names`.
fn prep_with_damage(
    annotation: (&str, &str),
    damaged_input: Input,
    edits: &[Edit],
    names: &[&str],
) -> Result<(), TestCaseError> {
    let f = Files::new();
    let text = |input: Input, valid: &str| {
        if input == damaged_input {
            damaged(valid.as_bytes(), edits)
        } else {
            valid.as_bytes().to_vec()
        }
    };
    let annotation_path = f.write(annotation.0, &text(Input::Annotation, annotation.1));
    let genome = f.write("genome.fa", &text(Input::Genome, GENOME));
    let homology = f.write("homology.tsv", &text(Input::Homology, HOMOLOGY));
    if let Err(e) = bounded("prep", || prep_genome(&f, &annotation_path, &genome, &homology))? {
        names_one_of(&e, names)?;
    }
    Ok(())
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

#[test]
fn the_valid_samples_are_valid() {
    let f = Files::new();
    let (genome, homology) = (
        f.write("genome.fa", GENOME.as_bytes()),
        f.write("homology.tsv", HOMOLOGY.as_bytes()),
    );
    for (name, text) in [("a.gtf", GTF), ("a.gff3", GFF3)] {
        let annotation = f.write(name, text.as_bytes());
        prep_genome(&f, &annotation, &genome, &homology).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let table = f.write("x.tsv", TABLE.as_bytes());
    TranscriptTable::read(&table, &["half_life"]).unwrap();
    ProbeTask::from_toml_str(TASK, &f.dir.path().join("t.toml")).unwrap();
    Config::load(Some(&f.write("c.toml", CONFIG.as_bytes())), &[]).unwrap();
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_damaged_gtf_is_read_or_named(edits in edits()) {
        prep_with_damage(("a.gtf", GTF), Input::Annotation, &edits, &["a.gtf", "genome.fa", "homology.tsv"])?;
    }

    #[test]
    fn a_damaged_gff3_is_read_or_named(edits in edits()) {
        prep_with_damage(("a.gff3", GFF3), Input::Annotation, &edits, &["a.gff3", "genome.fa", "homology.tsv"])?;
    }

    #[test]
    fn a_damaged_fasta_is_read_or_named(edits in edits()) {
        prep_with_damage(("a.gtf", GTF), Input::Genome, &edits, &["a.gtf", "genome.fa", "homology.tsv"])?;
    }

    #[test]
    fn a_damaged_homology_table_is_read_or_named(edits in edits()) {
        prep_with_damage(("a.gtf", GTF), Input::Homology, &edits, &["homology.tsv", "a.gtf"])?;
    }

    #[test]
    fn a_damaged_probe_table_is_read_or_named(edits in edits()) {
        let f = Files::new();
        let table = f.write("x.tsv", &damaged(TABLE.as_bytes(), &edits));
        if let Err(e) = bounded("table", || TranscriptTable::read(&table, &["half_life"]))? {
            names_one_of(&e.to_string(), &["x.tsv"])?;
        }
    }

    #[test]
    fn a_damaged_task_file_is_read_or_named(edits in edits()) {
        let text = damaged(TASK.as_bytes(), &edits);
        let path = Path::new("/nowhere/task.toml");
        let result = bounded("task", || match std::str::from_utf8(&text) {
            Ok(text) => ProbeTask::from_toml_str(text, path).map(|_| ()).map_err(|e| e.to_string()),
            Err(_) => Ok(()),
        })?;
        if let Err(e) = result {
            names_one_of(&e, &["task.toml"])?;
        }
    }

    #[test]
    fn a_damaged_configuration_is_read_or_named(edits in edits()) {
        let f = Files::new();
        let path = f.write("c.toml", &damaged(CONFIG.as_bytes(), &edits));
        if let Err(e) = bounded("config", || Config::load(Some(&path), &[]))? {
            names_one_of(&e.to_string(), &["c.toml", "configuration key"])?;
        }
    }

    #[test]
    fn any_set_overrides_are_applied_or_name_a_key(sets in proptest::collection::vec(set_override(), 1..4)) {
        if let Err(e) = bounded("--set", || Config::load(None, &sets))? {
            // One of the keys set, or (for a rule across keys) the key of the rule it broke.
            let e = e.to_string();
            let keys: Vec<&str> = sets.iter().filter_map(|s| s.split('=').next()).collect();
            prop_assert!(keys.iter().any(|k| e.contains(k)) || e.contains("configuration key"), "{sets:?}: {e}");
        }
    }

    #[test]
    fn a_damaged_dataset_is_refused_with_its_path(edits in edits(), file in 0usize..3) {
        let f = Files::new();
        let (genome, homology) = (f.write("genome.fa", GENOME.as_bytes()), f.write("homology.tsv", HOMOLOGY.as_bytes()));
        let annotation = f.write("a.gtf", GTF.as_bytes());
        prep_genome(&f, &annotation, &genome, &homology).unwrap();
        let dir = f.dir.path().join("out");
        let target = dir.join(["manifest.json", "groups.bin", "shard-00000.bin"][file]);
        let bytes = std::fs::read(&target).unwrap();
        let changed = damaged(&bytes, &edits);
        std::fs::write(&target, &changed).unwrap();
        match bounded("open", || Dataset::open(&dir))? {
            Ok(_) => prop_assert!(changed == bytes || file == 0, "a damaged {} was accepted", target.display()),
            Err(e) => names_one_of(&e.to_string(), &[dir.to_str().unwrap()])?,
        }
    }

    #[test]
    fn damaged_weights_are_refused_with_the_file_named(edits in edits()) {
        let f = Files::new();
        let config = Config::load(Some(&f.write("c.toml", CONFIG.as_bytes())), &[]).unwrap();
        let model = isoclr::model::Model::new(&config.model, tch::Device::Cpu, 1);
        let path = f.dir.path().join("model.safetensors");
        model.save(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let changed = damaged(&bytes, &edits);
        std::fs::write(&path, &changed).unwrap();
        let mut other = isoclr::model::Model::new(&config.model, tch::Device::Cpu, 2);
        if let Err(e) = bounded("load", || other.load(&path))? {
            names_one_of(&e.to_string(), &["model.safetensors"])?;
        }
    }
}

/// One `KEY=VALUE` override: a key users set, and a value of any type, extreme ones likely.
fn set_override() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| format!("{v:?}")),
        prop::sample::select(vec![
            "-1",
            "0",
            "1",
            "2",
            "1e308",
            "nan",
            "-inf",
            "\"step\"",
            "\"group\"",
            "\"layer\"",
            "\"\"",
            "[]",
            "[0]",
            "true",
            "x",
        ])
        .prop_map(str::to_owned),
    ];
    (prop::sample::select(SET_KEYS.to_vec()), value).prop_map(|(key, value)| format!("{key}={value}"))
}

/// Every key `--set` reaches whose value a user types.
const SET_KEYS: &[&str] = &[
    "data.synth_genes",
    "data.synth_length_scale",
    "data.max_len",
    "data.holdout_fraction",
    "model.preset",
    "model.kernel",
    "model.norm",
    "model.norm_groups",
    "model.dropout",
    "model.head_hidden",
    "model.projection_dim",
    "model.tracks",
    "model.mlm_weight",
    "model.filters",
    "train.steps",
    "train.batch_size",
    "train.seed",
    "train.lr",
    "train.weight_decay",
    "train.beta1",
    "train.beta2",
    "train.eps",
    "train.schedule",
    "train.warmup_fraction",
    "train.loss",
    "train.temperature",
    "train.clip",
    "train.clip_norm",
    "train.mask_fraction",
    "train.max_shift",
    "train.positions_per_pass",
    "train.packing",
    "train.gradient_cache",
    "train.batch_statistics",
    "train.log_every",
    "train.threads",
    "train.max_restarts",
    "dist.prefetch",
    "dist.heartbeat_interval_s",
    "dist.heartbeat_timeout_s",
    "checkpoint.every_steps",
    "checkpoint.keep",
];
