//! End-to-end tests of `prep` on small hand-made files whose expected transcripts were worked out by
//! hand (letters, exon ends, CDS).

use std::io::Write;

use super::*;
use crate::data::transcript::CODON_TRACK;

// chr1: 10 filler | exon 11-18 GGATGAAA | intron 19-28 | exon 29-36 CCCTAAGG | 4 filler.
// chr2: 5 filler (tx3's exon 1-5, minus) | exon 6-11 ATTCAG | intron 12-19 | exon 20-25 GGCATT | 5 filler.
const GENOME: &str = ">chr1 test chromosome\nCCCCCCCCCCGGATGAAAGTAAGTCCAG\nCCCTAAGGTTTT\n\
                      >chr2\nGGGGGATTCAGCTTACCACGGCATTAAAAA\n";

/// tx1 (+, g1): GGATGAAA + CCCTAAGG = GGATGAAACCCTAAGG, CDS ATG AAA CCC TAA = [2, 14).
/// tx1b (+, g1): GGATGAAA, non-coding.
/// tx2 (−, g2): rc(GGCATT) + rc(ATTCAG) = AATGCC + CTGAAT, CDS ATG CCC TGA = [1, 10).
/// tx3 (−, g3): rc(GGGGG) = CCCCC, non-coding.
const GTF: &str = "#!genome-build test\n\
chr1\tt\tgene\t11\t36\t.\t+\t.\tgene_id \"g1\";\n\
chr1\tt\ttranscript\t11\t36\t.\t+\t.\tgene_id \"g1\"; transcript_id \"tx1\";\n\
chr1\tt\texon\t11\t18\t.\t+\t.\tgene_id \"g1\"; transcript_id \"tx1\";\n\
chr1\tt\texon\t29\t36\t.\t+\t.\tgene_id \"g1\"; transcript_id \"tx1\";\n\
chr1\tt\tCDS\t13\t18\t.\t+\t0\tgene_id \"g1\"; transcript_id \"tx1\";\n\
chr1\tt\tCDS\t29\t31\t.\t+\t0\tgene_id \"g1\"; transcript_id \"tx1\";\n\
chr1\tt\tstart_codon\t13\t15\t.\t+\t0\tgene_id \"g1\"; transcript_id \"tx1\";\n\
chr1\tt\tstop_codon\t32\t34\t.\t+\t0\tgene_id \"g1\"; transcript_id \"tx1\";\n\
chr1\tt\texon\t11\t18\t.\t+\t.\tgene_id \"g1\"; transcript_id \"tx1b\";\n\
chr2\tt\texon\t20\t25\t.\t-\t.\tgene_id \"g2\"; transcript_id \"tx2\";\n\
chr2\tt\texon\t6\t11\t.\t-\t.\tgene_id \"g2\"; transcript_id \"tx2\";\n\
chr2\tt\tCDS\t20\t24\t.\t-\t0\tgene_id \"g2\"; transcript_id \"tx2\";\n\
chr2\tt\tCDS\t11\t11\t.\t-\t1\tgene_id \"g2\"; transcript_id \"tx2\";\n\
chr2\tt\tstart_codon\t22\t24\t.\t-\t0\tgene_id \"g2\"; transcript_id \"tx2\";\n\
chr2\tt\tstop_codon\t8\t10\t.\t-\t0\tgene_id \"g2\"; transcript_id \"tx2\";\n\
chr2\tt\texon\t1\t5\t.\t-\t.\tgene_id \"g3\"; transcript_id \"tx3\";\n";

