//! `prep` on real data: the IsoformSwitchAnalyzeR example (Debian `r-bioc-isoformswitchanalyzer`,
//! 1,092 human chr1 transcripts of 375 genes, GTF with exon and CDS records plus the transcript
//! FASTA), fetched by `scripts/fetch-example-data.sh` (TOOLCHAIN.md, "Real data obtainable").
//!
//! Set `ISOCLR_SKIP_REAL_DATA=1` to skip on a machine without apt; otherwise a failed fetch fails.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use isoclr::data::Dataset;
use isoclr::data::dataset::DEFAULT_MAX_LEN;
use isoclr::data::prep::{PrepInput, PrepOptions, prep};

/// Runs the fetch script once per test process; `None` (with a loud notice) only when
/// `ISOCLR_SKIP_REAL_DATA=1`.
fn example() -> Option<(PathBuf, PathBuf)> {
    static PATHS: OnceLock<Option<(PathBuf, PathBuf)>> = OnceLock::new();
    PATHS.get_or_init(fetch).clone()
}

fn fetch() -> Option<(PathBuf, PathBuf)> {
    if std::env::var("ISOCLR_SKIP_REAL_DATA").as_deref() == Ok("1") {
        let notice = "\n*** ISOCLR_SKIP_REAL_DATA=1: SKIPPING the real-data prep tests ***\n";
        eprintln!("{notice}");
        // Also straight to the process's stderr, which the test harness does not capture.
        let _ = writeln!(std::io::stderr(), "{notice}");
        return None;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fetch-example-data.sh");
    let out = Command::new("bash").arg(&script).output().expect("cannot run bash");
    assert!(
        out.status.success(),
        "{} failed (set ISOCLR_SKIP_REAL_DATA=1 to skip on a machine without apt):\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let paths: Vec<PathBuf> = stdout.lines().map(PathBuf::from).collect();
    assert_eq!(paths.len(), 2, "unexpected script output: {stdout}");
    assert!(paths[0].ends_with("example.gtf.gz") && paths[1].ends_with("example_isoform_nt.fasta.gz"));
    Some((paths[0].clone(), paths[1].clone()))
}

/// The FASTA's sequences by header word, read independently of `prep` (plain gzip + line loop).
fn fasta_sequences(path: &Path) -> HashMap<String, Vec<u8>> {
    let file = std::fs::File::open(path).unwrap();
    let reader = BufReader::new(flate2::read::MultiGzDecoder::new(file));
    let mut seqs: HashMap<String, Vec<u8>> = HashMap::new();
    let mut name = String::new();
    for line in reader.lines() {
        let line = line.unwrap();
        if let Some(header) = line.strip_prefix('>') {
            name = header.split_whitespace().next().unwrap().to_owned();
            assert!(seqs.insert(name.clone(), Vec::new()).is_none(), "duplicate {name}");
        } else {
            seqs.get_mut(&name)
                .unwrap()
                .extend(line.trim().bytes().map(|b| b.to_ascii_uppercase()));
        }
    }
    seqs
}

fn run(gtf: &Path, fasta: &Path, max_len: u32) -> (tempfile::TempDir, Dataset) {
    let dir = tempfile::tempdir().unwrap();
    let opts = PrepOptions {
        max_len,
        ..PrepOptions::new(
            PrepInput::Transcripts {
                annotation: gtf.to_owned(),
                transcripts: fasta.to_owned(),
            },
            dir.path().join("dataset"),
        )
    };
    prep(&opts).unwrap();
    let dataset = Dataset::open(&opts.out).unwrap();
    (dir, dataset)
}

/// Checks sequences, exon ends and CDS of every kept transcript against the FASTA.
/// Returns how many CDSs end on a stop codon.
fn check_transcripts(dataset: &Dataset, seqs: &HashMap<String, Vec<u8>>) -> usize {
    let mut coding = 0;
    let mut ends_on_stop = 0;
    for t in &dataset.transcripts {
        let fasta = &seqs[&t.id];
        assert_eq!(t.len(), fasta.len(), "{}: encoded length differs from the FASTA", t.id);
        assert_eq!(&t.sequence(), fasta, "{}", t.id);
        assert_eq!(*t.exon_ends.last().unwrap() as usize, t.len() - 1, "{}", t.id);
        let Some((start, end)) = t.cds else { continue };
        coding += 1;
        let letters = t.sequence();
        let (start, end) = (start as usize, end as usize);
        assert_eq!(
            &letters[start..start + 3],
            b"ATG",
            "{}: CDS [{start}, {end}) does not start on ATG",
            t.id
        );
        assert_eq!(
            (end - start) % 3,
            0,
            "{}: CDS [{start}, {end}) is not whole codons",
            t.id
        );
        if matches!(&letters[end - 3..end], b"TAA" | b"TAG" | b"TGA") {
            ends_on_stop += 1;
        } else {
            // An ORF without a stop runs to the transcript's 3' end: no whole codon may be left.
            assert!(
                t.len() - end < 3,
                "{}: CDS [{start}, {end}) of {} nt ends on a sense codon",
                t.id,
                t.len()
            );
        }
        // The codon track marks exactly the codon starts from the ATG on.
        let tracks = t.tracks();
        let marks: Vec<usize> = (0..t.len()).filter(|&p| tracks[p][4] == 1.0).collect();
        assert_eq!(marks, (start..end).step_by(3).collect::<Vec<_>>(), "{}", t.id);
    }
    // The GTF's CDS records leave the stop codon out and it has no stop_codon records, so prep adds
    // the 3 nt after each CDS. For 1,027 of the 1,078 coding transcripts those are the stop codon;
    // the other 51 are ORFs without a stop that run off the transcript's 3' end, whose annotated CDS
    // stops one codon short of the last whole codon (the tool that wrote it dropped a "stop" that
    // is not there), so the extension restores that last sense codon.
    let all_coding = dataset.manifest.coding_transcripts;
    assert_eq!(coding, all_coding);
    eprintln!("{ends_on_stop} of {coding} coding transcripts end on a stop codon");
    ends_on_stop
}

#[test]
fn real_example_without_length_limit_keeps_every_transcript() {
    let Some((gtf, fasta)) = example() else {
        return;
    };
    let seqs = fasta_sequences(&fasta);
    assert_eq!(seqs.len(), 1092);
    let (_dir, dataset) = run(&gtf, &fasta, 20_000);
    let m = &dataset.manifest;
    assert_eq!(m.transcripts, 1092);
    assert_eq!(m.groups, 375);
    assert_eq!(m.groups_with_multiple, 234);
    assert_eq!(m.coding_transcripts, 1078);
    assert!(m.dropped.is_empty(), "{:?}", m.dropped);
    assert_eq!(check_transcripts(&dataset, &seqs), 1027);
}

#[test]
fn real_example_with_default_max_len_drops_only_long_transcripts() {
    let Some((gtf, fasta)) = example() else {
        return;
    };
    let seqs = fasta_sequences(&fasta);
    let (_dir, dataset) = run(&gtf, &fasta, DEFAULT_MAX_LEN);
    let m = &dataset.manifest;
    let long: Vec<&String> = seqs
        .iter()
        .filter(|(_, s)| s.len() > DEFAULT_MAX_LEN as usize)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(long.len(), 6, "transcripts longer than 12,288 nt in the example");
    let reason = format!("longer than {DEFAULT_MAX_LEN} nt");
    assert_eq!(m.dropped_counts, BTreeMap::from([(reason.clone(), 6)]));
    assert!(
        m.dropped
            .iter()
            .all(|d| d.reason == reason && seqs[&d.id].len() > DEFAULT_MAX_LEN as usize)
    );
    assert_eq!(m.transcripts, 1092 - 6);
    assert!(m.lengths.max <= DEFAULT_MAX_LEN);
    assert_eq!(m.coding_transcripts, 1072);
    // The long transcripts all belong to genes with other, shorter isoforms: no group is lost.
    assert_eq!((m.groups, m.groups_with_multiple), (375, 234));
    let mut per_gene: BTreeMap<&str, usize> = BTreeMap::new();
    for t in &dataset.transcripts {
        *per_gene.entry(t.gene_id.as_str()).or_default() += 1;
    }
    assert_eq!(m.groups, per_gene.len());
    assert_eq!(m.groups_with_multiple, per_gene.values().filter(|&&n| n >= 2).count());
    assert_eq!(check_transcripts(&dataset, &seqs), 1021);
}
