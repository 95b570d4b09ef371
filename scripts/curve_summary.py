#!/usr/bin/env python3
"""Where BERTVision at each extraction point stands against BERT at the end, and at what share
of the fine-tuning cost: reads a results.json of `bertvision run --extract-at ...` and prints one
row per point (mean ± sd over seeds of the task's main metric on dev) with the seconds each
point cost relative to the whole fine-tuning.

    scripts/curve_summary.py runs/RTE-curves/results.json [--split dev] [--metric accuracy]
"""
import argparse
import json
import statistics
import sys

MAIN = {"CoLA": "matthews", "STS-B": "pearson", "MRPC": "f1", "QQP": "f1", "SQuAD2": "f1"}


def key(method, point, fraction=1.0):
    label = lambda x: f"{x:g}"
    return f"{method}@{label(point)}" + ("" if fraction == 1.0 else f"/{label(fraction)}")


def cell(summary, k, split, metric):
    s = summary.get(k, {}).get(split, {}).get(metric)
    return None if s is None else (s["mean"], s["sd"])


def fmt(v):
    return "–" if v is None else f"{v[0]:.4f} ± {v[1]:.4f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("--split", default="dev")
    ap.add_argument("--metric")
    a = ap.parse_args()
    r = json.load(open(a.results))
    metric = a.metric or MAIN.get(r["task"], "accuracy")
    summary, cfg = r["summary"], r["config"]
    epochs = cfg["finetune"]["epochs"]
    points = cfg["extract_at"] if isinstance(cfg["extract_at"], list) else [cfg["extract_at"]]
    fractions = [1.0] + cfg["head"].get("train_fractions", [])
    costs = {}
    for seed in r["seeds"]:
        for c in seed.get("costs", []):
            costs.setdefault(c["at"], []).append(c)
    def mean_cost(p, field):
        v = [c[field] for c in costs.get(p, []) if c.get(field) is not None]
        return statistics.mean(v) if v else None
    total = mean_cost(epochs, "finetune_seconds")
    final = cell(summary, "bert_final", a.split, metric)
    print(f"{r['task']} {r['model']['spec']}, {len(r['seeds'])} seed(s), {a.split} {metric}; "
          f"BERT-{epochs:g}e {fmt(final)}, fine-tuning {total:.0f} s" if total else "")
    columns = ["epochs", "BERT", "BERTVision", "ensemble (mean)"]
    columns += [f"BERTVision, {f:g} of the data" for f in fractions[1:]]
    columns.append("cost (fine-tune + head) / full fine-tune")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---:|" * len(columns))
    for p in points:
        bv = cell(summary, key("bertvision", p), a.split, metric)
        row = [f"{p:g}", fmt(cell(summary, key("bert", p), a.split, metric)), fmt(bv),
               fmt(cell(summary, key("ensemble_mean", p), a.split, metric))]
        row += [fmt(cell(summary, key("bertvision", p, f), a.split, metric)) for f in fractions[1:]]
        ft, hd = mean_cost(p, "finetune_seconds"), mean_cost(p, "head_seconds")
        share = (ft + (hd or 0)) / total if ft is not None and total else None
        reached = " (≥ BERT-final)" if bv and final and bv[0] >= final[0] else ""
        row.append("–" if share is None else f"{share:.2f}{reached}")
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
