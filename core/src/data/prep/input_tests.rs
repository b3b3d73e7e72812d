//! Tests of the inputs without a GTF (transcript tables), inferred coding regions and transcripts of unknown
//! strand, on small hand-written files.

use std::path::{Path, PathBuf};

use super::*;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// An ORF of ATG + 2 codons + TAA, after a 2-nt 5'UTR: [2, 14).
const CODING: &str = "CCATGGCTGCTTAAGG";

#[test]
fn a_table_becomes_a_dataset_grouped_by_group_then_gene() {
    let dir = tempfile::tempdir().unwrap();
    let table = write(
        dir.path(),
        "t.tsv",
        &format!(
            "id\tsequence\tgene\tgroup\tcds_start\tcds_end\texon_ends\n\
             a1\t{CODING}\tGA\tFAM1\t2\t14\t5\n\
             a2\tACGUACGU\tGA\tFAM1\t\t\t\n\
             b1\tGGGGCCCC\tGB\tFAM1\t\t\t3,7\n\
             c1\tTTTTTTTTTTTTTTTTTTTTTT\tGC\tGC\t\t\t\n"
        ),
    );
    let opts = PrepOptions {
        max_len: 20,
        ..PrepOptions::new(PrepInput::Table(table.clone()), dir.path().join("out"))
    };
    let m = prep(&opts).unwrap();
    let d = Dataset::open(&opts.out).unwrap();
    let ids: Vec<&str> = d.groups.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(ids, ["FAM1"], "c1 is over the length limit");
    type Row<'a> = (&'a str, &'a str, &'a [u32], Option<(u32, u32)>);
    let t: Vec<Row> = d
        .transcripts
        .iter()
        .map(|t| (t.id.as_str(), t.gene_id.as_str(), t.exon_ends.as_slice(), t.cds))
        .collect();
    assert_eq!(
        t,
        [
            ("a1", "GA", &[5, 15][..], Some((2, 14))),
            ("a2", "GA", &[7][..], None),
            ("b1", "GB", &[3, 7][..], None),
        ]
    );
    assert_eq!(m.dropped_counts.get("longer than 20 nt"), Some(&1));
    assert_eq!(m.sources, [table.display().to_string()]);
    assert_eq!((m.cds_source.as_str(), m.cds_inferred), ("annotation", 0));
}

#[test]
fn a_table_without_groups_uses_genes_and_the_homology_table() {
    let dir = tempfile::tempdir().unwrap();
    let table = write(
        dir.path(),
        "t.csv",
        "id,sequence,gene\nx1,ACGT,G1\nx2,ACGA,G1\ny1,ACGG,G2\nz1,ACGC,G3\n",
    );
    let homology = write(dir.path(), "h.tsv", "gene_id\tgroup_id\nG2\tH\nG3\tH\n");
    let opts = PrepOptions {
        homology: Some(homology),
        ..PrepOptions::new(PrepInput::Table(table), dir.path().join("out"))
    };
    let m = prep(&opts).unwrap();
    let d = Dataset::open(&opts.out).unwrap();
    let groups: Vec<(&str, usize)> = d.groups.iter().map(|g| (g.id.as_str(), g.transcripts.len())).collect();
    assert_eq!(groups, [("G1", 2), ("H", 2)]);
    assert!(
        m.notes.iter().any(|n| n.contains("no exon_ends column")),
        "missing exon ends are stated: {:?}",
        m.notes
    );
}

#[test]
fn longest_orf_fills_only_transcripts_without_a_cds_and_the_manifest_says_so() {
    let dir = tempfile::tempdir().unwrap();
    // a1 is annotated with a CDS the ORF finder would not choose; a2 has an ORF; a3 has none.
    let table = write(
        dir.path(),
        "t.tsv",
        &format!(
            "id\tsequence\tgene\tcds_start\tcds_end\n\
             a1\t{CODING}\tG\t5\t11\n\
             a2\t{CODING}\tG\t\t\n\
             a3\tCCCCCCCC\tG\t\t\n"
        ),
    );
    let opts = PrepOptions {
        cds: CdsSource::LongestOrf { min_codons: 3 },
        ..PrepOptions::new(PrepInput::Table(table), dir.path().join("out"))
    };
    let m = prep(&opts).unwrap();
    let d = Dataset::open(&opts.out).unwrap();
    let cds: Vec<Option<(u32, u32)>> = d.transcripts.iter().map(|t| t.cds).collect();
    assert_eq!(cds, [Some((5, 11)), Some((2, 14)), None]);
    assert_eq!(m.cds_inferred, 1);
    assert!(
        m.cds_source.contains("longest") && m.cds_source.contains("3 codons"),
        "{}",
        m.cds_source
    );
    assert_eq!(m.coding_transcripts, 2);
    assert!(
        !m.notes.iter().any(|n| n.contains("codon track is zeros")),
        "{:?}",
        m.notes
    );
}

