//! Storage under a checkpoint URL: builds the `object_store` backend from a URL, and wraps it so that every
//! call has a timeout and transient errors are retried with exponential back-off (the shape of quickwit's
//! timeout-and-retry storage). Keys are relative to the URL's prefix and use `/`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use tracing::{debug, warn};

use super::{CheckpointError, Result, StoreOptions};

/// S3's limit on the parts of one upload.
const MAX_PARTS: usize = 10_000;

/// The backend a URL names, with the prefix inside it and the URL as shown in messages.
pub(crate) struct Backend {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) prefix: String,
    pub(crate) url: String,
}

/// Builds the backend for `url`. Plain paths and `file://` use the local file system (the directory is
/// created), `memory://` a fresh in-memory store, `s3://`, `gs://` and `az://` the providers' stores with
/// credentials from the environment and standard chains only. Errors: [`CheckpointError::Config`].
pub(crate) fn open_backend(url: &str, options: &StoreOptions) -> Result<Backend> {
    let url = url.trim();
    let shown = redact_userinfo(url);
    let config = |why: String| CheckpointError::Config {
        key: "checkpoint.url".to_owned(),
        why: format!("{shown:?}: {why}"),
    };
    if url.is_empty() {
        return Err(config("empty".to_owned()));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return open_local(std::path::Path::new(url)).map_err(config);
    };
    if rest.contains(['?', '#']) {
        return Err(config("query strings and fragments are not supported".to_owned()));
    }
    if scheme == "file" {
        if !rest.starts_with('/') {
            return Err(config("a file:// URL needs an absolute path (file:///dir)".to_owned()));
        }
        return open_local(std::path::Path::new(rest)).map_err(config);
    }
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.contains('@') {
        return Err(config(
            "credentials in the URL are not accepted; they come from the environment".to_owned(),
        ));
    }
    let prefix = clean_prefix(path).map_err(config)?;
    let store: Arc<dyn ObjectStore> = match scheme {
        "memory" => Arc::new(InMemory::new()),
        "s3" | "gs" | "az" | "azure" if authority.is_empty() => {
            return Err(config("the bucket (or container) name is missing".to_owned()));
        }
        "s3" => {
            install_tls_provider();
            let mut builder = AmazonS3Builder::from_env()
                .with_url(format!("s3://{authority}"))
                .with_client_options(client_options(options))
                .with_retry(no_inner_retries(options));
            if let Some(endpoint) = &options.s3.endpoint {
                builder = builder.with_endpoint(endpoint.trim_end_matches('/'));
            }
            if let Some(region) = &options.s3.region {
                builder = builder.with_region(region);
            }
            if options.s3.allow_http {
                builder = builder.with_allow_http(true);
            }
            if options.s3.path_style {
                builder = builder.with_virtual_hosted_style_request(false);
            }
            Arc::new(builder.build().map_err(|e| config(e.to_string()))?)
        }
        "gs" => {
            install_tls_provider();
            let builder = GoogleCloudStorageBuilder::from_env()
                .with_url(format!("gs://{authority}"))
                .with_client_options(client_options(options))
                .with_retry(no_inner_retries(options));
            Arc::new(builder.build().map_err(|e| config(e.to_string()))?)
        }
        "az" | "azure" => {
            install_tls_provider();
            let builder = MicrosoftAzureBuilder::from_env()
                .with_url(format!("az://{authority}"))
                .with_client_options(client_options(options))
                .with_retry(no_inner_retries(options));
            Arc::new(builder.build().map_err(|e| config(e.to_string()))?)
        }
        other => {
            return Err(config(format!(
                "unsupported scheme {other:?} (file, s3, gs, az, memory or a plain path)"
            )));
        }
    };
    let shown = format!("{scheme}://{authority}");
    let url = if prefix.is_empty() {
        shown
    } else {
        format!("{shown}/{prefix}")
    };
    Ok(Backend { store, prefix, url })
}

