//! The launcher against a real Slurm (Debian's slurm-wlm with two fake nodes on this host, started by
//! `scripts/slurm.sh` when none is running): a 2-node job of CPU workers trains the tiny configuration to
//! completion with ranks from Slurm, and a job whose time limit is too short for it gets the warning signal,
//! checkpoints, requeues itself and ends with bit-for-bit the weights of the uninterrupted job.
//!
//! Fails when Slurm cannot be started; `ISOCLR_SKIP_SLURM=1` skips it, loudly (never in CI).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Starts the test cluster unless one is running; false when the tests are to be skipped.
fn slurm_ready() -> bool {
    if std::env::var("ISOCLR_SKIP_SLURM").is_ok_and(|v| v == "1") {
        eprintln!("\n!!! SKIPPED: the Slurm tests (ISOCLR_SKIP_SLURM=1); nothing was tested against Slurm !!!\n");
        return false;
    }
    let start = Command::new("bash")
        .arg(repo().join("scripts/slurm.sh"))
        .arg("start")
        .output()
        .expect("cannot run scripts/slurm.sh");
    assert!(
        start.status.success(),
        "cannot start Slurm (set ISOCLR_SKIP_SLURM=1 to skip these tests):\n{}{}",
        String::from_utf8_lossy(&start.stdout),
        String::from_utf8_lossy(&start.stderr)
    );
    true
}

/// Submits the tiny configuration on 2 nodes × 1 CPU worker, with `extra` overrides; returns the job id.
fn submit(dir: &Path, time: &str, signal_lead: u32, steps: u64, extra: &[&str]) -> String {
    let launcher = PathBuf::from(env!("CARGO_BIN_EXE_launcher"));
    assert!(
        launcher.with_file_name("isoclr").exists(),
        "no isoclr binary next to the launcher: build the workspace (cargo test --workspace)"
    );
    let mut command = Command::new(&launcher);
    command
        .args([
            "--nodes",
            "2",
            "--workers-per-node",
            "1",
            "--cpus-per-task",
            "1",
            "--time",
            time,
        ])
        .args(["--signal-lead", &signal_lead.to_string(), "--job-name", "isoclr-test"])
        .arg("--config")
        .arg(repo().join("configs/tiny.toml"))
        .arg("--out")
        .arg(dir.join("out"));
    for set in [
        format!("train.steps={steps}"),
        "train.batch_size=8".into(),
        "train.log_every=1".into(),
        // One thread: the same float summation order in every run, so weights can be compared bit for bit.
        "train.threads=1".into(),
        "data.synth_genes=80".into(),
        format!("checkpoint.url=file://{}", dir.join("ckpt").display()),
        "checkpoint.every_steps=100".into(),
    ] {
        command.args(["--set", &set]);
    }
    for set in extra {
        command.args(["--set", set]);
    }
    let run = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}{}", String::from_utf8_lossy(&run.stderr));
    let id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("submitted job "))
        .and_then(|l| l.split(':').next())
        .unwrap_or_else(|| panic!("no job id in {stdout:?}"))
        .to_owned();
    assert!(stdout.contains(&format!("slurm-{id}.out")), "{stdout}");
    id
}

