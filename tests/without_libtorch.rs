//! `isoclr` runs its tensor-free commands (help, synth, prep, inspect, config, coordinator) on a machine
//! without libtorch. The libtorch directory is hidden from a copy of each binary by overwriting, in the copy,
//! the one path the loader would search (the binary's RUNPATH, `$LIBTORCH/lib`) with a path that does not
//! exist, and by running without LD_LIBRARY_PATH. The same treatment of `isoclr-torch` makes it unable to
//! start, which shows the hiding works.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A copy of the binary `name` in `dir` in which every occurrence of libtorch's library directory is
/// replaced by a path of the same length that does not exist. Returns the copy and how many occurrences
/// were replaced.
fn copy_without_libtorch(name: &str, binary: &str, dir: &Path) -> (PathBuf, usize) {
    let lib = format!("{}/lib", env!("LIBTORCH"));
    let hidden = format!("/{}", "x".repeat(lib.len() - 1));
    let mut bytes = std::fs::read(binary).unwrap();
    let mut replaced = 0;
    let mut at = 0;
    while let Some(offset) = bytes[at..].windows(lib.len()).position(|w| w == lib.as_bytes()) {
        let start = at + offset;
        bytes[start..start + lib.len()].copy_from_slice(hidden.as_bytes());
        replaced += 1;
        at = start + lib.len();
    }
    let copy = dir.join(name);
    std::fs::write(&copy, &bytes).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    (copy, replaced)
}

/// `binary` with `args`, with no library path from the environment.
fn command(binary: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(binary);
    command
        .args(args)
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("LIBTORCH")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    command
}

fn run(binary: &Path, args: &[&str]) -> Output {
    command(binary, args).output().unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn the_tensor_free_commands_run_with_libtorch_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let (isoclr, replaced) = copy_without_libtorch("isoclr", env!("CARGO_BIN_EXE_isoclr"), &bin);
    assert!(replaced >= 1, "the isoclr binary names no libtorch directory to hide");

    // The control: the binary that does link libtorch cannot start from such a copy.
    let (torch, replaced) = copy_without_libtorch("isoclr-torch", env!("CARGO_BIN_EXE_isoclr-torch"), dir.path());
    assert!(replaced >= 1);
    let output = run(&torch, &["--help"]);
    assert!(!output.status.success(), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("libtorch"),
        "{}",
        text(&output)
    );

    let help = run(&isoclr, &["--help"]);
    assert!(help.status.success(), "{}", text(&help));
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("coordinator"),
        "{}",
        text(&help)
    );

    let synth = dir.path().join("synth");
    let output = run(
        &isoclr,
        &[
            "synth",
            "--out",
            synth.to_str().unwrap(),
            "--genes",
            "40",
            "--length-scale",
            "0.2",
        ],
    );
    assert!(output.status.success(), "{}", text(&output));

    let dataset = dir.path().join("dataset");
    let file = |name: &str| synth.join(name).to_str().unwrap().to_owned();
    let (gtf, genome, homology) = (file("annotation.gtf"), file("genome.fa"), file("homology.tsv"));
    let output = run(
        &isoclr,
        &[
            "prep",
            "--gtf",
            &gtf,
            "--genome",
            &genome,
            "--homology",
            &homology,
            "--out",
            dataset.to_str().unwrap(),
        ],
    );
    assert!(output.status.success(), "{}", text(&output));

    let output = run(&isoclr, &["inspect", dataset.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("transcripts"),
        "{}",
        text(&output)
    );

    let tiny = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/tiny.toml");
    let data = format!("data.path={}", dataset.display());
    let output = run(&isoclr, &["config", "--config", tiny, "--set", &data]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("[train]"),
        "{}",
        text(&output)
    );

    // A coordinator starts, listens for its worker, and is stopped by SIGTERM as a pre-empted job is: resumable.
    let addr = dir.path().join("addr");
    let out = dir.path().join("run");
    let mut coordinator = command(
        &isoclr,
        &[
            "coordinator",
            "--config",
            tiny,
            "--set",
            &data,
            "--out",
            out.to_str().unwrap(),
            "--workers",
            "1",
            "--addr-file",
            addr.to_str().unwrap(),
        ],
    )
    .env("ISOCLR_TOKEN", "a-test-token-of-enough-length-0123456789")
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let stderr = common::StderrReader::start(&mut coordinator);
    let start = Instant::now();
    while !addr.exists() && start.elapsed() < Duration::from_secs(60) && coordinator.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let listening = addr.exists();
    // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
    unsafe { libc::kill(coordinator.id() as i32, libc::SIGTERM) };
    let status = common::exit_within(&mut coordinator, Duration::from_secs(30));
    let stderr = stderr.finish();
    assert!(listening, "the coordinator never wrote its address: {stderr}");
    assert_eq!(status.and_then(|s| s.code()), Some(75), "{stderr}");

    // A command that needs libtorch, with no isoclr-torch beside isoclr: a clear error, not a crash.
    let output = run(&isoclr, &["train", "--config", tiny, "--out", out.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("isoclr-torch") && !stderr.contains("panicked"),
        "{}",
        text(&output)
    );
}
