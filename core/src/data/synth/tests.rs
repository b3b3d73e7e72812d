use std::collections::{BTreeMap, BTreeSet};

use super::genome::revcomp;
use super::model::is_stop;
use super::*;

fn options(dir: &Path, genes: usize, seed: u64, length_scale: f64) -> SynthOptions {
    SynthOptions {
        out: dir.to_path_buf(),
        genes,
        seed,
        length_scale,
        ..Default::default()
    }
}

fn run(genes: usize, seed: u64, scale: f64) -> (tempfile::TempDir, SynthSummary) {
    let dir = tempfile::tempdir().unwrap();
    let summary = synth(&options(dir.path(), genes, seed, scale)).unwrap();
    (dir, summary)
}

fn read_fasta(path: &Path) -> Vec<(String, Vec<u8>)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix('>') {
            out.push((name.to_string(), Vec::new()));
        } else {
            assert!(line.len() <= 60, "FASTA line longer than 60");
            out.last_mut().unwrap().1.extend_from_slice(line.as_bytes());
        }
    }
    out
}

#[derive(Debug)]
struct Rec {
    chrom: String,
    feature: String,
    start: usize,
    end: usize,
    strand: String,
    frame: String,
    attrs: BTreeMap<String, String>,
}

fn read_gtf(path: &Path) -> Vec<Rec> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 9, "{line}");
        let attrs = cols[8]
            .split(';')
            .filter(|a| !a.trim().is_empty())
            .map(|a| {
                let (k, v) = a.trim().split_once(' ').unwrap();
                assert!(v.starts_with('"') && v.ends_with('"'), "{a}");
                (k.to_string(), v.trim_matches('"').to_string())
            })
            .collect();
        let rec = Rec {
            chrom: cols[0].into(),
            feature: cols[2].into(),
            start: cols[3].parse().unwrap(),
            end: cols[4].parse().unwrap(),
            strand: cols[6].into(),
            frame: cols[7].into(),
            attrs,
        };
        assert!(rec.start >= 1 && rec.start <= rec.end, "{line}");
        assert!(rec.strand == "+" || rec.strand == "-");
        out.push(rec);
    }
    out
}

fn read_tsv(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| l.split('\t').map(String::from).collect())
        .collect()
}

/// Records of each transcript, in file order.
fn by_transcript(recs: &[Rec]) -> BTreeMap<String, Vec<&Rec>> {
    let mut map: BTreeMap<String, Vec<&Rec>> = BTreeMap::new();
    for r in recs.iter().filter(|r| r.feature != "gene") {
        map.entry(r.attrs["transcript_id"].clone()).or_default().push(r);
    }
    map
}

/// Genomic positions of a transcript in transcript order.
fn positions(recs: &[&Rec]) -> Vec<usize> {
    let mut out = Vec::new();
    for r in recs.iter().filter(|r| r.feature == "exon") {
        if r.strand == "-" {
            out.extend((r.start..=r.end).rev());
        } else {
            out.extend(r.start..=r.end);
        }
    }
    out
}

#[test]
fn same_seed_same_bytes_other_seed_differs() {
    let (a, sa) = run(40, 7, 0.25);
    let (b, sb) = run(40, 7, 0.25);
    let (c, _) = run(40, 8, 0.25);
    assert_eq!(sa.transcripts, sb.transcripts);
    let files = [
        "genome.fa",
        "annotation.gtf",
        "transcripts.fa",
        "homology.tsv",
        "labels/half_life.tsv",
        "labels/ribosome_load.tsv",
    ];
    for f in files {
        let bytes = std::fs::read(a.path().join(f)).unwrap();
        assert!(!bytes.is_empty(), "{f}");
        assert_eq!(bytes, std::fs::read(b.path().join(f)).unwrap(), "{f}");
    }
    for f in ["genome.fa", "transcripts.fa", "labels/half_life.tsv"] {
        assert_ne!(
            std::fs::read(a.path().join(f)).unwrap(),
            std::fs::read(c.path().join(f)).unwrap()
        );
    }
}

#[test]
fn rejects_bad_options() {
    let dir = tempfile::tempdir().unwrap();
    assert!(synth(&options(dir.path(), 0, 1, 1.0)).is_err());
    assert!(synth(&options(dir.path(), 10, 1, 0.0)).is_err());
    assert!(synth(&options(dir.path(), 10, 1, f64::NAN)).is_err());
    let tiny = synth(&options(dir.path(), 1, 1, 0.05)).unwrap();
    assert_eq!(tiny.genes, 1);
}

