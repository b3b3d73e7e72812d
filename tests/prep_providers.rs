//! `prep` on annotations in the exact layouts the three big providers ship: GENCODE's GTF, Ensembl's
//! GFF3 and NCBI RefSeq's GFF3, hand-written for the same three genes on one small chromosome, so each
//! must give the same transcripts (letters, exon ends, CDS with its stop codon) and gene groups. Gene ids are
//! the providers' own: GENCODE's `gene_id`, Ensembl's `gene_id` attribute of the `gene:` feature, and for
//! RefSeq (whose genes carry no `gene_id`) the gene feature's `ID`, `gene-SYMBOL`.
//!
//! The chromosome (360 nt, seeded pseudo-random letters) carries, 1-based:
//! - gene A, plus strand: a coding transcript with exons 11-40 and 61-120, ATG at 21-23, a
//!   selenocysteine TGA at 65-67, stop TAG at 83-85; and a single-exon retained intron 11-120;
//! - gene B, minus strand: a coding transcript with exons 340-301, 270-249 and 230-201 (transcript
//!   order), ATG on 330-328 and a TAA stop split across the second junction (249 | 230-229);
//! - gene C, plus strand: a lncRNA with exons 151-170 and 181-195;
//! - in RefSeq only, a pseudogene with one exon 131-145 and no transcript feature.
//!
//! Ensembl names the chromosome `1`, RefSeq `NC_000001.11`, GENCODE `chr1`; the genome FASTA holds the
//! same sequence under all three names.

use std::path::Path;

use isoclr::data::Dataset;
use isoclr::data::prep::{PrepInput, PrepOptions, prep};

const CHROMOSOME_LEN: usize = 360;

/// The chromosome: letters from a fixed linear congruential generator, with the codons above planted.
fn chromosome() -> Vec<u8> {
    let mut state: u32 = 12_345;
    let mut seq: Vec<u8> = (0..CHROMOSOME_LEN)
        .map(|_| {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            b"ACGT"[(state >> 16) as usize % 4]
        })
        .collect();
    let mut plant = |start: usize, letters: &[u8]| seq[start - 1..start - 1 + letters.len()].copy_from_slice(letters);
    plant(21, b"ATG");
    plant(65, b"TGA");
    plant(83, b"TAG");
    // Minus strand: CAT reads ATG, and A at 249, TT at 229-230 read T, AA.
    plant(328, b"CAT");
    plant(249, b"A");
    plant(229, b"TT");
    seq
}

fn reverse_complement(seq: &[u8]) -> Vec<u8> {
    seq.iter()
        .rev()
        .map(|b| match b {
            b'A' => b'T',
            b'C' => b'G',
            b'G' => b'C',
            _ => b'A',
        })
        .collect()
}

/// Splices 1-based inclusive exons given in transcript order.
fn splice(chromosome: &[u8], exons: &[(usize, usize)], minus: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for &(start, end) in exons {
        let piece = &chromosome[start - 1..end];
        out.extend(if minus {
            reverse_complement(piece)
        } else {
            piece.to_vec()
        });
    }
    out
}

/// One expected transcript: its exons in transcript order, strand, exon ends and CDS `[start, end)`.
struct Expected {
    exons: &'static [(usize, usize)],
    minus: bool,
    exon_ends: &'static [u32],
    cds: Option<(u32, u32)>,
}

const A1: Expected = Expected {
    exons: &[(11, 40), (61, 120)],
    minus: false,
    exon_ends: &[29, 89],
    // ATG at transcript 10; the stop TAG ends at 85 = transcript 30 + 24, so the CDS ends at 55.
    cds: Some((10, 55)),
};
const A2: Expected = Expected {
    exons: &[(11, 120)],
    minus: false,
    exon_ends: &[109],
    cds: None,
};
const B1: Expected = Expected {
    exons: &[(301, 340), (249, 270), (201, 230)],
    minus: true,
    exon_ends: &[39, 61, 91],
    // ATG's A at 330 = transcript 10; the stop's last base 229 = transcript 40 + 22 + 1.
    cds: Some((10, 64)),
};
const C1: Expected = Expected {
    exons: &[(151, 170), (181, 195)],
    minus: false,
    exon_ends: &[19, 34],
    cds: None,
};

/// RefSeq's pseudogenes without a transcript model: an exon straight under the gene (`ID=id-…`), read
/// as a non-coding transcript named after the gene.
const P1: Expected = Expected {
    exons: &[(131, 145)],
    minus: false,
    exon_ends: &[14],
    cds: None,
};

/// One provider's ids: (transcript id, gene id, expected) for A1, A2, B1, C1, then any others.
type Ids<'a> = &'a [(&'static str, &'static str, Expected)];