/// The same transcripts in GFF3: CDS records include the stop codon, one exon has two parents,
/// ids come from `transcript_id`/`gene_id` attributes where present, and a gene follows its child.
const GFF3: &str = "##gff-version 3\n\
chr1\tt\tgene\t11\t36\t.\t+\t.\tID=gene1;gene_id=g1\n\
chr1\tt\tmRNA\t11\t36\t.\t+\t.\tID=tx1;Parent=gene1\n\
chr1\tt\tncRNA\t11\t18\t.\t+\t.\tID=rna-b;Parent=gene1;transcript_id=tx1b\n\
chr1\tt\texon\t11\t18\t.\t+\t.\tParent=tx1,rna-b\n\
chr1\tt\texon\t29\t36\t.\t+\t.\tParent=tx1\n\
chr1\tt\tCDS\t13\t18\t.\t+\t0\tID=cds1;Parent=tx1\n\
chr1\tt\tCDS\t29\t34\t.\t+\t0\tID=cds1;Parent=tx1\n\
chr2\tt\tgene\t6\t25\t.\t-\t.\tID=g2\n\
chr2\tt\tmRNA\t6\t25\t.\t-\t.\tID=tx2;Parent=g2\n\
chr2\tt\texon\t6\t11\t.\t-\t.\tParent=tx2\n\
chr2\tt\texon\t20\t25\t.\t-\t.\tParent=tx2\n\
chr2\tt\tCDS\t20\t24\t.\t-\t0\tID=cds2;Parent=tx2\n\
chr2\tt\tCDS\t8\t11\t.\t-\t1\tID=cds2;Parent=tx2\n\
chr2\tt\tlnc_RNA\t1\t5\t.\t-\t.\tID=tx3;Parent=g3\n\
chr2\tt\texon\t1\t5\t.\t-\t.\tParent=tx3\n\
chr2\tt\tgene\t1\t5\t.\t-\t.\tID=g3\n\
##FASTA\n>chr1\nACGT\n";

const TRANSCRIPTS: &str =
    ">tx1 a description\nGGATGAAACC\nCTAAGG\n>tx2|g2|extra\nAATGCCCTGAAT\n>tx3\nCCCCC\n>orphan\nACGT\n";

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Self {
        let files = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        files.write("genome.fa", GENOME);
        files.write("a.gtf", GTF);
        files
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn write_gz(&self, name: &str, text: &str) -> PathBuf {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(text.as_bytes()).unwrap();
        let path = self.path(name);
        std::fs::write(&path, enc.finish().unwrap()).unwrap();
        path
    }

    fn genome_opts(&self, gtf: &str, out: &str) -> PrepOptions {
        PrepOptions {
            max_len: 100,
            ..PrepOptions::new(
                PrepInput::Genome {
                    annotation: self.path(gtf),
                    genome: self.path("genome.fa"),
                },
                self.path(out),
            )
        }
    }

    /// Transcript-FASTA mode over `a.gtf`.
    fn transcript_opts(&self, fasta: &Path, out: &str) -> PrepOptions {
        PrepOptions {
            max_len: 100,
            ..PrepOptions::new(
                PrepInput::Transcripts {
                    annotation: self.path("a.gtf"),
                    transcripts: fasta.to_owned(),
                },
                self.path(out),
            )
        }
    }

    fn run(&self, opts: &PrepOptions) -> (Manifest, Dataset) {
        let manifest = prep(opts).unwrap();
        (manifest, Dataset::open(&opts.out).unwrap())
    }

    fn error(&self, opts: &PrepOptions) -> String {
        prep(opts).unwrap_err().to_string()
    }
}

/// id, letters, exon ends, CDS.
type Summary = (String, String, Vec<u32>, Option<(u32, u32)>);

fn summary(d: &Dataset) -> Vec<Summary> {
    d.transcripts
        .iter()
        .map(|t| {
            (
                t.id.clone(),
                String::from_utf8(t.sequence()).unwrap(),
                t.exon_ends.clone(),
                t.cds,
            )
        })
        .collect()
}

fn expected() -> Vec<Summary> {
    [
        ("tx1", "GGATGAAACCCTAAGG", vec![7, 15], Some((2, 14))),
        ("tx1b", "GGATGAAA", vec![7], None),
        ("tx2", "AATGCCCTGAAT", vec![5, 11], Some((1, 10))),
        ("tx3", "CCCCC", vec![4], None),
    ]
    .into_iter()
    .map(|(id, s, e, c)| (id.to_owned(), s.to_owned(), e, c))
    .collect()
}

fn assert_parse_error(err: &str, path: &Path, line: usize, what: &str) {
    let at = format!("{}:{line}:", path.display());
    assert!(
        err.contains(&at) && err.contains(what),
        "expected {at:?} and {what:?} in: {err}"
    );
}