/// `url` with anything before an `@` in its authority replaced, so a credential typed into a URL is never
/// echoed into a message or log.
fn redact_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').map_or((rest, None), |(a, p)| (a, Some(p)));
            let host = authority
                .rsplit_once('@')
                .map_or(authority.to_owned(), |(_, host)| format!("<redacted>@{host}"));
            match path {
                Some(path) => format!("{scheme}://{host}/{path}"),
                None => format!("{scheme}://{host}"),
            }
        }
        None => url.to_owned(),
    }
}

/// A local directory (created when missing) as a store, with fsync so a manifest never outlives its files.
fn open_local(dir: &std::path::Path) -> std::result::Result<Backend, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create the directory: {e}"))?;
    let dir = std::fs::canonicalize(dir).map_err(|e| format!("cannot resolve the directory: {e}"))?;
    let store = LocalFileSystem::new_with_prefix(&dir)
        .map_err(|e| e.to_string())?
        .with_fsync(true)
        .with_automatic_cleanup(true);
    Ok(Backend {
        store: Arc::new(store),
        prefix: String::new(),
        url: format!("file://{}", dir.display()),
    })
}

/// The path part of a URL as a prefix: no empty, `.` or `..` segments, no trailing slash.
fn clean_prefix(path: &str) -> std::result::Result<String, String> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segments.iter().any(|s| *s == "." || *s == "..") {
        return Err("'.' and '..' are not allowed in the prefix".to_owned());
    }
    Ok(segments.join("/"))
}

/// rustls is built without a bundled crypto provider (the crate already has ring, through tonic): install
/// ring as the process default before the first HTTP client is built. Harmless when one is installed.
fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn client_options(options: &StoreOptions) -> ClientOptions {
    ClientOptions::new()
        .with_timeout(options.call_timeout)
        .with_connect_timeout(options.connect_timeout)
        .with_allow_http(options.s3.allow_http)
}

/// The retries are ours (counted and backed off in [`Storage`]); object_store's own are switched off so that
/// `attempts` means what it says.
fn no_inner_retries(options: &StoreOptions) -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: 0,
        retry_timeout: options.call_timeout,
    }
}

/// What one attempt of a call ended with: transient errors are retried, permanent ones are not.
enum Failure {
    Transient(String),
    TimedOut,
    Permanent(CheckpointError),
}

/// Classifies an object_store error: missing objects and refusals are permanent, everything else (network,
/// server errors, the generic kind) transient.
fn classify(op: &'static str, object: &str, error: object_store::Error) -> Failure {
    use object_store::Error as E;
    match error {
        E::NotFound { .. } => Failure::Permanent(CheckpointError::NotFound {
            object: object.to_owned(),
        }),
        E::Generic { .. } | E::JoinError { .. } => Failure::Transient(with_credential_hint(error.to_string())),
        other => Failure::Permanent(CheckpointError::Storage {
            op,
            object: object.to_owned(),
            why: other.to_string(),
        }),
    }
}

/// The cloud credential chains end at the instance metadata service (169.254.169.254): an error from there
/// means that no credentials were found anywhere else, which the raw message does not say.
fn with_credential_hint(why: String) -> String {
    if why.contains("169.254.169.254") {
        format!(
            "{why} (no credentials were found: for S3 set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the \
             environment; the instance metadata service, asked last, gave none)"
        )
    } else {
        why
    }
}

/// A checkpoint URL's objects, with a timeout on every call and retries with back-off.
pub(crate) struct Storage {
    inner: Arc<dyn ObjectStore>,
    prefix: String,
    url: String,
    options: StoreOptions,
}

impl Storage {
    pub(crate) fn new(backend: Backend, options: StoreOptions) -> Self {
        Self {
            inner: backend.store,
            prefix: backend.prefix,
            url: backend.url,
            options,
        }
    }