#[test]
fn gtf_genome_and_transcripts_agree() {
    for (genes, scale) in [(60, 0.25), (30, 1.0)] {
        let (dir, summary) = run(genes, 3, scale);
        assert_eq!(check_files_agree(&summary), 4);
        drop(dir);
    }
}

/// Checks that the GTF, the genome and the transcript FASTA describe the same transcripts; returns the
/// number of chromosomes.
fn check_files_agree(summary: &SynthSummary) -> usize {
    let genome: BTreeMap<String, Vec<u8>> = read_fasta(&summary.genome).into_iter().collect();
    let fasta = read_fasta(&summary.transcripts_fasta);
    let recs = read_gtf(&summary.gtf);
    let genes_rec: BTreeMap<&str, &Rec> = recs
        .iter()
        .filter(|r| r.feature == "gene")
        .map(|r| (r.attrs["gene_id"].as_str(), r))
        .collect();
    assert_eq!(genes_rec.len(), summary.genes);
    let txs = by_transcript(&recs);
    assert_eq!(txs.len(), summary.transcripts);
    assert_eq!(fasta.len(), summary.transcripts);
    for (id, seq) in &fasta {
        let t = &txs[id];
        assert_eq!(t[0].feature, "transcript");
        let gene = genes_rec[t[0].attrs["gene_id"].as_str()];
        let exons: Vec<&&Rec> = t.iter().filter(|r| r.feature == "exon").collect();
        for (k, e) in exons.iter().enumerate() {
            assert!(e.start >= gene.start && e.end <= gene.end, "{id} exon outside gene");
            assert!(
                e.start >= t[0].start && e.end <= t[0].end,
                "{id} exon outside transcript"
            );
            assert_eq!(e.attrs["exon_number"], (k + 1).to_string());
            assert_eq!((&e.chrom, &e.strand), (&gene.chrom, &gene.strand));
        }
        assert_eq!(t[0].start, exons.iter().map(|e| e.start).min().unwrap());
        assert_eq!(t[0].end, exons.iter().map(|e| e.end).max().unwrap());
        // Exons in transcript order, separated by introns.
        for w in exons.windows(2) {
            if gene.strand == "+" {
                assert!(w[0].end + 1 < w[1].start, "{id} {:?} {:?}", w[0], w[1]);
            } else {
                assert!(w[1].end + 1 < w[0].start, "{id}");
            }
        }
        let chrom = &genome[&gene.chrom];
        let mut spliced = Vec::new();
        for e in &exons {
            let piece = &chrom[e.start - 1..e.end];
            spliced.extend(if e.strand == "-" {
                revcomp(piece)
            } else {
                piece.to_vec()
            });
        }
        assert_eq!(&spliced, seq, "{id}");
        for r in t
            .iter()
            .filter(|r| matches!(r.feature.as_str(), "CDS" | "start_codon" | "stop_codon"))
        {
            assert!(exons.iter().any(|e| e.start <= r.start && r.end <= e.end), "{id} {r:?}");
        }
    }
    genome.len()
}

