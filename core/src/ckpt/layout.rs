//! The checkpoint layout without I/O: step directory names, file-name rules, the manifest and its checks.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{CheckpointError, Result};

/// The manifest's `format` field.
pub const MANIFEST_FORMAT: &str = "isoclr-checkpoint";
/// The manifest format version this build writes and reads.
pub const MANIFEST_VERSION: u32 = 1;
/// The manifest's file name inside a step directory.
pub(crate) const MANIFEST: &str = "manifest.json";
/// The pointer object at the root of the URL.
pub(crate) const LATEST: &str = "LATEST";
/// The largest step an 8-digit directory name holds.
pub(crate) const MAX_STEP: u64 = 99_999_999;
/// Most files one checkpoint may hold (a guard against mistakes, not a storage limit).
const MAX_FILES: usize = 1_000;

/// The directory of a step's checkpoint: `step-NNNNNNNN` (8 digits, so names sort by step).
pub fn step_dir(step: u64) -> String {
    format!("step-{step:08}")
}

/// The step of a directory name written by [`step_dir`]; `None` for anything else.
pub(crate) fn parse_step_dir(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("step-")?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The contents of `LATEST` naming `step`.
pub(crate) fn latest_contents(step: u64) -> Bytes {
    Bytes::from(format!("{}\n", step_dir(step)))
}

/// The step `LATEST` names. Errors with a description when the contents are not one step directory name.
pub(crate) fn parse_latest(contents: &[u8]) -> std::result::Result<u64, String> {
    let text = std::str::from_utf8(contents).map_err(|_| "not UTF-8".to_owned())?;
    let name = text.trim();
    parse_step_dir(name).ok_or_else(|| {
        let shown: String = name.chars().take(40).collect();
        format!("{shown:?} is not a step directory name")
    })
}

/// One file of a checkpoint, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// File name inside the step directory.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the contents, lowercase hex.
    pub sha256: String,
}

/// `manifest.json`: what a complete checkpoint holds. Written last; its presence makes the checkpoint exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: String,
    /// The format version ([`MANIFEST_VERSION`]); a newer one is refused rather than misread.
    pub version: u32,
    /// The training step the checkpoint was taken after.
    pub step: u64,
    /// When the save started, milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// The same instant, RFC 3339 in UTC, for people.
    pub created: String,
    /// Every file of the checkpoint, in the order the caller gave them.
    pub files: Vec<ManifestFile>,
}

impl Manifest {
    /// The manifest of `files` saved at `step`, created now.
    pub(crate) fn describe(step: u64, files: &[(String, Bytes)]) -> Self {
        let created_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self {
            format: MANIFEST_FORMAT.to_owned(),
            version: MANIFEST_VERSION,
            step,
            created_unix_ms,
            created: rfc3339_utc(created_unix_ms),
            files: files
                .iter()
                .map(|(name, data)| ManifestFile {
                    name: name.clone(),
                    size: data.len() as u64,
                    sha256: sha256_hex(data),
                })
                .collect(),
        }
    }

    /// Parses and checks a manifest read from `object` for `step`. Errors: [`CheckpointError::Corrupt`].
    pub(crate) fn parse(bytes: &[u8], step: u64, object: &str) -> Result<Self> {
        let corrupt = |why: String| CheckpointError::Corrupt {
            file: object.to_owned(),
            why,
        };
        let manifest: Self = serde_json::from_slice(bytes).map_err(|e| corrupt(format!("not a manifest: {e}")))?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(corrupt(format!(
                "format {:?}, expected {MANIFEST_FORMAT:?}",
                manifest.format
            )));
        }
        if manifest.version != MANIFEST_VERSION {
            return Err(corrupt(format!(
                "format version {} (this build reads {MANIFEST_VERSION})",
                manifest.version
            )));
        }
        if manifest.step != step {
            return Err(corrupt(format!(
                "it says step {}, its directory step {step}",
                manifest.step
            )));
        }
        for file in &manifest.files {
            validate_file_name(&file.name).map_err(corrupt)?;
            if file.sha256.len() != 64 || !file.sha256.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                return Err(corrupt(format!("bad sha256 for {}", file.name)));
            }
        }
        Ok(manifest)
    }

    /// The manifest as written: pretty JSON with a final newline. Errors rather than writing an empty
    /// manifest over the files it lists.
    pub(crate) fn to_bytes(&self) -> Result<Bytes, CheckpointError> {
        let mut text = serde_json::to_string_pretty(self).map_err(|e| CheckpointError::Invalid {
            why: format!("the manifest cannot be written as JSON: {e}"),
        })?;
        text.push('\n');
        Ok(Bytes::from(text))
    }
}

