//! Trains `configs/tiny.toml` end to end through the `isoclr` binary (synth → prep → train) and checks
//! that it learned: the loss falls and contrastive accuracy ends well above chance.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn metrics(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .expect("metrics.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

#[test]
fn tiny_config_trains_and_learns() {
    let out = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_isoclr"))
        .args(["train", "--config"])
        .arg(repo().join("configs/tiny.toml"))
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "isoclr train failed:\n{stderr}");
    assert!(
        !stderr.contains("autocast") && !stderr.contains("[W"),
        "libtorch warnings reached the user:\n{stderr}"
    );

    let lines = metrics(out.path());
    assert!(lines.len() >= 5, "too few metric lines: {}", lines.len());
    for line in &lines {
        for key in ["step", "loss", "accuracy", "lr", "seq_per_s", "pad_fraction"] {
            assert!(line.get(key).is_some_and(|v| v.is_number()), "missing {key} in {line}");
        }
    }
    let value = |l: &serde_json::Value, k: &str| l[k].as_f64().unwrap();
    let head: f64 = lines[..3].iter().map(|l| value(l, "loss")).sum::<f64>() / 3.0;
    let tail: f64 = lines[lines.len() - 3..].iter().map(|l| value(l, "loss")).sum::<f64>() / 3.0;
    assert!(tail < head - 0.5, "loss did not fall: first {head:.3}, last {tail:.3}");
    let batch = 32.0;
    let accuracy: f64 = lines[lines.len() - 3..]
        .iter()
        .map(|l| value(l, "accuracy"))
        .sum::<f64>()
        / 3.0;
    assert!(
        accuracy > 10.0 / batch,
        "accuracy {accuracy:.3} not well above chance {:.3}",
        1.0 / batch
    );
    // Length-aware micro-batches keep padding low on the synthetic length mix.
    assert!(lines.iter().all(|l| value(l, "pad_fraction") < 0.5));

    // The resolved configuration is written and reads back as the same settings.
    let resolved = std::fs::read_to_string(out.path().join("config.toml")).unwrap();
    let config: isoclr::config::Config = toml::from_str(&resolved).unwrap();
    assert_eq!(config.train.steps, 120);
    assert_eq!(config.model.preset, isoclr::config::Preset::Tiny);

    // The weights load into a model of the same shape, by name.
    let mut model = isoclr::model::Model::new(&config.model, tch::Device::Cpu, 99);
    model.load(&out.path().join("model.safetensors")).unwrap();

    // The trained encoder embeds the dataset: one float32 row per transcript, ids in row order.
    let npy = out.path().join("embeddings.npy");
    let embed = Command::new(env!("CARGO_BIN_EXE_isoclr"))
        .args(["embed", "--device", "cpu", "--checkpoint"])
        .arg(out.path())
        .arg("--input")
        .arg(out.path().join("data/prepared"))
        .arg("--out")
        .arg(&npy)
        .output()
        .unwrap();
    assert!(embed.status.success(), "{}", String::from_utf8_lossy(&embed.stderr));
    let ids = std::fs::read_to_string(out.path().join("embeddings.npy.ids.txt")).unwrap();
    let rows = ids.lines().count();
    let bytes = std::fs::read(&npy).unwrap();
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = String::from_utf8_lossy(&bytes[10..10 + header_len]);
    let dim = config.model.shape().filters.last().copied().unwrap() as usize;
    assert!(header.contains(&format!("'shape': ({rows}, {dim})")), "{header}");
    assert_eq!(bytes.len(), 10 + header_len + rows * dim * 4);
}
