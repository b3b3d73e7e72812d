//! Checkpoint settings: the `[checkpoint]` section as read (rejecting unknown keys) and validated, and the
//! options a [`CheckpointStore`](super::CheckpointStore) is opened with. No credentials here, by design.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{CheckpointError, Result};

/// The smallest multipart part S3 accepts (every part but the last).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// The largest multipart part S3 accepts.
const MAX_PART_SIZE: usize = 5 * 1024 * 1024 * 1024;
const MIB: u64 = 1024 * 1024;

/// `[checkpoint]`: where and how often training state is saved. Credentials are deliberately absent: they
/// come from the environment (`AWS_ACCESS_KEY_ID`, `GOOGLE_APPLICATION_CREDENTIALS`, `AZURE_STORAGE_*`, …) or
/// the providers' standard chains, so a config dump never holds one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// Where checkpoints go: `file:///abs/path`, a plain path, `s3://bucket/prefix`, `gs://bucket/prefix`,
    /// `az://container/prefix` or `memory://` (tests). Unset: no checkpoints.
    pub url: Option<String>,
    /// Save after every this many steps.
    pub every_steps: u64,
    /// Complete checkpoints to keep (at least 2, so a damaged newest one always has a predecessor).
    pub keep: usize,
    /// Stop training when a save fails for good, instead of reporting it and going on.
    pub required: bool,
    /// Verify every file's SHA-256 when resuming (sizes are always checked).
    pub verify: bool,
    /// Timeout of one storage call (one request, one multipart part, one listing, one whole file's download),
    /// in seconds.
    pub timeout_s: f64,
    /// Attempts per storage call before a transient error (timeout, network, server error) is final.
    pub attempts: u32,
    /// Files at least this large (MiB) are uploaded in parts.
    pub multipart_threshold_mib: u64,
    /// Size of one multipart part (MiB; S3 needs at least 5).
    pub part_size_mib: u64,
    /// How long shutdown waits for the save in flight to finish, in seconds; the final save (end of run,
    /// stop signal) is retried through storage outages for as long.
    pub wait_timeout_s: f64,
    /// Endpoint of an S3-compatible store (`http://127.0.0.1:8333`); unset: AWS (or `AWS_ENDPOINT`).
    pub s3_endpoint: Option<String>,
    /// S3 region; unset: `AWS_REGION`/`AWS_DEFAULT_REGION`, else `us-east-1`.
    pub s3_region: Option<String>,
    /// Allow plain-HTTP endpoints (local S3-compatible servers only).
    pub s3_allow_http: bool,
    /// Path-style requests (`endpoint/bucket/key`) instead of virtual-hosted style, as most S3-compatible
    /// servers need.
    pub s3_path_style: bool,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self {
            url: None,
            every_steps: 1_000,
            keep: 3,
            required: false,
            verify: true,
            timeout_s: 120.0,
            attempts: 5,
            multipart_threshold_mib: 8,
            part_size_mib: 8,
            wait_timeout_s: 600.0,
            s3_endpoint: None,
            s3_region: None,
            s3_allow_http: false,
            s3_path_style: false,
        }
    }
}

impl CheckpointConfig {
    /// True when a URL is set.
    pub fn enabled(&self) -> bool {
        self.url.is_some()
    }

    /// Checks ranges that serde cannot. Errors: [`CheckpointError::Config`] naming the key.
    pub fn validate(&self) -> Result<()> {
        let invalid = |key: &str, why: &str| {
            Err(CheckpointError::Config {
                key: format!("checkpoint.{key}"),
                why: why.to_owned(),
            })
        };
        if self.url.as_deref().is_some_and(|u| u.trim().is_empty()) {
            return invalid("url", "must not be empty (leave it unset for no checkpoints)");
        }
        if self.every_steps == 0 {
            return invalid("every_steps", "must be at least 1");
        }
        if !(self.wait_timeout_s > 0.0 && self.wait_timeout_s.is_finite()) {
            return invalid("wait_timeout_s", "must be a positive number of seconds");
        }
        if !(self.timeout_s > 0.0 && self.timeout_s.is_finite()) {
            return invalid("timeout_s", "must be a positive number of seconds");
        }
        if !(5..=5 * 1024).contains(&self.part_size_mib) {
            return invalid("part_size_mib", "must be between 5 and 5120 (S3's part sizes)");
        }
        if self.multipart_threshold_mib < 5 {
            return invalid("multipart_threshold_mib", "must be at least 5");
        }
        self.store_options().validate()
    }

