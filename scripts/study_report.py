"""Aggregates a probe study (scripts/probe-study.sh) over its training seeds: OUT/seed-*/report/report.json in,
OUT/study.md and OUT/study.json out. Standard library only.

For every task, target, training-set size and baseline:
- each method's primary metric, mean over the probe's draws, then mean, spread (sd) and range over the seeds;
- the pre-trained encoder minus the baseline: the mean difference over the seeds, and the envelope of the
  per-seed paired-bootstrap intervals over test rows (the lowest lower bound to the highest upper bound); the
  comparison *holds* when every seed's interval lies on the same side of 0, and is *mixed* otherwise;
- for the random-weight baselines (one random seed per training seed), the pre-trained encoder at every seed
  against the best random seed's mean.

With --against BASE (another study's OUT, e.g. the default configuration's, with the same tasks and seeds),
also the pre-trained encoder of OUT against that of BASE, seed by seed: a variant of the pre-training (made with
scripts/probe-study.sh --no-baselines) is better when it is ahead at every seed.

    python3 scripts/study_report.py OUT [--against BASE]
"""

import glob
import json
import os
import statistics
import sys


def size_name(size):
    if "fraction" in size:
        return f"{size['fraction'] * 100:g}%"
    return f"{size['count']} rows"


def size_key(size, train_rows):
    return (train_rows, size_name(size))


LABELS = {
    "pretrained": "IsoCLR (pre-trained)",
    "random": "random weights",
    "random:best_seed": "random weights, its best seed",
    "random_calibrated": "random weights, calibrated BN",
    "random_calibrated:best_seed": "random weights, calibrated BN, its best seed",
    "kmer": "k-mer (k=3-6)",
    "supervised": "supervised from scratch",
}


def read_reports(out):
    reports = {}
    for path in sorted(glob.glob(os.path.join(out, "seed-*", "report", "report.json"))):
        seed = path.split(os.sep)[-3].removeprefix("seed-")
        with open(path) as f:
            reports[seed] = json.load(f)
    if not reports:
        sys.exit(f"study_report: no seed-*/report/report.json under {out}")
    return reports


def pretrained_means(report):
    """(task/target, size label) -> (the pre-trained encoder's primary metric, mean over draws; training rows)."""
    means = {}
    for task in report["tasks"]:
        for target in task["targets"]:
            for method in target["results"]["methods"]:
                if method["method"] != "pretrained":
                    continue
                for size in method["sizes"]:
                    key = (f"{task['task']['name']}/{target['target']}", size_name(size["size"]))
                    means[key] = (size["metrics"][0]["mean"], size["train_rows"])
    return means


def against(reports, base_dir, md, study):
    """The pre-trained encoder of this study minus that of the study in base_dir, seed by seed."""
    base = read_reports(base_dir)
    seeds = [s for s in sorted(reports, key=lambda s: int(s) if s.isdigit() else s) if s in base]
    if not seeds:
        sys.exit(f"study_report: {base_dir} has none of this study's seeds")
    ours = {s: pretrained_means(reports[s]) for s in seeds}
    theirs = {s: pretrained_means(base[s]) for s in seeds}
    md.append(f"## Against {base_dir}\n")
    md.append(f"The pre-trained encoder here minus the one there, primary metric, at seeds {', '.join(seeds)}:\n")
    md.append("| target | size | here (mean over seeds) | there | per-seed differences | verdict |")
    md.append("|---|---|---|---|---|---|")
    rows = []
    targets = list(dict.fromkeys(k[0] for k in ours[seeds[0]]))
    keys = sorted(ours[seeds[0]], key=lambda k: (targets.index(k[0]), ours[seeds[0]][k][1]))
    for key in keys:
        if not all(key in ours[s] and key in theirs[s] for s in seeds):
            continue
        here = [ours[s][key][0] for s in seeds]
        there = [theirs[s][key][0] for s in seeds]
        diffs = [a - b for a, b in zip(here, there)]
        verdict = (
            "better at every seed" if all(d > 0 for d in diffs)
            else "worse at every seed" if all(d < 0 for d in diffs)
            else "mixed"
        )
        rows.append({"target": key[0], "size": key[1], "here": here, "there": there, "verdict": verdict})
        md.append(
            f"| {key[0]} | {key[1]} | {statistics.mean(here):.3f} | {statistics.mean(there):.3f} | "
            f"{', '.join(f'{d:+.3f}' for d in diffs)} | {verdict} |"
        )
    md.append("")
    study["against"] = {"base": base_dir, "seeds": seeds, "rows": rows}


