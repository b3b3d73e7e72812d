//! Multi-process training through the real binary: `isoclr train --workers N` (a coordinator plus N worker
//! processes talking gRPC and a TCP ring) computes what one process computes, and a worker killed with
//! SIGKILL brings the whole job down within the configured bound, naming the lost worker.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{alive, children};

fn tiny() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configs/tiny.toml")
}

/// Settings under which a distributed run must equal one process: per-sample norms, no dropout, and an
/// Adam ε that keeps float summation-order noise in near-zero gradients from being amplified to lr.
const EXACT: [&str; 8] = [
    "model.norm=layer",
    "model.dropout=0.0",
    "train.steps=6",
    "train.batch_size=12",
    "train.lr=0.001",
    "train.eps=1e-6",
    "train.log_every=1",
    "data.synth_genes=80",
];

fn train(out: &Path, workers: Option<usize>, extra: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_isoclr"));
    command.arg("train").arg("--config").arg(tiny()).arg("--out").arg(out);
    for s in EXACT.iter().chain(extra) {
        command.args(["--set", s]);
    }
    if let Some(n) = workers {
        command.args(["--workers", &n.to_string()]);
    }
    command.output().unwrap()
}

fn losses(out: &Path) -> Vec<f64> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                .as_f64()
                .unwrap()
        })
        .collect()
}

fn weights(out: &Path) -> Vec<(String, tch::Tensor)> {
    let mut w = tch::Tensor::read_safetensors(out.join("model.safetensors")).unwrap();
    w.sort_by(|a, b| a.0.cmp(&b.0));
    w
}

#[test]
fn two_and_three_workers_match_one_process() {
    let single = tempfile::tempdir().unwrap();
    let run = train(single.path(), None, &[]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let (reference, reference_weights) = (losses(single.path()), weights(single.path()));
    assert_eq!(reference.len(), 6);
    for n in [2, 3] {
        let out = tempfile::tempdir().unwrap();
        let run = train(out.path(), Some(n), &[]);
        assert!(
            run.status.success(),
            "{n} workers:\n{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let got = losses(out.path());
        assert_eq!(got.len(), reference.len(), "{n} workers: one metrics line per step");
        for (step, (a, b)) in got.iter().zip(&reference).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * b.abs(),
                "{n} workers, step {step}: loss {a} vs {b}"
            );
        }
        for ((name, a), (other, b)) in weights(out.path()).iter().zip(&reference_weights) {
            assert_eq!(name, other);
            if name.contains("running_") {
                continue; // layer norm keeps no running statistics; none are saved for it anyway
            }
            let diff = (a - b).abs().max().double_value(&[]);
            assert!(diff <= 1e-5, "{n} workers: {name} differs by {diff}");
        }
    }
}

/// `dist.backend = "nccl"` where NCCL cannot run (this CPU machine) stops the job with an error that names
/// the key and the reason, promptly, instead of hanging or silently falling back.
#[test]
fn nccl_asked_for_on_the_cpu_is_refused_by_name() {
    let out = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let run = train(out.path(), Some(2), &["dist.backend=nccl", "train.device=cpu"]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "training succeeded:\n{stderr}");
    assert!(
        // The first obstacle found: this build's missing `nccl` feature, or (built with it) the CPU.
        stderr.contains("dist.backend = \"nccl\" cannot run")
            && (stderr.contains("feature `nccl`") || stderr.contains("the workers train on the CPU")),
        "{stderr}"
    );
    assert!(started.elapsed().as_secs() < 60, "took {:?}", started.elapsed());
}

#[test]
fn a_killed_worker_ends_the_job_within_the_bound() {
    let out = tempfile::tempdir().unwrap();
    let bound = 8.0;
    let mut job = Command::new(env!("CARGO_BIN_EXE_isoclr"))
        .arg("train")
        .arg("--config")
        .arg(tiny())
        .arg("--out")
        .arg(out.path())
        .args([
            "--workers",
            "2",
            "--set",
            "train.steps=100000",
            "--set",
            "train.batch_size=8",
        ])
        .args([
            "--set",
            &format!("dist.heartbeat_timeout_s={bound}"),
            "--set",
            "dist.collective_timeout_s=8",
        ])
        .args(["--set", "dist.heartbeat_interval_s=0.5", "--set", "data.synth_genes=60"])
        // This test is about failing within the bound; restarting is tests/resume.rs's.
        .args(["--set", "train.max_restarts=0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = common::StderrReader::start(&mut job);
    // Wait until training is under way: a few steps in the job's metrics.
    let start = Instant::now();
    while std::fs::read_to_string(out.path().join("metrics.jsonl")).map_or(0, |m| m.lines().count()) < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the job never started training"
        );
        assert!(job.try_wait().unwrap().is_none(), "the job ended early");
        std::thread::sleep(Duration::from_millis(100));
    }
    let workers = children(job.id());
    assert_eq!(workers.len(), 2, "two worker processes");
    let victim = workers[1];
    // SAFETY: sending a signal to a process id we just read; no memory is involved.
    assert_eq!(unsafe { libc::kill(victim as i32, libc::SIGKILL) }, 0);
    let killed_at = Instant::now();
    let Some(status) = common::exit_within(&mut job, Duration::from_secs_f64(3.0 * bound)) else {
        panic!("the job did not end within {}s", 3.0 * bound);
    };
    let elapsed = killed_at.elapsed();
    let stderr = stderr.finish();
    assert!(!status.success(), "a lost worker must fail the job");
    assert!(
        elapsed.as_secs_f64() <= bound + 5.0,
        "took {elapsed:?} (bound {bound}s)"
    );
    assert!(
        stderr.contains(&format!("pid {victim}")) || stderr.contains("worker process 1"),
        "the message names the lost worker (pid {victim}):\n{stderr}"
    );
    for pid in workers {
        assert!(!alive(pid), "worker {pid} is still running");
    }
}