/// `JobState` and `ExitCode` of a job once it has ended for good (bounded by `limit`).
fn wait_for(id: &str, limit: Duration) -> (String, String) {
    let start = Instant::now();
    loop {
        let show = Command::new("scontrol")
            .args(["show", "job", id, "-o"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&show.stdout).into_owned();
        let field = |name: &str| {
            text.split_whitespace()
                .find_map(|f| f.strip_prefix(&format!("{name}=")))
                .unwrap_or_default()
                .to_owned()
        };
        let state = field("JobState");
        if [
            "COMPLETED",
            "FAILED",
            "CANCELLED",
            "TIMEOUT",
            "NODE_FAIL",
            "OUT_OF_MEMORY",
        ]
        .contains(&state.as_str())
        {
            return (state, field("ExitCode"));
        }
        if start.elapsed() > limit {
            let _ = Command::new("scancel").arg(id).status();
            panic!("job {id} did not end within {limit:?}: {text}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn log(dir: &Path, id: &str) -> String {
    std::fs::read_to_string(dir.join("out").join(format!("slurm-{id}.out"))).unwrap_or_default()
}

#[test]
fn jobs_train_to_completion_and_survive_their_time_limit_by_requeueing() {
    if !slurm_ready() {
        return;
    }
    // slurmctld checks time limits every 30 s and sends the warning at the first check less than lead + 30 s
    // before the limit: with a 1-minute limit and a 10 s lead, 20 to 50 s after the start, and the kill a
    // check later. 2,400 tiny steps take well over a minute on an idle 2-core machine (900 took 41 s on
    // 2026-12-07), longer under load, so the first run is always interrupted, and each run makes progress.
    // They also outlast what the batch streams send ahead (about 940 steps here): the job is suspended while
    // its streams still have steps to deliver, as a real pre-emption is.
    const STEPS: u64 = 2400;
    let (whole, limited) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // The uninterrupted job also lists a (small) probe task, which the batch script runs once training ends.
    let task = whole.path().join("probe.toml");
    std::fs::write(
        &task,
        "name = \"after_training\"\nkind = \"regression\"\ntransform = \"log2\"\n[input]\nsynthetic = \"half_life\"\n\
         [low_data]\nfractions = [0.1, 1.0]\ncounts = []\ndraws = 2\n[baselines]\nkmer = false\nsupervised = false\n",
    )
    .unwrap();
    let probe_tasks = format!("probe.tasks=[\"{}\"]", task.display());
    let whole_id = submit(whole.path(), "10:00", 10, STEPS, &[&probe_tasks]);
    let limited_id = submit(limited.path(), "1", 10, STEPS, &[]);
    // A job that cannot work (its dataset does not exist) fails once and is not requeued.
    let broken = tempfile::tempdir().unwrap();
    let missing = format!("data.path={}", broken.path().join("no-such-dataset").display());
    let broken_id = submit(broken.path(), "10:00", 10, 10, &[&missing]);

    // 1. The uninterrupted job: outputs, a checkpoint, and ranks that came from Slurm (SLURM_PROCID).
    let (state, exit) = wait_for(&whole_id, Duration::from_secs(600));
    let whole_log = log(whole.path(), &whole_id);
    assert_eq!((state.as_str(), exit.as_str()), ("COMPLETED", "0:0"), "{whole_log}");
    let out = whole.path().join("out");
    assert!(out.join("model.safetensors").exists());
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count() as u64, STEPS);
    assert!(metrics.lines().all(|l| l.contains("\"world_size\":2")));
    let latest = std::fs::read_to_string(whole.path().join("ckpt/LATEST")).unwrap();
    assert!(latest.contains(&format!("{STEPS:08}")), "{latest}");
    assert!(whole_log.contains("2 workers on 2 node(s)"), "{whole_log}");
    assert!(whole_log.contains("probe report:"), "{whole_log}");
    let report = std::fs::read_to_string(out.join("probes/report.json")).unwrap();
    assert!(report.contains("\"after_training\""), "{report}");
    for rank in 0..2 {
        assert!(
            whole_log.lines().any(|l| l.contains("rank assigned")
                && l.contains(&format!("rank={rank} "))
                && l.contains(&format!("requested_rank=Some({rank})"))),
            "rank {rank} was not the one Slurm gave:\n{whole_log}"
        );
    }

    // 2. The time-limited job: warned, checkpointed, requeued, resumed, and the same final weights.
    let (state, exit) = wait_for(&limited_id, Duration::from_secs(900));
    let limited_log = log(limited.path(), &limited_id);
    assert_eq!((state.as_str(), exit.as_str()), ("COMPLETED", "0:0"), "{limited_log}");
    assert!(limited_log.contains("warning signal"), "{limited_log}");
    assert!(
        limited_log.contains("a stopped rank closed its batch stream"),
        "suspended with steps still to stream:\n{limited_log}"
    );
    assert!(limited_log.contains("requeueing"), "{limited_log}");
    assert!(limited_log.contains("start 2,"), "the job ran again:\n{limited_log}");
    assert!(
        limited_log.contains("resuming the job from its checkpoint"),
        "{limited_log}"
    );
    let weights = |dir: &Path| std::fs::read(dir.join("out/model.safetensors")).unwrap();
    assert!(
        weights(whole.path()) == weights(limited.path()),
        "the requeued job's weights differ from the uninterrupted job's"
    );
    let (state, exit) = wait_for(&broken_id, Duration::from_secs(120));
    let broken_log = log(broken.path(), &broken_id);
    assert_eq!(state, "FAILED", "{broken_log}");
    assert_ne!(exit, "75:0", "{broken_log}");
    assert!(
        broken_log.contains("not requeued") && !broken_log.contains("start 2,"),
        "{broken_log}"
    );
    assert!(
        broken_log.contains("no-such-dataset"),
        "the log says what failed:\n{broken_log}"
    );

    let optimizer =
        |dir: &Path| std::fs::read(dir.join(format!("ckpt/step-{STEPS:08}/optimizer.safetensors"))).unwrap();
    assert!(
        optimizer(whole.path()) == optimizer(limited.path()),
        "optimizer state differs"
    );
}
