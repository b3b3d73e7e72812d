//! `launcher --dry-run` prints the batch script a 4-node, 8-GPU job would be submitted with; no Slurm needed.

use std::path::PathBuf;
use std::process::Command;

/// The isoclr binary of this build, which the batch script runs.
fn isoclr() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_launcher")).with_file_name("isoclr");
    assert!(
        path.exists(),
        "no isoclr next to the launcher: build the workspace (cargo test --workspace)"
    );
    path
}

#[test]
fn four_nodes_of_eight_gpus() {
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/tiny.toml");
    let out = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_launcher"))
        .args([
            "--nodes",
            "4",
            "--gpus-per-node",
            "8",
            "--time",
            "12:00:00",
            "--partition",
            "gpu",
        ])
        .args(["--sbatch=--qos=high", "--signal-lead", "240", "--dry-run"])
        .arg("--config")
        .arg(&config)
        .arg("--out")
        .arg(out.path().join("run"))
        .arg("--isoclr")
        .arg(isoclr())
        .output()
        .unwrap();
    let script = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let run_dir = out.path().join("run");
    for line in [
        "#SBATCH --nodes=4".to_owned(),
        "#SBATCH --ntasks-per-node=8".into(),
        "#SBATCH --gpus-per-node=8".into(),
        "#SBATCH --cpus-per-task=8".into(),
        "#SBATCH --time=12:00:00".into(),
        "#SBATCH --partition=gpu".into(),
        "#SBATCH --requeue".into(),
        "#SBATCH --signal=B:USR2@240".into(),
        "#SBATCH --qos=high".into(),
        format!("#SBATCH --output={}/slurm-%j.out", run_dir.display()),
    ] {
        assert!(script.lines().any(|l| l == line), "missing {line:?}:\n{script}");
    }
    // The layout: one coordinator task on the first node, then 4 × 8 workers, one GPU each, ranked by Slurm.
    assert!(script.contains("workers=$((SLURM_NNODES * 8))"), "{script}");
    assert!(
        script.contains(r#"srun --overlap --nodes=1 --ntasks=1 --nodelist="$first""#),
        "{script}"
    );
    assert!(
        script.contains(r#"--ntasks="$workers" --cpus-per-task=8 --gpus-per-task=1"#),
        "{script}"
    );
    assert!(
        script.contains(r#"--rank "$SLURM_PROCID" --local-rank "$SLURM_LOCALID""#),
        "{script}"
    );
    assert!(script.contains("scontrol requeue"), "{script}");
    assert!(script.contains(&format!("isoclr={}", isoclr().display())), "{script}");
    assert!(!run_dir.exists(), "a dry run writes nothing");
}

#[test]
fn a_bad_configuration_is_refused_before_anything_is_submitted() {
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/tiny.toml");
    let run = Command::new(env!("CARGO_BIN_EXE_launcher"))
        .args(["--nodes", "2", "--dry-run", "--set", "train.stpes=3"])
        .arg("--isoclr")
        .arg(isoclr())
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("stpes"), "{stderr}");
}
