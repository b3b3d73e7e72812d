//! The probe runner end to end through the `isoclr` binary: a training job on the synthetic transcriptome
//! that lists probe tasks runs them on its final model and writes the report, its plots and every baseline.
//! On both label sets the pre-trained encoder beats the k-mer baseline at the two smallest training
//! fractions, and on half-life it beats the random-weight encoder at the smallest, each by a paired-bootstrap
//! margin whose 95 % interval lies above zero, with disjoint per-method intervals. (What this CPU-budget
//! encoder does not show — a margin over random weights at 1 % on half-life, about +0.03, and any on ribosome
//! load, where random weights lead — is measured in the report and on issue 6, not asserted here.) Then bad
//! inputs: each gets an error naming the file, line and column.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use isoclr::data::table::{Place, TranscriptTable};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn isoclr(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_isoclr"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The CI variant of a shipped synthetic task: the smallest fractions only (the claim under test) and the
/// supervised baseline at the smallest size only, with few epochs, to fit the CI budget. Everything else
/// (input, split, baselines, draws) is the shipped file's.
fn ci_task(shipped: &str, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("configs/probes").join(shipped)).unwrap();
    let mut lines: Vec<String> = Vec::new();
    let mut section = String::new();
    for line in text.lines() {
        if line.starts_with('[') {
            section = line.to_owned();
        }
        // Drop the shipped low-data and supervised settings; ours follow.
        if section == "[low_data]" || section == "[supervised]" {
            continue;
        }
        lines.push(line.to_owned());
    }
    // 20 draws: at 17-37 rows a draw's r scatters by ±0.1, and the claim is about the mean over draws.
    lines.push("[low_data]\nfractions = [0.005, 0.01]\ncounts = []\ndraws = 20\nseed = 0".into());
    lines.push("[supervised]\nmax_rows = 20\ndraws = 1\nmax_epochs = 8\npatience = 3".into());
    let path = dir.join(shipped);
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

/// A run directory with a tiny encoder trained for one step (in `dir/run`): something to probe quickly.
fn untrained_run(dir: &Path) -> PathBuf {
    let run = dir.join("run");
    let out = isoclr(&[
        "train",
        "--config",
        path_str(&repo().join("configs/tiny.toml")),
        "--set",
        "train.steps=1",
        "--out",
        path_str(&run),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    run
}

/// `isoclr probe` of `run` with one task file into `report`, on the CPU.
fn probe_cli(run: &Path, task: &Path, report: &Path) -> Output {
    isoclr(&[
        "probe",
        "--checkpoint",
        path_str(run),
        "--task",
        path_str(task),
        "--out",
        path_str(report),
        "--device",
        "cpu",
    ])
}

/// The parsed `report.json` in `dir`.
fn read_report(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

/// Reads a PNG's width and height from its header, after checking the signature.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{} is not a PNG", path.display());
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&bytes[16..20]), be(&bytes[20..24]))
}