#[test]
fn genome_mode_builds_plus_minus_and_non_coding_transcripts() {
    let f = Files::new();
    let (m, d) = f.run(&f.genome_opts("a.gtf", "out"));
    assert_eq!(summary(&d), expected());
    assert_eq!(
        (m.transcripts, m.groups, m.groups_with_multiple, m.coding_transcripts),
        (4, 3, 1, 2)
    );
    assert!(m.dropped.is_empty());
    let ids: Vec<(&str, &[u32])> = d
        .groups
        .iter()
        .map(|g| (g.id.as_str(), g.transcripts.as_slice()))
        .collect();
    assert_eq!(ids, vec![("g1", &[0, 1][..]), ("g2", &[2][..]), ("g3", &[3][..])]);
    assert_eq!(
        d.transcripts.iter().map(|t| t.group).collect::<Vec<_>>(),
        vec![0, 0, 1, 2]
    );
    // The codon track starts on the ATG and marks whole codons up to and including the stop.
    for (t, starts) in [
        (&d.transcripts[0], vec![2, 5, 8, 11]),
        (&d.transcripts[2], vec![1, 4, 7]),
    ] {
        let (start, _) = t.cds.unwrap();
        assert_eq!(&t.sequence()[start as usize..start as usize + 3], b"ATG");
        let codons: Vec<usize> = t
            .tracks()
            .iter()
            .enumerate()
            .filter(|(_, r)| r[CODON_TRACK] == 1.0)
            .map(|(p, _)| p)
            .collect();
        assert_eq!(codons, starts, "{}", t.id);
    }
    assert_eq!(
        m.sources,
        vec![
            f.path("a.gtf").display().to_string(),
            f.path("genome.fa").display().to_string()
        ]
    );
}

#[test]
fn gtf_without_stop_codon_records_gets_the_3_nt_after_the_cds() {
    let f = Files::new();
    let no_stop: String = GTF
        .lines()
        .filter(|l| !l.contains("stop_codon"))
        .map(|l| format!("{l}\n"))
        .collect();
    f.write("no_stop.gtf", &no_stop);
    let (_, d) = f.run(&f.genome_opts("no_stop.gtf", "out"));
    assert_eq!(summary(&d), expected());

    // A GTF whose CDS already holds the stop (as gffread writes it) is not extended a second time.
    let with_stop = no_stop
        .replace("CDS\t29\t31\t", "CDS\t29\t34\t")
        .replace("CDS\t11\t11\t", "CDS\t8\t11\t");
    f.write("cds_with_stop.gtf", &with_stop);
    let (_, d) = f.run(&f.genome_opts("cds_with_stop.gtf", "out2"));
    assert_eq!(summary(&d), expected());

    // A file that annotates stop codons is taken at its word: tx2 without one keeps its CDS as is.
    let partial: String = GTF
        .lines()
        .filter(|l| !(l.contains("stop_codon") && l.contains("tx2")))
        .map(|l| format!("{l}\n"))
        .collect();
    f.write("partial.gtf", &partial);
    let (_, d) = f.run(&f.genome_opts("partial.gtf", "out3"));
    assert_eq!(d.transcript("tx1").unwrap().cds, Some((2, 14)));
    assert_eq!(d.transcript("tx2").unwrap().cds, Some((1, 7)));
}

#[test]
fn gff3_gives_the_same_dataset_as_gtf() {
    let f = Files::new();
    f.write("a.gff3", GFF3);
    let (m_gtf, _) = f.run(&f.genome_opts("a.gtf", "out_gtf"));
    let (m_gff, d) = f.run(&f.genome_opts("a.gff3", "out_gff"));
    assert_eq!(summary(&d), expected());
    assert_eq!(m_gff.fingerprint, m_gtf.fingerprint);
    // Detected by the first line too.
    f.write("a.annotation", GFF3);
    let (m, _) = f.run(&f.genome_opts("a.annotation", "out_any"));
    assert_eq!(m.fingerprint, m_gtf.fingerprint);
}

#[test]
fn transcript_fasta_mode_matches_ids_and_counts_what_it_skips() {
    let f = Files::new();
    f.write("tx.fa", TRANSCRIPTS);
    let opts = f.transcript_opts(&f.path("tx.fa"), "out");
    let (m, d) = f.run(&opts);
    let want: Vec<_> = expected().into_iter().filter(|t| t.0 != "tx1b").collect();
    assert_eq!(summary(&d), want);
    assert_eq!(
        m.dropped,
        vec![
            Dropped {
                id: "orphan".into(),
                reason: NO_EXONS.into()
            },
            Dropped {
                id: "tx1b".into(),
                reason: NO_SEQUENCE.into()
            },
        ]
    );
    assert_eq!(m.dropped_counts.get(NO_SEQUENCE), Some(&1));
    assert_eq!(m.dropped_counts.get(NO_EXONS), Some(&1));
}

