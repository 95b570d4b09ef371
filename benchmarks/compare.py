#!/usr/bin/env python3
"""Rust/PyTorch throughput ratios from two bench JSON files (same model and shapes).

Usage: compare.py RUST.json TORCH.json [--peak-tflops T]

Prints (1) the ratio at every batch both sides measured, (2) the best-batch ratio: each side at
its own fastest batch for that row and length, and with --peak-tflops (the card's dense peak for
the dtype that ran, e.g. ~990 for an H200 in bf16), (3) the fraction of that bound each side's
best reaches: forward FLOPs per sequence are 2·seq·(4h² + 2h·i) + 4·seq²·h per layer (h hidden,
i intermediate), a training step three times that.
"""
import argparse
import json


def batches(report):
    return report.get("batches") or [report["batch"]]


def base_measure(measure):
    # Variant rows are compared with PyTorch's plain ones: `_fused` (the fused AdapterPooler
    # kernel) with its head steps, `_fused_attention` (the backend's encoder kernels) with extract.
    return measure.removesuffix("_fused_attention").removesuffix("_fused")


def flops_per_sequence(config, measure, seq):
    h, layers = config["hidden"], config["layers"]
    inner = config.get("intermediate", 4 * h)
    forward = layers * (2 * seq * (4 * h * h + 2 * h * inner) + 4 * seq * seq * h)
    return {"extract": forward, "finetune_step": 3 * forward}.get(base_measure(measure))


def best_rows(rows):
    best = {}
    for r in rows:
        key = (r["measure"], r["seq_len"])
        if key not in best or r["sequences_per_second"] > best[key]["sequences_per_second"]:
            best[key] = r
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("rust")
    ap.add_argument("torch")
    ap.add_argument("--peak-tflops", type=float, help="the card's peak for the dtype that ran")
    args = ap.parse_args()
    rust, torch_ = (json.load(open(p)) for p in (args.rust, args.torch))
    print(f"model {rust['model']} ({rust['weights']} weights), batches {batches(rust)} / {batches(torch_)},"
          f" device {rust['device']} / {torch_['device']}")
    print(f"Rust:    {rust['implementation']}, {rust['dtype']}, {rust['threads']} threads, {rust.get('profile', '')}")
    print(f"PyTorch: {torch_['implementation']}, {torch_['dtype']}, {torch_['threads']} threads")

    print("\nsame batch")
    print(f"{'measure':<24} {'seq':>4} {'batch':>5} {'Rust seq/s':>11} {'PyTorch seq/s':>14} {'Rust/PyTorch':>13}"
          f" {'first call Rust / PyTorch (s)':>30}")
    theirs = {(r["measure"], r["seq_len"], r["batch"]): r for r in torch_["rows"]}
    for r in rust["rows"]:
        t = theirs.get((base_measure(r["measure"]), r["seq_len"], r["batch"]))
        if t is None:
            continue
        ratio = r["sequences_per_second"] / t["sequences_per_second"]
        first = f"{r.get('first_call_seconds', float('nan')):.2f} / {t.get('first_call_seconds', float('nan')):.2f}"
        print(f"{r['measure']:<24} {r['seq_len']:>4} {r['batch']:>5} {r['sequences_per_second']:>11.2f}"
              f" {t['sequences_per_second']:>14.2f} {ratio:>12.2f}x {first:>30}")

    print("\neach side at its fastest batch")
    bound = f" {'bound Rust / PyTorch':>21}" if args.peak_tflops else ""
    print(f"{'measure':<24} {'seq':>4} {'Rust seq/s (batch)':>19} {'PyTorch seq/s (batch)':>22} {'Rust/PyTorch':>13}{bound}")
    their_best = best_rows(torch_["rows"])
    for (measure, seq), r in best_rows(rust["rows"]).items():
        t = their_best.get((base_measure(measure), seq))
        if t is None:
            continue
        ratio = r["sequences_per_second"] / t["sequences_per_second"]
        line = (f"{measure:<24} {seq:>4} {r['sequences_per_second']:>12.2f} ({r['batch']:>4})"
                f" {t['sequences_per_second']:>15.2f} ({t['batch']:>4}) {ratio:>12.2f}x")
        flops = flops_per_sequence(rust["config"], measure, seq)
        if args.peak_tflops and flops:
            peak = args.peak_tflops * 1e12
            line += f" {r['sequences_per_second'] * flops / peak:>9.1%} / {t['sequences_per_second'] * flops / peak:.1%}"
        print(line)
    # Each side says what its number is (on a GPU: Rust host RSS vs PyTorch's device allocator).
    print(f"\npeak memory: Rust {rust['peak_memory_mb']:.0f} MB ({rust['peak_memory_kind']}), "
          f"PyTorch {torch_['peak_memory_mb']:.0f} MB ({torch_['peak_memory_kind']})")


if __name__ == "__main__":
    main()