#[test]
fn bad_tables_are_errors_naming_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let no_sequence = write(dir.path(), "a.tsv", "id\tgene\nx\tG\n");
    let err = prep(&PrepOptions::new(
        PrepInput::Table(no_sequence.clone()),
        dir.path().join("o1"),
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(&no_sequence.display().to_string()) && err.contains("no column `sequence`"),
        "{err}"
    );
    let bad_letter = write(dir.path(), "b.tsv", "id\tsequence\tgene\nx\tACGT\tG\ny\tAC9T\tG\n");
    let err = prep(&PrepOptions::new(
        PrepInput::Table(bad_letter.clone()),
        dir.path().join("o2"),
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with(&format!("{}:3: column `sequence`", bad_letter.display())),
        "{err}"
    );
    let empty_gene = write(dir.path(), "c.tsv", "id\tsequence\tgene\nx\tACGT\t\n");
    let err = prep(&PrepOptions::new(
        PrepInput::Table(empty_gene.clone()),
        dir.path().join("o3"),
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with(&format!("{}:2: column `gene`", empty_gene.display())),
        "{err}"
    );
    assert!(!dir.path().join("o1").exists() && !dir.path().join("o2").exists());
}

/// tx1 on `+`, tx2 of unknown strand (StringTie writes `.` for single-exon assemblies).
const GTF: &str = "chr1\tt\texon\t1\t8\t.\t+\t.\tgene_id \"g1\"; transcript_id \"tx1\";\n\
                   chr1\tt\texon\t11\t16\t.\t.\t.\tgene_id \"g2\"; transcript_id \"tx2\";\n";
const GENOME: &str = ">chr1\nACGTACGTCCGGATCCAA\n";

#[test]
fn unknown_strand_is_kept_as_given_and_noted_or_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let input = PrepInput::Genome {
        annotation: write(dir.path(), "a.gtf", GTF),
        genome: write(dir.path(), "g.fa", GENOME),
    };
    let keep = PrepOptions::new(input.clone(), dir.path().join("keep"));
    let m = prep(&keep).unwrap();
    let d = Dataset::open(&keep.out).unwrap();
    let tx2 = d.transcripts.iter().find(|t| t.id == "tx2").unwrap();
    assert_eq!(
        tx2.sequence(),
        b"GGATCC",
        "ascending coordinates, not reverse-complemented"
    );
    assert!(
        m.notes.iter().any(|n| n.starts_with("1 transcripts of unknown strand")),
        "{:?}",
        m.notes
    );

    let drop = PrepOptions {
        unstranded: Unstranded::Drop,
        ..PrepOptions::new(input, dir.path().join("drop"))
    };
    let m = prep(&drop).unwrap();
    assert_eq!(m.transcripts, 1);
    assert_eq!(m.dropped_counts.get(UNKNOWN_STRAND), Some(&1));
    assert!(m.notes.is_empty());
}

#[test]
fn a_transcript_mixing_known_and_unknown_strand_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let gtf = write(
        dir.path(),
        "a.gtf",
        "chr1\tt\texon\t1\t4\t.\t+\t.\tgene_id \"g1\"; transcript_id \"tx1\";\n\
         chr1\tt\texon\t9\t12\t.\t.\t.\tgene_id \"g1\"; transcript_id \"tx1\";\n",
    );
    let opts = PrepOptions::new(
        PrepInput::Genome {
            annotation: gtf.clone(),
            genome: write(dir.path(), "g.fa", GENOME),
        },
        dir.path().join("out"),
    );
    let err = prep(&opts).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{}:2:", gtf.display())) && err.contains("strand differs"),
        "{err}"
    );
}