#[test]
fn training_runs_its_probes_and_pretraining_beats_kmers_at_the_smallest_fractions() {
    let dir = tempfile::tempdir().unwrap();
    let half_life = ci_task("synthetic_half_life.toml", dir.path());
    let ribosome = ci_task("synthetic_ribosome_load.toml", dir.path());
    let run = dir.path().join("run");
    let tasks = format!("probe.tasks=[\"{}\", \"{}\"]", half_life.display(), ribosome.display());
    // The default configuration on a larger draw of the same generator (2,000 genes: the smallest fractions
    // are then 19 and 37 rows, not 6 and 11) and longer training (400 steps, about 2 minutes on 2 cores).
    let out = isoclr(&[
        "train",
        "--config",
        path_str(&repo().join("configs/default.toml")),
        "--set",
        &tasks,
        "--set",
        "data.synth_genes=2000",
        "--set",
        "train.steps=400",
        "--out",
        path_str(&run),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "isoclr train failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("probe report:"), "{stdout}");

    let probes = run.join("probes");
    for file in ["report.json", "report.md"] {
        assert!(probes.join(file).is_file(), "no {file} in {}", probes.display());
    }
    let report = read_report(&probes);
    assert_eq!(report["checkpoint"], path_str(&run));
    let tasks = report["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    let markdown = std::fs::read_to_string(probes.join("report.md")).unwrap();
    for task in tasks {
        let name = task["task"]["name"].as_str().unwrap();
        assert!(markdown.contains(&format!("## Task `{name}`")), "{markdown}");
        let target = &task["targets"][0];
        let target_name = target["target"].as_str().unwrap();
        // The plot exists, is a real image, and the Markdown links it.
        let png = format!("{name}.{target_name}.png");
        let (w, h) = png_size(&probes.join(&png));
        assert!(w >= 400 && h >= 300, "{png} is {w}×{h}");
        assert!(markdown.contains(&png));
        let results = &target["results"];
        assert_eq!(results["primary_metric"], "pearson");
        let methods: Vec<&str> = results["methods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["method"].as_str().unwrap())
            .collect();
        assert_eq!(
            methods,
            ["pretrained", "random", "random_calibrated", "kmer", "supervised"]
        );
        for m in results["methods"].as_array().unwrap() {
            for size in m["sizes"].as_array().unwrap() {
                let mean = size["metrics"][0]["mean"].as_f64().unwrap();
                assert!(mean.is_finite() && mean.abs() <= 1.0, "{name}: {size}");
            }
        }
        // Both random baselines ran at three seeds, and each is compared with its best seed too.
        for (k, baseline) in [(1, "random"), (2, "random_calibrated")] {
            let size = &results["methods"][k]["sizes"][0];
            let seeds: Vec<u64> = (size["seeds"].as_array().unwrap().iter())
                .map(|s| s["seed"].as_u64().unwrap())
                .collect();
            assert_eq!(seeds.len(), 3, "{name}: {baseline} seeds {seeds:?}");
            let best = (results["comparisons"].as_array().unwrap().iter())
                .find(|c| c["baseline"] == baseline && c["size"] == size["size"] && !c["best_seed"].is_null())
                .unwrap_or_else(|| panic!("{name}: no best-seed comparison with {baseline}"));
            assert!(seeds.contains(&best["best_seed"].as_u64().unwrap()));
        }
        assert!(markdown.contains("random weights, best seed"), "{markdown}");
        // Only the claims that held at each of training seeds 0, 1 and 2 (docs/PROBES.md, "Across training
        // seeds"): pre-trained beats k-mers at 0.5 % and 1 % on both labels. Against random weights the sign
        // changes with the seed, so nothing is asserted about it.
        for (baseline, fraction) in [("kmer", 0.005), ("kmer", 0.01)] {
            let c = results["comparisons"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["baseline"] == baseline && c["size"]["fraction"].as_f64() == Some(fraction))
                .unwrap_or_else(|| panic!("{name}: no comparison with {baseline} at {fraction}"));
            assert!(
                c["pretrained_better"] == true && c["intervals_disjoint"] == true,
                "{name}: pre-trained vs {baseline} at {fraction} of the training rows: {c}\n{markdown}"
            );
        }
        if name != "synthetic_half_life" {
            continue;
        }
        // The from-scratch baseline ran where asked, with early stopping reported in epochs.
        let supervised = &results["methods"][4]["sizes"][0];
        assert_eq!(supervised["size"]["fraction"], 0.005);
        assert!(supervised["draws"][0]["epochs"].as_u64().unwrap() >= 1);
    }
}

#[test]
fn bad_inputs_are_named_by_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    // An (all but) untrained encoder is enough: every check below fails before a probe is fitted.
    let run = untrained_run(dir.path());

    let cases = [
        ("id\tsequence\n", "half_life", "no column `half_life`"),
        (
            "id\tsequence\thalf_life\nt1\tACGTACGT\t2.0\nt2\tACGTACGA\tfast\n",
            "half_life",
            ":3: column `half_life`",
        ),
        (
            "id\tsequence\thalf_life\nt1\tACGTACGT\t2.0\nt2\tACGXACGA\t1.0\n",
            "half_life",
            ":3: column `sequence`",
        ),
        (
            "id\tsequence\tgroup\thalf_life\nt1\tACGTACGT\tG1\t2.0\nt2\tACGTACGA\t\t1.0\n",
            "half_life",
            ":3: column `group`",
        ),
    ];
    for (k, (table, target, needle)) in cases.iter().enumerate() {
        let table_path = dir.path().join(format!("bad{k}.tsv"));
        std::fs::write(&table_path, table).unwrap();
        let task = dir.path().join(format!("bad{k}.toml"));
        std::fs::write(
            &task,
            format!(
                "name = \"bad{k}\"\nkind = \"regression\"\n[input]\ntable = \"bad{k}.tsv\"\ntargets = [\"{target}\"]\n"
            ),
        )
        .unwrap();
        let out = probe_cli(&run, &task, &dir.path().join("report"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "case {k} was accepted");
        assert!(
            stderr.contains(needle) && stderr.contains(&format!("bad{k}.tsv")),
            "case {k}: {needle:?} and the file name should be in:\n{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // A task file with a typo names the key.
    let task = dir.path().join("typo.toml");
    std::fs::write(
        &task,
        "name = \"t\"\nkind = \"regression\"\n[input]\nsynthetic = \"half_life\"\n[low_data]\ndraw = 3\n",
    )
    .unwrap();
    let out = probe_cli(&run, &task, &dir.path().join("report"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("draw") && stderr.contains("typo.toml"),
        "{stderr}"
    );
}

/// A classification task from a table (the table input path, logistic probes, AUROC/AUPRC and the binary
/// from-scratch baseline): the label is whether a transcript carries the motif planted in it.
#[test]
fn a_classification_table_task_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let run = untrained_run(dir.path());

    // 120 transcripts of 300 nt from a fixed pseudo-random stream; every other one carries 8 copies of
    // TTTATTTATTTA; groups of two rows; a CDS in some rows so the annotation columns are exercised.
    let mut state: u64 = 12345;
    let mut base = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        b"ACGT"[(state >> 62) as usize] as char
    };
    let mut table = String::from("id,sequence,cds_start,cds_end,exon_ends,group,carries_motif\n");
    for i in 0..120 {
        let mut seq: String = (0..300).map(|_| base()).collect();
        let positive = i % 2 == 0;
        if positive {
            for k in 0..8 {
                seq.replace_range(20 + k * 30..32 + k * 30, "TTTATTTATTTA");
            }
        }
        let (cds_start, cds_end) = if i % 3 == 0 { ("30", "90") } else { ("", "") };
        table.push_str(&format!(
            "t{i},{seq},{cds_start},{cds_end},\"99,199\",g{},{}\n",
            i / 2,
            u8::from(positive)
        ));
    }
    std::fs::write(dir.path().join("motif.csv"), table).unwrap();
    let task = dir.path().join("motif.toml");
    std::fs::write(
        &task,
        "name = \"motif\"\nkind = \"classification\"\n[input]\ntable = \"motif.csv\"\ntargets = [\"carries_motif\"]\n\
         [low_data]\nfractions = [0.5, 1.0]\ncounts = []\ndraws = 2\n\
         [supervised]\nmax_rows = 50\ndraws = 1\nmax_epochs = 3\npatience = 2\n",
    )
    .unwrap();
    let report_dir = dir.path().join("report");
    let out = probe_cli(&run, &task, &report_dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report = read_report(&report_dir);
    let results = &report["tasks"][0]["targets"][0]["results"];
    assert_eq!(results["primary_metric"], "auroc");
    let methods = results["methods"].as_array().unwrap();
    let names: Vec<&str> = methods.iter().map(|m| m["method"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["pretrained", "random", "random_calibrated", "kmer", "supervised"],
        "{results}"
    );
    // k-mer frequencies see the planted motif directly: near-perfect on the whole training split.
    let kmer_full = methods[3]["sizes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["size"]["fraction"] == 1.0)
        .unwrap();
    assert!(kmer_full["metrics"][0]["mean"].as_f64().unwrap() > 0.9, "{kmer_full}");
    let names: Vec<&str> = kmer_full["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["metric"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["auroc", "auprc"]);
    assert!(methods[4]["sizes"][0]["draws"][0]["epochs"].as_u64().unwrap() >= 1);
    let (w, h) = png_size(&report_dir.join("motif.carries_motif.png"));
    assert!(w > 0 && h > 0);
}

/// SIGTERM while a training job runs its probes ends the process promptly with a clear message (training
/// had turned the signal into a flag; the probes heed it) and leaves no report behind.
#[test]
fn a_stop_signal_during_the_probes_ends_the_job() {
    use std::io::{BufRead, BufReader};
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let task = dir.path().join("slow.toml");
    // Every size, many draws and the k-mer baseline: far longer than the signal takes to act.
    std::fs::write(
        &task,
        "name = \"slow\"\nkind = \"regression\"\n[input]\nsynthetic = \"half_life\"\n\
         [low_data]\ndraws = 50\n[baselines]\nsupervised = false\n",
    )
    .unwrap();
    let run = dir.path().join("run");
    let mut child = Command::new(env!("CARGO_BIN_EXE_isoclr"))
        .args(["train", "--config", path_str(&repo().join("configs/tiny.toml"))])
        .args([
            "--set",
            "train.steps=2",
            "--set",
            &format!("probe.tasks=[\"{}\"]", task.display()),
        ])
        .args(["--out", path_str(&run)])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let started = Instant::now();
    let mut log = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("no 'probe task' line within 120 s");
        let probing = line.contains("probe task");
        log.push(line);
        if probing {
            break;
        }
    }
    // Let it get into the fits, then stop it.
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: `kill` with a valid pid and signal number has no memory-safety preconditions.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let Some(status) = common::exit_within(&mut child, Duration::from_secs(30)) else {
        panic!("still running 30 s after SIGTERM");
    };
    log.extend(rx.try_iter());
    let log = log.join("\n");
    assert!(!status.success(), "{log}");
    assert!(log.contains("interrupted"), "{log}");
    assert!(run.join("model.safetensors").is_file(), "the trained model stays");
    assert!(!run.join("probes/report.json").exists());
    assert!(started.elapsed() < Duration::from_secs(300));
}

/// Runs `script` with pyarrow in the project's Python, `args` after it; returns stdout, failing on an error.
fn pyarrow(script: &str, args: &[&str]) -> String {
    let out = Command::new(common::project_python("pyarrow"))
        .args(["-c", script])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "python: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Three rows as pyarrow writes them (typed columns, nulls, a list column for `exon_ends`, a boolean target)
/// in every common codec, their TSV twin, and two bad files.
const WRITE_TABLES: &str = r#"
import csv, sys
import pyarrow as pa, pyarrow.parquet as pq
d = sys.argv[1]
schema = pa.schema([("id", pa.string()), ("sequence", pa.string()), ("cds_start", pa.int64()),
    ("cds_end", pa.int32()), ("exon_ends", pa.list_(pa.int32())), ("group", pa.string()),
    ("half_life", pa.float64()), ("bound", pa.bool_())])
rows = [
    dict(id="t1", sequence="ACGTACGTAC", cds_start=0, cds_end=9, exon_ends=[4, 9], group="g1", half_life=1.5, bound=True),
    dict(id="t2", sequence="acgunnacgt", cds_start=None, cds_end=None, exon_ends=None, group="g1", half_life=None, bound=False),
    dict(id="t3", sequence="GGGCCCAAATTT", cds_start=3, cds_end=12, exon_ends=[2], group="g2", half_life=0.1, bound=True),
]
for codec in ["snappy", "zstd", "gzip", "lz4", "none"]:
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), f"{d}/t.{codec}.parquet", compression=codec)
def text(v):
    if v is None: return ""
    if isinstance(v, list): return ",".join(map(str, v))
    if isinstance(v, bool): return str(int(v))
    return str(v)
with open(f"{d}/t.tsv", "w", newline="") as f:
    w = csv.writer(f, delimiter="\t", lineterminator="\n")
    w.writerow(schema.names)
    w.writerows([[text(r[k]) for k in schema.names] for r in rows])
rows[1]["sequence"] = "ACGXT"
pq.write_table(pa.Table.from_pylist(rows, schema=schema), f"{d}/bad.parquet")
pq.write_table(pa.table({"id": ["a"], "sequence": ["ACGT"], "meta": [{"x": 1}]}), f"{d}/nested.parquet")
"#;

/// Parquet tables written by pyarrow (every codec pandas, pyarrow and polars use) read into the same rows as
/// their TSV twin, with rows (not lines) named in errors.
#[test]
fn parquet_tables_from_pyarrow_read_like_their_tsv_twins() {
    let dir = tempfile::tempdir().unwrap();
    pyarrow(WRITE_TABLES, &[path_str(dir.path())]);
    let targets = ["half_life", "bound"];
    let tsv = TranscriptTable::read(&dir.path().join("t.tsv"), &targets).unwrap();
    assert_eq!(tsv.rows.len(), 3);
    for codec in ["snappy", "zstd", "gzip", "lz4", "none"] {
        let path = dir.path().join(format!("t.{codec}.parquet"));
        let parquet = TranscriptTable::read(&path, &targets).unwrap_or_else(|e| panic!("{codec}: {e}"));
        assert_eq!(parquet.groups, tsv.groups, "{codec}");
        assert_eq!(parquet.notes, tsv.notes, "{codec}");
        for (k, (p, t)) in parquet.rows.iter().zip(&tsv.rows).enumerate() {
            assert_eq!(p.transcript, t.transcript, "{codec} row {k}");
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&p.targets), bits(&t.targets), "{codec} row {k}");
            assert_eq!(p.place, Place::Row(k as u64 + 1));
        }
    }
    // The missing half-life is NaN, the CDS and exon ends came through, `U` and lower case are accepted.
    assert!(tsv.rows[1].targets[0].is_nan());
    assert_eq!(tsv.rows[0].transcript.cds, Some((0, 9)));
    assert_eq!(tsv.rows[2].transcript.exon_ends, [2, 11]);

    let err = |name: &str| {
        TranscriptTable::read(&dir.path().join(name), &[])
            .unwrap_err()
            .to_string()
    };
    let e = err("bad.parquet");
    assert!(
        e.contains("bad.parquet:row 2: column `sequence`: illegal letter 'X'"),
        "{e}"
    );
    let e = err("nested.parquet");
    assert!(
        e.contains("nested.parquet:row 1: column `meta`") && e.contains("struct"),
        "{e}"
    );
    std::fs::copy(dir.path().join("t.tsv"), dir.path().join("text.parquet")).unwrap();
    let e = err("text.parquet");
    assert!(e.contains("text.parquet: not a readable Parquet file"), "{e}");
}

/// `isoclr embed` from a Parquet table into Parquet: pyarrow reads back the ids and exactly the values the
/// `.npy` output of the same call holds.
#[test]
fn embed_writes_parquet_that_pyarrow_reads_as_the_npy_values() {
    let dir = tempfile::tempdir().unwrap();
    let run = untrained_run(dir.path());
    pyarrow(WRITE_TABLES, &[path_str(dir.path())]);
    let input = dir.path().join("t.snappy.parquet");
    for out in ["e.parquet", "e.npy"] {
        let out = dir.path().join(out);
        let args = [
            "embed",
            "--checkpoint",
            path_str(&run),
            "--input",
            path_str(&input),
            "--out",
            path_str(&out),
        ];
        let done = isoclr(&[&args[..], &["--device", "cpu"]].concat());
        assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    }
    let read = "import json, sys, pyarrow.parquet as pq\nt = pq.read_table(sys.argv[1])\n\
                print(json.dumps({'names': t.column_names, 'types': [str(f.type) for f in t.schema], \
                'rows': [list(r.values()) for r in t.to_pylist()]}))";
    let table: serde_json::Value =
        serde_json::from_str(&pyarrow(read, &[path_str(&dir.path().join("e.parquet"))])).unwrap();

    let npy = std::fs::read(dir.path().join("e.npy")).unwrap();
    let header_len = u16::from_le_bytes([npy[8], npy[9]]) as usize;
    let values: Vec<f32> = npy[10 + header_len..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let ids = std::fs::read_to_string(dir.path().join("e.npy.ids.txt")).unwrap();
    let ids: Vec<&str> = ids.lines().collect();
    assert_eq!(ids, ["t1", "t2", "t3"]);
    let dim = values.len() / ids.len();
    assert!(dim > 0);

    let names = table["names"].as_array().unwrap();
    assert_eq!(names.len(), dim + 1);
    assert_eq!(names[0], "id");
    assert_eq!(names[dim], format!("e{}", dim - 1));
    assert_eq!(table["types"][0], "string");
    assert_eq!(table["types"][1], "float");
    let rows = table["rows"].as_array().unwrap();
    assert_eq!(rows.len(), ids.len());
    for (r, row) in rows.iter().enumerate() {
        assert_eq!(row[0], ids[r]);
        for d in 0..dim {
            // float32 → Python float → JSON → f64 is exact, so the values must be equal bit for bit.
            assert_eq!(
                row[d + 1].as_f64().unwrap() as f32,
                values[r * dim + d],
                "row {r}, e{d}"
            );
        }
    }
}

/// Undefined scores are recorded cell by cell and the report is still written; only a target that is the
/// same on every row (nothing to predict) stops the task, naming task and target.
#[test]
fn undefined_scores_leave_their_cells_out_and_the_report_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let run = untrained_run(dir.path());
    let sequence = |i: usize| -> String {
        (0..60 + 7 * i)
            .map(|k| b"ACGT"[(k * (i + 3) + k / 5) % 4] as char)
            .collect()
    };
    let table = |name: &str, values: &dyn Fn(usize) -> String, rows: usize| {
        let mut text = String::from("id\tsequence\tgroup\ty\n");
        for i in 0..rows {
            text.push_str(&format!("t{i}\t{}\tG{i}\t{}\n", sequence(i), values(i)));
        }
        std::fs::write(dir.path().join(format!("{name}.tsv")), text).unwrap();
    };
    let task = |name: &str, kind: &str| {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                "name = \"{name}\"\nkind = \"{kind}\"\n[input]\ntable = \"{name}.tsv\"\ntargets = [\"y\"]\n\
                 [low_data]\nfractions = [1e-9, 1.0]\ncounts = []\ndraws = 2\n[baselines]\nsupervised = false\n"
            ),
        )
        .unwrap();
        path
    };
    // Five rows: one test row, on which no correlation is defined.
    table("five", &|i| format!("{}", i as f64 * 0.5), 5);
    // One positive among 24 rows: most subsets and splits hold one class.
    table("one_positive", &|i| u8::from(i == 7).to_string(), 24);
    for (name, kind) in [("five", "regression"), ("one_positive", "classification")] {
        let report = dir.path().join(format!("report-{name}"));
        let out = probe_cli(&run, &task(name, kind), &report);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: {stderr}");
        let markdown = std::fs::read_to_string(report.join("report.md")).unwrap();
        let target = &read_report(&report)["tasks"][0]["targets"][0];
        if name == "five" {
            // Predictions exist; their correlation with one test row does not.
            assert!(markdown.contains("Left out, undefined"), "{name}:\n{markdown}");
            assert!(
                !target["results"]["undefined"].as_array().unwrap().is_empty(),
                "{target}"
            );
        } else {
            // Training subsets of one class are skipped, each with a note naming method, seed and size.
            assert!(
                markdown.contains("skipped: its training rows hold one class"),
                "{markdown}"
            );
            assert!(
                markdown.contains("random weights (seed 2): 100% draw 0 skipped"),
                "{markdown}"
            );
        }
    }
    // A constant target: the whole task is meaningless.
    table("constant", &|_| "3.5".to_owned(), 24);
    let out = probe_cli(
        &run,
        &task("constant", "regression"),
        &dir.path().join("report-constant"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a constant target was probed");
    assert!(
        stderr.contains("constant") && stderr.contains("nothing to predict"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
