#![cfg(feature = "torch")]
//! Exact resumption: a run stopped by SIGTERM and started again ends with bit-for-bit the weights and
//! optimiser state of a run that was never stopped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const STEPS: u64 = 12;

fn command(out: &Path, ckpt: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_isoclr"));
    c.arg("train")
        .arg("--config")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configs/tiny.toml"))
        .arg("--out")
        .arg(out)
        .args([
            "--set",
            &format!("train.steps={STEPS}"),
            "--set",
            "train.log_every=1",
            "--set",
            "data.synth_genes=80",
        ])
        .args([
            "--set",
            &format!("checkpoint.url=file://{}", ckpt.display()),
            "--set",
            "checkpoint.every_steps=4",
        ]);
    c
}

fn final_state(out: &Path, ckpt: &Path) -> (Vec<u8>, Vec<u8>) {
    let model = std::fs::read(out.join("model.safetensors")).unwrap();
    let optimizer = std::fs::read(ckpt.join(format!("step-{STEPS:08}")).join("optimizer.safetensors")).unwrap();
    (model, optimizer)
}

#[test]
fn sigterm_then_resume_equals_an_uninterrupted_run() {
    let straight = tempfile::tempdir().unwrap();
    let (out_a, ckpt_a) = (straight.path().join("out"), straight.path().join("ckpt"));
    let run = command(&out_a, &ckpt_a).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));

    let stopped = tempfile::tempdir().unwrap();
    let (out_b, ckpt_b) = (stopped.path().join("out"), stopped.path().join("ckpt"));
    let mut child = command(&out_b, &ckpt_b)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while std::fs::read_to_string(out_b.join("metrics.jsonl")).map_or(0, |m| m.lines().count()) < 5 {
        assert!(start.elapsed() < Duration::from_secs(120), "training never started");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be stopped"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: sending a signal to our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(75), "a stopped run exits with the resumable status");
    let latest = std::fs::read_to_string(ckpt_b.join("LATEST")).unwrap();
    assert!(
        !latest.contains(&format!("{STEPS:08}")),
        "stopped before the end: {latest}"
    );

    let run = command(&out_b, &ckpt_b).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("resumed"),
        "the second start resumed"
    );
    let (a, b) = (final_state(&out_a, &ckpt_a), final_state(&out_b, &ckpt_b));
    assert!(a.0 == b.0, "model.safetensors differs");
    assert!(a.1 == b.1, "optimizer.safetensors differs");
    let steps: Vec<u64> = std::fs::read_to_string(out_b.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(*steps.last().unwrap(), STEPS - 1);
}
