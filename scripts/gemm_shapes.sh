#!/usr/bin/env bash
# The linear layers' matmuls alone on this CPU, side by side in one run: the gemm crate as
# bertvision's CPU kernels call it (native/examples/gemm_shapes.rs), OpenBLAS (numpy's) and
# PyTorch (benchmarks/gemm_shapes.py), the same shapes and threads; prints GFLOP/s per shape and
# the ratios. GEMM_OUT (default results/gemm-shapes) keeps the JSON lines.
#   GEMM_BATCH=8 GEMM_REPEATS=7 PYTHON=python3 scripts/gemm_shapes.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${GEMM_OUT:-results/gemm-shapes}
BATCH=${GEMM_BATCH:-8}
REPEATS=${GEMM_REPEATS:-7}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
cargo build --release -p bertvision --example gemm_shapes >&2
{ lscpu | grep -E 'Model name|^CPU\(s\)'; echo "SIMD: $(grep -o -w -E 'avx2|fma|avx512f' /proc/cpuinfo | sort -u | tr '\n' ' ')"; } > "$OUT/machine.txt"
target/release/examples/gemm_shapes "$BATCH" "$REPEATS" > "$OUT/rust.jsonl"
"$PYTHON" benchmarks/gemm_shapes.py --batch "$BATCH" --repeats "$REPEATS" --threads "$(nproc)" > "$OUT/python.jsonl"
"$PYTHON" - "$OUT/rust.jsonl" "$OUT/python.jsonl" <<'PY' | tee "$OUT/table.md"
import json, sys
rows = [json.loads(l) for f in sys.argv[1:] for l in open(f) if l.strip()]
impls = list(dict.fromkeys(r["impl"] for r in rows))
ours = impls[0]
by = {(r["impl"], r["model"], r["seq"], r["layer"], r["op"]): r["gflops"] for r in rows}
flops = {(r["model"], r["seq"], r["layer"], r["op"]): 2.0 * r["m_k_n"][0] * r["m_k_n"][1] * r["m_k_n"][2] for r in rows}
keys = list(dict.fromkeys((r["model"], r["seq"], r["layer"], r["op"]) for r in rows))
print("| model, seq | layer | op | " + " | ".join(impls) + " | " + " | ".join(f"ours / {i}" for i in impls[1:]) + " |")
print("|---" * (3 + 2 * len(impls) - 1) + "|")
for k in keys:
    g = [by.get((i,) + k) for i in impls]
    ratios = [f"{g[0] / x:.2f}" if x else "" for x in g[1:]]
    print(f"| {k[0]}, {k[1]} | {k[2]} | {k[3]} | " + " | ".join(f"{x:.1f}" if x else "" for x in g) + " | " + " | ".join(ratios) + " |")
for i in impls[1:]:
    # The speed ratio over all shapes together: their summed time over ours.
    shared = [k for k in keys if (i,) + k in by]
    theirs = sum(flops[k] / by[(i,) + k] for k in shared)
    mine = sum(flops[k] / by[(ours,) + k] for k in shared)
    print(f"\nAll shapes together (summed times): ours / {i} = {theirs / mine:.2f}")
PY