#[test]
fn cds_annotation_is_a_valid_orf() {
    let (_dir, summary) = run(80, 11, 0.25);
    let fasta: BTreeMap<String, Vec<u8>> = read_fasta(&summary.transcripts_fasta).into_iter().collect();
    let recs = read_gtf(&summary.gtf);
    let (mut coding, mut split_codons) = (0, 0);
    for (id, t) in by_transcript(&recs) {
        let seq = &fasta[&id];
        let pos = positions(&t);
        assert_eq!(pos.len(), seq.len());
        let index: BTreeMap<usize, usize> = pos.iter().enumerate().map(|(i, &p)| (p, i)).collect();
        let covered = |feature: &str| -> Vec<usize> {
            let mut v: Vec<usize> = t
                .iter()
                .filter(|r| r.feature == feature)
                .flat_map(|r| (r.start..=r.end).map(|p| index[&p]))
                .collect();
            v.sort_unstable();
            v
        };
        let cds = covered("CDS");
        let kind = &t[0].attrs["transcript_type"];
        if cds.is_empty() {
            assert_eq!(kind, "lncRNA");
            assert!(covered("start_codon").is_empty() && covered("stop_codon").is_empty());
            continue;
        }
        coding += 1;
        assert_ne!(kind, "lncRNA");
        let (cs, ce) = (cds[0], cds[cds.len() - 1] + 1);
        assert_eq!(cds, (cs..ce).collect::<Vec<_>>(), "{id} CDS not contiguous");
        assert_eq!(covered("start_codon"), vec![cs, cs + 1, cs + 2], "{id}");
        assert_eq!(covered("stop_codon"), vec![ce, ce + 1, ce + 2], "{id}");
        split_codons += usize::from(t.iter().filter(|r| r.feature.ends_with("_codon")).count() > 2);
        assert_eq!(&seq[cs..cs + 3], b"ATG", "{id}");
        assert_eq!((ce - cs) % 3, 0, "{id}");
        assert!(seq[cs..ce].chunks(3).all(|c| !is_stop(c)), "{id} premature stop");
        assert!(is_stop(&seq[ce..ce + 3]), "{id}");
        // Phases: bases to skip to the next codon start, in transcript order.
        let mut done = 0;
        for r in t.iter().filter(|r| r.feature == "CDS") {
            assert_eq!(r.frame, ((3 - done % 3) % 3).to_string(), "{id}");
            done += r.end - r.start + 1;
        }
    }
    assert!(coding > 100, "{coding}");
    eprintln!("coding transcripts {coding}, with a split start/stop codon {split_codons}");
}

#[test]
fn lengths_at_full_scale() {
    let dir = tempfile::tempdir().unwrap();
    let data = generate(&options(dir.path(), 300, 5, 1.0)).unwrap();
    let mut lens: Vec<usize> = data
        .genes
        .iter()
        .flat_map(|g| &g.transcripts)
        .map(|t| t.seq.len())
        .collect();
    lens.sort_unstable();
    let median = lens[lens.len() / 2];
    let over: Vec<&Gene> = data
        .genes
        .iter()
        .filter(|g| g.transcripts.iter().any(|t| t.seq.len() > MAX_LEN))
        .collect();
    // Over-length transcripts come from the planted genes only, and all of theirs are over-length.
    assert_eq!(over.len(), 2);
    assert!(over.iter().all(|g| g.transcripts.iter().all(|t| t.seq.len() > MAX_LEN)));
    let n_over = lens.iter().filter(|&&l| l > MAX_LEN).count();
    let max_kept = lens.iter().copied().filter(|&l| l <= MAX_LEN).max().unwrap();
    eprintln!(
        "transcripts {}, median {median}, max kept {max_kept}, over-length {n_over}, longest {}",
        lens.len(),
        lens[lens.len() - 1]
    );
    assert!((1500..=3500).contains(&median), "median {median}");
    assert!(max_kept > 7000, "no long tail: {max_kept}");
    assert!(
        n_over >= 2 && n_over * 100 <= lens.len() * 2,
        "{n_over} of {}",
        lens.len()
    );
}

#[test]
fn gene_mix_isoforms_strands_and_ambiguity() {
    let (_dir, summary) = run(200, 9, 0.25);
    let recs = read_gtf(&summary.gtf);
    let genes: Vec<&Rec> = recs.iter().filter(|r| r.feature == "gene").collect();
    let mut per_gene: BTreeMap<&str, usize> = BTreeMap::new();
    for r in recs.iter().filter(|r| r.feature == "transcript") {
        *per_gene.entry(&r.attrs["gene_id"]).or_default() += 1;
    }
    let multi = per_gene.values().filter(|&&n| n >= 2).count();
    assert!(
        multi * 10 >= genes.len() * 3,
        "{multi} of {} genes with ≥2 isoforms",
        genes.len()
    );
    assert!(per_gene.values().all(|&n| (1..=6).contains(&n)));
    let noncoding = genes.iter().filter(|g| g.attrs["gene_type"] == "lncRNA").count();
    assert!((5..=40).contains(&noncoding), "{noncoding}");
    let minus = genes.iter().filter(|g| g.strand == "-").count();
    assert!(minus > 60 && minus < 140, "{minus}");
    let chroms: BTreeSet<&str> = genes.iter().map(|g| g.chrom.as_str()).collect();
    assert_eq!(chroms.len(), 4);
    let fasta = read_fasta(&summary.transcripts_fasta);
    let with_n = fasta
        .iter()
        .filter(|(_, s)| s.iter().any(|&b| b != b'A' && b != b'C' && b != b'G' && b != b'T'))
        .count();
    assert!((1..=12).contains(&with_n), "{with_n}");
    let all: Vec<u8> = fasta.iter().flat_map(|(_, s)| s.iter().copied()).collect();
    let gc = all.iter().filter(|&&b| b == b'G' || b == b'C').count() as f64 / all.len() as f64;
    assert!((0.40..=0.50).contains(&gc), "GC {gc}");
    let genome = std::fs::read(&summary.genome).unwrap();
    assert!(genome.windows(50).any(|w| w.iter().all(|&b| b == b'N')));
    assert!(genome.iter().any(|b| b.is_ascii_lowercase()));
}

