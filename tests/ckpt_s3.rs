//! Checkpoints against a real S3 server: SeaweedFS from the Python registry, started on loopback (telemetry
//! off) by `scripts/seaweedfs.sh` and stopped at the end, also when the test fails. Runs the shared checkpoint
//! suite, a multipart upload of a file over 16 MiB, an outage in the middle of saving, and checks that the
//! secret key appears in no object written and no log line.
//!
//! The test fails when the server cannot be installed or started; `ISOCLR_SKIP_S3=1` skips it, loudly.
//! Everything runs in one test function: the credentials go into this process's environment (the only place
//! the store takes them from), which is only safe while no other test thread runs.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use isoclr::ckpt::suite::{self, pseudo_random_bytes, sample_files, suite_options};
use isoclr::ckpt::{AsyncSaver, CheckpointError, CheckpointStore, MIN_PART_SIZE, S3Options, StoreOptions};
use object_store::aws::AmazonS3Builder;
use object_store::{ObjectStore, ObjectStoreExt};

const BUCKET: &str = "isoclr-test";
/// Ports the server takes from its base (see scripts/seaweedfs.sh).
const PORTS: u16 = 10;

/// The running server; dropping it stops the server (then removes its directory).
struct Seaweed {
    script: PathBuf,
    endpoint: String,
    port: u16,
    dir: tempfile::TempDir,
}

impl Seaweed {
    fn start(access_key: &str, secret: &str) -> Result<Self, String> {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/seaweedfs.sh");
        let mut why = String::new();
        for _ in 0..3 {
            let mut server = Self {
                script: script.clone(),
                endpoint: String::new(),
                port: free_port_range()?,
                dir: tempfile::tempdir().map_err(|e| format!("no temporary directory: {e}"))?,
            };
            match server.run_start(access_key, secret) {
                Ok(endpoint) => {
                    server.endpoint = endpoint;
                    return Ok(server);
                }
                Err(e) => why = e, // dropping the server stops whatever started
            }
        }
        Err(why)
    }

