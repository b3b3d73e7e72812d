//! Exact resumption through the real binary: a run stopped by SIGTERM and started again, and a 2-worker job
//! whose worker is SIGKILLed and which restarts itself, end with bit-for-bit the weights and optimiser state
//! of a run that was never disturbed.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

mod common;
use common::children;

const STEPS: u64 = 12;

/// Two small synthetic datasets (different seeds) and an orthology table joining two of their genes, made
/// once per test process: a corpus to train on.
fn corpus() -> &'static (tempfile::TempDir, Vec<String>) {
    static CORPUS: OnceLock<(tempfile::TempDir, Vec<String>)> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let isoclr = env!("CARGO_BIN_EXE_isoclr");
        for (name, seed, genes) in [("human", "1", "60"), ("mouse", "2", "40")] {
            let raw = dir.path().join(format!("{name}-raw"));
            let run = |args: &[&str]| {
                let out = Command::new(isoclr).args(args).output().unwrap();
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            };
            run(&[
                "synth",
                "--out",
                raw.to_str().unwrap(),
                "--genes",
                genes,
                "--seed",
                seed,
                "--length-scale",
                "0.2",
            ]);
            let raw = |f: &str| raw.join(f).display().to_string();
            let out = dir.path().join(name).display().to_string();
            run(&[
                "prep",
                "--gtf",
                &raw("annotation.gtf"),
                "--genome",
                &raw("genome.fa"),
                "--out",
                &out,
            ]);
        }
        let links = dir.path().join("links.tsv");
        std::fs::write(&links, "human\tSYNG00001\tO1\nmouse\tSYNG00002\tO1\n").unwrap();
        let d = |n: &str| dir.path().join(n).display().to_string();
        let sets = vec![
            format!("data.paths=[\"{}\", \"{}\"]", d("human"), d("mouse")),
            "data.weights=[2.0, 1.0]".to_owned(),
            format!("data.orthology=\"{}\"", links.display()),
            "data.holdout_fraction=0.1".to_owned(),
        ];
        (dir, sets)
    })
}

/// `isoclr train` on the tiny configuration, checkpointing every 4 steps into `ckpt`; with `on_corpus`, on the
/// two-dataset [`corpus`] instead of the synthetic default.
fn command_on(out: &Path, ckpt: &Path, workers: Option<usize>, on_corpus: bool) -> Command {
    let mut c = command(out, ckpt, workers);
    if on_corpus {
        for set in &corpus().1 {
            c.args(["--set", set]);
        }
    }
    c
}

/// `isoclr train` on the tiny configuration, checkpointing every 4 steps into `ckpt`.
fn command(out: &Path, ckpt: &Path, workers: Option<usize>) -> Command {
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
            "--set",
            "train.batch_size=16",
        ])
        .args([
            "--set",
            &format!("checkpoint.url=file://{}", ckpt.display()),
            "--set",
            "checkpoint.every_steps=4",
        ]);
    if let Some(n) = workers {
        c.args(["--workers", &n.to_string(), "--set", "dist.heartbeat_interval_s=0.5"]);
    }
    c
}

/// The final `model.safetensors` and the last checkpoint's `optimizer.safetensors`.
fn final_state(out: &Path, ckpt: &Path) -> (Vec<u8>, Vec<u8>) {
    let model = std::fs::read(out.join("model.safetensors")).unwrap();
    let optimizer = std::fs::read(ckpt.join(format!("step-{STEPS:08}")).join("optimizer.safetensors")).unwrap();
    (model, optimizer)
}

/// Runs to the end without interruption and returns the final state.
fn straight(workers: Option<usize>, on_corpus: bool) -> (Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let (out, ckpt) = (dir.path().join("out"), dir.path().join("ckpt"));
    let run = command_on(&out, &ckpt, workers, on_corpus).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    final_state(&out, &ckpt)
}

/// The uninterrupted 2-worker run, shared by the tests that compare against it.
fn straight_two_workers() -> &'static (Vec<u8>, Vec<u8>) {
    static STATE: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    STATE.get_or_init(|| straight(Some(2), false))
}

fn metrics_lines(out: &Path) -> usize {
    std::fs::read_to_string(out.join("metrics.jsonl")).map_or(0, |m| m.lines().count())
}

/// Waits (at most 2 minutes) until `ready` holds, failing if `child` ends first.
fn wait_until(child: &mut Child, what: &str, ready: impl Fn() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < Duration::from_secs(120), "timed out waiting: {what}");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (at most 3 minutes) for `child` to end and returns its exit code and stderr.
fn finish(mut child: Child, stderr: common::StderrReader) -> (Option<i32>, String) {
    let Some(status) = common::exit_within(&mut child, Duration::from_secs(180)) else {
        panic!("the run did not end within 3 minutes");
    };
    (status.code(), stderr.finish())
}