#[test]
fn gzipped_inputs_give_the_same_dataset() {
    let f = Files::new();
    f.write_gz("a.gtf.gz", GTF);
    f.write_gz("genome.fa.gz", GENOME);
    let (plain, _) = f.run(&f.genome_opts("a.gtf", "out_plain"));
    let mut opts = f.genome_opts("a.gtf.gz", "out_gz");
    set_genome(&mut opts, f.path("genome.fa.gz"));
    let (gz, d) = f.run(&opts);
    assert_eq!(summary(&d), expected());
    assert_eq!(gz.fingerprint, plain.fingerprint);
}

#[test]
fn homology_table_merges_genes_into_groups() {
    let f = Files::new();
    f.write(
        "homology.tsv",
        "gene_id\tgroup_id\n# paralogs\ng1\tH1\n\ng2\tH1\nunused\tH9\n",
    );
    let mut opts = f.genome_opts("a.gtf", "out");
    opts.homology = Some(f.path("homology.tsv"));
    let (m, d) = f.run(&opts);
    let groups: Vec<(&str, &[u32])> = d
        .groups
        .iter()
        .map(|g| (g.id.as_str(), g.transcripts.as_slice()))
        .collect();
    assert_eq!(groups, vec![("H1", &[0, 1, 2][..]), ("g3", &[3][..])]);
    assert_eq!(
        d.transcripts.iter().map(|t| t.group).collect::<Vec<_>>(),
        vec![0, 0, 0, 1]
    );
    assert_eq!((m.groups, m.groups_with_multiple), (2, 1));
    assert_eq!(m.sources.len(), 3);
}

#[test]
fn over_length_transcripts_are_dropped_and_counted() {
    let f = Files::new();
    let mut opts = f.genome_opts("a.gtf", "out");
    opts.max_len = 12;
    let (m, d) = f.run(&opts);
    assert_eq!(
        d.transcripts.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        vec!["tx1b", "tx2", "tx3"]
    );
    assert_eq!(
        m.dropped,
        vec![Dropped {
            id: "tx1".into(),
            reason: "longer than 12 nt".into()
        }]
    );
    assert_eq!(m.dropped_counts.get("longer than 12 nt"), Some(&1));
    assert_eq!(m.max_len, 12);
}

#[test]
fn output_is_byte_identical_when_run_twice() {
    let f = Files::new();
    f.write("homology.tsv", "g1\tH1\ng3\tH1\n");
    let mut opts = f.genome_opts("a.gtf", "out1");
    opts.homology = Some(f.path("homology.tsv"));
    let (m1, _) = f.run(&opts);
    opts.out = f.path("out2");
    let (m2, _) = f.run(&opts);
    assert_eq!(m1, m2);
    for entry in m1.files.iter().map(|e| e.name.as_str()).chain(["manifest.json"]) {
        let a = std::fs::read(f.path("out1").join(entry)).unwrap();
        let b = std::fs::read(f.path("out2").join(entry)).unwrap();
        assert_eq!(a, b, "{entry}");
    }
}

/// Writes `line2` after one good exon line of tx1 and returns the genome-mode error.
fn error_with_line2(f: &Files, line2: &str) -> (PathBuf, String) {
    let text = format!("chr1\tt\texon\t11\t18\t.\t+\t.\tgene_id \"g1\"; transcript_id \"tx1\";\n{line2}\n");
    let path = f.write("bad.gtf", &text);
    (path, f.error(&f.genome_opts("bad.gtf", "out")))
}