    /// The options to open the store with (keys in errors of their validation are `checkpoint.*`).
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            keep: self.keep,
            call_timeout: Duration::from_secs_f64(self.timeout_s.clamp(0.001, 1e6)),
            attempts: self.attempts,
            multipart_threshold: usize::try_from(self.multipart_threshold_mib.saturating_mul(MIB))
                .unwrap_or(usize::MAX),
            part_size: usize::try_from(self.part_size_mib.saturating_mul(MIB)).unwrap_or(usize::MAX),
            s3: S3Options {
                endpoint: self.s3_endpoint.clone(),
                region: self.s3_region.clone(),
                allow_http: self.s3_allow_http,
                path_style: self.s3_path_style,
            },
            ..StoreOptions::default()
        }
    }

    /// How long shutdown waits for a save in flight.
    pub fn wait_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.wait_timeout_s.clamp(0.001, 1e6))
    }
}

/// Settings of S3 and S3-compatible stores; everything else comes from `AWS_*` variables and the provider
/// chain.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct S3Options {
    /// Endpoint URL (`http://127.0.0.1:8333`); `None`: AWS, or the `AWS_ENDPOINT` variable.
    pub endpoint: Option<String>,
    /// Region; `None`: `AWS_REGION`/`AWS_DEFAULT_REGION`, else `us-east-1`.
    pub region: Option<String>,
    /// Allow plain HTTP (local servers).
    pub allow_http: bool,
    /// Path-style requests instead of virtual-hosted style.
    pub path_style: bool,
}

/// How a [`CheckpointStore`](super::CheckpointStore) talks to its storage and what it keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreOptions {
    /// Complete checkpoints retention keeps (at least 2).
    pub keep: usize,
    /// Timeout of one storage call: one request (a whole file's download included), one multipart part, one
    /// listing. It must cover downloading the largest file.
    pub call_timeout: Duration,
    /// Timeout of establishing one connection (HTTP stores).
    pub connect_timeout: Duration,
    /// Attempts per call before a transient error is final (at least 1).
    pub attempts: u32,
    /// Pause before the first retry; doubles with each further retry (with jitter).
    pub backoff_initial: Duration,
    /// Longest pause between retries.
    pub backoff_max: Duration,
    /// Files at least this large are uploaded in parts.
    pub multipart_threshold: usize,
    /// Size of one part (at least [`MIN_PART_SIZE`]; raised when a file would need over 10,000 parts).
    pub part_size: usize,
    /// Parts of one file uploaded at the same time.
    pub part_concurrency: usize,
    /// S3-compatible stores' settings.
    pub s3: S3Options,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            keep: 3,
            call_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(10),
            attempts: 5,
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
            multipart_threshold: 8 * MIB as usize,
            part_size: 8 * MIB as usize,
            part_concurrency: 4,
            s3: S3Options::default(),
        }
    }
}

