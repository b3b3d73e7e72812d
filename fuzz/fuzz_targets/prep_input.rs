//! Shared by the prep targets: valid companion files, and `prep` on a fuzzed one.

use isoclr_core::data::prep::{PrepInput, PrepOptions, prep};

pub const GENOME: &str = ">chr1\nACGTTGCAATGGCCAAGGTTCCAGATGAAACCCGGGTTTAAACCCGGGTTTACGATCGATCGTAGCTAGCTAGGATCCATGCAAGCTTGCA\n\
ACGTAGCTAGCTAGCTAGGGATCCCGATCGATCGATTTAGCGCGCGATATATCGCGATTAGCCGATCGATCGAATTCGGCCGGTTAACC\n>chr2\nACGTACGTAAACCCGGGTTT\n";

pub const GTF: &str = "chr1\tt\texon\t1\t40\t.\t+\t.\tgene_id \"g1\"; transcript_id \"tx1\";\n\
chr1\tt\texon\t61\t150\t.\t+\t.\tgene_id \"g1\"; transcript_id \"tx1\";\n\
chr1\tt\tCDS\t9\t40\t.\t+\t0\tgene_id \"g1\"; transcript_id \"tx1\";\n\
chr1\tt\texon\t20\t90\t.\t-\t.\tgene_id \"g2\"; transcript_id \"tx3\";\n";

pub const HOMOLOGY: &str = "gene_id\tgroup_id\ng1\tH1\ng2\tH1\n";

/// Writes the three inputs (`fuzzed` under `name`, the others valid) and runs `prep`; an error must name
/// one of the files.
pub fn run(name: &str, fuzzed: &[u8]) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let write = |file: &str, bytes: &[u8]| {
        let path = dir.path().join(file);
        std::fs::write(&path, bytes).expect("writable temporary directory");
        path
    };
    let pick = |file: &str, valid: &str| if file == name { write(file, fuzzed) } else { write(file, valid.as_bytes()) };
    let annotation = if name.ends_with(".gff3") { write(name, fuzzed) } else { pick("a.gtf", GTF) };
    let genome = pick("genome.fa", GENOME);
    let homology = pick("homology.tsv", HOMOLOGY);
    let mut opts = PrepOptions::new(PrepInput::Genome { annotation, genome }, dir.path().join("out"));
    opts.homology = Some(homology);
    if let Err(e) = prep(&opts) {
        let e = e.to_string();
        let named = ["a.gtf", "a.gff3", "genome.fa", "homology.tsv"].iter().any(|f| e.contains(f))
            || e.contains(&*dir.path().to_string_lossy());
        assert!(named, "the error names no file: {e}");
    }
}
