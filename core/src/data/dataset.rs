//! The dataset directory that `prep` writes and training reads.
//!
//! Layout of `DIR/`:
//! - `shard-NNNNN.bin`: `SHARD_MAGIC`, then a postcard-encoded `Vec<Transcript>`;
//! - `groups.bin`: `GROUPS_MAGIC`, then a postcard-encoded `Vec<Group>`;
//! - `manifest.json`: counts, dropped records with reasons, every file's size and SHA-256, and the
//!   content fingerprint. Written last, so a directory without it is incomplete.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{DataError, Result, Transcript};

const SHARD_MAGIC: &[u8; 8] = b"ISOCLRS1";
const GROUPS_MAGIC: &[u8; 8] = b"ISOCLRG1";
/// Version of the on-disk layout, recorded in the manifest.
pub const FORMAT_VERSION: u32 = 1;
/// Transcripts per shard file.
pub const SHARD_TRANSCRIPTS: usize = 8192;
/// Maximum transcript length kept by default (3·2^12, METHOD.md).
pub const DEFAULT_MAX_LEN: u32 = 12_288;

/// One contrastive element: a gene, or all paralogs of a homology group in one species.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Group id: the homology group id, or the gene id when the gene has no homology entry.
    pub id: String,
    /// Indices into [`Dataset::transcripts`] of the group's transcripts (at least one).
    pub transcripts: Vec<u32>,
}

/// A record `prep` left out, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dropped {
    /// Transcript (or record) id.
    pub id: String,
    /// Why it was left out.
    pub reason: String,
}

/// Summary of transcript lengths in nucleotides.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LengthStats {
    /// Shortest.
    pub min: u32,
    /// Median (lower middle for even counts).
    pub median: u32,
    /// Mean.
    pub mean: f64,
    /// Longest.
    pub max: u32,
}

/// One file of the dataset with its size and checksum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// File name inside the dataset directory.
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the content, lower-case hex.
    pub sha256: String,
}

/// `manifest.json`: what a dataset holds and how it was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// On-disk layout version.
    pub format_version: u32,
    /// Maximum transcript length; longer ones were dropped.
    pub max_len: u32,
    /// Number of groups.
    pub groups: usize,
    /// Number of transcripts.
    pub transcripts: usize,
    /// Groups with two or more transcripts (real positive pairs).
    pub groups_with_multiple: usize,
    /// Transcripts with a CDS.
    pub coding_transcripts: usize,
    /// Lengths of the kept transcripts.
    pub lengths: LengthStats,
    /// Count of dropped records per reason.
    pub dropped_counts: BTreeMap<String, usize>,
    /// Every dropped record with its reason.
    pub dropped: Vec<Dropped>,
    /// Input files the dataset was made from, as given.
    pub sources: Vec<String>,
    /// How coding regions were obtained: from the annotation, or inferred as the longest ORF where the input
    /// has none (`prep --cds`).
    #[serde(default)]
    pub cds_source: String,
    /// Transcripts whose CDS was inferred rather than annotated.
    #[serde(default)]
    pub cds_inferred: usize,
    /// What a reader should know about the input: assumptions made for missing columns, transcripts kept with
    /// an unknown strand, and the like.
    #[serde(default)]
    pub notes: Vec<String>,
    /// Data files with sizes and checksums.
    pub files: Vec<FileEntry>,
    /// SHA-256 over the data files' checksums: equal fingerprints mean equal content.
    pub fingerprint: String,
}

/// One dataset of a corpus.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// The dataset's name: its directory name.
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// Its share of every batch, relative to the other parts' weights.
    pub weight: f64,
    /// The corpus groups it contributes to training batches (merged orthology groups count for the first
    /// dataset holding one of their genes), held-out groups included.
    pub groups: Vec<u32>,
    /// Its own manifest.
    pub manifest: Manifest,
}

/// A dataset loaded in memory (2-bit packed, so a whole transcriptome fits easily).
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Directory it was read from.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// All groups; `Transcript::group` indexes this.
    pub groups: Vec<Group>,
    /// All transcripts in shard order.
    pub transcripts: Vec<Transcript>,
    /// The datasets it is made of ([`super::corpus`]): one, covering every group, for a dataset directory.
    pub parts: Vec<Part>,
    /// Share of groups held out of training ([`Dataset::is_held_out`]).
    pub holdout_fraction: f64,
}

