//! Unit tests: the shared suite on `memory://`, local directories and a wrapped store, plus faults injected
//! by a failpoint store (transient failures, hangs, outages) and the background saver's contract.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, UploadPart,
};

use super::suite::{self, sample_files, suite_options};
use super::{AsyncSaver, CheckpointError, CheckpointStore, MIN_PART_SIZE, StoreOptions};

/// What the failpoint store does to the calls it sees.
#[derive(Debug, Default)]
struct Control {
    /// Fail this many of the next put, get, list and multipart calls with a transient error.
    fail_next: AtomicU32,
    /// Fail every write (put and multipart) with a transient error: an outage.
    writes_down: AtomicBool,
    /// Fail the next multipart part once.
    fail_part_once: AtomicBool,
    /// Writes never answer (the caller's timeout must fire).
    hang_writes: AtomicBool,
    /// Writes wait while this is set.
    gate_writes: AtomicBool,
    /// Calls seen.
    calls: AtomicU32,
}

impl Control {
    fn check(&self, write: bool) -> object_store::Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let take = self
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if take.is_ok() || (write && self.writes_down.load(Ordering::SeqCst)) {
            return Err(transient());
        }
        Ok(())
    }

    async fn before_write(&self) -> object_store::Result<()> {
        self.check(true)?;
        if self.hang_writes.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_secs(3_600)).await;
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.gate_writes.load(Ordering::SeqCst) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }
}

fn transient() -> object_store::Error {
    object_store::Error::Generic {
        store: "failpoint",
        source: "injected transient failure".into(),
    }
}

/// An in-memory store with failpoints.
#[derive(Debug)]
struct Failpoint {
    inner: InMemory,
    control: Arc<Control>,
}

impl std::fmt::Display for Failpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Failpoint")
    }
}

