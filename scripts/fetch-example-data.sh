#!/usr/bin/env bash
# Fetches the real example data set used by `isoclr prep` tests and demos (TOOLCHAIN.md, "Real data
# obtainable"): Debian's r-bioc-isoformswitchanalyzer package (GPL-2+) ships 1,092 real human
# transcripts of 375 genes (chr1, hg19) as a GTF with exon and CDS records plus the matching
# transcript FASTA. Nothing is committed; the files land in a cache directory.
#
# Usage: scripts/fetch-example-data.sh
#   ISOCLR_EXAMPLE_DIR  cache directory (default: <repo>/target/example-data)
# Prints the paths of example.gtf.gz and example_isoform_nt.fasta.gz, one per line.
# Idempotent: does nothing but print the paths when both files are already there.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${ISOCLR_EXAMPLE_DIR:-$repo/target/example-data}"
package="r-bioc-isoformswitchanalyzer"
extdata="$cache/extracted/usr/lib/R/site-library/IsoformSwitchAnalyzeR/extdata"
gtf="$extdata/example.gtf.gz"
fasta="$extdata/example_isoform_nt.fasta.gz"

have_files() { [[ -s "$gtf" && -s "$fasta" ]]; }

if ! have_files; then
    mkdir -p "$cache"
    # Concurrent runs (parallel tests) wait for each other; the second then finds the files.
    if command -v flock >/dev/null; then
        exec 9>"$cache/.lock"
        flock 9
    fi
fi
if ! have_files; then
    for tool in apt-get dpkg-deb; do
        command -v "$tool" >/dev/null || { echo "fetch-example-data: $tool not found (needs Debian/Ubuntu)" >&2; exit 1; }
    done
    mkdir -p "$cache/download"
    (
        cd "$cache/download"
        # apt-get download needs no root; refresh the package lists only if the first try fails.
        if ! ls ./"$package"_*.deb >/dev/null 2>&1; then
            if ! apt-get download "$package" >&2; then
                echo "fetch-example-data: download failed; running apt-get update and retrying" >&2
                apt-get update >&2
                apt-get download "$package" >&2
            fi
        fi
    )
    deb="$(ls "$cache/download/$package"_*.deb | sort | tail -n 1)"
    tmp="$(mktemp -d "$cache/extracted.XXXXXX")"
    dpkg-deb -x "$deb" "$tmp"
    rm -rf "$cache/extracted"
    mv "$tmp" "$cache/extracted"
    for f in "$gtf" "$fasta"; do
        [[ -s "$f" ]] || { echo "fetch-example-data: $f missing from $deb" >&2; exit 1; }
    done
fi

echo "$gtf"
echo "$fasta"