#[test]
fn homology_table_maps_families() {
    let (_dir, summary) = run(100, 13, 0.25);
    let rows = read_tsv(&summary.homology);
    assert_eq!(rows[0], ["gene_id", "group_id"]);
    let mut families: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in &rows[1..] {
        families.entry(&r[1]).or_default().push(&r[0]);
    }
    assert_eq!(families.len(), summary.families);
    let members: usize = families.values().map(Vec::len).sum();
    assert_eq!(members, rows.len() - 1);
    assert!((15..=25).contains(&members), "{members}");
    assert!(families.values().all(|m| (2..=4).contains(&m.len())));
    let unique: BTreeSet<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(unique.len(), members);
    // Paralogs keep the founder's ORF length: the reference isoforms of a coding family share a CDS length.
    let recs = read_gtf(&summary.gtf);
    let mut cds_lens: BTreeMap<&str, BTreeSet<usize>> = BTreeMap::new();
    for (_, t) in by_transcript(&recs) {
        let len: usize = t
            .iter()
            .filter(|r| r.feature == "CDS")
            .map(|r| r.end - r.start + 1)
            .sum();
        cds_lens.entry(t[0].attrs["gene_id"].as_str()).or_default().insert(len);
    }
    for m in families.values() {
        let common = m.iter().map(|g| cds_lens[g].clone()).reduce(|a, b| &a & &b).unwrap();
        assert!(!common.is_empty(), "family {m:?} shares no CDS length");
    }
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    s / n.max(1) as f64
}

fn r_squared(x: &[f64], y: &[f64]) -> f64 {
    let (mx, my) = (mean(x.iter().copied()), mean(y.iter().copied()));
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let sxx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
    let syy: f64 = y.iter().map(|b| (b - my).powi(2)).sum();
    sxy * sxy / (sxx * syy)
}

#[test]
fn label_rules_hold() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path(), 300, 17, 0.5);
    let data = generate(&opts).unwrap();
    let txs: Vec<&Tx> = data.genes.iter().flat_map(|g| &g.transcripts).collect();
    let hl = |t: &&Tx| t.half_life.log2();
    let with_are = mean(txs.iter().filter(|t| t.features.are >= 2).map(hl));
    let without = mean(txs.iter().filter(|t| t.features.are == 0).map(hl));
    assert!(with_are < without - 0.2, "{with_are} vs {without}");
    let signal: Vec<f64> = txs.iter().map(|t| t.features.log2_half_life()).collect();
    let r2 = r_squared(&signal, &txs.iter().map(hl).collect::<Vec<_>>());
    assert!((0.5..=0.72).contains(&r2), "half-life R² {r2}");

    let coding: Vec<(&Tx, &labels::Utr5)> = txs
        .iter()
        .filter_map(|t| Some((*t, t.features.coding.as_ref()?)))
        .collect();
    assert!(txs.iter().all(|t| t.ribosome_load.is_some() == t.cds.is_some()));
    let mrl = |f: &dyn Fn(&labels::Utr5) -> bool| {
        mean(coding.iter().filter(|(_, u)| f(u)).filter_map(|(t, _)| t.ribosome_load))
    };
    assert!(mrl(&|u| u.kozak == 1.0) > mrl(&|u| u.kozak == 0.0) + 1.0);
    assert!(mrl(&|u| u.uatg_out_of_frame >= 1) < mrl(&|u| u.uatg_out_of_frame == 0) - 0.4);
    let long_orf = mean(
        coding
            .iter()
            .filter(|(t, _)| t.features.cds_codons >= 300)
            .filter_map(|(t, _)| t.ribosome_load),
    );
    let short_orf = mean(
        coding
            .iter()
            .filter(|(t, _)| t.features.cds_codons < 100)
            .filter_map(|(t, _)| t.ribosome_load),
    );
    assert!(long_orf > short_orf * 1.4, "{long_orf} vs {short_orf}");
    let signal: Vec<f64> = coding
        .iter()
        .filter_map(|(t, _)| t.features.log2_ribosome_load())
        .collect();
    let labels: Vec<f64> = coding
        .iter()
        .filter_map(|(t, _)| t.ribosome_load.map(f64::log2))
        .collect();
    let r2 = r_squared(&signal, &labels);
    assert!((0.5..=0.72).contains(&r2), "MRL R² {r2}");

    // The TSVs hold the same rows.
    let summary = write(&opts, &data).unwrap();
    let half = read_tsv(&summary.labels[0]);
    assert_eq!(half[0], ["transcript_id", "gene_id", "half_life"]);
    assert_eq!(half.len() - 1, txs.len());
    assert!(half[1..].iter().all(|r| r[2].parse::<f64>().unwrap() > 0.0));
    let load = read_tsv(&summary.labels[1]);
    assert_eq!(load[0], ["transcript_id", "gene_id", "mean_ribosome_load"]);
    assert_eq!(load.len() - 1, coding.len());
}

