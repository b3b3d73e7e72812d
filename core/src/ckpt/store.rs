//! [`CheckpointStore`]: saving (files, then the manifest, then `LATEST`, then retention) and loading (the
//! newest checkpoint that verifies) under one URL.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::ObjectStore;
use tracing::{debug, info, warn};

use super::layout::{self, LATEST, MANIFEST, Manifest, parse_latest, parse_step_dir, step_dir};
use super::storage::{Backend, Storage, open_backend};
use super::{CheckpointError, Result, StoreOptions};

/// What a successful [`CheckpointStore::save`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedCheckpoint {
    /// The step saved.
    pub step: u64,
    /// The step directory's URL.
    pub dir: String,
    /// Bytes of the caller's files.
    pub bytes: u64,
    /// Wall time of the whole save, retention included.
    pub elapsed: Duration,
    /// Steps whose checkpoints retention deleted (complete ones beyond `keep`, and abandoned incomplete ones).
    pub deleted: Vec<u64>,
}

/// A checkpoint read back by [`CheckpointStore::load_latest`] or [`CheckpointStore::load`].
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedCheckpoint {
    /// Its step.
    pub step: u64,
    /// Its manifest.
    pub manifest: Manifest,
    /// Its files, in the manifest's order.
    pub files: Vec<(String, Bytes)>,
}

impl LoadedCheckpoint {
    /// The contents of the file `name`, if the checkpoint has it.
    pub fn file(&self, name: &str) -> Option<&Bytes> {
        self.files.iter().find(|(n, _)| n == name).map(|(_, data)| data)
    }
}

/// A checkpoint whose manifest exists (its files are not verified by listing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompleteCheckpoint {
    /// Its step.
    pub step: u64,
    /// Its directory's URL.
    pub dir: String,
}

/// Checkpoints under one URL. Synchronous: it owns a small tokio runtime and must not be called from async
/// code (such calls get [`CheckpointError::Runtime`]; use `spawn_blocking`). Cheap to share behind an `Arc`;
/// calls from several threads may overlap, but only one process may save into a URL (see the module docs).
pub struct CheckpointStore {
    storage: Storage,
    keep: usize,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for CheckpointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointStore")
            .field("url", &self.storage.url())
            .field("keep", &self.keep)
            .finish()
    }
}