/// The steps of `metrics.jsonl`, in file order.
fn logged_steps(out: &Path) -> Vec<u64> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

/// Stops a run with SIGTERM once it has logged 5 steps (sent to its whole process group, as a scheduler
/// does), checks it exits with the resumable status before the end, starts it again, and compares the
/// result with `reference`.
fn stop_and_resume(workers: Option<usize>, on_corpus: bool, reference: &(Vec<u8>, Vec<u8>)) {
    let dir = tempfile::tempdir().unwrap();
    let (out, ckpt) = (dir.path().join("out"), dir.path().join("ckpt"));
    let mut child = command_on(&out, &ckpt, workers, on_corpus)
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = common::StderrReader::start(&mut child);
    wait_until(&mut child, "5 steps logged", || metrics_lines(&out) >= 5);
    // SAFETY: signals the process group of our own child (its pid, as we made it a group leader).
    assert_eq!(unsafe { libc::kill(-(child.id() as i32), libc::SIGTERM) }, 0);
    let (code, stderr) = finish(child, stderr);
    assert_eq!(
        code,
        Some(75),
        "a stopped run exits with the resumable status:\n{stderr}"
    );
    let latest = std::fs::read_to_string(ckpt.join("LATEST")).unwrap();
    assert!(
        !latest.contains(&format!("{STEPS:08}")),
        "stopped before the end: {latest}"
    );

    // `--resume` insists on a checkpoint; a plain start would resume the same way.
    let run = command_on(&out, &ckpt, workers, on_corpus)
        .arg("--resume")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("resum"), "the second start resumed:\n{stderr}");
    if workers.is_some_and(|w| w > 1) {
        // Rank 0 alone reads the checkpoint; the others receive its state over the collective.
        assert_eq!(
            stderr.matches("resumed from checkpoint").count(),
            1,
            "one rank read the checkpoint:\n{stderr}"
        );
        assert!(stderr.contains("resumed with rank 0's state"), "{stderr}");
    }
    let got = final_state(&out, &ckpt);
    assert!(got.0 == reference.0, "model.safetensors differs");
    assert!(got.1 == reference.1, "optimizer.safetensors differs");
    assert_eq!(
        logged_steps(&out),
        (0..STEPS).collect::<Vec<_>>(),
        "every step logged once, in order"
    );
    // Started once more after the end, as a requeued or re-submitted job is: complete, exit 0, unchanged.
    let again = command_on(&out, &ckpt, workers, on_corpus)
        .arg("--resume")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(
        again.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(stdout.contains("complete"), "{stdout}");
    assert!(final_state(&out, &ckpt) == got, "a finished run is left as it was");
}

#[test]
fn sigterm_then_resume_equals_an_uninterrupted_run() {
    stop_and_resume(None, false, &straight(None, false));
}

#[test]
fn two_workers_sigterm_then_resume_equals_an_uninterrupted_run() {
    stop_and_resume(Some(2), false, straight_two_workers());
}

/// A corpus of two datasets with weights, an orthology table and held-out groups: the coordinator's shards
/// and a resume after SIGTERM draw exactly the batches of an uninterrupted run.
#[test]
fn two_workers_on_a_corpus_sigterm_then_resume_equals_an_uninterrupted_run() {
    stop_and_resume(Some(2), true, &straight(Some(2), true));
}

#[test]
fn a_sigkilled_worker_restarts_the_job_which_ends_as_if_undisturbed() {
    let dir = tempfile::tempdir().unwrap();
    let (out, ckpt) = (dir.path().join("out"), dir.path().join("ckpt"));
    let mut child = command(&out, &ckpt, Some(2))
        .args(["--set", "train.max_restarts=1", "--set", "dist.heartbeat_timeout_s=10"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = common::StderrReader::start(&mut child);
    // Kill after the first checkpoint, part-way to the next, so the restart must resume and redo steps.
    wait_until(&mut child, "a checkpoint and 6 steps", || {
        ckpt.join("LATEST").exists() && metrics_lines(&out) >= 6
    });
    let workers = children(child.id());
    assert_eq!(workers.len(), 2, "two worker processes");
    // SAFETY: sends a signal to a process id just read from /proc; no memory is involved.
    assert_eq!(unsafe { libc::kill(workers[1] as i32, libc::SIGKILL) }, 0);
    let (code, stderr) = finish(child, stderr);
    assert_eq!(code, Some(0), "the job restarted itself and finished:\n{stderr}");
    assert!(stderr.contains("starting it again"), "{stderr}");
    assert!(stderr.contains("resuming the job from its checkpoint"), "{stderr}");
    let reference = straight_two_workers();
    let got = final_state(&out, &ckpt);
    assert!(got.0 == reference.0, "model.safetensors differs");
    assert!(got.1 == reference.1, "optimizer.safetensors differs");
    assert_eq!(logged_steps(&out), (0..STEPS).collect::<Vec<_>>());
}
