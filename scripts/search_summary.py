#!/usr/bin/env python3
"""Default head vs the best of each search, on validation (what the searches saw) and dev (the
report): reads a run made with --validation-fraction, its search folders (`bertvision search`)
and the 3-seed train-head folders of each search's best, and prints Markdown tables.

    scripts/search_summary.py RUN --search random=RUN/search-random --search tpe=RUN/search-tpe \
        --best random=RUN/search-random/best --best tpe=RUN/search-tpe/best
"""
import argparse
import json
import statistics

MAIN = {"CoLA": "matthews", "STS-B": "pearson", "MRPC": "f1", "QQP": "f1", "SQuAD2": "f1"}


def load(path):
    return json.load(open(path))


def per_seed(results, method, split, metric):
    return [s["metrics"][method][split][metric] for s in results["seeds"]
            if method in s["metrics"] and split in s["metrics"][method]]


def fmt(values):
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f} (n={len(values)})"


def pairs(items):
    return [tuple(i.split("=", 1)) for i in items]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--search", action="append", default=[], help="NAME=DIR")
    ap.add_argument("--best", action="append", default=[], help="NAME=DIR (train-head --seeds ...)")
    a = ap.parse_args()
    run = load(f"{a.run}/results.json")
    metric = MAIN.get(run["task"], "accuracy")
    head = run["config"]["head"]
    print(f"## {run['task']}: {metric}, validation = {run['splits']['validation']['examples']} "
          f"held-out training examples, dev = {run['splits']['dev']['examples']}\n")
    print("| head | settings | seed-1 validation | seed-1 dev | validation, all seeds | dev, all seeds | trials |")
    print("|---|---|---:|---:|---:|---:|---:|")
    default = (f"head_lr={head['lr']} adapter_size={head['adapter_size']} head_epochs={head['epochs']} "
               f"layer_mix={head['layer_mix']} skip_last_layer={str(head['skip_last_layer']).lower()}")
    v, d = per_seed(run, "bertvision", "validation", metric), per_seed(run, "bertvision", "dev", metric)
    print(f"| default | {default} | {fmt(v[:1])} | {fmt(d[:1])} | {fmt(v)} | {fmt(d)} | – |")
    best_dirs = dict(pairs(a.best))
    for name, folder in pairs(a.search):
        trials = [json.loads(l) for l in open(f"{folder}/trials.jsonl") if l.strip()]
        best = max(trials, key=lambda t: (t["validation"] or -1e9, -t["trial"]))
        settings = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in best["params"].items())
        v3 = d3 = []
        if name in best_dirs:
            r = load(f"{best_dirs[name]}/results.json")
            v3, d3 = per_seed(r, "bertvision", "validation", metric), per_seed(r, "bertvision", "dev", metric)
        print(f"| {name} best (trial {best['trial']}) | {settings} | {best['validation']:.4f} | "
              f"{best['dev']:.4f} | {fmt(v3)} | {fmt(d3)} | {len(trials)} |")
    print("\n| BERT | dev, all seeds |\n|---|---:|")
    for label, method in [("BERT-1e", "bert@1"), ("BERT-2e", "bert@2"),
                          ("BERT, best point on validation", "bert_final")]:
        print(f"| {label} | {fmt(per_seed(run, method, 'dev', metric))} |")


if __name__ == "__main__":
    main()
