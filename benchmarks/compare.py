#!/usr/bin/env python3
"""Prints Rust/PyTorch throughput ratios per row of two bench JSON files (same model and shapes)."""
import json
import sys


def main():
    rust, torch_ = (json.load(open(p)) for p in sys.argv[1:3])
    print(f"model {rust['model']} ({rust['weights']} weights), batch {rust['batch']}, device {rust['device']} / {torch_['device']}")
    print(f"Rust:    {rust['implementation']}, {rust['dtype']}, {rust['threads']} threads, {rust.get('profile', '')}")
    print(f"PyTorch: {torch_['implementation']}, {torch_['dtype']}, {torch_['threads']} threads")
    print(f"{'measure':<20} {'seq':>4} {'Rust seq/s':>11} {'PyTorch seq/s':>14} {'Rust/PyTorch':>13}"
          f" {'first call Rust / PyTorch (s)':>30}")
    theirs = {(r["measure"], r["seq_len"]): r for r in torch_["rows"]}
    for r in rust["rows"]:
        # Variant rows are compared with PyTorch's plain ones: `_fused` (the fused AdapterPooler
        # kernel) with its head steps, `_fused_attention` (Burn's attention kernel) with extract.
        base = r["measure"].removesuffix("_fused_attention").removesuffix("_fused")
        t = theirs.get((base, r["seq_len"]))
        if t is None:
            continue
        ratio = r["sequences_per_second"] / t["sequences_per_second"]
        first = f"{r.get('first_call_seconds', float('nan')):.2f} / {t.get('first_call_seconds', float('nan')):.2f}"
        print(f"{r['measure']:<20} {r['seq_len']:>4} {r['sequences_per_second']:>11.2f} {t['sequences_per_second']:>14.2f}"
              f" {ratio:>12.2f}x {first:>30}")
    # Each side says what its number is (on a GPU: Rust host RSS vs PyTorch's device allocator).
    print(f"peak memory: Rust {rust['peak_memory_mb']:.0f} MB ({rust['peak_memory_kind']}), "
          f"PyTorch {torch_['peak_memory_mb']:.0f} MB ({torch_['peak_memory_kind']})")


if __name__ == "__main__":
    main()