#[test]
fn malformed_records_name_file_and_line() {
    let f = Files::new();
    let attrs = "gene_id \"g1\"; transcript_id \"tx1\";";
    let cases = [
        (
            format!("chr1\tt\texon\t29\t36\t.\t+\t{attrs}"),
            "expected 9 tab-separated columns, found 8",
        ),
        (
            format!("chr1\tt\texon\tx29\t36\t.\t+\t.\t{attrs}"),
            "start \"x29\" is not a positive integer",
        ),
        (
            format!("chr1\tt\texon\t29\t3.6\t.\t+\t.\t{attrs}"),
            "end \"3.6\" is not a positive integer",
        ),
        (
            format!("chr1\tt\texon\t0\t36\t.\t+\t.\t{attrs}"),
            "start \"0\" is not a positive integer",
        ),
        (
            format!("chr1\tt\texon\t36\t29\t.\t+\t.\t{attrs}"),
            "start 36 is greater than end 29",
        ),
        (format!("chr1\tt\texon\t29\t36\t.\t*\t.\t{attrs}"), "invalid strand"),
        // `?` is GFF3's, not GTF's: the message lists what GTF allows.
        (
            format!("chr1\tt\texon\t29\t36\t.\t?\t.\t{attrs}"),
            "invalid strand \"?\" (expected +, - or .)",
        ),
        // Lines of features prep does not keep are checked as strictly as exon lines.
        (
            format!("chr1\tt\ttranscript\t11\t36\t.\t+\t.\t{attrs}\textra"),
            "malformed attributes",
        ),
        (
            "chr1\tt\tgene\t11\t36\t.\t+\t.\tgene_id \"g1".to_owned(),
            "malformed attributes",
        ),
        (format!("chr1\tt\tCDS\t29\t36\t.\t+\t5\t{attrs}"), "invalid phase"),
        (
            "chr1\tt\texon\t29\t36\t.\t+\t.\tgene_id \"g1\";".to_owned(),
            "missing transcript_id",
        ),
        (
            "chr1\tt\texon\t29\t36\t.\t+\t.\ttranscript_id \"tx1\";".to_owned(),
            "missing gene_id",
        ),
        (
            "chr1\tt\texon\t29\t36\t.\t+\t.\tgene_id \"g1\" transcript_id".to_owned(),
            "malformed attributes",
        ),
        (
            "chr1\tt\texon\t29\t36\t.\t+\t.\tgene_id \"g2\"; transcript_id \"tx1\";".to_owned(),
            "gene g2 here but g1 at line 1",
        ),
        (
            "chr2\tt\texon\t29\t36\t.\t+\t.\tgene_id \"g1\"; transcript_id \"tx1\";".to_owned(),
            "on chr2 here but on chr1",
        ),
        (
            format!("chr1\tt\texon\t29\t36\t.\t-\t.\t{attrs}"),
            "strand differs from line 1",
        ),
        (
            format!("chr1\tt\texon\t15\t20\t.\t+\t.\t{attrs}"),
            "overlaps its exon 11-18",
        ),
    ];
    for (line2, why) in cases {
        let (path, err) = error_with_line2(&f, &line2);
        assert_parse_error(&err, &path, 2, why);
    }
}

#[test]
fn cds_outside_the_exons_is_an_error_naming_the_line() {
    let f = Files::new();
    for ty in ["CDS", "start_codon", "stop_codon"] {
        let (path, err) = error_with_line2(
            &f,
            &format!("chr1\tt\t{ty}\t17\t20\t.\t+\t0\tgene_id \"g1\"; transcript_id \"tx1\";"),
        );
        assert_parse_error(&err, &path, 2, "CDS outside the exons");
        assert!(err.contains(ty), "{err}");
    }
}

#[test]
fn unknown_sequence_and_exon_beyond_the_chromosome_are_errors() {
    let f = Files::new();
    let (path, err) = error_with_line2(
        &f,
        "chrX\tt\texon\t1\t5\t.\t+\t.\tgene_id \"g9\"; transcript_id \"tx9\";",
    );
    assert_parse_error(&err, &path, 2, "unknown sequence name chrX");
    let (path, err) = error_with_line2(
        &f,
        "chr2\tt\texon\t25\t31\t.\t+\t.\tgene_id \"g9\"; transcript_id \"tx9\";",
    );
    assert_parse_error(&err, &path, 2, "extends beyond the end of chr2 (30 nt");
    let genome = f.write("dup.fa", &format!(">chrZ\nACGT\n>chrZ\nACGT\n{GENOME}"));
    let mut opts = f.genome_opts("a.gtf", "out");
    set_genome(&mut opts, genome.clone());
    assert_parse_error(
        &f.error(&opts),
        &genome,
        3,
        "duplicate sequence name chrZ (first at line 1)",
    );
}

