"""Joins the raw files that scripts/fetch-human-data.sh downloads into the tables `isoclr prep --table` and the
probes read. Standard library only, plus pyarrow for the egbench Parquet files.

    python3 scripts/human_corpus.py SOURCES_DIR OUT_DIR [SALUKI_TSV]

Writes into OUT_DIR:
- tables/mrna.tsv.gz: the dm3loc human RefSeq mRNAs (one per gene): id (NM_ accession), sequence, gene
  (symbol), group (the egbench paralog family when it holds two or more of these genes, else the symbol), entrez;
- tables/paralog_families.tsv: gene symbol, family id, for the genes of families used as groups;
- tables/links.tsv: `dataset<TAB>gene_id<TAB>link` rows that join the StringTie chrX loci to the same genes'
  mRNAs (data.orthology: the same gene in two datasets is one group, not a negative of itself);
- tables/human_half_life.tsv (when SALUKI_TSV is given): the mRNAs with the Saluki half-life PC1 joined by
  Ensembl id (through egbench's gene tables) or symbol: id, sequence, group, half_life.
- tables/human_essentiality.tsv: egbench's DepMap essentiality label per gene (1 essential, 0 not; "uncertain"
  genes left out): gene_symbol, ensembl_gene_id, essential;
- tables/summary.json: counts of each join.
"""

import collections
import csv
import gzip
import json
import os
import sys

import pyarrow.parquet as pq


def read_fasta(path):
    name, chunks = None, []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith(">"):
                if name is not None:
                    yield name, "".join(chunks)
                name, chunks = line[1:], []
            elif line:
                chunks.append(line)
    if name is not None:
        yield name, "".join(chunks)


def dm3loc_header(header):
    """`0100000,ACCNUM:NM_001507,Gene_ID:2862,Gene_Name:MLNR` -> (accession, entrez, symbol)."""
    fields = dict(part.split(":", 1) for part in header.split(",")[1:])
    return fields["ACCNUM"], fields["Gene_ID"], fields["Gene_Name"]


def gene_tables(egbench):
    """HGNC key -> (symbol, entrez, ensembl) from egbench's gene universes (DepMap first, it has all three)."""
    keys = {}
    for rel in [
        "datasets/DepMap/data/depmap26q1_gene_universe.parquet",
        "datasets/DepMap23Q4/data/gene_universe.parquet",
        "datasets/DEG/data/ensembl97_protein_coding_genes.parquet",
    ]:
        table = pq.read_table(os.path.join(egbench, rel)).to_pylist()
        for row in table:
            key = row.get("gene_key")
            if not key:
                continue
            symbol = row.get("gene_symbol") or row.get("ensembl97_gene_symbol")
            entrez = row.get("entrez_id")
            ensembl = row.get("ensembl_gene_id") or row.get("ensembl97_gene_id")
            old = keys.get(key, (None, None, None))
            keys[key] = (
                old[0] or symbol,
                old[1] or (str(int(entrez)) if entrez not in (None, "") else None),
                old[2] or ensembl,
            )
    return keys


