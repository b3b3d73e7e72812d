//! `launcher` without Slurm: with `--local`, or when `sbatch` is not installed (with a notice), the job runs
//! on this machine as `isoclr train --workers N`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(out: &Path, local: bool, path: &str) -> std::process::Output {
    let launcher = PathBuf::from(env!("CARGO_BIN_EXE_launcher"));
    assert!(
        launcher.with_file_name("isoclr").exists(),
        "no isoclr next to the launcher: build the workspace (cargo test --workspace)"
    );
    let mut command = Command::new(launcher);
    if local {
        command.arg("--local");
    }
    command
        .args(["--workers-per-node", "2", "--config"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/tiny.toml"))
        .arg("--out")
        .arg(out)
        .env("PATH", path);
    for set in [
        "train.steps=4",
        "train.batch_size=8",
        "train.log_every=1",
        "data.synth_genes=60",
    ] {
        command.args(["--set", set]);
    }
    command.output().unwrap()
}

fn world_sizes(out: &Path) -> Vec<u64> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["world_size"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

#[test]
fn local_runs_use_this_machine_and_so_does_a_machine_without_slurm() {
    let dir = tempfile::tempdir().unwrap();
    let system_path = std::env::var("PATH").unwrap_or_default();
    let local = run(&dir.path().join("local"), true, &system_path);
    assert!(local.status.success(), "{}", String::from_utf8_lossy(&local.stderr));
    assert_eq!(world_sizes(&dir.path().join("local")), [2, 2, 2, 2]);
    assert!(dir.path().join("local/model.safetensors").exists());

    // No sbatch on the PATH: the launcher says so and runs here.
    let empty = tempfile::tempdir().unwrap();
    let fallback = run(&dir.path().join("fallback"), false, &empty.path().display().to_string());
    let stderr = String::from_utf8_lossy(&fallback.stderr);
    assert!(fallback.status.success(), "{stderr}");
    assert!(stderr.contains("no Slurm here"), "{stderr}");
    assert_eq!(world_sizes(&dir.path().join("fallback")), [2, 2, 2, 2]);
}