    fn run_start(&self, access_key: &str, secret: &str) -> Result<String, String> {
        let output = Command::new("bash")
            .arg(&self.script)
            .args(["start", &self.dir.path().display().to_string(), &self.port.to_string()])
            .env("AWS_ACCESS_KEY_ID", access_key)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("S3_BUCKET", BUCKET)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.script.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            return Err(format!(
                "{} start failed ({}): {}",
                self.script.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        stdout
            .lines()
            .last()
            .filter(|line| line.starts_with("http://127.0.0.1:"))
            .map(str::to_owned)
            .ok_or_else(|| format!("the script printed no endpoint: {stdout:?}"))
    }

    fn stop(&self) {
        let stopped = Command::new("bash")
            .arg(&self.script)
            .args(["stop", &self.dir.path().display().to_string()])
            .status();
        if !matches!(stopped, Ok(status) if status.success()) {
            eprintln!("warning: stopping SeaweedFS failed: {stopped:?}");
        }
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A base port whose `PORTS` consecutive ports are all free on loopback.
fn free_port_range() -> Result<u16, String> {
    let start = 20_000 + (std::process::id() % 2_000) as u16 * 10;
    let mut base = start;
    for _ in 0..2_000 {
        if (base..base + PORTS).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return Ok(base);
        }
        base = if base + 2 * PORTS > 60_000 {
            20_000
        } else {
            base + PORTS
        };
    }
    Err("no range of free loopback ports found".to_owned())
}

/// Every log line of the process, to search for the secret.
#[derive(Clone, Default)]
struct LogSink(Arc<Mutex<Vec<u8>>>);

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn s3_options(endpoint: &str) -> StoreOptions {
    StoreOptions {
        s3: S3Options {
            endpoint: Some(endpoint.to_owned()),
            region: Some("us-east-1".to_owned()),
            allow_http: true,
            path_style: true,
        },
        ..suite_options()
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn checkpoints_on_a_real_s3_server() {
    if std::env::var("ISOCLR_SKIP_S3").is_ok_and(|v| v == "1") {
        eprintln!("\n!!! SKIPPED: the S3 checkpoint tests (ISOCLR_SKIP_S3=1); nothing was tested against S3 !!!\n");
        return;
    }
    let logs = LogSink::default();
    let writer = logs.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .unwrap();

    let access_key = format!("isoclrkey{:08x}", rand::random::<u32>());
    let secret = format!(
        "isoclr-secret-{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    );
    // SAFETY: the only test in this binary, and no other thread has started yet.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", &access_key);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", &secret);
        std::env::remove_var("AWS_SESSION_TOKEN");
    }
    let server = Seaweed::start(&access_key, &secret).unwrap_or_else(|why| {
        panic!("cannot start SeaweedFS for the S3 checkpoint tests (set ISOCLR_SKIP_S3=1 to skip them): {why}")
    });
    let endpoint = server.endpoint.clone();
    eprintln!("SeaweedFS S3 at {endpoint}");

    // The bucket is created during start-up: wait until a listing succeeds.
    let probe = CheckpointStore::open(&format!("s3://{BUCKET}/probe"), s3_options(&endpoint)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(e) = probe.list_objects() {
        assert!(Instant::now() < deadline, "the bucket never became usable: {e}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // 1. The shared suite.
    let mut fresh = |case: &str, options: StoreOptions| {
        let options = StoreOptions {
            s3: s3_options(&endpoint).s3,
            ..options
        };
        CheckpointStore::open(&format!("s3://{BUCKET}/suite/{case}"), options)
    };
    if let Err(failures) = suite::run_all(&mut fresh) {
        panic!("checkpoint suite failed on S3:\n{failures}");
    }

    // 2. A multipart upload of a file over 16 MiB: four parts of 5 MiB (S3's ETag says how many).
    let store = CheckpointStore::open(&format!("s3://{BUCKET}/multipart"), s3_options(&endpoint)).unwrap();
    let big = pseudo_random_bytes(3 * MIN_PART_SIZE + 1_234_567, 99);
    assert!(big.len() > 16 * 1024 * 1024);
    let files = vec![
        ("model.safetensors".to_owned(), big.clone()),
        ("state.json".to_owned(), Bytes::from_static(b"{}")),
    ];
    store.save(1, files.clone()).unwrap();
    let loaded = store.load_latest(true).unwrap().unwrap();
    assert_eq!(loaded.files, files);
    let raw = AmazonS3Builder::new()
        .with_bucket_name(BUCKET)
        .with_endpoint(&endpoint)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id(&access_key)
        .with_secret_access_key(&secret)
        .build()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let head = runtime
        .block_on(raw.head(&"multipart/step-00000001/model.safetensors".into()))
        .unwrap();
    assert_eq!(head.size, big.len() as u64);
    let etag = head.e_tag.unwrap_or_default();
    assert!(
        etag.trim_matches('"').ends_with("-4"),
        "not a 4-part multipart upload: ETag {etag}"
    );

    // 3. An outage: the server stops while a save is in flight; the save fails (bounded), LATEST never names
    //    an incomplete checkpoint, and the next save succeeds once the server is back.
    let options = StoreOptions {
        attempts: 2,
        call_timeout: Duration::from_secs(3),
        connect_timeout: Duration::from_secs(1),
        ..s3_options(&endpoint)
    };
    let store = Arc::new(CheckpointStore::open(&format!("s3://{BUCKET}/outage"), options).unwrap());
    store.save(10, sample_files(10)).unwrap();
    let saver = AsyncSaver::new(Arc::clone(&store), false).unwrap();
    let large = vec![
        ("state.json".to_owned(), Bytes::from_static(b"{}")),
        (
            "model.safetensors".to_owned(),
            pseudo_random_bytes(13 * MIN_PART_SIZE, 20),
        ),
    ];
    saver.submit(20, large).unwrap();
    // Stop the server once the save is under way: its first file is written, the large one is next.
    let first = "outage/step-00000020/state.json".into();
    let deadline = Instant::now() + Duration::from_secs(60);
    while runtime.block_on(raw.head(&first)).is_err() && saver.in_flight().is_some() {
        assert!(Instant::now() < deadline, "the save of step 20 never started");
        std::thread::sleep(Duration::from_millis(2));
    }
    let mid_upload = saver.in_flight().is_some();
    server.stop();
    let outcome = saver.wait(Duration::from_secs(120)).unwrap().map(|s| s.step);
    eprintln!(
        "server stopped {} the save of step 20: saved {outcome:?}, error {:?}",
        if mid_upload { "during" } else { "after" },
        saver.last_error()
    );
    saver.submit(30, sample_files(30)).unwrap();
    assert_eq!(saver.wait(Duration::from_secs(120)).unwrap().map(|s| s.step), outcome);
    let failure = saver.last_error().expect("a save with the server down did not fail");
    assert_eq!(failure.step, 30);
    assert!(failure.error.is_transient(), "{}", failure.error);
    let restarted = server
        .run_start(&access_key, &secret)
        .expect("SeaweedFS did not restart");
    assert_eq!(restarted, endpoint);
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(e) = store.latest_step() {
        assert!(
            Instant::now() < deadline,
            "the restarted server never became usable: {e}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // LATEST names the last save that succeeded, and that checkpoint is complete and verifies.
    let expected = outcome.unwrap_or(10);
    assert_eq!(store.latest_step().unwrap(), Some(expected));
    assert_eq!(store.load(expected, true).unwrap().step, expected);
    assert_eq!(store.load_latest(true).unwrap().unwrap().step, expected);
    let complete: Vec<u64> = store.list_complete().unwrap().iter().map(|c| c.step).collect();
    assert!(!complete.contains(&30), "complete {complete:?}");
    saver.submit(40, sample_files(40)).unwrap();
    assert_eq!(saver.wait(Duration::from_secs(120)).unwrap().unwrap().step, 40);
    assert!(saver.last_error().is_none());
    assert_eq!(store.load_latest(true).unwrap().unwrap().step, 40);
    drop(saver);

    // 4. Training through an outage: `isoclr train` checkpointing to S3 goes on while the server is down, its
    //    final save waits for the server to come back, and a second start resumes from S3.
    let trained = train_through_an_outage(&server, &access_key, &secret);

    // 5. The secret key is in no object written and no log line; a damaged manifest error names no secret.
    let objects: Vec<_> = runtime
        .block_on(async {
            use futures::TryStreamExt;
            raw.list(None).try_collect::<Vec<_>>().await
        })
        .unwrap();
    assert!(objects.len() > 20, "only {} objects in the bucket", objects.len());
    for meta in &objects {
        let data = runtime.block_on(async { raw.get(&meta.location).await.unwrap().bytes().await.unwrap() });
        assert!(
            !contains(&data, secret.as_bytes()),
            "the secret key is in {}",
            meta.location
        );
    }
    assert!(!format!("{store:?}").contains(&secret));
    let log = logs.0.lock().unwrap().clone();
    assert!(
        log.len() > 1_000,
        "the log capture saw almost nothing ({} bytes)",
        log.len()
    );
    assert!(!contains(&log, secret.as_bytes()), "the secret key was logged");
    assert!(
        !contains(trained.as_bytes(), secret.as_bytes()),
        "the secret key is in the trainer's output"
    );
    let err =
        CheckpointStore::open(&format!("s3://{access_key}:{secret}@{BUCKET}/x"), s3_options(&endpoint)).unwrap_err();
    assert!(
        matches!(err, CheckpointError::Config { .. }) && !err.to_string().contains(&secret),
        "{err}"
    );
    eprintln!(
        "checked {} objects and {} bytes of logs for the secret",
        objects.len(),
        log.len()
    );
}

/// Steps of the training run of part 4.
const TRAIN_STEPS: u64 = 120;

/// `isoclr train` on the tiny configuration with checkpoints every 2 steps under `s3://BUCKET/train`.
fn train_command(endpoint: &str, steps: u64, out: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_isoclr"));
    c.arg("train")
        .arg("--config")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configs/tiny.toml"))
        .arg("--out")
        .arg(out);
    for set in [
        format!("train.steps={steps}"),
        "train.batch_size=16".into(),
        "train.log_every=1".into(),
        "data.synth_genes=80".into(),
        format!("checkpoint.url=s3://{BUCKET}/train"),
        "checkpoint.every_steps=2".into(),
        "checkpoint.attempts=2".into(),
        "checkpoint.timeout_s=2".into(),
        format!("checkpoint.s3_endpoint={endpoint}"),
        "checkpoint.s3_region=us-east-1".into(),
        "checkpoint.s3_allow_http=true".into(),
        "checkpoint.s3_path_style=true".into(),
    ] {
        c.args(["--set", &set]);
    }
    c
}

/// Part 4 (credentials come from this process's environment); returns everything the trainer printed.
fn train_through_an_outage(server: &Seaweed, access_key: &str, secret: &str) -> String {
    use std::process::Stdio;
    let endpoint = server.endpoint.clone();
    let store = CheckpointStore::open(&format!("s3://{BUCKET}/train"), s3_options(&endpoint)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let lines = || std::fs::read_to_string(out.join("metrics.jsonl")).map_or(0, |m| m.lines().count());
    let mut child = train_command(&endpoint, TRAIN_STEPS, &out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = common::StderrReader::start(&mut child);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !matches!(store.latest_step(), Ok(Some(_))) {
        assert!(Instant::now() < deadline, "no checkpoint reached S3");
        assert!(child.try_wait().unwrap().is_none(), "training ended early");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.stop();
    // Every step trains while S3 is down (with room for a slow CI machine); the final save
    // then keeps trying instead of giving up.
    let deadline = Instant::now() + Duration::from_secs(300);
    while lines() < TRAIN_STEPS as usize {
        assert!(Instant::now() < deadline, "training did not go on while S3 was down");
        assert!(child.try_wait().unwrap().is_none(), "training ended while S3 was down");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the final save gave up within 3 s while S3 was down"
    );
    let so_far = stderr.so_far();
    assert!(
        so_far.contains("CHECKPOINT SAVE FAILED") && so_far.contains("the final checkpoint save failed; trying again"),
        "the failed saves were reported while S3 was down:\n{so_far}"
    );
    server.run_start(access_key, secret).expect("SeaweedFS did not restart");
    let Some(status) = common::exit_within(&mut child, Duration::from_secs(300)) else {
        panic!("training did not end once S3 was back:\n{}", stderr.so_far());
    };
    let stderr = stderr.finish();
    assert!(status.success(), "training failed:\n{stderr}");
    // The final checkpoint was written once the server came back, and is complete.
    assert_eq!(store.latest_step().unwrap(), Some(TRAIN_STEPS));
    assert_eq!(store.load_latest(true).unwrap().unwrap().step, TRAIN_STEPS);

    let resumed = train_command(&endpoint, TRAIN_STEPS + 4, &out).output().unwrap();
    let stderr2 = String::from_utf8_lossy(&resumed.stderr).into_owned();
    assert!(resumed.status.success(), "{stderr2}");
    assert!(stderr2.contains("resumed from checkpoint"), "{stderr2}");
    assert_eq!(store.latest_step().unwrap(), Some(TRAIN_STEPS + 4));
    let mut complete: Vec<u64> = store.list_complete().unwrap().iter().map(|c| c.step).collect();
    complete.sort_unstable();
    assert_eq!(
        complete,
        [TRAIN_STEPS, TRAIN_STEPS + 2, TRAIN_STEPS + 4],
        "checkpoint.keep = 3"
    );
    stderr + &stderr2
}
