//! isoclr against the PyTorch reference in `benches/reference.py`: the same weights and inputs must give the
//! same embeddings, the same loss and the same optimiser step, and the reference must refuse weights that do
//! not fit its shape.
//!
//! The Python side runs in the project's venv (`scripts/setup.sh` installs it) or `$ISOCLR_PYTHON`. Without
//! it these tests fail on purpose: a silently skipped cross-check is a cross-check nobody runs.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use isoclr::config::{ClipKind, Config, LossKind, ModelConfig, Norm, Preset, ScheduleKind, TrainConfig};
use isoclr::data::batch::{PassLayout, ViewSpec, encode_for_embedding, encode_views};
use isoclr::data::{MicroBatch, Pair, StepBatch, TRACK_UNIT, TRACKS, Transcript};
use isoclr::dist::SingleProcess;
use isoclr::model::{Model, group_size_weight};
use isoclr::train::step::Trainer;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

/// Largest allowed |isoclr − PyTorch| per embedding element, gradient element and parameter element.
const TOLERANCE: f64 = 1e-4;

/// Serialises the tests: libtorch's seed is process-global, so models built on parallel test threads would
/// otherwise be initialised from each other's seeds and change from run to run.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The interpreter with torch; panics (fails the test) with set-up instructions when there is none.
fn python() -> PathBuf {
    static PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PYTHON.get_or_init(|| common::project_python("torch")).clone()
}

/// Runs `reference.py` with `args`; returns its output whatever the exit status.
fn reference(args: &[&str]) -> Output {
    let script = repo().join("benches/reference.py");
    Command::new(python())
        .arg(&script)
        .args(args)
        .output()
        .expect("running benches/reference.py")
}

