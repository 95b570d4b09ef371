#!/usr/bin/env bash
# One AdamW update of every parameter of BERT (minilm-l6's and bert-base's shapes) on this CPU,
# side by side in one run: Burn's AdamW ops and bertvision's one-pass kernel
# (native/examples/adamw_step.rs), PyTorch's AdamW foreach and fused (benchmarks/adamw_step.py);
# prints the seconds and the ratios. ADAMW_OUT (default results/adamw-step) keeps the JSON lines.
#   ADAMW_REPEATS=7 PYTHON=python3 scripts/adamw_step.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${ADAMW_OUT:-results/adamw-step}
REPEATS=${ADAMW_REPEATS:-7}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
cargo build --release -p bertvision --example adamw_step >&2
{ lscpu | grep -E 'Model name|^CPU\(s\)'; echo "SIMD: $(grep -o -w -E 'avx2|fma|avx512f' /proc/cpuinfo | sort -u | tr '\n' ' ')"; } > "$OUT/machine.txt"
target/release/examples/adamw_step "$REPEATS" > "$OUT/rust.jsonl"
"$PYTHON" benchmarks/adamw_step.py --repeats "$REPEATS" --threads "$(nproc)" > "$OUT/python.jsonl"
"$PYTHON" - "$OUT/rust.jsonl" "$OUT/python.jsonl" <<'PY' | tee "$OUT/table.md"
import json, sys
rows = [json.loads(l) for f in sys.argv[1:] for l in open(f) if l.strip()]
rows = [r for r in rows if "seconds" in r]
impls = list(dict.fromkeys(r["impl"] for r in rows))
ours = "one-pass kernel (bertvision cpu)"
by = {(r["impl"], r["model"]): r["seconds"] for r in rows}
models = list(dict.fromkeys(r["model"] for r in rows))
others = [i for i in impls if i != ours]
print("| model | " + " | ".join(f"{i} (ms)" for i in impls) + " | " + " | ".join(f"speed of ours / {i}" for i in others) + " |")
print("|---" * (1 + len(impls) + len(others)) + "|")
for m in models:
    t = [by.get((i, m)) for i in impls]
    ratios = [f"{by[(i, m)] / by[(ours, m)]:.2f}" if (i, m) in by and (ours, m) in by else "" for i in others]
    print(f"| {m} | " + " | ".join(f"{x * 1e3:.1f}" if x else "" for x in t) + " | " + " | ".join(ratios) + " |")
PY
