//! The `isoclr` command line: configuration layering and errors, `config`, `train --resume`, `inspect`.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

fn isoclr(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_isoclr"));
    command.args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap()
}

fn tiny() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("configs/tiny.toml")
        .display()
        .to_string()
}

#[test]
fn environment_overrides_file_and_set_overrides_environment() {
    let out = tempfile::tempdir().unwrap();
    let o = out.path().to_str().unwrap();
    let env = [
        ("ISOCLR_TRAIN_STEPS", "2"),
        ("ISOCLR_TRAIN_LR", "0.002"),
        ("ISOCLR_DATA_SYNTH_GENES", "60"),
    ];
    let run = isoclr(
        &[
            "train",
            "--config",
            &tiny(),
            "--set",
            "train.lr=0.001",
            "--set",
            "train.batch_size=8",
            "--out",
            o,
        ],
        &env,
    );
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let config: isoclr::config::Config =
        toml::from_str(&std::fs::read_to_string(out.path().join("config.toml")).unwrap()).unwrap();
    assert_eq!(config.train.steps, 2, "environment beats the file");
    assert_eq!(config.train.lr, 0.001, "--set beats the environment");
    assert_eq!(config.data.synth_genes, 60);
    assert_eq!(
        std::fs::read_to_string(out.path().join("metrics.jsonl"))
            .unwrap()
            .lines()
            .count(),
        2
    );
}

#[test]
fn unknown_keys_fail_with_their_name() {
    let out = tempfile::tempdir().unwrap();
    let o = out.path().to_str().unwrap();
    let run = isoclr(
        &["train", "--config", &tiny(), "--set", "train.lrate=0.1", "--out", o],
        &[],
    );
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    // The key, and the layer it came from as the user wrote it, once.
    assert!(
        stderr.contains("train.lrate: unknown field") && stderr.contains("(from --set train.lrate=0.1)"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("unknown field").count(), 1, "{stderr}");
    let run = isoclr(
        &["train", "--config", &tiny(), "--out", o],
        &[("ISOCLR_MODEL_PRESTE", "small")],
    );
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("model.preste") && stderr.contains("environment variable"),
        "{stderr}"
    );
    let run = isoclr(&["train", "--config", "/no/such.toml", "--out", o], &[]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("/no/such.toml"));
}