/// Runs `reference.py` and fails the test, showing its stderr, unless it succeeds.
fn reference_ok(args: &[&str]) -> String {
    let out = reference(args);
    assert!(
        out.status.success(),
        "reference.py {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The reference's JSON config: the resolved model shape plus the step settings (see reference.py's header).
fn config_json(model: &ModelConfig, train: &TrainConfig, lr: f64) -> String {
    let shape = model.shape();
    serde_json::json!({
        "filters": shape.filters,
        "blocks": shape.blocks,
        "dilations": shape.dilations,
        "kernel": shape.kernel,
        "norm": model.norm,
        "norm_groups": model.norm_groups,
        "dropout": model.dropout,
        "head_hidden": model.head_hidden,
        "projection_dim": model.projection_dim,
        "tracks": model.tracks,
        "lr": lr,
        "weight_decay": train.weight_decay,
        "beta1": train.beta1,
        "beta2": train.beta2,
        "eps": train.eps,
        "clip_norm": train.clip_norm,
        "temperature": train.temperature,
    })
    .to_string()
}

fn model_config(norm: Norm) -> ModelConfig {
    ModelConfig {
        preset: Preset::Tiny,
        norm,
        head_hidden: 32,
        projection_dim: 16,
        dropout: 0.0,
        ..Default::default()
    }
}

/// A random transcript with a few exons, a CDS when long enough and the odd N (ambiguous letter).
fn transcript(rng: &mut ChaCha8Rng, len: usize) -> Transcript {
    let mut seq: Vec<u8> = (0..len).map(|_| b"ACGT"[rng.random_range(0..4)]).collect();
    seq[rng.random_range(0..len)] = b'N';
    let mut ends: Vec<u32> = (0..rng.random_range(0..4))
        .map(|_| rng.random_range(0..len as u32 - 1))
        .collect();
    ends.push(len as u32 - 1);
    ends.sort_unstable();
    ends.dedup();
    let cds = (len >= 30).then(|| {
        let start = rng.random_range(0..len as u32 / 3);
        (start, start + (len as u32 - start) / 3 * 3)
    });
    Transcript::new("t", "g", 0, &seq, ends, cds).unwrap()
}

/// `[lines, 6, L]` tracks and `[n]` lengths of one micro-batch, as tensors.
fn micro_tensors(m: &MicroBatch) -> (Tensor, Tensor) {
    let x = Tensor::from_slice(&m.tracks)
        .view([m.lines as i64, TRACKS as i64, m.padded_len as i64])
        .to_kind(tch::Kind::Float)
        * f64::from(TRACK_UNIT);
    let lengths = Tensor::from_slice(&m.lengths.iter().map(|&l| i64::from(l)).collect::<Vec<_>>());
    (x, lengths)
}

fn read(path: &Path) -> std::collections::HashMap<String, Tensor> {
    Tensor::read_safetensors(path).unwrap().into_iter().collect()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

#[test]
fn embeddings_match_the_reference_in_eval_mode() {
    let _serial = serial();
    for norm in [Norm::Batch, Norm::Group] {
        let dir = tempfile::tempdir().unwrap();
        let config = model_config(norm);
        let model = Model::new(&config, Device::Cpu, 11);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        // A few train-mode passes move the batch-norm running statistics away from 0 and 1, so eval mode
        // exercises them for real.
        for round in 0..3 {
            let warm: Vec<Transcript> = (0..4)
                .map(|i| transcript(&mut rng, 200 + 150 * i + 40 * round))
                .collect();
            let refs: Vec<&Transcript> = warm.iter().collect();
            let _ = tch::no_grad(|| model.embed_micro_batches(&encode_for_embedding(&refs, 1 << 20), true));
        }
        let weights = dir.path().join("model.safetensors");
        model.save(&weights).unwrap();

        let lengths = [37, 700, 1500, 64, 2049, 333];
        let transcripts: Vec<Transcript> = lengths.iter().map(|&l| transcript(&mut rng, l)).collect();
        let refs: Vec<&Transcript> = transcripts.iter().collect();
        // isoclr embeds in several length-sorted passes; the reference gets everything in one pass padded to
        // the longest, so agreement also shows that padding does not leak into either implementation.
        let rust = tch::no_grad(|| model.embed_micro_batches(&encode_for_embedding(&refs, 4096), false));
        let one_pass = encode_for_embedding(&refs, usize::MAX);
        assert_eq!(one_pass.len(), 1);
        let (x, lens) = micro_tensors(&one_pass[0]);
        let inputs = dir.path().join("inputs.safetensors");
        Tensor::write_safetensors(&[("x", x), ("lengths", lens)], &inputs).unwrap();

        let out = dir.path().join("out.safetensors");
        let json = config_json(&config, &TrainConfig::default(), 1e-3);
        let [w, i, o] = [&weights, &inputs, &out].map(|p| p.to_str().unwrap().to_owned());
        reference_ok(&[
            "embed",
            "--weights",
            &w,
            "--inputs",
            &i,
            "--out",
            &o,
            "--config-json",
            &json,
        ]);
        let python = read(&out)
            .remove("embeddings")
            .expect("reference wrote no `embeddings`");
        // Row k of the one pass is transcript rows[k]; isoclr's result is in the given order.
        let rows = Tensor::from_slice(&one_pass[0].rows.iter().map(|&r| r as i64).collect::<Vec<_>>());
        let rust = rust.index_select(0, &rows);
        assert_eq!(python.size(), rust.size(), "{norm:?}");
        let diff = max_abs_diff(&python, &rust);
        let scale = rust.abs().max().double_value(&[]);
        eprintln!("{norm:?}: embeddings max |isoclr − PyTorch| = {diff:.3e} (largest |element| {scale:.3})");
        assert!(
            scale > 1e-3,
            "{norm:?}: embeddings are trivially zero, the comparison would prove nothing"
        );
        assert!(
            diff <= TOLERANCE,
            "{norm:?}: embeddings differ by {diff:e} > {TOLERANCE:e}"
        );
    }
}

#[test]
fn reference_refuses_weights_of_another_head_width() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let config = model_config(Norm::Batch);
    let weights = dir.path().join("model.safetensors");
    Model::new(&config, Device::Cpu, 1).save(&weights).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let t = transcript(&mut rng, 100);
    let (x, lens) = micro_tensors(&encode_for_embedding(&[&t], usize::MAX)[0]);
    let inputs = dir.path().join("inputs.safetensors");
    Tensor::write_safetensors(&[("x", x), ("lengths", lens)], &inputs).unwrap();

    let wider = ModelConfig {
        head_hidden: 64,
        ..config
    };
    let json = config_json(&wider, &TrainConfig::default(), 1e-3);
    let out = dir.path().join("out.safetensors");
    let [w, i, o] = [&weights, &inputs, &out].map(|p| p.to_str().unwrap().to_owned());
    python();
    let result = reference(&[
        "embed",
        "--weights",
        &w,
        "--inputs",
        &i,
        "--out",
        &o,
        "--config-json",
        &json,
    ]);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        !result.status.success(),
        "the reference accepted a 32-wide head for a 64-wide model"
    );
    assert!(
        stderr.contains("head.fc1.weight") && stderr.contains("[64, 64]"),
        "error does not name the tensor: {stderr}"
    );
    assert!(!out.exists(), "nothing may be written when loading fails");
}

/// One micro-batch per view: rows `first..first + n` of the step, sorted by length as isoclr sorts a pass.
fn view_pass(transcripts: &[Transcript], first: usize) -> MicroBatch {
    let refs: Vec<&Transcript> = transcripts.iter().collect();
    let mut pass = encode_for_embedding(&refs, usize::MAX).remove(0);
    pass.rows.iter_mut().for_each(|r| *r += first);
    pass
}

#[test]
fn one_training_step_matches_the_reference() {
    let _serial = serial();
    // Batch norm also on one packed pass (train.packing): both sides then pool each sequence's own span.
    for (norm, packed) in [(Norm::Batch, false), (Norm::Group, false), (Norm::Batch, true)] {
        let dir = tempfile::tempdir().unwrap();
        let label = format!("{norm:?}{}", if packed { ", packed" } else { "" });
        // Dropout 0 so both sides compute the same function; a large weight decay so applying it to the
        // wrong tensors (or not at all) would show far above the tolerance; group-size weights on, so the
        // weighted positive term is compared too.
        let train = TrainConfig {
            lr: 1e-3,
            schedule: ScheduleKind::Constant,
            weight_decay: 0.5,
            loss: LossKind::Dcl,
            clip: ClipKind::PerTensor,
            weight_by_group_size: true,
            seed: 3,
            ..Default::default()
        };
        let config = Config {
            model: model_config(norm),
            train,
            ..Default::default()
        };
        let mut trainer = Trainer::new(&config, Device::Cpu, 1);
        let before = dir.path().join("before.safetensors");
        trainer.model.save(&before).unwrap();

        let n = 6;
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let view1: Vec<Transcript> = (0..n).map(|i| transcript(&mut rng, 150 + 97 * i)).collect();
        let view2: Vec<Transcript> = (0..n).map(|i| transcript(&mut rng, 900 - 61 * i)).collect();
        let pairs: Vec<Pair> = (0..n as u32)
            .map(|i| Pair {
                group: i,
                views: [2 * i, 2 * i + 1],
                group_size: 1 + i % 4,
            })
            .collect();
        let micro = if packed {
            let views: Vec<ViewSpec> = view1.iter().chain(&view2).map(ViewSpec::plain).collect();
            let layout = PassLayout {
                position_budget: usize::MAX,
                packing_gap: Some(config.model.shape().packing_gap()),
            };
            let micro = encode_views(&views, layout);
            assert!(micro.len() == 1 && micro[0].is_packed(), "one packed pass");
            micro
        } else {
            vec![view_pass(&view1, 0), view_pass(&view2, n)]
        };
        let batch = StepBatch {
            step: 0,
            offset: 0,
            global_pairs: pairs.len(),
            pairs: pairs.clone(),
            micro,
        };

        let mut exported = Vec::new();
        for (k, m) in batch.micro.iter().enumerate() {
            let (x, lens) = micro_tensors(m);
            let rows = Tensor::from_slice(&m.rows.iter().map(|&r| r as i64).collect::<Vec<_>>());
            exported.extend([
                (format!("x{}", k + 1), x),
                (format!("len{}", k + 1), lens),
                (format!("rows{}", k + 1), rows),
            ]);
            if m.is_packed() {
                let line: Vec<i64> = m.placements.iter().map(|p| i64::from(p.line)).collect();
                let offset: Vec<i64> = m.placements.iter().map(|p| i64::from(p.offset)).collect();
                exported.extend([
                    (format!("line{}", k + 1), Tensor::from_slice(&line)),
                    (format!("offset{}", k + 1), Tensor::from_slice(&offset)),
                ]);
            }
        }
        let w: Vec<f32> = pairs.iter().map(|p| group_size_weight(p.group_size) as f32).collect();
        exported.push(("weights".into(), Tensor::from_slice(&w)));
        let inputs = dir.path().join("batch.safetensors");
        Tensor::write_safetensors(&exported, &inputs).unwrap();

        let report = trainer
            .train_step(&batch, &mut SingleProcess)
            .expect("one-process step");
        let after: std::collections::HashMap<String, Tensor> = trainer.model.named_tensors().into_iter().collect();
        let grads: Vec<(String, Tensor)> = trainer
            .model
            .named_parameters()
            .into_iter()
            .map(|(n, p)| (n, p.grad()))
            .collect();

        let out = dir.path().join("after.safetensors");
        let json = config_json(&config.model, &config.train, report.lr);
        let [b, i, o] = [&before, &inputs, &out].map(|p| p.to_str().unwrap().to_owned());
        // The packed pass against the reference in f64: the exact function, so the comparison measures
        // isoclr's f32 error alone. (Against the reference in f32, this batch's clipped gradients differ by
        // up to 1.6e-3: the two f32 computations round differently, while each packed implementation equals
        // its own one-per-line layout in f64 and isoclr's f32 packed encoder stays within ~3e-6 of f64.)
        let mut args = vec![
            "step",
            "--weights",
            &b,
            "--inputs",
            &i,
            "--out",
            &o,
            "--config-json",
            &json,
        ];
        if packed {
            args.push("--float64");
        }
        let stdout = reference_ok(&args);
        let line: serde_json::Value =
            serde_json::from_str(stdout.trim()).expect("reference.py step prints one JSON line");
        let python_loss = line["loss"].as_f64().expect("no loss in the reference's output");
        let loss_error = (python_loss - report.loss).abs() / report.loss.abs().max(1.0);
        eprintln!(
            "{label}: loss isoclr {:.7} PyTorch {python_loss:.7} (relative {loss_error:.2e})",
            report.loss
        );
        assert!(
            loss_error <= TOLERANCE,
            "{label}: loss {} vs reference {python_loss}",
            report.loss
        );

        let python = read(&out);
        // Clipped gradients: per-tensor clipping bounds every element by 1, so an absolute tolerance is fair;
        // the relative error of a whole tensor is checked too, except for the float noise around an exact
        // zero (a bias right before batch norm, which cancels it, has a gradient of norm ~1e-5 or less).
        let mut worst_grad = (0.0, String::new());
        let mut worst_relative = (0.0, String::new());
        for (name, g) in &grads {
            let pg = python
                .get(&format!("grad.{name}"))
                .unwrap_or_else(|| panic!("reference has no gradient of {name}"));
            let d = max_abs_diff(g, pg);
            // Against the f64 reference an exact zero is exactly zero (the stem convolution's bias, which
            // batch norm cancels): isoclr's f32 sum of thousands of terms that cancel leaves noise of
            // ~1e-4 there (3.2e-4 on this batch), a bound that a real gradient error would exceed.
            let exact_zero = packed && pg.norm().double_value(&[]) < 1e-9;
            if exact_zero {
                assert!(
                    d <= 1e-2,
                    "{label}: gradient of {name} should be float noise around 0, is {d:e}"
                );
                continue;
            }
            assert!(d <= TOLERANCE, "{label}: clipped gradient of {name} differs by {d:e}");
            let size = g.norm().double_value(&[]);
            let relative = (g - pg).norm().double_value(&[]) / size.max(1e-30);
            if size >= 1e-3 {
                assert!(
                    relative <= 1e-3,
                    "{label}: clipped gradient of {name} differs by {relative:e} relative"
                );
                if relative >= worst_relative.0 {
                    worst_relative = (relative, name.clone());
                }
            }
            if d >= worst_grad.0 {
                worst_grad = (d, name.clone());
            }
        }
        // Parameters and running statistics after the step. Adam's first step moves an element by
        // lr · g / (|g| + eps), about ±lr whatever |g| is, so where two implementations' gradients differ in
        // sign — float noise around an exact zero — their steps differ by up to 2·lr. Such elements are only
        // held to one step; all others, and every running statistic, to the tolerance.
        let grad_of: std::collections::HashMap<&str, &Tensor> = grads.iter().map(|(n, g)| (n.as_str(), g)).collect();
        let largest = |t: Tensor| if t.numel() == 0 { 0.0 } else { t.max().double_value(&[]) };
        let mut worst = (0.0, String::new());
        let (mut undetermined, mut elements) = (0, 0);
        for (name, rust) in &after {
            let py = python
                .get(name)
                .unwrap_or_else(|| panic!("reference has no tensor {name}"));
            let diff = (rust.to_kind(Kind::Double) - py.to_kind(Kind::Double)).abs();
            let determined = match grad_of.get(name.as_str()).copied() {
                Some(g) => {
                    let pg = &python[&format!("grad.{name}")];
                    // Exactly zero on both sides (a dead channel) moves both the same way; so does a gradient
                    // of the same sign far above the two implementations' disagreement on this tensor.
                    let floor = (100.0 * max_abs_diff(g, pg)).max(1e-7);
                    let clear = |t: &Tensor| t.abs().ge(floor);
                    let both_zero = g.eq(0.0).logical_and(&pg.eq(0.0));
                    let same_sign = g
                        .sign()
                        .eq_tensor(&pg.sign())
                        .logical_and(&clear(g))
                        .logical_and(&clear(pg));
                    both_zero.logical_or(&same_sign)
                }
                None => diff.ones_like().to_kind(Kind::Bool),
            };
            undetermined += determined.logical_not().sum(Kind::Int64).int64_value(&[]);
            elements += diff.numel() as i64;
            let d = largest(diff.masked_select(&determined));
            let u = largest(diff.masked_select(&determined.logical_not()));
            assert!(
                u <= 2.0 * report.lr + 1e-6,
                "{label}: {name} moved by {u:e}, more than one step"
            );
            assert!(d <= TOLERANCE, "{label}: {name} after the step differs by {d:e}");
            if d >= worst.0 {
                worst = (d, name.clone());
            }
        }
        // Guard against a vacuous pass: noise-level gradients must stay rare.
        assert!(
            undetermined * 100 < elements,
            "{label}: {undetermined} of {elements} elements have noise-level gradients"
        );
        eprintln!(
            "{label}: max |Δ| clipped gradient {:.3e} ({}), worst relative {:.3e} ({}); after the step {:.3e} ({}); \
             {undetermined} of {elements} elements with noise-level gradients",
            worst_grad.0, worst_grad.1, worst_relative.0, worst_relative.1, worst.0, worst.1
        );
    }
}
