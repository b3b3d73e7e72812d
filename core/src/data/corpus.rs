//! A corpus: several datasets made by `isoclr prep` (species, assemblies, mRNA collections) trained on as one,
//! each drawn in proportion to its weight, with an optional orthology table that makes groups of different
//! datasets one group, and an optional share of groups held out of training to measure it.
//!
//! Groups never merge across datasets except through the orthology table. The merged corpus is an ordinary
//! [`Dataset`] in memory (its [`Dataset::parts`] say which groups came from where), so everything downstream —
//! the sampler, the coordinator's shards, checkpoints — works on it unchanged. Knows nothing of tensors.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::dataset::{FORMAT_VERSION, Part, length_stats};
use super::prep::input;
use super::sampler::{Sampler, rng_for};
use super::{DataError, Dataset, Group, Manifest, Result};

/// The datasets of a run and how to draw from them (`[data]` `paths`, `weights`, `orthology`,
/// `holdout_fraction`).
#[derive(Debug, Clone, PartialEq)]
pub struct CorpusOptions {
    /// Dataset directories; their directory names must differ (they name the datasets).
    pub paths: Vec<PathBuf>,
    /// One weight per path: the share of every batch drawn from it. Empty means in proportion to the datasets'
    /// numbers of groups (as if the corpus were one dataset).
    pub weights: Vec<f64>,
    /// `dataset<TAB>gene_id<TAB>group` rows: genes of one `group` are one contrastive group across datasets.
    pub orthology: Option<PathBuf>,
    /// Share of groups held out of training (0 for none), chosen by a hash of the group id.
    pub holdout_fraction: f64,
}

/// The name of the file that makes a directory a corpus: `datasets = ["a", "b"]`, optional `weights = [..]`
/// and `orthology = "file.tsv"`, paths relative to the directory. `data.path` may name such a directory.
pub const CORPUS_FILE: &str = "corpus.toml";

/// `corpus.toml`, as written.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CorpusFile {
    datasets: Vec<PathBuf>,
    #[serde(default)]
    weights: Vec<f64>,
    orthology: Option<PathBuf>,
}

impl CorpusOptions {
    /// The corpus a directory describes in its [`CORPUS_FILE`], `None` when it has none (a dataset
    /// directory). Relative paths in the file are relative to `dir`. Errors with [`DataError::Invalid`] naming
    /// the file when it is not valid TOML of that layout (an unknown key included).
    pub fn from_directory(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(CORPUS_FILE);
        if !path.is_file() || dir.join("manifest.json").is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(DataError::io(&path))?;
        let file: CorpusFile = toml::from_str(&text).map_err(|e| DataError::Invalid {
            what: path.display().to_string(),
            why: e.message().to_owned(),
        })?;
        Ok(Some(Self {
            paths: file.datasets.iter().map(|p| dir.join(p)).collect(),
            weights: file.weights,
            orthology: file.orthology.map(|p| dir.join(p)),
            holdout_fraction: 0.0,
        }))
    }
}

/// Opens the datasets of `opts` and merges them into one corpus.
///
/// The corpus fingerprint covers every dataset's fingerprint, the weights, the orthology table's content and
/// the held-out share, so a checkpoint refuses a run on another corpus. One dataset with no orthology table
/// and nothing held out opens as itself, with its own fingerprint.
///
/// Errors: those of [`Dataset::open`] for each path; [`DataError::Invalid`] for no paths, weights that do not
/// match the paths or are not positive, two datasets with one name, or a held-out share outside `[0, 0.5]`;
/// [`DataError::Parse`] naming the orthology file's line for a malformed row, a dataset name not in the
/// corpus, or a gene given two orthology groups.
pub fn open(opts: &CorpusOptions) -> Result<Dataset> {
    let invalid = |what: &str, why: String| DataError::Invalid {
        what: what.to_owned(),
        why,
    };
    if opts.paths.is_empty() {
        return Err(invalid("data.paths", "lists no dataset".into()));
    }
    if !opts.weights.is_empty() && opts.weights.len() != opts.paths.len() {
        return Err(invalid(
            "data.weights",
            format!("has {} weights for {} datasets", opts.weights.len(), opts.paths.len()),
        ));
    }
    if let Some(w) = opts.weights.iter().find(|w| !(w.is_finite() && **w > 0.0)) {
        return Err(invalid("data.weights", format!("must be positive and finite, got {w}")));
    }
    if !(0.0..=0.5).contains(&opts.holdout_fraction) {
        return Err(invalid(
            "data.holdout_fraction",
            format!("must be between 0 and 0.5, got {}", opts.holdout_fraction),
        ));
    }
    let datasets = opts
        .paths
        .iter()
        .map(|p| Dataset::open(p))
        .collect::<Result<Vec<_>>>()?;
    if datasets.len() == 1 && opts.orthology.is_none() && opts.holdout_fraction == 0.0 {
        return datasets
            .into_iter()
            .next()
            .ok_or_else(|| invalid("data.paths", "lists no dataset".into()));
    }
    let names: Vec<String> = opts.paths.iter().map(|p| dataset_name(p)).collect();
    for (i, name) in names.iter().enumerate() {
        if let Some(j) = names[..i].iter().position(|n| n == name) {
            return Err(invalid(
                "data.paths",
                format!(
                    "{} and {} are both named {name}: datasets of a corpus need distinct directory names",
                    opts.paths[j].display(),
                    opts.paths[i].display()
                ),
            ));
        }
    }
    let links = match &opts.orthology {
        Some(path) => read_orthology(path, &names)?,
        None => Orthology::default(),
    };
    merge(datasets, names, opts, links)
}