#[async_trait]
impl ObjectStore for Failpoint {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.control.before_write().await?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.control.before_write().await?;
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(FailpointUpload {
            inner,
            control: Arc::clone(&self.control),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        self.control.check(false)?;
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        match self.control.check(false) {
            Ok(()) => self.inner.list(prefix),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[derive(Debug)]
struct FailpointUpload {
    inner: Box<dyn MultipartUpload>,
    control: Arc<Control>,
}

#[async_trait]
impl MultipartUpload for FailpointUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        if self.control.fail_part_once.swap(false, Ordering::SeqCst) {
            return Box::pin(async { Err(transient()) });
        }
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}

fn quick_options() -> StoreOptions {
    StoreOptions {
        call_timeout: Duration::from_secs(10),
        ..suite_options()
    }
}

/// A store over a failpoint store, under a prefix.
fn failpoint_store(options: StoreOptions) -> (CheckpointStore, Arc<Control>) {
    let control = Arc::new(Control::default());
    let failpoint = Failpoint {
        inner: InMemory::new(),
        control: Arc::clone(&control),
    };
    let store =
        CheckpointStore::from_object_store(Arc::new(failpoint), "runs/a/", "failpoint://runs/a", options).unwrap();
    (store, control)
}

fn run_suite(fresh: &mut suite::Fresh<'_>) {
    if let Err(failures) = suite::run_all(fresh) {
        panic!("checkpoint suite failed:\n{failures}");
    }
}

#[test]
fn suite_passes_on_memory() {
    run_suite(&mut |case, options| CheckpointStore::open(&format!("memory:///suite/{case}"), options));
}

#[test]
fn suite_passes_on_a_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    run_suite(&mut |case, options| CheckpointStore::open(&format!("file://{}/{case}", root.display()), options));
}

#[test]
fn suite_passes_on_a_plain_path_and_a_wrapped_store() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    run_suite(&mut |case, options| CheckpointStore::open(&root.join(case).display().to_string(), options));
    run_suite(&mut |_, options| Ok(failpoint_store(options).0));
}

#[test]
fn transient_failures_are_retried_until_attempts_run_out() {
    let (store, control) = failpoint_store(quick_options());
    control.fail_next.store(2, Ordering::SeqCst);
    store.save(10, sample_files(10)).unwrap();
    assert_eq!(store.load_latest(true).unwrap().unwrap().step, 10);

    // Three attempts, three failures: the save fails and LATEST still names step 10.
    control.writes_down.store(true, Ordering::SeqCst);
    let err = store.save(20, sample_files(20)).unwrap_err();
    assert!(
        matches!(
            &err,
            CheckpointError::Unavailable {
                attempts: 3,
                op: "put",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("failpoint://runs/a/step-00000020/"), "{err}");
    assert!(err.is_transient());
    control.writes_down.store(false, Ordering::SeqCst);
    assert_eq!(store.latest_step().unwrap(), Some(10));
    assert_eq!(store.load_latest(true).unwrap().unwrap().step, 10);
    // What a save that died half-way leaves; the next save succeeds and cleans it up.
    store
        .put_object("step-00000020/model.safetensors", Bytes::from_static(b"partial"))
        .unwrap();
    let saved = store.save(30, sample_files(30)).unwrap();
    assert_eq!(saved.deleted, [20]);
}

#[test]
fn a_failed_part_retries_the_whole_multipart_upload() {
    let (store, control) = failpoint_store(quick_options());
    let big = suite::pseudo_random_bytes(2 * MIN_PART_SIZE + 1, 3);
    control.fail_part_once.store(true, Ordering::SeqCst);
    store.save(1, vec![("model.safetensors".into(), big.clone())]).unwrap();
    assert!(
        !control.fail_part_once.load(Ordering::SeqCst),
        "the failpoint was not reached"
    );
    assert_eq!(store.load_latest(true).unwrap().unwrap().files[0].1, big);
}

#[test]
fn every_call_has_a_timeout() {
    let options = StoreOptions {
        call_timeout: Duration::from_millis(100),
        attempts: 2,
        ..suite_options()
    };
    let (store, control) = failpoint_store(options);
    control.hang_writes.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let err = store.save(1, sample_files(1)).unwrap_err();
    assert!(matches!(err, CheckpointError::Timeout { attempts: 2, .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

#[test]
fn a_storage_outage_is_not_taken_for_damage() {
    let (store, control) = failpoint_store(quick_options());
    store.save(10, sample_files(10)).unwrap();
    control.fail_next.store(100, Ordering::SeqCst);
    let err = store.load_latest(true).unwrap_err();
    assert!(matches!(err, CheckpointError::Unavailable { op: "get", .. }), "{err}");
}

#[test]
fn the_saver_has_at_most_one_save_in_flight() {
    let (store, control) = failpoint_store(quick_options());
    let saver = AsyncSaver::new(Arc::new(store), false).unwrap();
    control.gate_writes.store(true, Ordering::SeqCst);
    saver.submit(10, sample_files(10)).unwrap();
    assert_eq!(saver.in_flight(), Some(10));
    assert_eq!(
        saver.submit(20, sample_files(20)),
        Err(CheckpointError::Busy { in_flight: 10 })
    );
    let err = saver.wait(Duration::from_millis(50)).unwrap_err();
    assert!(matches!(err, CheckpointError::Timeout { op: "wait", .. }), "{err}");
    control.gate_writes.store(false, Ordering::SeqCst);
    assert_eq!(saver.wait(Duration::from_secs(30)).unwrap().unwrap().step, 10);
    saver.submit(20, sample_files(20)).unwrap();
    assert_eq!(saver.wait(Duration::from_secs(30)).unwrap().unwrap().step, 20);
}

#[test]
fn a_required_save_that_fails_stops_training() {
    let (store, control) = failpoint_store(quick_options());
    store.save(5, sample_files(5)).unwrap();
    let store = Arc::new(store);
    let saver = AsyncSaver::new(Arc::clone(&store), true).unwrap();
    control.writes_down.store(true, Ordering::SeqCst);
    saver.submit(10, sample_files(10)).unwrap();
    let err = saver.wait(Duration::from_secs(30)).unwrap_err();
    assert!(matches!(err, CheckpointError::SaveFailed { step: 10, .. }), "{err}");
    assert!(err.to_string().contains("checkpoint.required"), "{err}");
    control.writes_down.store(false, Ordering::SeqCst);
    let again = saver.submit(20, sample_files(20)).unwrap_err();
    assert!(matches!(again, CheckpointError::SaveFailed { step: 10, .. }), "{again}");
    assert_eq!(saver.last_error().unwrap().step, 10);
    assert_eq!(
        store.load_latest(true).unwrap().unwrap().step,
        5,
        "LATEST moved off the previous checkpoint"
    );
}

#[test]
fn an_optional_save_that_fails_is_reported_and_training_goes_on() {
    let (store, control) = failpoint_store(quick_options());
    let store = Arc::new(store);
    let saver = AsyncSaver::new(Arc::clone(&store), false).unwrap();
    control.writes_down.store(true, Ordering::SeqCst);
    saver.submit(10, sample_files(10)).unwrap();
    assert_eq!(saver.wait(Duration::from_secs(30)).unwrap(), None);
    let failure = saver.last_error().unwrap();
    assert_eq!(failure.step, 10);
    assert!(failure.error.is_transient());
    assert!(store.load_latest(true).unwrap().is_none());
    control.writes_down.store(false, Ordering::SeqCst);
    saver.submit(20, sample_files(20)).unwrap();
    assert_eq!(saver.wait(Duration::from_secs(30)).unwrap().unwrap().step, 20);
    assert!(saver.last_error().is_none());
}

#[test]
fn a_final_save_is_tried_again_until_storage_comes_back() {
    let (store, control) = failpoint_store(quick_options());
    let store = Arc::new(store);
    let saver = AsyncSaver::new(Arc::clone(&store), true).unwrap();
    control.writes_down.store(true, Ordering::SeqCst);
    let started = Instant::now();
    saver
        .submit_final(10, sample_files(10), Duration::from_secs(60))
        .unwrap();
    let healer = {
        let control = Arc::clone(&control);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1_500));
            control.writes_down.store(false, Ordering::SeqCst);
        })
    };
    assert_eq!(saver.wait(Duration::from_secs(60)).unwrap().unwrap().step, 10);
    healer.join().unwrap();
    assert!(started.elapsed() >= Duration::from_millis(1_500));
    assert!(saver.last_error().is_none());
    assert_eq!(store.load_latest(true).unwrap().unwrap().step, 10);

    // Without enough patience left for another try, the failure is final (and, being required, fatal).
    control.writes_down.store(true, Ordering::SeqCst);
    saver
        .submit_final(20, sample_files(20), Duration::from_millis(100))
        .unwrap();
    let err = saver.wait(Duration::from_secs(60)).unwrap_err();
    assert!(matches!(err, CheckpointError::SaveFailed { step: 20, .. }), "{err}");
    assert_eq!(store.latest_step().unwrap(), Some(10));
}

#[test]
fn dropping_the_saver_lets_the_save_in_flight_finish() {
    let (store, control) = failpoint_store(quick_options());
    let store = Arc::new(store);
    let saver = AsyncSaver::new(Arc::clone(&store), false).unwrap();
    control.gate_writes.store(true, Ordering::SeqCst);
    saver.submit(10, sample_files(10)).unwrap();
    let opener = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        control.gate_writes.store(false, Ordering::SeqCst);
    });
    drop(saver.with_drop_timeout(Duration::from_secs(30)));
    opener.join().unwrap();
    assert_eq!(store.latest_step().unwrap(), Some(10));
}

#[test]
fn blocking_calls_from_async_code_are_refused_not_panics() {
    let store = CheckpointStore::open("memory://", quick_options()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let err = runtime.block_on(async { store.list_complete() }).unwrap_err();
    assert!(matches!(err, CheckpointError::Runtime(_)), "{err}");
    // Dropping the store inside async code does not panic either.
    runtime.block_on(async move { drop(store) });
}

#[test]
fn urls_are_checked_and_never_carry_credentials() {
    let open = |url: &str| CheckpointStore::open(url, quick_options());
    for bad in [
        "ftp://host/x",
        "s3://AKIA:secret@bucket/prefix",
        "s3:///prefix",
        "gs://",
        "file://relative/dir",
        "s3://bucket/a/../b",
        "s3://bucket/p?x=1",
        "",
    ] {
        match open(bad) {
            Err(CheckpointError::Config { key, why }) => {
                assert_eq!(key, "checkpoint.url");
                assert!(!why.contains("secret") || bad.is_empty(), "the secret is echoed: {why}");
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
    let options = StoreOptions {
        s3: super::S3Options {
            endpoint: Some("http://127.0.0.1:9".into()),
            region: Some("us-east-1".into()),
            allow_http: true,
            path_style: true,
        },
        ..quick_options()
    };
    let s3 = CheckpointStore::open("s3://bucket//runs/x/", options).unwrap();
    assert_eq!(s3.url(), "s3://bucket/runs/x");
    assert_eq!(open("memory:///a/b/").unwrap().url(), "memory:///a/b");
    // Google Cloud Storage builds offline (credentials are looked up on first use); Azure needs an account
    // name from the environment and says so when it is missing.
    assert_eq!(open("gs://bucket/p").unwrap().url(), "gs://bucket/p");
    if std::env::var_os("AZURE_STORAGE_ACCOUNT_NAME").is_none() {
        let err = open("az://container/p").unwrap_err();
        assert!(
            matches!(&err, CheckpointError::Config { why, .. } if why.contains("az://container/p")),
            "{err}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("x/y");
    let local = open(&nested.display().to_string()).unwrap();
    assert!(nested.is_dir());
    assert_eq!(
        local.url(),
        format!("file://{}", nested.canonicalize().unwrap().display())
    );
    let err = CheckpointStore::open(
        "memory://",
        StoreOptions {
            keep: 1,
            ..quick_options()
        },
    )
    .unwrap_err();
    assert!(matches!(err, CheckpointError::Config { .. }), "{err}");
}