/// Checks a file name the caller wants saved: one path segment of `[A-Za-z0-9._-]`, not starting with a dot,
/// at most 128 bytes, not the manifest's name. Errors with a description.
pub(crate) fn validate_file_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() || name.len() > 128 {
        return Err(format!("file name {name:?} must be 1 to 128 bytes"));
    }
    if name.starts_with('.')
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(format!(
            "file name {name:?} may only hold letters, digits, '.', '_' and '-' and may not start with '.'"
        ));
    }
    if name == MANIFEST {
        return Err(format!("file name {MANIFEST:?} is the checkpoint's own"));
    }
    Ok(())
}

/// Checks what [`CheckpointStore::save`](super::CheckpointStore::save) is given. Errors:
/// [`CheckpointError::Invalid`].
pub(crate) fn validate_save(step: u64, files: &[(String, Bytes)]) -> Result<()> {
    let invalid = |why: String| CheckpointError::Invalid { why };
    if step > MAX_STEP {
        return Err(invalid(format!(
            "step {step} does not fit 8 digits (at most {MAX_STEP})"
        )));
    }
    if files.is_empty() {
        return Err(invalid("no files to save".to_owned()));
    }
    if files.len() > MAX_FILES {
        return Err(invalid(format!("{} files (at most {MAX_FILES})", files.len())));
    }
    for (i, (name, _)) in files.iter().enumerate() {
        validate_file_name(name).map_err(invalid)?;
        if files[..i].iter().any(|(other, _)| other == name) {
            return Err(invalid(format!("file name {name:?} given twice")));
        }
    }
    Ok(())
}

/// SHA-256 of `data`, lowercase hex.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

/// `unix_ms` as RFC 3339 in UTC with milliseconds (`2026-11-26T08:26:50.123Z`).
pub(crate) fn rfc3339_utc(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm), for the proleptic Gregorian calendar.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        unix_ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_dirs_round_trip_and_reject_other_names() {
        assert_eq!(step_dir(100), "step-00000100");
        assert_eq!(parse_step_dir("step-00000100"), Some(100));
        assert_eq!(parse_step_dir(&step_dir(MAX_STEP)), Some(MAX_STEP));
        for bad in [
            "step-100",
            "step-000001000",
            "step-0000010a",
            "Step-00000100",
            "step-+0000010",
            "",
        ] {
            assert_eq!(parse_step_dir(bad), None, "{bad}");
        }
        assert_eq!(parse_latest(&latest_contents(42)), Ok(42));
        assert!(parse_latest(b"garbage").is_err());
        assert!(parse_latest(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_utc(1_795_681_610_123), "2026-11-26T08:26:50.123Z");
    }

    #[test]
    fn file_names_are_checked() {
        for good in ["model.safetensors", "state.json", "a-b_c.1"] {
            assert!(validate_file_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "a/b",
            "..",
            ".hidden",
            "manifest.json",
            "é",
            "a b",
            &"x".repeat(129),
        ] {
            assert!(validate_file_name(bad).is_err(), "{bad}");
        }
        let file = |n: &str| (n.to_owned(), Bytes::from_static(b"x"));
        assert!(validate_save(1, &[file("a"), file("b")]).is_ok());
        assert!(validate_save(1, &[file("a"), file("a")]).is_err());
        assert!(validate_save(1, &[]).is_err());
        assert!(validate_save(MAX_STEP + 1, &[file("a")]).is_err());
    }

    #[test]
    fn manifests_describe_and_check_their_files() {
        let files = vec![
            ("model.safetensors".to_owned(), Bytes::from_static(b"weights")),
            ("state.json".to_owned(), Bytes::new()),
        ];
        let manifest = Manifest::describe(7, &files);
        assert_eq!(manifest.files[1].sha256, sha256_hex(b""));
        assert_eq!(
            manifest.files[1].sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let parsed = Manifest::parse(&manifest.to_bytes().unwrap(), 7, "m").unwrap();
        assert_eq!(parsed, manifest);
        assert!(matches!(
            Manifest::parse(&manifest.to_bytes().unwrap(), 8, "m"),
            Err(CheckpointError::Corrupt { .. })
        ));
        assert!(matches!(
            Manifest::parse(b"{", 7, "m"),
            Err(CheckpointError::Corrupt { .. })
        ));
        let mut newer = manifest.clone();
        newer.version = MANIFEST_VERSION + 1;
        let err = Manifest::parse(&newer.to_bytes().unwrap(), 7, "s3://b/step-00000007/manifest.json").unwrap_err();
        assert!(err.to_string().contains("s3://b/step-00000007/manifest.json"), "{err}");
    }
}