fn check(provider: &str, annotation_name: &str, annotation: &str, ids: Ids) {
    let dir = tempfile::tempdir().unwrap();
    let chromosome = chromosome();
    let mut fasta = String::new();
    for name in ["chr1", "1", "NC_000001.11"] {
        fasta.push_str(&format!(">{name}\n"));
        for line in chromosome.chunks(60) {
            fasta.push_str(std::str::from_utf8(line).unwrap());
            fasta.push('\n');
        }
    }
    let genome = dir.path().join("genome.fa");
    std::fs::write(&genome, fasta).unwrap();
    let gtf = dir.path().join(annotation_name);
    std::fs::write(&gtf, annotation).unwrap();
    let out = dir.path().join("ds");
    let input = PrepInput::Genome {
        annotation: gtf,
        genome,
    };
    let manifest = prep(&PrepOptions::new(input, &out)).unwrap_or_else(|e| panic!("{provider}: {e}"));
    assert_eq!(
        (manifest.transcripts, manifest.groups, manifest.coding_transcripts),
        // A1 and A2 share gene A; every other transcript is a gene of its own.
        (ids.len(), ids.len() - 1, 2),
        "{provider}: {:?}",
        manifest.dropped
    );
    assert!(manifest.dropped.is_empty(), "{provider}: {:?}", manifest.dropped);
    let dataset = Dataset::open(&out).unwrap();
    for (id, gene, want) in ids {
        let t = dataset
            .transcript(id)
            .unwrap_or_else(|| panic!("{provider}: no transcript {id}"));
        let letters = splice(&chromosome, want.exons, want.minus);
        assert_eq!(t.sequence(), letters, "{provider} {id}");
        assert_eq!(t.exon_ends, want.exon_ends, "{provider} {id}");
        assert_eq!(t.cds, want.cds, "{provider} {id}");
        if let Some((start, end)) = t.cds {
            let (start, end) = (start as usize, end as usize);
            assert_eq!(&letters[start..start + 3], b"ATG", "{provider} {id}");
            assert!(
                matches!(&letters[end - 3..end], b"TAA" | b"TAG" | b"TGA"),
                "{provider} {id}: CDS does not end on a stop codon"
            );
            assert_eq!((end - start) % 3, 0, "{provider} {id}");
        }
        assert_eq!(t.gene_id, *gene, "{provider} {id}");
        let group = &dataset.groups[t.group as usize];
        assert_eq!(group.id, *gene, "{provider} {id}");
    }
    // The two transcripts of gene A share a group; B and C are groups of their own.
    let group_of = |id: &str| dataset.transcript(id).unwrap().group;
    assert_eq!(group_of(ids[0].0), group_of(ids[1].0), "{provider}");
    assert_ne!(group_of(ids[0].0), group_of(ids[2].0), "{provider}");
    assert_ne!(group_of(ids[2].0), group_of(ids[3].0), "{provider}");
    drop(dir);
}

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/providers")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn gencode_gtf() {
    check(
        "GENCODE",
        "gencode.v44.annotation.gtf",
        &fixture("gencode.gtf"),
        &[
            ("ENST00000000011.2", "ENSG00000000001.5", A1),
            ("ENST00000000012.1", "ENSG00000000001.5", A2),
            ("ENST00000000021.4", "ENSG00000000002.3", B1),
            ("ENST00000000031.1", "ENSG00000000003.1", C1),
        ],
    );
}

#[test]
fn ensembl_gff3() {
    check(
        "Ensembl",
        "Homo_sapiens.GRCh38.110.gff3",
        &fixture("ensembl.gff3"),
        &[
            ("ENST00000000011", "ENSG00000000001", A1),
            ("ENST00000000012", "ENSG00000000001", A2),
            ("ENST00000000021", "ENSG00000000002", B1),
            ("ENST00000000031", "ENSG00000000003", C1),
        ],
    );
}

#[test]
fn refseq_gff3() {
    check(
        "RefSeq",
        "GCF_000001405.40_GRCh38.p14_genomic.gff",
        &fixture("refseq.gff3"),
        &[
            ("NM_000011.2", "gene-GENEA", A1),
            ("NR_000012.1", "gene-GENEA", A2),
            ("NM_000021.3", "gene-GENEB", B1),
            ("NR_000031.1", "gene-LINC00001", C1),
            ("gene-GENEAP1", "gene-GENEAP1", P1),
        ],
    );
}

/// The same files gzipped, as the providers distribute them, give the same result.
#[test]
fn gzipped_provider_files() {
    use std::io::Write;
    for (provider, name, fixture_name) in [
        ("GENCODE", "gencode.v44.annotation.gtf.gz", "gencode.gtf"),
        ("Ensembl", "Homo_sapiens.GRCh38.110.gff3.gz", "ensembl.gff3"),
    ] {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(fixture(fixture_name).as_bytes()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let gz = dir.path().join(name);
        std::fs::write(&gz, enc.finish().unwrap()).unwrap();
        let genome = dir.path().join("genome.fa");
        let mut fasta = String::new();
        for chrom in ["chr1", "1"] {
            fasta.push_str(&format!(">{chrom}\n{}\n", String::from_utf8(chromosome()).unwrap()));
        }
        std::fs::write(&genome, fasta).unwrap();
        let input = PrepInput::Genome { annotation: gz, genome };
        let manifest =
            prep(&PrepOptions::new(input, dir.path().join("ds"))).unwrap_or_else(|e| panic!("{provider}: {e}"));
        assert_eq!((manifest.transcripts, manifest.groups), (4, 3), "{provider}");
    }
}