#[test]
fn prep_reads_the_synthetic_transcriptome() {
    use crate::data::Dataset;
    use crate::data::prep::{PrepInput, PrepOptions, prep};
    let dir = tempfile::tempdir().unwrap();
    let opts = options(&dir.path().join("synth"), 80, 21, 0.25);
    let data = generate(&opts).unwrap();
    let summary = write(&opts, &data).unwrap();
    assert!(summary.over_length >= 1);
    let over_genes = data
        .genes
        .iter()
        .filter(|g| g.transcripts.iter().all(|t| t.seq.len() > MAX_LEN))
        .count();
    let members = data.genes.iter().filter(|g| g.family.is_some()).count();
    for genome_mode in [true, false] {
        let out = dir
            .path()
            .join(if genome_mode { "genome-mode" } else { "transcript-mode" });
        let input = if genome_mode {
            PrepInput::Genome {
                annotation: summary.gtf.clone(),
                genome: summary.genome.clone(),
            }
        } else {
            PrepInput::Transcripts {
                annotation: summary.gtf.clone(),
                transcripts: summary.transcripts_fasta.clone(),
            }
        };
        let manifest = prep(&PrepOptions {
            homology: Some(summary.homology.clone()),
            max_len: DEFAULT_MAX_LEN,
            ..PrepOptions::new(input, out.clone())
        })
        .unwrap();
        assert_eq!(manifest.transcripts, summary.transcripts - summary.over_length);
        assert_eq!(manifest.dropped.len(), summary.over_length, "{:?}", manifest.dropped);
        assert_eq!(manifest.groups, summary.genes - over_genes - members + summary.families);
        let dataset = Dataset::open(&out).unwrap();
        for t in data
            .genes
            .iter()
            .flat_map(|g| &g.transcripts)
            .filter(|t| t.seq.len() <= MAX_LEN)
        {
            let got = dataset.transcript(&t.id).unwrap();
            assert_eq!(got.sequence(), t.seq, "{}", t.id);
            let mut end = 0;
            let ends: Vec<u32> = t
                .exons
                .iter()
                .map(|&(s, e)| {
                    end += e - s + 1;
                    end as u32 - 1
                })
                .collect();
            assert_eq!(got.exon_ends, ends, "{}", t.id);
            assert_eq!(got.cds, t.cds.map(|(s, stop)| (s as u32, stop as u32 + 3)), "{}", t.id);
        }
    }
}

fn streamed_options(dir: &Path, genes: usize, genome_size: u64) -> SynthOptions {
    SynthOptions {
        isoforms_per_gene: Some(4.0),
        genome_size: Some(genome_size),
        ..options(dir, genes, 4, 0.25)
    }
}