#[test]
fn a_checkpoint_of_another_model_shape_is_refused_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    let url = format!("checkpoint.url=file://{}", dir.path().join("ckpt").display());
    let train = |steps: &str, projection: &str| {
        let steps = format!("train.steps={steps}");
        let projection = format!("model.projection_dim={projection}");
        let sets = [
            "--set",
            &url,
            "--set",
            &steps,
            "--set",
            &projection,
            "--set",
            "data.synth_genes=60",
        ];
        isoclr(
            &[&["train", "--config", &tiny(), "--out", out][..], &sets[..]].concat(),
            &[],
        )
    };
    let first = train("2", "64");
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let other_shape = train("4", "32");
    let stderr = String::from_utf8_lossy(&other_shape.stderr);
    assert_eq!(other_shape.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("does not fit this model") && stderr.contains("head"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A training step whose activations cannot be allocated ends the run with an error that names the
/// micro-batch shape and what to lower, exit status 1, and no panic. The allocation is made impossible by
/// limiting the process's address space (`ulimit -v`, as clusters limit jobs) to 8 GiB while the first
/// layer's output of one pass alone needs more: 256 sequences of several thousand positions × 4,096
/// channels × 4 bytes, well over 8 GiB whatever the lengths drawn; the weights and optimiser state take
/// about 1 GiB.
#[test]
fn an_impossible_allocation_in_a_step_is_an_error_naming_the_micro_batch() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let sets = [
        "model.filters=[4096]",
        "model.blocks=[1]",
        "model.dilations=[1]",
        "data.synth_length_scale=1.0",
        "train.batch_size=128",
        "train.positions_per_pass=100000000",
        "train.threads=1",
        "train.steps=2",
    ];
    let mut line = format!(
        "ulimit -v 8388608 && exec {} train --config {} --out {}",
        env!("CARGO_BIN_EXE_isoclr"),
        tiny(),
        out.display()
    );
    for set in sets {
        line.push_str(&format!(" --set '{set}'"));
    }
    let run = Command::new("sh").args(["-c", &line]).output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("step 0: training step: out of memory"), "{stderr}");
    assert!(
        stderr.contains("micro-batches of up to 256 sequences × ") && stderr.contains("train.positions_per_pass"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!out.join("model.safetensors").exists(), "a failed run leaves no model");
}

/// `isoclr embed` with passes far larger than memory allows (a 2,048-channel first layer, 128 sequences of
/// 12,000 nt in one pass: 12.6 GB for the first activations, under an 8 GiB address-space limit) ends with
/// an error naming the pass and the option to lower, not a panic, and writes no embeddings.
#[test]
fn an_impossible_allocation_in_embedding_is_an_error_naming_the_pass() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    std::fs::create_dir(&run_dir).unwrap();
    let sets = ["model.filters=[2048]", "model.blocks=[1]", "model.dilations=[1]"];
    let mut args = vec!["config".to_owned(), "--config".to_owned(), tiny()];
    for set in sets {
        args.extend(["--set".to_owned(), set.to_owned()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let resolved = isoclr(&args, &[]);
    assert!(
        resolved.status.success(),
        "{}",
        String::from_utf8_lossy(&resolved.stderr)
    );
    let toml = String::from_utf8(resolved.stdout).unwrap();
    std::fs::write(run_dir.join("config.toml"), &toml).unwrap();
    let config = isoclr::config::Config::from_toml_str(&toml, "config.toml").unwrap();
    let model = isoclr::model::Model::new(&config.model, tch::Device::Cpu, 0);
    model.save(&run_dir.join("model.safetensors")).unwrap();
    let mut table = String::from("id\tsequence\n");
    for i in 0..128 {
        table.push_str(&format!("t{i}\t{}\n", "ACGT".repeat(3000)));
    }
    let input = dir.path().join("long.tsv");
    std::fs::write(&input, table).unwrap();
    let out = dir.path().join("embeddings.npy");
    let line = format!(
        "ulimit -v 8388608 && exec {} embed --device cpu --checkpoint {} --input {} --out {} \
         --positions-per-pass 100000000",
        env!("CARGO_BIN_EXE_isoclr"),
        run_dir.display(),
        input.display(),
        out.display()
    );
    let run = Command::new("sh").args(["-c", &line]).output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("embedding: out of memory with passes of up to 128 sequences × 12000 positions"),
        "{stderr}"
    );
    assert!(
        stderr.contains("lower --positions-per-pass (now 100000000)"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!out.exists(), "a failed embedding writes no file");
}

#[test]
fn config_prints_the_resolved_configuration_and_resume_insists_on_a_checkpoint() {
    let run = isoclr(&["config", "--config", &tiny(), "--set", "train.lr=0.004"], &[]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let toml = String::from_utf8_lossy(&run.stdout);
    assert!(toml.contains("lr = 0.004") && toml.contains("[checkpoint]"), "{toml}");

    let dir = tempfile::tempdir().unwrap();
    let o = dir.path().join("out");
    let o = o.to_str().unwrap();
    let run = isoclr(&["train", "--config", &tiny(), "--resume", "--out", o], &[]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("needs checkpoint.url"));
    let url = format!("checkpoint.url=file://{}", dir.path().join("ckpt").display());
    let run = isoclr(
        &["train", "--config", &tiny(), "--resume", "--set", &url, "--out", o],
        &[],
    );
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("holds no complete checkpoint"));
    assert!(
        !dir.path().join("out/model.safetensors").exists(),
        "nothing was trained"
    );
}

#[test]
fn synth_prep_inspect_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    let ds = dir.path().join("ds");
    let run = isoclr(
        &["synth", "--out", raw.to_str().unwrap(), "--genes", "30", "--seed", "4"],
        &[],
    );
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let run = isoclr(
        &[
            "prep",
            "--gtf",
            raw.join("annotation.gtf").to_str().unwrap(),
            "--genome",
            raw.join("genome.fa").to_str().unwrap(),
            "--homology",
            raw.join("homology.tsv").to_str().unwrap(),
            "--out",
            ds.to_str().unwrap(),
        ],
        &[],
    );
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let run = isoclr(&["inspect", ds.to_str().unwrap()], &[]);
    assert!(run.status.success());
    let counts: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert!(counts["transcripts"].as_u64().unwrap() > 30);
    let dataset = isoclr::data::Dataset::open(&ds).unwrap();
    let t = dataset.transcripts.iter().find(|t| t.cds.is_some()).unwrap();
    let run = isoclr(
        &["inspect", ds.to_str().unwrap(), "--transcript", &t.id, "--tracks"],
        &[],
    );
    assert!(run.status.success());
    let text = String::from_utf8(run.stdout).unwrap();
    let rows: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("pos"))
        .map(|l| l.split('\t').collect())
        .collect();
    assert_eq!(rows.len(), t.len());
    assert!(rows.iter().all(|r| r.len() == 8));
    let (start, _) = t.cds.unwrap();
    let codon: String = (start..start + 3).map(|p| rows[p as usize][1]).collect();
    assert_eq!(codon, "ATG");
    assert_eq!(rows[start as usize][6], "1");
    assert_eq!(rows[t.len() - 1][7], "1", "the last nucleotide ends the last exon");
    let run = isoclr(
        &["inspect", ds.to_str().unwrap(), "--transcript", "nope", "--tracks"],
        &[],
    );
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("nope"));

    // The summary verifies the dataset too: a damaged copy is refused, not summarised.
    let damaged = dir.path().join("damaged");
    std::fs::create_dir_all(&damaged).unwrap();
    for entry in std::fs::read_dir(&ds).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), damaged.join(entry.file_name())).unwrap();
    }
    let shard = damaged.join("shard-00000.bin");
    let mut bytes = std::fs::read(&shard).unwrap();
    bytes[40] ^= 0x10;
    std::fs::write(&shard, bytes).unwrap();
    let run = isoclr(&["inspect", damaged.to_str().unwrap()], &[]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("shard-00000.bin"));

    // `inspect ... --tracks | head`: a reader that stops early is no error.
    let long = dataset.transcripts.iter().max_by_key(|t| t.len()).unwrap();
    let args = ["inspect", ds.to_str().unwrap(), "--transcript", &long.id, "--tracks"];
    let whole = isoclr(&args, &[]).stdout.len();
    assert!(
        whole > 128 << 10,
        "{whole} bytes fit a pipe's buffer: the reader would not stop the writer"
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_isoclr"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut first).unwrap();
    assert!(first.starts_with(&format!("# {}", long.id)), "{first}");
    assert!(
        common::exit_within(&mut child, std::time::Duration::from_secs(60)).is_some(),
        "inspect did not end once its reader had gone"
    );
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn prep_from_a_table_infers_orfs_and_names_bad_cells_once() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("mrna.csv");
    // One mRNA with a 5'UTR, a 101-codon ORF and a 3'UTR; one without any ATG.
    let orf = format!("ATG{}TAA", "GCT".repeat(100));
    std::fs::write(
        &table,
        format!("id,sequence,gene\nm1,CC{orf}GG,G1\nm2,{},G2\n", "C".repeat(50)),
    )
    .unwrap();
    let ds = dir.path().join("ds");
    let args = |cds: &str| {
        vec![
            "prep".to_owned(),
            "--table".to_owned(),
            table.display().to_string(),
            "--cds".to_owned(),
            cds.to_owned(),
            "--out".to_owned(),
            ds.display().to_string(),
        ]
    };
    let run = isoclr(&args("longest-orf").iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let dataset = isoclr::data::Dataset::open(&ds).unwrap();
    let m1 = dataset.transcript("m1").unwrap();
    assert_eq!(m1.cds, Some((2, 2 + orf.len() as u32)));
    assert_eq!(dataset.transcript("m2").unwrap().cds, None);
    assert_eq!(dataset.manifest.cds_inferred, 1);

    std::fs::write(&table, "id,sequence,gene\nm1,ACGT,G1\nm2,AC#T,G2\n").unwrap();
    let run = isoclr(&args("annotation").iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    let expected = format!("{}:3: column `sequence`", table.display());
    assert_eq!(stderr.matches(&expected).count(), 1, "named once:\n{stderr}");
    assert!(
        !stderr.contains("backtrace") && !stderr.contains("panicked"),
        "{stderr}"
    );
}
