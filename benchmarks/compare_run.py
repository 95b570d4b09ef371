#!/usr/bin/env python3
"""Wall time per phase of a `bertvision run` (its results.json) against benchmarks/torch_run.py's
report for the same config, and each side's dev metrics per seed.

    python3 benchmarks/compare_run.py RUN/results.json torch-run.json
"""
import json
import sys


def main():
    rust, torch_ = (json.load(open(p)) for p in sys.argv[1:3])
    rw, tw = rust["wall_seconds"], torch_["wall_seconds"]
    rw = dict(rw, total=rw.get("total_this_process", rw.get("total")))
    print(f"{rust['task']}, {torch_['train_examples']} training / {torch_['dev_examples']} dev examples, "
          f"seeds {[s['seed'] for s in torch_['seeds']]}")
    print(f"Rust:    {rust.get('device', '?')}")
    print(f"PyTorch: {torch_['implementation']}, {torch_['dtype']}, {torch_['threads']} threads, {torch_['device']}")
    print(f"{'phase':<10} {'Rust s':>9} {'PyTorch s':>10} {'Rust/PyTorch speed':>19}")
    for phase in ["data", "finetune", "head", "evaluate", "total"]:
        r, t = rw.get(phase), tw.get(phase)
        if r is None or t is None:
            continue
        print(f"{phase:<10} {r:>9.2f} {t:>10.2f} {t / r if r else float('nan'):>18.2f}x")
    print("(Rust's total also holds checkpoint writes and the export; PyTorch writes neither.)")
    for side, report in [("Rust", rust), ("PyTorch", torch_)]:
        for s in report["seeds"]:
            # Each method's first metric (Rust nests it under the split, "dev").
            firsts = {m: round(next(iter(d.get("dev", d).values())), 4) for m, d in s["metrics"].items()}
            print(f"{side:<8} seed {s['seed']}: {firsts}")


if __name__ == "__main__":
    main()