#[test]
fn streamed_layout_fills_the_genome_size_and_agrees_with_itself() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let summary = synth(&streamed_options(&a, 150, 2_000_000)).unwrap();
    synth(&streamed_options(&b, 150, 2_000_000)).unwrap();
    for f in [
        "genome.fa",
        "annotation.gtf",
        "transcripts.fa",
        "homology.tsv",
        "labels/half_life.tsv",
        "labels/ribosome_load.tsv",
    ] {
        let bytes = std::fs::read(a.join(f)).unwrap();
        assert!(!bytes.is_empty(), "{f}");
        assert_eq!(bytes, std::fs::read(b.join(f)).unwrap(), "{f}");
    }
    assert_eq!(check_files_agree(&summary), 24);
    let genome = read_fasta(&summary.genome);
    let names: Vec<&str> = genome.iter().map(|(name, _)| name.as_str()).collect();
    let want: Vec<&str> = streamed::HUMAN_CHROMOSOMES.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, want);
    // Every chromosome gets exactly its share: the genes need far less room than 2 Mb.
    assert_eq!(genome.iter().map(|(_, s)| s.len()).sum::<usize>(), 2_000_000);
    let (chr1, chr21) = (genome[0].1.len(), genome[20].1.len());
    assert!((5.2..5.5).contains(&(chr1 as f64 / chr21 as f64)), "{chr1} {chr21}");
    assert!(
        genome
            .iter()
            .all(|(_, s)| s.starts_with(b"NNNNNNNNNN") && s.ends_with(b"NNNNNNNNNN"))
    );
    // Genes are shared out by chromosome length.
    let recs = read_gtf(&summary.gtf);
    let on_chr1 = recs.iter().filter(|r| r.feature == "gene" && r.chrom == "chr1").count();
    assert!((10..=14).contains(&on_chr1), "{on_chr1}");
    // A mean of 4 isoforms is asked for; a few draws find no new distinct isoform.
    let per_gene = summary.transcripts as f64 / summary.genes as f64;
    assert!((3.3..=4.2).contains(&per_gene), "{per_gene}");
    assert!(summary.families >= 5 && summary.over_length >= 1, "{summary:?}");
    let homology = read_tsv(&summary.homology);
    assert_eq!(homology[0], ["gene_id", "group_id"]);
    let half_life = read_tsv(&summary.labels[0]);
    assert_eq!(half_life.len() - 1, summary.transcripts);
}

#[test]
fn prep_reads_the_streamed_layout() {
    use crate::data::prep::{PrepInput, PrepOptions, prep};
    let dir = tempfile::tempdir().unwrap();
    let summary = synth(&streamed_options(&dir.path().join("synth"), 60, 1_000_000)).unwrap();
    let input = PrepInput::Genome {
        annotation: summary.gtf.clone(),
        genome: summary.genome.clone(),
    };
    let manifest = prep(&PrepOptions {
        homology: Some(summary.homology.clone()),
        ..PrepOptions::new(input, dir.path().join("ds"))
    })
    .unwrap();
    assert_eq!(manifest.transcripts, summary.transcripts - summary.over_length);
    assert_eq!(manifest.dropped.len(), summary.over_length);
}

#[test]
fn streamed_options_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let small = SynthOptions {
        genome_size: Some(999_999),
        ..streamed_options(dir.path(), 10, 0)
    };
    assert!(synth(&small).unwrap_err().to_string().contains("genome_size"));
    let few = SynthOptions {
        isoforms_per_gene: Some(0.5),
        ..options(dir.path(), 10, 1, 0.25)
    };
    assert!(synth(&few).unwrap_err().to_string().contains("isoforms_per_gene"));
}

/// The default layout's bytes are pinned: data sets and results made with earlier versions must be
/// reproducible, so a change here has to be deliberate.
#[test]
fn default_layout_bytes_are_pinned() {
    use sha2::{Digest, Sha256};
    let (dir, _) = run(40, 7, 0.25);
    let digest = |f: &str| {
        let bytes = std::fs::read(dir.path().join(f)).unwrap();
        Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let got: Vec<String> = ["genome.fa", "annotation.gtf", "transcripts.fa", "labels/half_life.tsv"]
        .into_iter()
        .map(digest)
        .collect();
    assert_eq!(got, PINNED, "{got:#?}");
}

const PINNED: [&str; 4] = [
    "2492f2c7b50f3806369cbea518b071587411e2b7fd819baf1fb471351c30989e",
    "c553eb60c1ecc6425517479094e0198c64e32d88b789890b02f72b415654846e",
    "2d287012c98e27208947f9c27e7cfd68e7c3f9867fb2a500ae0a96e4900470a1",
    "83a8b738a68ba23bc766070cc1b4c473cd539cd43129312bd30c6699d3b39b55",
];