/// The content fingerprint: SHA-256 over the data files' names and checksums.
fn fingerprint(files: &[FileEntry]) -> String {
    let mut hasher = Sha256::new();
    for f in files {
        hasher.update(f.name.as_bytes());
        hasher.update(f.sha256.as_bytes());
    }
    hex(&hasher.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<FileEntry> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).map_err(DataError::io(&path))?;
    Ok(FileEntry {
        name: name.to_owned(),
        bytes: bytes.len() as u64,
        sha256: hex(&Sha256::digest(bytes)),
    })
}

fn encode(magic: &[u8; 8], value: &impl Serialize, what: &str) -> Result<Vec<u8>> {
    let mut bytes = magic.to_vec();
    postcard::to_io(value, &mut bytes).map_err(|e| DataError::Invalid {
        what: what.to_owned(),
        why: format!("cannot encode: {e}"),
    })?;
    Ok(bytes)
}

fn decode<T: for<'de> Deserialize<'de>>(path: &Path, magic: &[u8; 8]) -> Result<T> {
    let bytes = std::fs::read(path).map_err(DataError::io(path))?;
    let invalid = |why: String| DataError::Invalid {
        what: path.display().to_string(),
        why,
    };
    let body = bytes
        .strip_prefix(magic.as_slice())
        .ok_or_else(|| invalid("not an isoclr dataset file (bad magic)".into()))?;
    postcard::from_bytes(body).map_err(|e| invalid(format!("corrupt: {e}")))
}

/// Computes length statistics; all zero for an empty slice.
pub fn length_stats(transcripts: &[Transcript]) -> LengthStats {
    let mut lens: Vec<u32> = transcripts.iter().map(|t| t.len).collect();
    if lens.is_empty() {
        return LengthStats::default();
    }
    lens.sort_unstable();
    let sum: u64 = lens.iter().map(|&l| u64::from(l)).sum();
    LengthStats {
        min: lens[0],
        median: lens[(lens.len() - 1) / 2],
        mean: sum as f64 / lens.len() as f64,
        max: lens[lens.len() - 1],
    }
}

/// What `prep` knows about a dataset besides its transcripts and groups.
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    /// Maximum length used for dropping.
    pub max_len: u32,
    /// Records left out, with reasons.
    pub dropped: Vec<Dropped>,
    /// Input files, as given.
    pub sources: Vec<String>,
    /// How coding regions were obtained ([`Manifest::cds_source`]).
    pub cds_source: String,
    /// Transcripts with an inferred CDS.
    pub cds_inferred: usize,
    /// Caveats about the input ([`Manifest::notes`]).
    pub notes: Vec<String>,
}