def main():
    sources, out = sys.argv[1], sys.argv[2]
    saluki = sys.argv[3] if len(sys.argv) > 3 else None
    tables = os.path.join(out, "tables")
    os.makedirs(tables, exist_ok=True)
    egbench = os.path.join(sources, "egbench", "egbench_mcp")
    keys = gene_tables(egbench)
    families = {
        row["gene_key"]: row["cluster_id"]
        for row in pq.read_table(os.path.join(egbench, "datasets/homology/cluster_map.parquet")).to_pylist()
    }
    by_entrez = {v[1]: k for k, v in keys.items() if v[1]}
    by_symbol = {v[0]: k for k, v in keys.items() if v[0]}

    mrnas = []
    for header, seq in read_fasta(os.path.join(sources, "dm3loc", "modified_multilabel_seq_nonredundent.fasta")):
        accession, entrez, symbol = dm3loc_header(header)
        key = by_entrez.get(entrez) or by_symbol.get(symbol)
        mrnas.append((accession, seq, symbol, entrez, key))

    members = collections.Counter(families.get(key) for *_, key in mrnas if key in families)
    family_of = {}
    for accession, _, symbol, _, key in mrnas:
        fam = families.get(key)
        if fam is not None and members[fam] >= 2:
            family_of[symbol] = "FAM_" + fam
    with gzip.open(os.path.join(tables, "mrna.tsv.gz"), "wt", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["id", "sequence", "gene", "group", "entrez"])
        for accession, seq, symbol, entrez, _ in mrnas:
            w.writerow([accession, seq, symbol, family_of.get(symbol, symbol), entrez])
    with open(os.path.join(tables, "paralog_families.tsv"), "w") as f:
        f.write("gene\tfamily\n")
        for symbol in sorted(family_of):
            f.write(f"{symbol}\t{family_of[symbol]}\n")

    # StringTie loci -> gene names (transcript attributes), to link them with the mRNAs of the same genes.
    locus_names = collections.defaultdict(set)
    with open(os.path.join(sources, "stringtie", "stringtie_merged.gtf")) as f:
        for line in f:
            cols = line.rstrip("\n").split("\t")
            if len(cols) < 9 or cols[2] != "transcript":
                continue
            attrs = dict(
                (kv.strip().split(" ", 1)[0], kv.strip().split(" ", 1)[1].strip('"'))
                for kv in cols[8].split(";")
                if kv.strip()
            )
            if "gene_name" in attrs:
                locus_names[attrs["gene_id"]].add(attrs["gene_name"])
    mrna_symbols = {symbol for _, _, symbol, _, _ in mrnas}
    links = []
    for locus, names in sorted(locus_names.items()):
        shared = sorted(names & mrna_symbols)
        if len(shared) == 1:  # a locus merging several genes is left unlinked rather than merging them all
            link = family_of.get(shared[0], shared[0])
            links.append(("chrx", locus, link))
    linked_groups = {link for *_, link in links}
    for accession, _, symbol, _, _ in mrnas:
        group = family_of.get(symbol, symbol)
        if group in linked_groups:
            links.append(("mrna", symbol, group))
    with open(os.path.join(tables, "links.tsv"), "w") as f:
        f.write("dataset\tgene_id\tgroup\n")
        for row in links:
            f.write("\t".join(row) + "\n")

    summary = {
        "mrnas": len(mrnas),
        "mrnas_with_hgnc_key": sum(1 for *_, key in mrnas if key),
        "families_with_two_or_more_mrnas": len({g for g in family_of.values()}),
        "genes_in_such_families": len(family_of),
        "chrx_loci_linked_to_mrnas": sum(1 for d, *_ in links if d == "chrx"),
    }

    if saluki:
        half_life = {}
        by_symbol_hl = {}
        with open(saluki) as f:
            for row in csv.DictReader(f, delimiter="\t"):
                value = row["human_PC1"]
                half_life[row["ensembl_gene_id"]] = value
                by_symbol_hl.setdefault(row["external_gene_name"], value)
        ensembl_of = {v[0]: v[2] for v in keys.values() if v[0] and v[2]}
        joined = 0
        with open(os.path.join(tables, "human_half_life.tsv"), "w", newline="") as f:
            w = csv.writer(f, delimiter="\t", lineterminator="\n")
            w.writerow(["id", "sequence", "group", "half_life"])
            for accession, seq, symbol, _, _ in mrnas:
                value = half_life.get(ensembl_of.get(symbol, ""), by_symbol_hl.get(symbol))
                if value is None:
                    continue
                joined += 1
                w.writerow([accession, seq, family_of.get(symbol, symbol), value])
        summary["mrnas_with_half_life"] = joined

    # Gene essentiality (DepMap CRISPR screens, as egbench labels them; "uncertain" genes left out), per gene:
    # the probe joins it to the prepared mRNA dataset, so its rows carry the same tracks as training did.
    depmap = pq.read_table(os.path.join(egbench, "datasets/DepMap/data/depmap26q1_gene_universe.parquet")).to_pylist()
    with open(os.path.join(tables, "human_essentiality.tsv"), "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["gene_symbol", "ensembl_gene_id", "essential"])
        kept = 0
        for row in depmap:
            if row.get("label") in (0, 1) and row.get("gene_symbol"):
                kept += 1
                w.writerow([row["gene_symbol"], row.get("ensembl_gene_id") or "", row["label"]])
    summary["genes_with_essentiality"] = kept
    summary["mrnas_with_essentiality"] = sum(1 for *_, key in mrnas if key in {r["gene_key"] for r in depmap if r.get("label") in (0, 1)})

    with open(os.path.join(tables, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(json.dumps(summary), file=sys.stderr)


if __name__ == "__main__":
    main()
