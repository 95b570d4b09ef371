#!/usr/bin/env python3
"""Per-kernel totals from a CubeCL profiling log (cubecl.toml `[profiling.logger] level = "basic"`,
one `| time | kernel name | ... |` line per launch): launches, total time, share, mean, sorted by
total. Matmul kernels are split by their argument kind (TensorArgs, TensorMapArgs = TMA loads,
FusedMatmulArgs = a matmul with fused element-wise ops).

    python3 benchmarks/cubecl_profile.py cubecl-profile.log [--top 25]
"""
import argparse
import collections
import re

UNITS_US = {"ns": 1e-3, "µs": 1.0, "us": 1.0, "ms": 1e3, "s": 1e6}
TIME = re.compile(r"^([\d.]+)(ns|µs|us|ms|s)$")


def kernel_times(path):
    """(kernel, microseconds) per launch line; table headers, rules and totals are skipped."""
    for line in open(path, encoding="utf-8"):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2:
            continue
        m = TIME.match(cells[0])
        if not m:
            continue
        name = cells[1]
        if name == "MatmulEntry" and len(cells) > 2:
            name = f"MatmulEntry/{cells[2]}"
        yield name, float(m.group(1)) * UNITS_US[m.group(2)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("log")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    total = collections.defaultdict(float)
    count = collections.Counter()
    for name, us in kernel_times(args.log):
        total[name] += us
        count[name] += 1
    if not count:
        raise SystemExit(f"{args.log}: no kernel timings found (is it a CubeCL profiling log?)")
    grand = sum(total.values())
    print(f"{sum(count.values())} launches, {grand / 1e3:.1f} ms of kernel time")
    print(f"{'kernel':<32} {'launches':>8} {'total ms':>9} {'share':>6} {'mean µs':>8}")
    for name, us in sorted(total.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"{name:<32} {count[name]:>8} {us / 1e3:>9.1f} {100 * us / grand:>5.1f}% {us / count[name]:>8.1f}")


if __name__ == "__main__":
    main()