def main():
    args = sys.argv[1:]
    base_dir = None
    if "--against" in args:
        i = args.index("--against")
        base_dir = args[i + 1]
        del args[i : i + 2]
    out = args[0]
    reports = read_reports(out)
    seeds = sorted(reports, key=lambda s: int(s) if s.isdigit() else s)
    study = {"seeds": seeds, "targets": []}
    md = [f"# Probe study over training seeds {', '.join(seeds)}\n"]
    first = reports[seeds[0]]
    for t_index, task in enumerate(first["tasks"]):
        for g_index, target in enumerate(task["targets"]):
            name = f"{task['task']['name']}/{target['target']}"
            metric = target["results"]["primary_metric"]
            per_seed = [reports[s]["tasks"][t_index]["targets"][g_index]["results"] for s in seeds]
            ranks = {
                s: {m: r for m, r, _ in reports[s]["tasks"][t_index].get("effective_rank", [])} for s in seeds
            }
            # method -> size label -> [per-seed mean]
            curves, rows = {}, {}
            for results in per_seed:
                for method in results["methods"]:
                    for size in method["sizes"]:
                        label = size_name(size["size"])
                        rows.setdefault(label, []).append(size["train_rows"])
                        curves.setdefault(method["method"], {}).setdefault(label, []).append(size["metrics"][0]["mean"])
            sizes = sorted(rows, key=lambda l: statistics.mean(rows[l]))
            entry = {"target": name, "metric": metric, "methods": {}, "comparisons": [], "best_random": []}
            md.append(f"## {name}: {metric}, {per_seed[0]['test_rows']} test rows\n")
            md.append("| method | " + " | ".join(f"{s} ({statistics.mean(rows[s]):.0f})" for s in sizes) + " |")
            md.append("|---|" + "---|" * len(sizes))
            for method, by_size in curves.items():
                cells = []
                for s in sizes:
                    v = by_size.get(s, [])
                    if len(v) == len(seeds):
                        sd = statistics.stdev(v) if len(v) > 1 else 0.0
                        cells.append(f"{statistics.mean(v):.3f} ± {sd:.3f} [{min(v):.3f}, {max(v):.3f}]")
                    else:
                        cells.append("–")
                entry["methods"][method] = {s: by_size.get(s, []) for s in sizes}
                md.append(f"| {LABELS.get(method, method)} | " + " | ".join(cells) + " |")
            md.append(
                "\nmean ± sd over seeds [min, max] of each seed's mean over draws; column heads: size (mean training rows).\n"
            )
            # Comparisons.
            md.append("| pre-trained − baseline | size | mean over seeds | envelope of per-seed 95 % intervals | verdict |")
            md.append("|---|---|---|---|---|")
            by_key = {}
            for seed, results in zip(seeds, per_seed):
                for c in results["comparisons"]:
                    # A baseline run at several random seeds is compared twice: pooled, and its best seed alone.
                    baseline = c["baseline"] + (":best_seed" if c.get("best_seed") is not None else "")
                    key = (baseline, size_name(c["size"]))
                    by_key.setdefault(key, []).append((seed, c["difference"]))
            for (baseline, size), diffs in sorted(by_key.items(), key=lambda kv: (kv[0][0], sizes.index(kv[0][1]) if kv[0][1] in sizes else 99)):
                estimates = [d["estimate"] for _, d in diffs]
                lower = min(d["lower"] for _, d in diffs)
                upper = max(d["upper"] for _, d in diffs)
                above = all(d["lower"] > 0 for _, d in diffs)
                below = all(d["upper"] < 0 for _, d in diffs)
                complete = len(diffs) == len(seeds)
                verdict = (
                    "pre-trained better at every seed" if above and complete
                    else "pre-trained worse at every seed" if below and complete
                    else "mixed: not a claim"
                )
                entry["comparisons"].append(
                    {
                        "baseline": baseline,
                        "size": size,
                        "estimates": estimates,
                        "lower": lower,
                        "upper": upper,
                        "verdict": verdict,
                    }
                )
                md.append(
                    f"| {LABELS.get(baseline, baseline)} | {size} | {statistics.mean(estimates):+.3f} | "
                    f"[{lower:+.3f}, {upper:+.3f}] | {verdict} |"
                )
            # Against the best random seed.
            for baseline in ("random", "random_calibrated"):
                if baseline not in curves:
                    continue
                md.append(f"\nPre-trained at each seed against the best of the {len(seeds)} seeds of {LABELS[baseline]}:\n")
                for s in sizes:
                    random_means = curves[baseline].get(s, [])
                    pre = curves.get("pretrained", {}).get(s, [])
                    if len(random_means) != len(seeds) or len(pre) != len(seeds):
                        continue
                    best = max(random_means)
                    wins = sum(p > best for p in pre)
                    entry["best_random"].append({"baseline": baseline, "size": s, "best": best, "pretrained": pre})
                    md.append(
                        f"- {s}: best random seed {best:.3f}; pre-trained {', '.join(f'{p:.3f}' for p in pre)}: "
                        f"above it at {wins} of {len(pre)} seeds"
                    )
            if any(ranks[s] for s in seeds):
                md.append("\nEffective rank (RankMe) of the embeddings, per seed:\n")
                for s in seeds:
                    md.append(f"- seed {s}: " + "; ".join(f"{LABELS.get(m, m)} {r:.1f}" for m, r in ranks[s].items()))
            md.append("")
            study["targets"].append(entry)
    if base_dir is not None:
        against(reports, base_dir, md, study)
    with open(os.path.join(out, "study.json"), "w") as f:
        json.dump(study, f, indent=1)
    with open(os.path.join(out, "study.md"), "w") as f:
        f.write("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
