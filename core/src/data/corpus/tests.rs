use std::collections::HashSet;

use super::*;
use crate::data::Transcript;
use crate::data::dataset::Provenance;

/// Writes a dataset named `name` under `root`: one group per gene, `isoforms` transcripts each.
fn dataset(root: &Path, name: &str, genes: &[&str], isoforms: usize) -> PathBuf {
    let dir = root.join(name);
    let mut groups = Vec::new();
    let mut transcripts = Vec::new();
    for (g, gene) in genes.iter().enumerate() {
        let mut members = Vec::new();
        for i in 0..isoforms {
            members.push(transcripts.len() as u32);
            let seq = format!("ACGT{}", "A".repeat(g + i + 1));
            transcripts.push(
                Transcript::new(
                    format!("{gene}.{i}"),
                    *gene,
                    g as u32,
                    seq.as_bytes(),
                    vec![seq.len() as u32 - 1],
                    None,
                )
                .unwrap(),
            );
        }
        groups.push(Group {
            id: (*gene).to_owned(),
            transcripts: members,
        });
    }
    Dataset::write(
        &dir,
        &groups,
        &transcripts,
        Provenance {
            max_len: 1000,
            ..Default::default()
        },
    )
    .unwrap();
    dir
}

fn options(paths: Vec<PathBuf>) -> CorpusOptions {
    CorpusOptions {
        paths,
        weights: Vec::new(),
        orthology: None,
        holdout_fraction: 0.0,
    }
}

#[test]
fn datasets_merge_without_joining_groups_and_fingerprint_the_mix() {
    let root = tempfile::tempdir().unwrap();
    let a = dataset(root.path(), "human", &["G1", "G2", "G3"], 2);
    let b = dataset(root.path(), "mouse", &["G1", "G2"], 1);
    let c = open(&options(vec![a.clone(), b.clone()])).unwrap();
    let ids: Vec<&str> = c.groups.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(
        ids,
        ["human:G1", "human:G2", "human:G3", "mouse:G1", "mouse:G2"],
        "same gene ids stay apart"
    );
    assert_eq!(
        (
            c.manifest.groups,
            c.manifest.transcripts,
            c.manifest.groups_with_multiple
        ),
        (5, 8, 3)
    );
    for (g, group) in c.groups.iter().enumerate() {
        for &t in &group.transcripts {
            assert_eq!(c.transcripts[t as usize].group as usize, g);
        }
    }
    assert_eq!(
        c.parts.iter().map(|p| p.groups.clone()).collect::<Vec<_>>(),
        [vec![0, 1, 2], vec![3, 4]]
    );
    assert_eq!(
        c.parts.iter().map(|p| p.weight).collect::<Vec<_>>(),
        [3.0, 2.0],
        "default: by group count"
    );

    let alone = open(&options(vec![a.clone()])).unwrap();
    assert_eq!(
        alone.manifest.fingerprint,
        Dataset::open(&a).unwrap().manifest.fingerprint
    );
    let weighted = open(&CorpusOptions {
        weights: vec![1.0, 1.0],
        ..options(vec![a.clone(), b.clone()])
    })
    .unwrap();
    assert_ne!(
        weighted.manifest.fingerprint, c.manifest.fingerprint,
        "weights are part of the corpus"
    );
    let swapped = open(&options(vec![b, a])).unwrap();
    assert_ne!(swapped.manifest.fingerprint, c.manifest.fingerprint);
}

#[test]
fn orthology_joins_the_listed_genes_across_datasets_and_only_those() {
    let root = tempfile::tempdir().unwrap();
    let a = dataset(root.path(), "human", &["HA", "HB", "HC"], 1);
    let b = dataset(root.path(), "mouse", &["MA", "MB", "MC"], 2);
    let links = root.path().join("orthologs.tsv");
    std::fs::write(
        &links,
        "dataset\tgene_id\tgroup\nhuman\tHA\tO1\nmouse\tMA\tO1\nmouse\tMB\tO2\nhuman\tNOPE\tO3\n",
    )
    .unwrap();
    let c = open(&CorpusOptions {
        orthology: Some(links.clone()),
        ..options(vec![a, b])
    })
    .unwrap();
    let groups: Vec<(&str, Vec<&str>)> = c
        .groups
        .iter()
        .map(|g| {
            let members = g
                .transcripts
                .iter()
                .map(|&t| c.transcripts[t as usize].gene_id.as_str())
                .collect();
            (g.id.as_str(), members)
        })
        .collect();
    assert_eq!(
        groups,
        [
            ("orthology:O1", vec!["HA", "MA", "MA"]),
            ("human:HB", vec!["HB"]),
            ("human:HC", vec!["HC"]),
            ("orthology:O2", vec!["MB", "MB"]),
            ("mouse:MC", vec!["MC", "MC"]),
        ]
    );
    assert_eq!(
        c.parts[0].groups,
        [0, 1, 2],
        "the joined group belongs to the first dataset holding it"
    );
    assert_eq!(c.parts[1].groups, [3, 4]);
    assert!(
        c.manifest.notes[0].ends_with("5 transcripts of listed genes, 1 groups made of several"),
        "{:?}",
        c.manifest.notes
    );
}