#[test]
fn transcript_fasta_length_mismatch_names_both_files() {
    let f = Files::new();
    let fasta = f.write("tx.fa", ">tx3\nCCCCC\n>tx1\nGGATGAAACCCTAAG\n");
    let mut opts = f.transcript_opts(&fasta, "out");
    let err = f.error(&opts);
    assert_parse_error(&err, &f.path("a.gtf"), 4, "has 15 nt but its exons sum to 16 nt");
    assert!(err.contains(&format!("{}:3", fasta.display())), "{err}");
    let fasta = f.write("dup.fa", ">tx3\nCCCCC\n>tx3\nCCCCC\n");
    opts = f.transcript_opts(&fasta, "out");
    assert_parse_error(&f.error(&opts), &fasta, 3, "second sequence for transcript tx3");
}

#[test]
fn empty_inputs_are_errors_naming_the_file() {
    let f = Files::new();
    let empty = f.write("empty.gtf", "");
    let err = f.error(&f.genome_opts("empty.gtf", "out"));
    assert!(
        err.contains(&empty.display().to_string()) && err.contains("empty annotation"),
        "{err}"
    );
    let genes_only = f.write("genes.gtf", "#c\nchr1\tt\tgene\t11\t36\t.\t+\t.\tgene_id \"g1\";\n");
    let err = f.error(&f.genome_opts("genes.gtf", "out"));
    assert!(
        err.contains(&genes_only.display().to_string()) && err.contains("no transcripts"),
        "{err}"
    );
    let genome = f.write("empty.fa", "");
    let mut opts = f.genome_opts("a.gtf", "out");
    set_genome(&mut opts, genome.clone());
    let err = f.error(&opts);
    assert!(
        err.contains(&genome.display().to_string()) && err.contains("no FASTA records"),
        "{err}"
    );
    opts.max_len = 3;
    set_genome(&mut opts, f.path("genome.fa"));
    let err = f.error(&opts);
    assert!(
        err.contains("no transcript left") && err.contains("4 longer than 3 nt"),
        "{err}"
    );
    assert!(!f.path("out").join("manifest.json").exists());
}

#[test]
fn gff3_errors_name_file_and_line() {
    let f = Files::new();
    let text = "##gff-version 3\nchr1\tt\tmRNA\t11\t36\t.\t+\t.\tID=tx1\nchr1\tt\texon\t11\t18\t.\t+\t.\tParent=tx7\n";
    let path = f.write("bad.gff3", text);
    assert_parse_error(
        &f.error(&f.genome_opts("bad.gff3", "out")),
        &path,
        3,
        "Parent tx7 is not the ID of any feature",
    );
    let text = "##gff-version 3\nchr1\tt\texon\t11\t18\t.\t+\t.\tID=e1\n";
    let path = f.write("orphan.gff3", text);
    assert_parse_error(
        &f.error(&f.genome_opts("orphan.gff3", "out")),
        &path,
        2,
        "exon record without a Parent",
    );
    let text = "##gff-version 3\nchr1\tt\tmRNA\t11\t36\t.\t+\t.\tID=tx1\nchr1\tt\tCDS\t5\t12\t.\t+\t0\tParent=tx1\nchr1\tt\texon\t11\t18\t.\t+\t.\tParent=tx1\n";
    let path = f.write("cds.gff3", text);
    assert_parse_error(
        &f.error(&f.genome_opts("cds.gff3", "out")),
        &path,
        3,
        "CDS outside the exons",
    );
}

#[test]
fn homology_errors_name_file_and_line() {
    let f = Files::new();
    let mut opts = f.genome_opts("a.gtf", "out");
    for (text, line, why) in [
        (
            "g1\tH1\nbad line\n",
            2,
            "expected gene_id<TAB>group_id, found 1 columns",
        ),
        ("# x\ng1\tH1\tH2\n", 2, "found 3 columns"),
        (
            "g1\tH1\ng1\tH2\n",
            2,
            "gene g1 is in group H1 at line 1 and in group H2 here",
        ),
        ("g1\t\n", 1, "empty gene_id or group_id"),
    ] {
        let path = f.write("h.tsv", text);
        opts.homology = Some(path.clone());
        assert_parse_error(&f.error(&opts), &path, line, why);
    }
}

/// Points a genome-mode `opts` at another genome FASTA.
fn set_genome(opts: &mut PrepOptions, path: PathBuf) {
    if let PrepInput::Genome { genome, .. } = &mut opts.input {
        *genome = path;
    }
}