impl Drop for CheckpointStore {
    fn drop(&mut self) {
        // Never blocks, so dropping inside async code is safe too.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl CheckpointStore {
    /// Opens the checkpoints under `url`: `file:///abs/dir` or a plain path (created when missing),
    /// `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`, or `memory://` (a fresh store
    /// private to this value). Nothing is read or written yet.
    ///
    /// Errors: [`CheckpointError::Config`] for invalid options, an unsupported or malformed URL, credentials
    /// inside the URL, or a store its builder refuses; [`CheckpointError::Runtime`] when the I/O runtime
    /// cannot start.
    pub fn open(url: &str, options: StoreOptions) -> Result<Self> {
        options.validate()?;
        let runtime = build_runtime()?;
        let backend = {
            let _entered = runtime.enter();
            open_backend(url, &options)?
        };
        info!(url = %backend.url, keep = options.keep, "checkpoint store opened");
        Ok(Self::assemble(backend, options, runtime))
    }

    /// A store over an `object_store` you built (a wrapper, a custom backend): checkpoints go under `prefix`
    /// inside it, and messages show `url`. Errors as [`CheckpointStore::open`].
    pub fn from_object_store(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        url: &str,
        options: StoreOptions,
    ) -> Result<Self> {
        options.validate()?;
        let runtime = build_runtime()?;
        let prefix = prefix.trim_matches('/').to_owned();
        let backend = Backend {
            store,
            prefix,
            url: url.trim_end_matches('/').to_owned(),
        };
        Ok(Self::assemble(backend, options, runtime))
    }

    fn assemble(backend: Backend, options: StoreOptions, runtime: tokio::runtime::Runtime) -> Self {
        Self {
            keep: options.keep,
            storage: Storage::new(backend, options),
            runtime: Some(runtime),
        }
    }

    /// The checkpoint URL (as shown in messages; never holds credentials).
    pub fn url(&self) -> &str {
        self.storage.url()
    }

    /// Complete checkpoints retention keeps.
    pub fn keep(&self) -> usize {
        self.keep
    }

    fn block_on<T>(&self, work: impl Future<Output = Result<T>>) -> Result<T> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(CheckpointError::Runtime(
                "a blocking checkpoint call was made from async code; use spawn_blocking".to_owned(),
            ));
        }
        match &self.runtime {
            Some(runtime) => runtime.block_on(work),
            None => Err(CheckpointError::Runtime("the store is shutting down".to_owned())),
        }
    }

    /// Saves `files` as the checkpoint of `step`: each file (in parts when large), then `manifest.json`, then
    /// `LATEST`, then retention (keep this checkpoint and the newest `keep - 1` other complete ones; delete
    /// the rest, and incomplete directories older than the newest complete checkpoint). Saving a step that
    /// already exists replaces it, removing the old manifest first. Retention failures are logged, not
    /// returned.
    ///
    /// Errors: [`CheckpointError::Invalid`] for a bad step or file name; storage errors
    /// ([`CheckpointError::Timeout`], [`CheckpointError::Unavailable`], [`CheckpointError::Storage`]) once
    /// retries are spent — `LATEST` then still names the previous checkpoint.
    pub fn save(&self, step: u64, files: Vec<(String, Bytes)>) -> Result<SavedCheckpoint> {
        layout::validate_save(step, &files)?;
        self.block_on(self.save_async(step, files))
    }

    async fn save_async(&self, step: u64, files: Vec<(String, Bytes)>) -> Result<SavedCheckpoint> {
        let started = Instant::now();
        let dir = step_dir(step);
        let manifest_key = format!("{dir}/{MANIFEST}");
        let bytes: u64 = files.iter().map(|(_, data)| data.len() as u64).sum();
        let manifest = Manifest::describe(step, &files);
        // Saving a step again (a resumed run re-saving it) replaces it: the old manifest goes first, so the
        // directory is never complete with a mix of old and new files.
        match self.storage.get(&manifest_key).await {
            Ok(_) => {
                warn!(step, "replacing an existing checkpoint of the same step");
                self.storage.delete(&manifest_key).await?;
            }
            Err(CheckpointError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        for (name, data) in &files {
            self.storage.put(&format!("{dir}/{name}"), data.clone()).await?;
        }
        self.storage.put(&manifest_key, manifest.to_bytes()?).await?;
        self.storage.put(LATEST, layout::latest_contents(step)).await?;
        let deleted = match self.apply_retention(step).await {
            Ok(deleted) => deleted,
            Err(e) => {
                warn!(step, error = %e, "checkpoint retention failed; older checkpoints stay until the next save");
                Vec::new()
            }
        };
        let saved = SavedCheckpoint {
            step,
            dir: self.storage.object_url(&dir),
            bytes,
            elapsed: started.elapsed(),
            deleted,
        };
        info!(step, bytes, elapsed = ?saved.elapsed, deleted = ?saved.deleted, "checkpoint saved");
        Ok(saved)
    }

    /// Every step directory under the URL: step → (has a manifest, its keys).
    async fn scan(&self) -> Result<BTreeMap<u64, (bool, Vec<String>)>> {
        let mut dirs: BTreeMap<u64, (bool, Vec<String>)> = BTreeMap::new();
        for (key, _) in self.storage.list(None).await? {
            let Some((dir, name)) = key.split_once('/') else {
                continue;
            };
            let Some(step) = parse_step_dir(dir) else { continue };
            let entry = dirs.entry(step).or_default();
            entry.0 |= name == MANIFEST;
            entry.1.push(key);
        }
        Ok(dirs)
    }

    /// Deletes complete checkpoints beyond `keep` (never `saved`) and incomplete directories older than the
    /// newest complete checkpoint. A checkpoint's manifest goes first, so a partly deleted one is incomplete,
    /// never damaged-but-complete.
    async fn apply_retention(&self, saved: u64) -> Result<Vec<u64>> {
        let dirs = self.scan().await?;
        let newest_complete = dirs
            .iter()
            .rev()
            .find(|(_, (complete, _))| *complete)
            .map(|(step, _)| *step);
        let mut kept = 1;
        let mut doomed = Vec::new();
        for (&step, (complete, _)) in dirs.iter().rev() {
            if step == saved {
                continue;
            }
            if *complete {
                if kept < self.keep {
                    kept += 1;
                } else {
                    doomed.push(step);
                }
            } else if newest_complete.is_some_and(|newest| step < newest) {
                doomed.push(step);
            }
        }
        for step in &doomed {
            let (_, keys) = &dirs[step];
            let manifest_key = format!("{}/{MANIFEST}", step_dir(*step));
            if keys.contains(&manifest_key) {
                self.storage.delete(&manifest_key).await?;
            }
            for key in keys.iter().filter(|k| **k != manifest_key) {
                self.storage.delete(key).await?;
            }
            debug!(step, "checkpoint deleted by retention");
        }
        doomed.sort_unstable();
        Ok(doomed)
    }

    /// Complete checkpoints (those with a manifest), oldest first. Files are not verified.
    ///
    /// Errors: storage errors once retries are spent.
    pub fn list_complete(&self) -> Result<Vec<CompleteCheckpoint>> {
        self.block_on(self.list_complete_async())
    }

    async fn list_complete_async(&self) -> Result<Vec<CompleteCheckpoint>> {
        Ok(self
            .scan()
            .await?
            .into_iter()
            .filter(|(_, (complete, _))| *complete)
            .map(|(step, _)| CompleteCheckpoint {
                step,
                dir: self.storage.object_url(&step_dir(step)),
            })
            .collect())
    }

    /// Loads the checkpoint of `step`, checking every file's size and, with `verify`, its SHA-256 against
    /// the manifest.
    ///
    /// Errors: [`CheckpointError::Corrupt`] naming the file when the manifest or a file is missing, a size
    /// or checksum differs, or the manifest does not parse; storage errors once retries are spent.
    pub fn load(&self, step: u64, verify: bool) -> Result<LoadedCheckpoint> {
        self.block_on(self.load_async(step, verify))
    }

    async fn load_async(&self, step: u64, verify: bool) -> Result<LoadedCheckpoint> {
        let dir = step_dir(step);
        let missing = |key: &str, e: CheckpointError| match e {
            CheckpointError::NotFound { object } => CheckpointError::Corrupt {
                file: object,
                why: if key.ends_with(MANIFEST) {
                    "missing (the checkpoint is incomplete)".to_owned()
                } else {
                    "missing".to_owned()
                },
            },
            other => other,
        };
        let manifest_key = format!("{dir}/{MANIFEST}");
        let raw = self
            .storage
            .get(&manifest_key)
            .await
            .map_err(|e| missing(&manifest_key, e))?;
        let manifest = Manifest::parse(&raw, step, &self.storage.object_url(&manifest_key))?;
        let mut files = Vec::with_capacity(manifest.files.len());
        for listed in &manifest.files {
            let key = format!("{dir}/{}", listed.name);
            let data = self.storage.get(&key).await.map_err(|e| missing(&key, e))?;
            let corrupt = |why: String| CheckpointError::Corrupt {
                file: self.storage.object_url(&key),
                why,
            };
            if data.len() as u64 != listed.size {
                return Err(corrupt(format!(
                    "{} bytes, the manifest says {}",
                    data.len(),
                    listed.size
                )));
            }
            if verify {
                let actual = layout::sha256_hex(&data);
                if actual != listed.sha256 {
                    return Err(corrupt(format!(
                        "sha-256 {actual}, the manifest says {}",
                        listed.sha256
                    )));
                }
            }
            files.push((listed.name.clone(), data));
        }
        Ok(LoadedCheckpoint { step, manifest, files })
    }

    /// Loads the newest usable checkpoint: the one `LATEST` names or, when `LATEST` is missing or damaged,
    /// the newest complete one found by listing; a damaged checkpoint is skipped for the one before it, with
    /// a warning naming what was wrong. `verify` checks SHA-256s (sizes are always checked). `Ok(None)`: no
    /// complete checkpoint exists.
    ///
    /// Errors: [`CheckpointError::NoUsableCheckpoint`] when complete checkpoints exist but every one is
    /// damaged; storage errors once retries are spent (a storage outage is not taken for damage: falling
    /// back then would silently resume from an older step).
    pub fn load_latest(&self, verify: bool) -> Result<Option<LoadedCheckpoint>> {
        self.block_on(self.load_latest_async(verify))
    }

    async fn load_latest_async(&self, verify: bool) -> Result<Option<LoadedCheckpoint>> {
        let latest_url = self.storage.object_url(LATEST);
        let named = match self.storage.get(LATEST).await {
            Ok(contents) => match parse_latest(&contents) {
                Ok(step) => Some(step),
                Err(why) => {
                    warn!(object = %latest_url, %why, "LATEST is damaged; looking for checkpoints by listing");
                    None
                }
            },
            Err(CheckpointError::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        let mut damage = Vec::new();
        if let Some(step) = named {
            match self.load_async(step, verify).await {
                Ok(loaded) => return Ok(Some(loaded)),
                Err(e) if e.is_damage() => {
                    warn!(step, error = %e, "the checkpoint LATEST names is damaged; falling back to an older one");
                    damage.push(format!("step {step}: {e}"));
                }
                Err(e) => return Err(e),
            }
        }
        let complete = self.list_complete_async().await?;
        for candidate in complete.iter().rev().filter(|c| Some(c.step) != named) {
            match self.load_async(candidate.step, verify).await {
                Ok(loaded) => {
                    if !damage.is_empty() {
                        warn!(
                            step = loaded.step,
                            "resuming from an older checkpoint because newer ones are damaged"
                        );
                    }
                    return Ok(Some(loaded));
                }
                Err(e) if e.is_damage() => {
                    warn!(step = candidate.step, error = %e, "checkpoint is damaged; falling back to an older one");
                    damage.push(format!("step {}: {e}", candidate.step));
                }
                Err(e) => return Err(e),
            }
        }
        if damage.is_empty() {
            Ok(None)
        } else {
            Err(CheckpointError::NoUsableCheckpoint {
                url: self.storage.url().to_owned(),
                why: damage.join("; "),
            })
        }
    }

    /// The step `LATEST` names, if it exists and parses (not checked against the checkpoint itself).
    ///
    /// Errors: storage errors once retries are spent.
    pub fn latest_step(&self) -> Result<Option<u64>> {
        self.block_on(async {
            match self.storage.get(LATEST).await {
                Ok(contents) => Ok(parse_latest(&contents).ok()),
                Err(CheckpointError::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    /// Low-level: writes raw bytes at `key` under the URL, bypassing the layout's rules (tools and fault
    /// tests). Errors: storage errors once retries are spent.
    pub fn put_object(&self, key: &str, data: Bytes) -> Result<()> {
        self.block_on(self.storage.put(key, data))
    }

    /// Low-level: reads the object at `key` under the URL. Errors: [`CheckpointError::NotFound`], storage
    /// errors.
    pub fn get_object(&self, key: &str) -> Result<Bytes> {
        self.block_on(self.storage.get(key))
    }

    /// Low-level: deletes the object at `key` (missing is fine). Errors: storage errors.
    pub fn delete_object(&self, key: &str) -> Result<()> {
        self.block_on(self.storage.delete(key))
    }

    /// Low-level: every object under the URL, keys relative to it, with sizes, sorted by key.
    /// Errors: storage errors.
    pub fn list_objects(&self) -> Result<Vec<(String, u64)>> {
        let mut objects = self.block_on(self.storage.list(None))?;
        objects.sort();
        Ok(objects)
    }
}

fn build_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("isoclr-ckpt-io")
        .build()
        .map_err(|e| CheckpointError::Runtime(format!("cannot start the checkpoint I/O runtime: {e}")))
}