/// A dataset's name in a corpus: its directory's last component.
fn dataset_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// The orthology table, read: (dataset index, gene id) → orthology group label, and the table's checksum.
#[derive(Debug, Default)]
struct Orthology {
    genes: HashMap<(usize, String), String>,
    sha256: String,
}

fn read_orthology(path: &Path, names: &[String]) -> Result<Orthology> {
    let mut input = input::open(path)?;
    let mut line = Vec::new();
    let mut genes: HashMap<(usize, String), (String, usize)> = HashMap::new();
    let mut hasher = Sha256::new();
    let mut first = true;
    while let Some(n) = input.next_line(&mut line).map_err(DataError::io(path))? {
        hasher.update(&line);
        let parse = |why: String| DataError::Parse {
            path: path.to_owned(),
            line: n,
            why,
        };
        let text = std::str::from_utf8(&line).map_err(|_| parse("not UTF-8".into()))?;
        let text = text.trim_end_matches(['\r', '\n']);
        if text.trim().is_empty() || text.starts_with('#') {
            continue;
        }
        if std::mem::take(&mut first) && text.starts_with("dataset\t") {
            continue;
        }
        let fields: Vec<&str> = text.split('\t').map(str::trim).collect();
        let [dataset, gene, group] = fields[..] else {
            return Err(parse(format!(
                "expected dataset<TAB>gene_id<TAB>group, found {} columns",
                fields.len()
            )));
        };
        if gene.is_empty() || group.is_empty() {
            return Err(parse("empty gene_id or group".into()));
        }
        let Some(d) = names.iter().position(|name| name == dataset) else {
            return Err(parse(format!(
                "column 1 (dataset): {dataset:?} is not a dataset of the corpus ({})",
                names.join(", ")
            )));
        };
        match genes.get(&(d, gene.to_owned())) {
            Some((other, at)) if other != group => {
                return Err(parse(format!(
                    "gene {gene} of {dataset} is in orthology group {other} at line {at} and in {group} here"
                )));
            }
            Some(_) => {}
            None => {
                genes.insert((d, gene.to_owned()), (group.to_owned(), n));
            }
        }
    }
    Ok(Orthology {
        genes: genes.into_iter().map(|(k, (group, _))| (k, group)).collect(),
        sha256: format!("{:x}", hasher.finalize()),
    })
}

/// Union-find root with path halving.
fn root(parent: &mut [usize], mut g: usize) -> usize {
    while parent[g] != g {
        parent[g] = parent[parent[g]];
        g = parent[g];
    }
    g
}

