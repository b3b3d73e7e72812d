//! The checkpoint test suite every backend must pass (quickwit's storage test suite is the model): the unit
//! tests run it on `memory://` and on local directories, `tests/ckpt_s3.rs` on a real S3 server. Public (and
//! hidden from the docs) only so integration tests can reach it; it never panics, it returns what failed.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use super::{AsyncSaver, CheckpointError, CheckpointStore, MIN_PART_SIZE, StoreOptions, step_dir};

/// Opens a fresh, empty checkpoint location for the named case with the given options.
pub type Fresh<'a> = dyn FnMut(&str, StoreOptions) -> super::Result<CheckpointStore> + 'a;

/// One case: `Err` says what went wrong.
pub type Case = fn(&mut Fresh<'_>) -> Result<(), String>;

/// Every case, by name.
pub const CASES: &[(&str, Case)] = &[
    ("round_trip", round_trip),
    ("multipart_round_trip", multipart_round_trip),
    ("manifest_is_written_last", manifest_is_written_last),
    (
        "damaged_latest_falls_back_to_listing",
        damaged_latest_falls_back_to_listing,
    ),
    (
        "damaged_newest_falls_back_to_previous",
        damaged_newest_falls_back_to_previous,
    ),
    ("all_damaged_is_an_error", all_damaged_is_an_error),
    ("retention_keeps_exactly_keep", retention_keeps_exactly_keep),
    ("saving_a_step_again", saving_a_step_again),
    ("invalid_input_writes_nothing", invalid_input_writes_nothing),
    ("async_saver_round_trip", async_saver_round_trip),
];

/// Runs every case; `Err` lists each failure as `case: why`.
pub fn run_all(fresh: &mut Fresh<'_>) -> Result<(), String> {
    let failures: Vec<String> = CASES
        .iter()
        .filter_map(|(name, case)| case(fresh).err().map(|why| format!("{name}: {why}")))
        .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

/// The options the suite opens stores with: keep 3, quick retries, 5 MiB parts.
pub fn suite_options() -> StoreOptions {
    StoreOptions {
        keep: 3,
        attempts: 3,
        call_timeout: Duration::from_secs(30),
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(100),
        multipart_threshold: MIN_PART_SIZE,
        part_size: MIN_PART_SIZE,
        ..StoreOptions::default()
    }
}

macro_rules! check {
    ($cond:expr, $($why:tt)+) => {
        if !$cond {
            return Err(format!($($why)+));
        }
    };
}

trait Context<T> {
    fn ctx(self, what: &str) -> Result<T, String>;
}

impl<T> Context<T> for super::Result<T> {
    fn ctx(self, what: &str) -> Result<T, String> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

/// Deterministic bytes that differ with `seed`.
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

/// A trainer-like checkpoint of `step`: model, optimiser, state and an empty file.
pub fn sample_files(step: u64) -> Vec<(String, Bytes)> {
    vec![
        ("model.safetensors".to_owned(), pseudo_random_bytes(3_000, step)),
        (
            "optimizer.safetensors".to_owned(),
            pseudo_random_bytes(6_001, step + 1_000_000),
        ),
        ("state.json".to_owned(), Bytes::from(format!("{{\"step\":{step}}}\n"))),
        ("empty.bin".to_owned(), Bytes::new()),
    ]
}

fn steps(store: &CheckpointStore) -> Result<Vec<u64>, String> {
    Ok(store
        .list_complete()
        .ctx("list_complete")?
        .iter()
        .map(|c| c.step)
        .collect())
}

fn loaded_step(store: &CheckpointStore, verify: bool) -> Result<u64, String> {
    match store.load_latest(verify).ctx("load_latest")? {
        Some(loaded) => Ok(loaded.step),
        None => Err("load_latest found nothing".to_owned()),
    }
}

fn keys(store: &CheckpointStore) -> Result<Vec<String>, String> {
    Ok(store
        .list_objects()
        .ctx("list_objects")?
        .into_iter()
        .map(|(k, _)| k)
        .collect())
}

/// Replaces a checkpoint file with `edit` applied to it.
fn tamper(store: &CheckpointStore, step: u64, file: &str, edit: impl FnOnce(&mut Vec<u8>)) -> Result<(), String> {
    let key = format!("{}/{file}", step_dir(step));
    let mut data = store.get_object(&key).ctx("get_object")?.to_vec();
    edit(&mut data);
    store.put_object(&key, data.into()).ctx("put_object")
}

/// Runs `work` with warnings captured; returns its result and the log text.
fn capture_warnings<T>(work: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let result = tracing::subscriber::with_default(subscriber, work);
    let text = String::from_utf8_lossy(&sink.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
    (result, text)
}

fn round_trip(fresh: &mut Fresh<'_>) -> Result<(), String> {
    let store = fresh("round_trip", suite_options()).ctx("open")?;
    check!(
        store.load_latest(true).ctx("load_latest")?.is_none(),
        "an empty store loaded something"
    );
    check!(steps(&store)?.is_empty(), "an empty store lists checkpoints");
    let files = sample_files(10);
    let saved = store.save(10, files.clone()).ctx("save 10")?;
    check!(saved.step == 10 && saved.bytes == 9_001 + 12, "saved {saved:?}");
    check!(
        saved.dir.ends_with("/step-00000010") && saved.deleted.is_empty(),
        "saved {saved:?}"
    );
    let loaded = store
        .load_latest(true)
        .ctx("load_latest")?
        .ok_or("nothing loaded after a save")?;
    check!(
        loaded.step == 10 && loaded.files == files,
        "loaded step {} differs from what was saved",
        loaded.step
    );
    check!(
        loaded.file("state.json") == Some(&files[2].1),
        "file() does not find state.json"
    );
    let m = &loaded.manifest;
    check!(
        m.step == 10 && m.files.len() == 4 && m.files[0].size == 3_000,
        "manifest {m:?}"
    );
    check!(m.created.ends_with('Z') && m.created_unix_ms > 0, "manifest time {m:?}");
    let latest = store.get_object("LATEST").ctx("get LATEST")?;
    check!(latest.as_ref() == b"step-00000010\n", "LATEST holds {latest:?}");
    let expected = [
        "LATEST",
        "step-00000010/empty.bin",
        "step-00000010/manifest.json",
        "step-00000010/model.safetensors",
        "step-00000010/optimizer.safetensors",
        "step-00000010/state.json",
    ];
    let found = keys(&store)?;
    check!(found == expected, "objects {found:?}");
    store.save(20, sample_files(20)).ctx("save 20")?;
    check!(loaded_step(&store, true)? == 20, "the newer checkpoint is not loaded");
    check!(steps(&store)? == [10, 20], "complete {:?}", steps(&store)?);
    check!(
        store.latest_step().ctx("latest_step")? == Some(20),
        "LATEST does not name step 20"
    );
    let older = store.load(10, true).ctx("load 10")?;
    check!(older.files == files, "step 10 changed");
    Ok(())
}

fn multipart_round_trip(fresh: &mut Fresh<'_>) -> Result<(), String> {
    let store = fresh("multipart_round_trip", suite_options()).ctx("open")?;
    let big = pseudo_random_bytes(2 * MIN_PART_SIZE + 12_345, 7);
    let files = vec![
        ("model.safetensors".to_owned(), big),
        ("state.json".to_owned(), Bytes::from_static(b"{}")),
    ];
    store.save(5, files.clone()).ctx("save")?;
    let loaded = store.load_latest(true).ctx("load_latest")?.ok_or("nothing loaded")?;
    check!(loaded.files == files, "a multipart file came back different");
    Ok(())
}

fn manifest_is_written_last(fresh: &mut Fresh<'_>) -> Result<(), String> {
    let options = StoreOptions {
        keep: 2,
        ..suite_options()
    };
    let store = fresh("manifest_is_written_last", options).ctx("open")?;
    store.save(10, sample_files(10)).ctx("save 10")?;
    // A crash after the files of step 20 but before its manifest, and older leftovers of step 5.
    for (name, data) in sample_files(20).into_iter().take(2) {
        store.put_object(&format!("step-00000020/{name}"), data).ctx("put")?;
    }
    store
        .put_object("step-00000005/model.safetensors", pseudo_random_bytes(10, 5))
        .ctx("put")?;
    check!(
        loaded_step(&store, true)? == 10,
        "a directory without a manifest was loaded"
    );
    check!(steps(&store)? == [10], "complete {:?}", steps(&store)?);
    // Newer than every complete checkpoint: may be a save still to be redone, so retention leaves it.
    store
        .put_object("step-00000040/model.safetensors", pseudo_random_bytes(10, 40))
        .ctx("put")?;
    let saved = store.save(30, sample_files(30)).ctx("save 30")?;
    check!(
        saved.deleted == [5, 20],
        "retention deleted {:?}, expected the incomplete 5 and 20",
        saved.deleted
    );
    let found = keys(&store)?;
    check!(
        !found
            .iter()
            .any(|k| k.starts_with("step-00000020/") || k.starts_with("step-00000005/")),
        "incomplete directories survived: {found:?}"
    );
    check!(
        found.iter().any(|k| k.starts_with("step-00000040/")),
        "a newer incomplete directory was deleted"
    );
    check!(steps(&store)? == [10, 30], "complete {:?}", steps(&store)?);
    Ok(())
}

fn damaged_latest_falls_back_to_listing(fresh: &mut Fresh<'_>) -> Result<(), String> {
    let store = fresh("damaged_latest_falls_back_to_listing", suite_options()).ctx("open")?;
    store.save(10, sample_files(10)).ctx("save 10")?;
    store.save(20, sample_files(20)).ctx("save 20")?;
    store
        .put_object("LATEST", Bytes::from_static(b"garbage\x00"))
        .ctx("put")?;
    let (step, log) = capture_warnings(|| loaded_step(&store, true));
    check!(step? == 20, "a garbage LATEST did not fall back to the newest complete");
    check!(log.contains("LATEST is damaged"), "no warning about LATEST: {log:?}");
    store.delete_object("LATEST").ctx("delete")?;
    check!(
        loaded_step(&store, true)? == 20,
        "a missing LATEST did not fall back to listing"
    );
    store
        .put_object("LATEST", Bytes::from_static(b"step-00000099\n"))
        .ctx("put")?;
    check!(
        loaded_step(&store, true)? == 20,
        "LATEST naming a missing checkpoint did not fall back"
    );
    store
        .put_object("LATEST", Bytes::from_static(b"step-00000010"))
        .ctx("put")?;
    check!(loaded_step(&store, true)? == 10, "a valid LATEST is not followed");
    Ok(())
}

fn damaged_newest_falls_back_to_previous(fresh: &mut Fresh<'_>) -> Result<(), String> {
    let store = fresh("damaged_newest_falls_back_to_previous", suite_options()).ctx("open")?;
    store.save(10, sample_files(10)).ctx("save 10")?;
    store.save(20, sample_files(20)).ctx("save 20")?;
    tamper(&store, 20, "model.safetensors", |d| d[1_234] ^= 0x01)?;
    let (step, log) = capture_warnings(|| loaded_step(&store, true));
    check!(step? == 10, "a flipped byte was not detected");
    check!(
        log.contains("step-00000020/model.safetensors") && log.contains("sha-256"),
        "the warning does not name the damaged file and the checksum: {log:?}"
    );
    check!(
        loaded_step(&store, false)? == 20,
        "without verification, sizes alone should pass"
    );
    match store.load(20, true) {
        Err(CheckpointError::Corrupt { file, .. }) if file.ends_with("step-00000020/model.safetensors") => {}
        other => return Err(format!("load(20) gave {other:?}")),
    }
    tamper(&store, 20, "model.safetensors", |d| d.truncate(100))?;
    let (step, log) = capture_warnings(|| loaded_step(&store, false));
    check!(step? == 10, "a truncated file was not detected");
    check!(
        log.contains("100 bytes, the manifest says 3000"),
        "no size warning: {log:?}"
    );
    store.save(20, sample_files(20)).ctx("save 20 again")?;
    check!(
        loaded_step(&store, true)? == 20,
        "re-saving the damaged step did not repair it"
    );
    store.delete_object("step-00000020/manifest.json").ctx("delete")?;
    let (step, log) = capture_warnings(|| loaded_step(&store, true));
    check!(step? == 10, "a checkpoint without a manifest was loaded");
    check!(
        log.contains("incomplete"),
        "no warning about the missing manifest: {log:?}"
    );
    Ok(())
}

fn all_damaged_is_an_error(fresh: &mut Fresh<'_>) -> Result<(), String> {
    let store = fresh("all_damaged_is_an_error", suite_options()).ctx("open")?;
    store.save(10, sample_files(10)).ctx("save")?;
    store.delete_object("step-00000010/state.json").ctx("delete")?;
    match store.load_latest(true) {
        Err(CheckpointError::NoUsableCheckpoint { url, why }) => {
            check!(
                url == store.url() && why.contains("state.json"),
                "unhelpful error: {url} {why}"
            );
        }
        other => return Err(format!("expected NoUsableCheckpoint, got {other:?}")),
    }
    Ok(())
}

fn retention_keeps_exactly_keep(fresh: &mut Fresh<'_>) -> Result<(), String> {
    let store = fresh("retention_keeps_exactly_keep", suite_options()).ctx("open")?;
    for step in (10..=60).step_by(10) {
        let saved = store.save(step, sample_files(step)).ctx("save")?;
        let expected: Vec<u64> = if step >= 40 { vec![step - 30] } else { Vec::new() };
        check!(saved.deleted == expected, "save {step} deleted {:?}", saved.deleted);
    }
    check!(steps(&store)? == [40, 50, 60], "complete {:?}", steps(&store)?);
    let found = keys(&store)?;
    let stray: Vec<&String> = found
        .iter()
        .filter(|k| {
            *k != "LATEST"
                && !["step-00000040/", "step-00000050/", "step-00000060/"]
                    .iter()
                    .any(|p| k.starts_with(p))
        })
        .collect();
    check!(stray.is_empty(), "objects of deleted checkpoints remain: {stray:?}");
    // Saving an older step (a run resumed from it) keeps it and the newest others.
    store.save(45, sample_files(45)).ctx("save 45")?;
    check!(steps(&store)? == [45, 50, 60], "complete {:?}", steps(&store)?);
    check!(
        loaded_step(&store, true)? == 45,
        "LATEST should name the step just saved"
    );

    let two = StoreOptions {
        keep: 2,
        ..suite_options()
    };
    let store = fresh("retention_keeps_exactly_keep_2", two).ctx("open")?;
    let saved = store.save(10, sample_files(10)).ctx("save")?;
    check!(
        saved.deleted.is_empty() && steps(&store)? == [10],
        "the only complete checkpoint was touched"
    );
    store.save(20, sample_files(20)).ctx("save")?;
    check!(steps(&store)? == [10, 20], "complete {:?}", steps(&store)?);
    store.save(30, sample_files(30)).ctx("save")?;
    check!(steps(&store)? == [20, 30], "complete {:?}", steps(&store)?);
    Ok(())
}

fn saving_a_step_again(fresh: &mut Fresh<'_>) -> Result<(), String> {
    let store = fresh("saving_a_step_again", suite_options()).ctx("open")?;
    store.save(10, sample_files(10)).ctx("save")?;
    let before = store.list_objects().ctx("list")?;
    store.save(10, sample_files(10)).ctx("save the same again")?;
    check!(
        store.list_objects().ctx("list")? == before,
        "an identical re-save changed the objects"
    );
    let changed = sample_files(11);
    store.save(10, changed.clone()).ctx("save different files")?;
    let loaded = store.load_latest(true).ctx("load")?.ok_or("nothing loaded")?;
    check!(
        loaded.step == 10 && loaded.files == changed,
        "the replaced checkpoint did not come back"
    );
    check!(steps(&store)? == [10], "complete {:?}", steps(&store)?);
    Ok(())
}

fn invalid_input_writes_nothing(fresh: &mut Fresh<'_>) -> Result<(), String> {
    let store = fresh("invalid_input_writes_nothing", suite_options()).ctx("open")?;
    let file = |name: &str| (name.to_owned(), Bytes::from_static(b"x"));
    let bad: Vec<(u64, Vec<(String, Bytes)>)> = vec![
        (100_000_000, vec![file("model.safetensors")]),
        (1, Vec::new()),
        (1, vec![file("manifest.json")]),
        (1, vec![file("a/b")]),
        (1, vec![file("..")]),
        (1, vec![file("a"), file("a")]),
    ];
    for (step, files) in bad {
        let names: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
        match store.save(step, files) {
            Err(CheckpointError::Invalid { .. }) => {}
            other => return Err(format!("step {step} files {names:?}: {other:?}")),
        }
    }
    check!(
        keys(&store)?.is_empty(),
        "invalid saves wrote objects: {:?}",
        keys(&store)?
    );
    Ok(())
}

fn async_saver_round_trip(fresh: &mut Fresh<'_>) -> Result<(), String> {
    let store = Arc::new(fresh("async_saver_round_trip", suite_options()).ctx("open")?);
    let saver = AsyncSaver::new(Arc::clone(&store), true).ctx("saver")?;
    for step in [10, 20] {
        saver.submit(step, sample_files(step)).ctx("submit")?;
        let saved = saver
            .wait(Duration::from_secs(120))
            .ctx("wait")?
            .ok_or("no save reported")?;
        check!(saved.step == step, "wait reported step {}", saved.step);
    }
    check!(
        saver.in_flight().is_none() && saver.last_error().is_none(),
        "saver not idle and clean"
    );
    check!(
        loaded_step(&store, true)? == 20,
        "the background save is not the latest"
    );
    Ok(())
}