#[test]
fn bad_orthology_rows_name_file_line_and_column() {
    let root = tempfile::tempdir().unwrap();
    let a = dataset(root.path(), "human", &["HA"], 1);
    let b = dataset(root.path(), "mouse", &["MA"], 1);
    let links = root.path().join("o.tsv");
    let err = |text: &str| {
        std::fs::write(&links, text).unwrap();
        open(&CorpusOptions {
            orthology: Some(links.clone()),
            ..options(vec![a.clone(), b.clone()])
        })
        .unwrap_err()
        .to_string()
    };
    let e = err("human\tHA\tO1\nrat\tRA\tO1\n");
    assert!(
        e.starts_with(&format!(
            "{}:2: column 1 (dataset): \"rat\" is not a dataset",
            links.display()
        )),
        "{e}"
    );
    let e = err("human\tHA\tO1\nhuman\tHA\tO2\n");
    assert!(
        e.starts_with(&format!("{}:2:", links.display())) && e.contains("in orthology group O1 at line 1"),
        "{e}"
    );
    let e = err("human\tHA\n");
    assert!(e.contains(":1: expected dataset<TAB>gene_id<TAB>group"), "{e}");
}

#[test]
fn duplicate_names_and_bad_settings_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let a = dataset(root.path(), "x", &["A", "B"], 1);
    std::fs::create_dir_all(root.path().join("other")).unwrap();
    let a2 = dataset(&root.path().join("other"), "x", &["C", "D"], 1);
    let e = open(&options(vec![a.clone(), a2])).unwrap_err().to_string();
    assert!(e.contains("are both named x"), "{e}");
    let e = open(&CorpusOptions {
        weights: vec![1.0, 2.0],
        ..options(vec![a.clone()])
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("2 weights for 1 datasets"), "{e}");
    let e = open(&CorpusOptions {
        holdout_fraction: 0.9,
        ..options(vec![a])
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("data.holdout_fraction"), "{e}");
}

#[test]
fn training_batches_mix_by_weight_and_never_draw_held_out_groups() {
    let root = tempfile::tempdir().unwrap();
    let genes: Vec<String> = (0..400).map(|i| format!("H{i}")).collect();
    let a = dataset(
        root.path(),
        "big",
        &genes.iter().map(String::as_str).collect::<Vec<_>>(),
        1,
    );
    let genes: Vec<String> = (0..100).map(|i| format!("M{i}")).collect();
    let b = dataset(
        root.path(),
        "small",
        &genes.iter().map(String::as_str).collect::<Vec<_>>(),
        1,
    );
    let c = open(&CorpusOptions {
        weights: vec![1.0, 1.0],
        holdout_fraction: 0.1,
        ..options(vec![a, b])
    })
    .unwrap();
    let held: HashSet<u32> = c.held_out_groups().into_iter().collect();
    assert!(
        (25..=75).contains(&held.len()),
        "about 10 % of 500 held out: {}",
        held.len()
    );
    let sampler = c.training_sampler(9, 20).unwrap();
    assert_eq!(sampler.quotas(), [10, 10]);
    let mut small = 0usize;
    let steps = 200;
    for step in 0..steps {
        for p in sampler.pairs(&c.groups, step) {
            assert!(
                !held.contains(&p.group),
                "held-out group {} drawn at step {step}",
                p.group
            );
            small += usize::from(c.parts[1].groups.contains(&p.group));
        }
    }
    let share = small as f64 / (steps as usize * 20) as f64;
    assert!(
        (share - 0.5).abs() < 1e-9,
        "equal weights give half of every batch: {share}"
    );
    // The held-out choice depends on group ids only.
    let again = open(&CorpusOptions {
        weights: vec![3.0, 1.0],
        holdout_fraction: 0.1,
        ..options(c.parts.iter().map(|p| p.dir.clone()).collect())
    })
    .unwrap();
    assert_eq!(again.held_out_groups().into_iter().collect::<HashSet<_>>(), held);
}

#[test]
fn a_corpus_file_makes_a_directory_stand_for_its_datasets() {
    let root = tempfile::tempdir().unwrap();
    dataset(root.path(), "human", &["HA", "HB"], 1);
    dataset(root.path(), "mouse", &["MA", "MB"], 1);
    std::fs::write(root.path().join("links.tsv"), "human\tHA\tO\nmouse\tMA\tO\n").unwrap();
    std::fs::write(
        root.path().join(CORPUS_FILE),
        "datasets = [\"human\", \"mouse\"]\nweights = [1.0, 3.0]\northology = \"links.tsv\"\n",
    )
    .unwrap();
    let opts = CorpusOptions::from_directory(root.path()).unwrap().unwrap();
    assert_eq!(opts.paths, [root.path().join("human"), root.path().join("mouse")]);
    assert_eq!(opts.weights, [1.0, 3.0]);
    assert_eq!(open(&opts).unwrap().groups.len(), 3, "HA and MA joined");
    assert!(
        CorpusOptions::from_directory(&root.path().join("human"))
            .unwrap()
            .is_none(),
        "a dataset"
    );
    std::fs::write(root.path().join(CORPUS_FILE), "dataset = [\"human\"]\n").unwrap();
    let e = CorpusOptions::from_directory(root.path()).unwrap_err().to_string();
    assert!(e.contains(CORPUS_FILE) && e.contains("dataset"), "{e}");
}