fn merge(datasets: Vec<Dataset>, names: Vec<String>, opts: &CorpusOptions, links: Orthology) -> Result<Dataset> {
    let prefixed = datasets.len() > 1;
    // Every dataset's groups, numbered globally in dataset order.
    let mut offsets = Vec::with_capacity(datasets.len());
    let mut total_groups = 0;
    for d in &datasets {
        offsets.push(total_groups);
        total_groups += d.groups.len();
    }
    let mut parent: Vec<usize> = (0..total_groups).collect();
    let mut label_root: HashMap<&str, usize> = HashMap::new();
    let mut label_of_root: HashMap<usize, String> = HashMap::new();
    let mut linked_genes = 0usize;
    // Deterministic order: by dataset, then transcript order.
    for (d, dataset) in datasets.iter().enumerate() {
        for t in &dataset.transcripts {
            let Some(label) = links.genes.get(&(d, t.gene_id.clone())) else {
                continue;
            };
            linked_genes += 1;
            let g = offsets[d] + t.group as usize;
            match label_root.get(label.as_str()) {
                Some(&other) => {
                    let (a, b) = (root(&mut parent, g), root(&mut parent, other));
                    // The smaller index stays the root: the first dataset holding a member owns the group.
                    let (keep, gone) = (a.min(b), a.max(b));
                    parent[gone] = keep;
                    if let Some(l) = label_of_root.remove(&gone) {
                        label_of_root.entry(keep).or_insert(l);
                    }
                }
                None => {
                    label_root.insert(label, g);
                    let r = root(&mut parent, g);
                    label_of_root.entry(r).or_insert_with(|| label.clone());
                }
            }
        }
    }
    // New group index per root, in global order; members' transcripts appended in order.
    let mut new_index: HashMap<usize, u32> = HashMap::new();
    let mut groups: Vec<Group> = Vec::new();
    let mut owner: Vec<usize> = Vec::new();
    let mut transcripts = Vec::new();
    let mut merged_members: BTreeMap<usize, usize> = BTreeMap::new();
    for (d, dataset) in datasets.iter().enumerate() {
        for g in 0..dataset.groups.len() {
            let global = offsets[d] + g;
            let r = root(&mut parent, global);
            *merged_members.entry(r).or_default() += 1;
            if r == global {
                let id = match label_of_root.get(&r) {
                    Some(label) if prefixed => format!("orthology:{label}"),
                    _ if prefixed => format!("{}:{}", names[d], dataset.groups[g].id),
                    _ => dataset.groups[g].id.clone(),
                };
                new_index.insert(r, groups.len() as u32);
                groups.push(Group {
                    id,
                    transcripts: Vec::new(),
                });
                owner.push(d);
            }
        }
    }
    let mut sources = Vec::new();
    let mut parts = Vec::new();
    let mut dropped_counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut cds_sources: Vec<String> = Vec::new();
    let mut cds_inferred = 0;
    for (d, dataset) in datasets.into_iter().enumerate() {
        for mut t in dataset.transcripts {
            let r = root(&mut parent, offsets[d] + t.group as usize);
            let g = new_index[&r];
            t.group = g;
            groups[g as usize].transcripts.push(transcripts.len() as u32);
            transcripts.push(t);
        }
        for (reason, n) in &dataset.manifest.dropped_counts {
            *dropped_counts.entry(reason.clone()).or_default() += n;
        }
        if !cds_sources.contains(&dataset.manifest.cds_source) {
            cds_sources.push(dataset.manifest.cds_source.clone());
        }
        cds_inferred += dataset.manifest.cds_inferred;
        sources.push(dataset.dir.display().to_string());
        parts.push(Part {
            name: names[d].clone(),
            dir: dataset.dir,
            weight: opts.weights.get(d).copied().unwrap_or(dataset.manifest.groups as f64),
            groups: (0..groups.len() as u32).filter(|&g| owner[g as usize] == d).collect(),
            manifest: dataset.manifest,
        });
    }
    let merged = merged_members.values().filter(|&&n| n > 1).count();
    let mut notes = Vec::new();
    if let Some(path) = &opts.orthology {
        notes.push(format!(
            "orthology {}: {linked_genes} transcripts of listed genes, {merged} groups made of several",
            path.display()
        ));
    }
    let mut hasher = Sha256::new();
    hasher.update(b"isoclr corpus 1\n");
    for p in &parts {
        hasher.update(format!("{}\t{}\t{}\n", p.name, p.manifest.fingerprint, p.weight).as_bytes());
    }
    hasher.update(format!("orthology\t{}\nholdout\t{}\n", links.sha256, opts.holdout_fraction).as_bytes());
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        max_len: parts.iter().map(|p| p.manifest.max_len).max().unwrap_or(0),
        groups: groups.len(),
        transcripts: transcripts.len(),
        groups_with_multiple: groups.iter().filter(|g| g.transcripts.len() >= 2).count(),
        coding_transcripts: transcripts.iter().filter(|t| t.cds.is_some()).count(),
        lengths: length_stats(&transcripts),
        dropped_counts,
        dropped: Vec::new(),
        sources,
        cds_source: cds_sources.join(" | "),
        cds_inferred,
        notes,
        files: Vec::new(),
        fingerprint: format!("{:x}", hasher.finalize()),
    };
    Ok(Dataset {
        dir: parts[0].dir.clone(),
        manifest,
        groups,
        transcripts,
        parts,
        holdout_fraction: opts.holdout_fraction,
    })
}

/// Domain tag of the held-out choice.
const HOLDOUT: u64 = 0x686f_6c64;

impl Dataset {
    /// Whether group `g` is held out of training: a hash of its id below the held-out share, so the choice
    /// depends on nothing but the id (the same groups for every seed, worker count and resume).
    pub fn is_held_out(&self, g: u32) -> bool {
        if self.holdout_fraction <= 0.0 {
            return false;
        }
        let id = &self.groups[g as usize].id;
        let words: Vec<u64> = std::iter::once(HOLDOUT)
            .chain(id.as_bytes().chunks(8).map(|c| {
                let mut w = [0u8; 8];
                w[..c.len()].copy_from_slice(c);
                u64::from_le_bytes(w)
            }))
            .collect();
        let draw = rand::Rng::random::<f64>(&mut rng_for(&words));
        draw < self.holdout_fraction
    }

    /// The sampler of training batches: every part's groups that are not held out, in proportion to the
    /// parts' weights. Errors as [`Sampler::mixed`].
    pub fn training_sampler(&self, seed: u64, batch_size: usize) -> Result<Sampler> {
        let sets = self
            .parts
            .iter()
            .map(|p| {
                let groups = p.groups.iter().copied().filter(|&g| !self.is_held_out(g)).collect();
                (p.name.clone(), groups, p.weight)
            })
            .collect();
        Sampler::mixed(seed, batch_size, sets)
    }

    /// The groups held out of training, in index order.
    pub fn held_out_groups(&self) -> Vec<u32> {
        (0..self.groups.len() as u32).filter(|&g| self.is_held_out(g)).collect()
    }
}

#[cfg(test)]
mod tests;