impl Dataset {
    /// Writes a dataset directory (created if missing): shards, group index, then the manifest.
    ///
    /// Groups must reference valid transcript indices and each transcript's `group` must point back at
    /// its group; errors with [`DataError::Invalid`] otherwise, or [`DataError::Io`] on a write failure.
    pub fn write(dir: &Path, groups: &[Group], transcripts: &[Transcript], provenance: Provenance) -> Result<Manifest> {
        for (g, group) in groups.iter().enumerate() {
            if group.transcripts.is_empty() {
                return Err(DataError::Invalid {
                    what: format!("group {}", group.id),
                    why: "no transcripts".into(),
                });
            }
            for &t in &group.transcripts {
                let ok = transcripts.get(t as usize).is_some_and(|tr| tr.group as usize == g);
                if !ok {
                    return Err(DataError::Invalid {
                        what: format!("group {}", group.id),
                        why: format!("transcript index {t} missing or not in this group"),
                    });
                }
            }
        }
        std::fs::create_dir_all(dir).map_err(DataError::io(dir))?;
        // A stale manifest would make a half-rewritten directory look complete.
        let manifest_path = dir.join("manifest.json");
        if manifest_path.exists() {
            std::fs::remove_file(&manifest_path).map_err(DataError::io(&manifest_path))?;
        }
        let mut files = Vec::new();
        for (i, chunk) in transcripts.chunks(SHARD_TRANSCRIPTS).enumerate() {
            let name = format!("shard-{i:05}.bin");
            files.push(write_file(dir, &name, &encode(SHARD_MAGIC, &chunk, &name)?)?);
        }
        files.push(write_file(
            dir,
            "groups.bin",
            &encode(GROUPS_MAGIC, &groups, "groups.bin")?,
        )?);
        let mut dropped_counts = BTreeMap::new();
        for d in &provenance.dropped {
            *dropped_counts.entry(d.reason.clone()).or_insert(0) += 1;
        }
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            max_len: provenance.max_len,
            groups: groups.len(),
            transcripts: transcripts.len(),
            groups_with_multiple: groups.iter().filter(|g| g.transcripts.len() >= 2).count(),
            coding_transcripts: transcripts.iter().filter(|t| t.cds.is_some()).count(),
            lengths: length_stats(transcripts),
            dropped_counts,
            dropped: provenance.dropped,
            sources: provenance.sources,
            cds_source: provenance.cds_source,
            cds_inferred: provenance.cds_inferred,
            notes: provenance.notes,
            fingerprint: fingerprint(&files),
            files,
        };
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| DataError::Invalid {
            what: "manifest".into(),
            why: e.to_string(),
        })?;
        let tmp = dir.join("manifest.json.tmp");
        std::fs::write(&tmp, json).map_err(DataError::io(&tmp))?;
        std::fs::rename(&tmp, &manifest_path).map_err(DataError::io(&manifest_path))?;
        Ok(manifest)
    }

    /// Reads only the manifest of a dataset directory.
    pub fn read_manifest(dir: &Path) -> Result<Manifest> {
        let path = dir.join("manifest.json");
        let text = std::fs::read_to_string(&path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => DataError::Invalid {
                what: dir.display().to_string(),
                why: "no manifest.json: not a dataset made by `isoclr prep`, or an incomplete one".into(),
            },
            _ => DataError::Io {
                path: path.clone(),
                source,
            },
        })?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| DataError::Invalid {
            what: path.display().to_string(),
            why: e.to_string(),
        })?;
        let invalid = |why: String| DataError::Invalid {
            what: path.display().to_string(),
            why,
        };
        if manifest.format_version != FORMAT_VERSION {
            return Err(invalid(format!(
                "format_version {} (this isoclr reads {FORMAT_VERSION}): run prep again with this version",
                manifest.format_version
            )));
        }
        // Data files live in the dataset directory itself: a name is one plain path component.
        if let Some(f) = manifest.files.iter().find(|f| {
            let mut parts = Path::new(&f.name).components();
            !matches!(
                (parts.next(), parts.next()),
                (Some(std::path::Component::Normal(_)), None)
            )
        }) {
            return Err(invalid(format!(
                "files: {:?} is not a file name inside the dataset directory",
                f.name
            )));
        }
        if manifest.fingerprint != fingerprint(&manifest.files) {
            return Err(invalid(
                "fingerprint does not match the files' checksums: the manifest was edited or damaged".into(),
            ));
        }
        Ok(manifest)
    }

    /// Opens a dataset directory, checking every file's size and checksum against the manifest.
    pub fn open(dir: &Path) -> Result<Self> {
        let manifest = Self::read_manifest(dir)?;
        let mut transcripts = Vec::with_capacity(manifest.transcripts);
        let mut groups = None;
        for entry in &manifest.files {
            let path = dir.join(&entry.name);
            let bytes = std::fs::read(&path).map_err(DataError::io(&path))?;
            let sha = hex(&Sha256::digest(&bytes));
            if bytes.len() as u64 != entry.bytes || sha != entry.sha256 {
                return Err(DataError::Invalid {
                    what: path.display().to_string(),
                    why: "size or SHA-256 differs from manifest.json: the dataset is damaged; run prep again".into(),
                });
            }
            if entry.name == "groups.bin" {
                groups = Some(decode::<Vec<Group>>(&path, GROUPS_MAGIC)?);
            } else {
                transcripts.extend(decode::<Vec<Transcript>>(&path, SHARD_MAGIC)?);
            }
        }
        let groups = groups.ok_or_else(|| DataError::Invalid {
            what: dir.display().to_string(),
            why: "manifest lists no groups.bin".into(),
        })?;
        // max_len 0: not recorded (datasets written by tests and tools, not by prep).
        if let Some(t) = (transcripts.iter()).find(|t| manifest.max_len > 0 && t.len > manifest.max_len) {
            return Err(DataError::Invalid {
                what: dir.join("manifest.json").display().to_string(),
                why: format!(
                    "max_len is {} but transcript {} is {} nt long: the manifest disagrees with the shards",
                    manifest.max_len, t.id, t.len
                ),
            });
        }
        let consistent = transcripts.len() == manifest.transcripts
            && groups.len() == manifest.groups
            && groups.iter().enumerate().all(|(g, group)| {
                !group.transcripts.is_empty()
                    && group
                        .transcripts
                        .iter()
                        .all(|&t| transcripts.get(t as usize).is_some_and(|tr| tr.group as usize == g))
            });
        if !consistent {
            return Err(DataError::Invalid {
                what: dir.display().to_string(),
                why: "group index and shards disagree with each other or with the manifest".into(),
            });
        }
        let parts = vec![Part {
            name: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            dir: dir.to_owned(),
            weight: 1.0,
            groups: (0..groups.len() as u32).collect(),
            manifest: manifest.clone(),
        }];
        Ok(Self {
            dir: dir.to_owned(),
            manifest,
            groups,
            transcripts,
            parts,
            holdout_fraction: 0.0,
        })
    }

    /// Finds a transcript by id.
    pub fn transcript(&self, id: &str) -> Option<&Transcript> {
        self.transcripts.iter().find(|t| t.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> (Vec<Group>, Vec<Transcript>) {
        let t = vec![
            Transcript::new("a1", "ga", 0, b"ACGTACGT", vec![3, 7], Some((0, 6))).unwrap(),
            Transcript::new("a2", "ga", 0, b"ACGTAC", vec![5], None).unwrap(),
            Transcript::new("b1", "gb", 1, b"NNACGU", vec![5], None).unwrap(),
        ];
        let g = vec![
            Group {
                id: "ga".into(),
                transcripts: vec![0, 1],
            },
            Group {
                id: "gb".into(),
                transcripts: vec![2],
            },
        ];
        (g, t)
    }

    #[test]
    fn write_then_open_round_trips_and_fingerprints_content() {
        let dir = tempfile::tempdir().unwrap();
        let (g, t) = tiny();
        let m = Dataset::write(
            dir.path(),
            &g,
            &t,
            Provenance {
                max_len: 100,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            (m.groups, m.transcripts, m.groups_with_multiple, m.coding_transcripts),
            (2, 3, 1, 1)
        );
        assert_eq!(
            m.lengths,
            LengthStats {
                min: 6,
                median: 6,
                mean: 20.0 / 3.0,
                max: 8
            }
        );
        let d = Dataset::open(dir.path()).unwrap();
        assert_eq!(d.transcripts, t);
        assert_eq!(d.groups, g);

        let other = tempfile::tempdir().unwrap();
        let mut t2 = t.clone();
        t2[1] = Transcript::new("a2", "ga", 0, b"ACGTAA", vec![5], None).unwrap();
        let m2 = Dataset::write(
            other.path(),
            &g,
            &t2,
            Provenance {
                max_len: 100,
                ..Default::default()
            },
        )
        .unwrap();
        assert_ne!(m.fingerprint, m2.fingerprint);
    }

    #[test]
    fn damaged_shard_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let (g, t) = tiny();
        Dataset::write(dir.path(), &g, &t, Provenance::default()).unwrap();
        let shard = dir.path().join("shard-00000.bin");
        let mut bytes = std::fs::read(&shard).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&shard, bytes).unwrap();
        let err = Dataset::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("shard-00000.bin") && err.contains("damaged"), "{err}");
    }

    /// A manifest edited by hand or damaged: each field that could mislead a reader is checked, and a file
    /// name cannot lead out of the dataset directory.
    #[test]
    fn manifest_fields_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let (g, t) = tiny();
        let provenance = || Provenance {
            max_len: 100,
            ..Provenance::default()
        };
        Dataset::write(dir.path(), &g, &t, provenance()).unwrap();
        let path = dir.path().join("manifest.json");
        let original: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let cases: [(&str, serde_json::Value, &str); 5] = [
            ("format_version", 99.into(), "format_version 99"),
            ("fingerprint", "00".repeat(32).into(), "fingerprint"),
            ("max_len", 5.into(), "max_len is 5"),
            (
                "files",
                serde_json::json!([{"name": "../../../../etc/passwd", "bytes": 1, "sha256": "0"}]),
                "etc/passwd",
            ),
            (
                "files",
                serde_json::json!([{"name": "/etc/passwd", "bytes": 1, "sha256": "0"}]),
                "not a file name",
            ),
        ];
        for (key, value, why) in cases {
            let mut edited = original.clone();
            edited[key] = value;
            std::fs::write(&path, serde_json::to_string(&edited).unwrap()).unwrap();
            let err = Dataset::open(dir.path()).unwrap_err().to_string();
            assert!(err.contains("manifest.json") && err.contains(why), "{key}: {err}");
        }
        std::fs::write(&path, serde_json::to_string(&original).unwrap()).unwrap();
        Dataset::open(dir.path()).unwrap();
    }

    #[test]
    fn inconsistent_groups_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut g, t) = tiny();
        g[1].transcripts = vec![0];
        assert!(Dataset::write(dir.path(), &g, &t, Provenance::default()).is_err());
        let err = Dataset::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("no manifest.json"), "{err}");
    }
}