    /// The checkpoint URL, as shown in messages.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The URL of the object at `key`.
    pub(crate) fn object_url(&self, key: &str) -> String {
        format!("{}/{key}", self.url)
    }

    fn path(&self, key: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(key)
        } else {
            Path::from(format!("{}/{key}", self.prefix))
        }
    }

    /// Runs `attempt` up to `options.attempts` times, each bounded by `timeout` when given, pausing with
    /// exponential back-off between attempts that failed transiently.
    async fn retry<T, F, Fut>(
        &self,
        op: &'static str,
        key: &str,
        timeout: Option<Duration>,
        mut attempt: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, Failure>>,
    {
        let object = self.object_url(key);
        let attempts = self.options.attempts.max(1);
        let mut pause = self.options.backoff_initial;
        let mut last = Failure::Transient(String::new());
        for n in 1..=attempts {
            let outcome = match timeout {
                Some(limit) => tokio::time::timeout(limit, attempt())
                    .await
                    .unwrap_or(Err(Failure::TimedOut)),
                None => attempt().await,
            };
            match outcome {
                Ok(value) => return Ok(value),
                Err(Failure::Permanent(error)) => return Err(error),
                Err(failure) => {
                    let why = match &failure {
                        Failure::TimedOut => format!("no answer within {:?}", self.options.call_timeout),
                        Failure::Transient(why) => why.clone(),
                        Failure::Permanent(_) => String::new(),
                    };
                    last = failure;
                    if n < attempts {
                        let jittered = pause.mul_f64(0.5 + 0.5 * rand::random::<f64>());
                        warn!(op, %object, attempt = n, of = attempts, error = %why, retry_in = ?jittered, "storage call failed; retrying");
                        tokio::time::sleep(jittered).await;
                        pause = (pause * 2).min(self.options.backoff_max);
                    }
                }
            }
        }
        Err(match last {
            Failure::TimedOut => CheckpointError::Timeout {
                op,
                object,
                after: self.options.call_timeout,
                attempts,
            },
            Failure::Transient(why) => CheckpointError::Unavailable {
                op,
                object,
                attempts,
                why,
            },
            Failure::Permanent(error) => error,
        })
    }

    /// Writes `data` at `key` (replacing it); in parts when it reaches the multipart threshold.
    pub(crate) async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        if data.len() >= self.options.multipart_threshold {
            return self.put_multipart(key, data).await;
        }
        let path = self.path(key);
        let object = self.object_url(key);
        self.retry("put", key, Some(self.options.call_timeout), || {
            let payload = PutPayload::from(data.clone());
            let (path, object) = (&path, &object);
            async move {
                self.inner
                    .put(path, payload)
                    .await
                    .map(|_| ())
                    .map_err(|e| classify("put", object, e))
            }
        })
        .await
    }

    /// A multipart upload: every part and the completion have the call timeout; a failed attempt is aborted
    /// and the whole upload retried (a part cannot be re-sent under its number through object_store).
    async fn put_multipart(&self, key: &str, data: Bytes) -> Result<()> {
        let path = self.path(key);
        let object = self.object_url(key);
        let part_size = self.options.part_size.max(data.len().div_ceil(MAX_PARTS));
        let limit = self.options.call_timeout;
        let concurrency = self.options.part_concurrency;
        debug!(%object, bytes = data.len(), part_size, "multipart upload");
        self.retry("put", key, None, || {
            let (path, object, data) = (&path, &object, &data);
            async move {
                let classify = |e| classify("put", object, e);
                let mut upload = tokio::time::timeout(limit, self.inner.put_multipart(path))
                    .await
                    .map_err(|_| Failure::TimedOut)?
                    .map_err(classify)?;
                let parts = (0..data.len().div_ceil(part_size))
                    .map(|i| data.slice(i * part_size..((i + 1) * part_size).min(data.len())));
                let sent: std::result::Result<(), Failure> = futures::stream::iter(parts)
                    .map(|part| {
                        let pending = upload.put_part(PutPayload::from(part));
                        async move {
                            match tokio::time::timeout(limit, pending).await {
                                Ok(result) => result.map_err(classify),
                                Err(_) => Err(Failure::TimedOut),
                            }
                        }
                    })
                    .buffer_unordered(concurrency)
                    .try_collect()
                    .await;
                let completed = match sent {
                    Ok(()) => match tokio::time::timeout(limit, upload.complete()).await {
                        Ok(result) => result.map(|_| ()).map_err(classify),
                        Err(_) => Err(Failure::TimedOut),
                    },
                    Err(failure) => Err(failure),
                };
                if completed.is_err() {
                    // Best effort: the store also expires abandoned uploads.
                    if let Ok(Err(e)) = tokio::time::timeout(limit, upload.abort()).await {
                        debug!(%object, error = %e, "aborting a failed multipart upload failed");
                    }
                }
                completed
            }
        })
        .await
    }

    /// Reads the whole object at `key`. Errors: [`CheckpointError::NotFound`] when it does not exist.
    pub(crate) async fn get(&self, key: &str) -> Result<Bytes> {
        let path = self.path(key);
        let object = self.object_url(key);
        self.retry("get", key, Some(self.options.call_timeout), || {
            let (path, object) = (&path, &object);
            async move {
                let classify = |e| classify("get", object, e);
                self.inner
                    .get(path)
                    .await
                    .map_err(classify)?
                    .bytes()
                    .await
                    .map_err(classify)
            }
        })
        .await
    }

    /// Deletes the object at `key`; a missing object is not an error.
    pub(crate) async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key);
        let object = self.object_url(key);
        let deleted = self
            .retry("delete", key, Some(self.options.call_timeout), || {
                let (path, object) = (&path, &object);
                async move { self.inner.delete(path).await.map_err(|e| classify("delete", object, e)) }
            })
            .await;
        match deleted {
            Err(CheckpointError::NotFound { .. }) => Ok(()),
            other => other,
        }
    }

    /// Every object under the URL (or under `dir` inside it): keys relative to the URL, with sizes.
    pub(crate) async fn list(&self, dir: Option<&str>) -> Result<Vec<(String, u64)>> {
        let key = dir.unwrap_or("");
        let prefix = match (self.prefix.is_empty(), dir) {
            (true, None) => None,
            (true, Some(d)) => Some(Path::from(d)),
            (false, None) => Some(Path::from(self.prefix.as_str())),
            (false, Some(d)) => Some(Path::from(format!("{}/{d}", self.prefix))),
        };
        let object = self.object_url(key);
        let base = Path::from(self.prefix.as_str());
        self.retry("list", key, Some(self.options.call_timeout), || {
            let (prefix, object, base) = (&prefix, &object, &base);
            async move {
                let metas: Vec<_> = self
                    .inner
                    .list(prefix.as_ref())
                    .try_collect()
                    .await
                    .map_err(|e| classify("list", object, e))?;
                Ok(metas
                    .into_iter()
                    .filter_map(|meta| {
                        let relative: Vec<String> = meta
                            .location
                            .prefix_match(base)?
                            .map(|part| part.as_ref().to_owned())
                            .collect();
                        Some((relative.join("/"), meta.size))
                    })
                    .collect())
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_credential_lookup_says_which_variables_to_set() {
        let imds = "Generic S3 error: Error performing PUT http://169.254.169.254/latest/api/token in 2ms";
        let hinted = with_credential_hint(imds.to_owned());
        assert!(
            hinted.starts_with(imds) && hinted.contains("AWS_ACCESS_KEY_ID"),
            "{hinted}"
        );
        let other = "Generic S3 error: Error performing GET http://127.0.0.1:9000/b/LATEST";
        assert_eq!(with_credential_hint(other.to_owned()), other);
    }
}
