#!/usr/bin/env bash
# Rust vs PyTorch on this machine, same shapes and timing rules: builds the release binary
# (add `--features cuda` via BENCH_FEATURES=cuda and BENCH_DEVICE=cuda on a GPU machine), runs
# `bertvision bench` and benchmarks/torch_bench.py for each model, prints the ratio tables.
# Needs python3 with torch and transformers. Results land in ${BENCH_DIR:-target/bench}.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${BENCH_DIR:-target/bench}
DEVICE=${BENCH_DEVICE:-cpu}
MODELS=${BENCH_MODELS:-minilm-l6 bert-base}
SEQ=${BENCH_SEQ_LENS:-128,384}
BATCH=${BENCH_BATCH:-8}
mkdir -p "$OUT"
cargo build --release -q -p bertvision ${BENCH_FEATURES:+--features "$BENCH_FEATURES"}
BV=target/release/bertvision
for model in $MODELS; do
    dir=()
    case "$model" in
        bert-base|bert-large) ;;
        *) dir=(--model-dir "$("$BV" fetch-models --model "$model" | cut -f2)") ;;
    esac
    "$BV" bench --model "$model" --seq-lens "$SEQ" --batch "$BATCH" --device "$DEVICE" --out "$OUT/rust-$model.json"
    python3 benchmarks/torch_bench.py --model "$model" "${dir[@]}" --seq-lens "$SEQ" --batch "$BATCH" \
        --device "$DEVICE" --out "$OUT/torch-$model.json"
    python3 benchmarks/compare.py "$OUT/rust-$model.json" "$OUT/torch-$model.json" | tee "$OUT/compare-$model.txt"
done