impl StoreOptions {
    /// Checks the options. Errors: [`CheckpointError::Config`] naming the setting.
    pub fn validate(&self) -> Result<()> {
        let invalid = |key: &str, why: String| {
            Err(CheckpointError::Config {
                key: format!("checkpoint.{key}"),
                why,
            })
        };
        if self.keep < 2 {
            return invalid(
                "keep",
                format!(
                    "is {}; must be at least 2, so a damaged newest checkpoint has a predecessor",
                    self.keep
                ),
            );
        }
        if !(1..=100).contains(&self.attempts) {
            return invalid("attempts", format!("is {}; must be between 1 and 100", self.attempts));
        }
        if self.call_timeout.is_zero() || self.connect_timeout.is_zero() {
            return invalid("timeout_s", "timeouts must be positive".to_owned());
        }
        if self.backoff_initial > self.backoff_max {
            return invalid("backoff", "the initial back-off exceeds the longest".to_owned());
        }
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.part_size) {
            return invalid(
                "part_size_mib",
                format!("part size {} B is outside S3's 5 MiB to 5 GiB", self.part_size),
            );
        }
        if self.multipart_threshold < MIN_PART_SIZE {
            return invalid("multipart_threshold_mib", "must be at least 5 MiB".to_owned());
        }
        if self.part_concurrency == 0 {
            return invalid("part_concurrency", "must be at least 1".to_owned());
        }
        if let Some(endpoint) = &self.s3.endpoint {
            match endpoint.split_once("://") {
                Some(("https", rest)) | Some(("http", rest)) if !rest.is_empty() => {}
                _ => return invalid("s3_endpoint", format!("{endpoint:?} is not an http(s):// URL")),
            }
            if endpoint.contains('@') {
                return invalid("s3_endpoint", "must not hold credentials".to_owned());
            }
            if endpoint.starts_with("http://") && !self.s3.allow_http {
                return invalid(
                    "s3_endpoint",
                    format!("{endpoint} is plain HTTP; set checkpoint.s3_allow_http = true to allow it"),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_keep_below_two_is_refused() {
        CheckpointConfig::default().validate().unwrap();
        let config = CheckpointConfig {
            keep: 1,
            ..CheckpointConfig::default()
        };
        let err = config.validate().unwrap_err();
        assert!(
            matches!(&err, CheckpointError::Config { key, .. } if key == "checkpoint.keep"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases: Vec<(CheckpointConfig, &str)> = vec![
            (
                CheckpointConfig {
                    every_steps: 0,
                    ..Default::default()
                },
                "checkpoint.every_steps",
            ),
            (
                CheckpointConfig {
                    attempts: 0,
                    ..Default::default()
                },
                "checkpoint.attempts",
            ),
            (
                CheckpointConfig {
                    timeout_s: f64::NAN,
                    ..Default::default()
                },
                "checkpoint.timeout_s",
            ),
            (
                CheckpointConfig {
                    part_size_mib: 4,
                    ..Default::default()
                },
                "checkpoint.part_size_mib",
            ),
            (
                CheckpointConfig {
                    url: Some(" ".into()),
                    ..Default::default()
                },
                "checkpoint.url",
            ),
            (
                CheckpointConfig {
                    s3_endpoint: Some("http://127.0.0.1:8333".into()),
                    ..Default::default()
                },
                "checkpoint.s3_endpoint",
            ),
            (
                CheckpointConfig {
                    s3_endpoint: Some("https://key:secret@host".into()),
                    ..Default::default()
                },
                "checkpoint.s3_endpoint",
            ),
        ];
        for (config, key) in cases {
            match config.validate() {
                Err(CheckpointError::Config { key: got, .. }) => assert_eq!(got, key),
                other => panic!("{key}: {other:?}"),
            }
        }
        let local = CheckpointConfig {
            s3_endpoint: Some("http://127.0.0.1:8333".into()),
            s3_allow_http: true,
            ..Default::default()
        };
        local.validate().unwrap();
    }

    #[test]
    fn a_misspelt_key_is_refused_by_name() {
        let err = toml::from_str::<CheckpointConfig>("url = \"memory://\"\nkepp = 3\n").unwrap_err();
        assert!(err.to_string().contains("kepp"), "{err}");
        let ok: CheckpointConfig = toml::from_str("url = \"s3://b/p\"\nkeep = 4\ns3_path_style = true\n").unwrap();
        assert_eq!((ok.keep, ok.s3_path_style, ok.every_steps), (4, true, 1_000));
        assert_eq!(ok.store_options().part_size, 8 * 1024 * 1024);
    }
}
