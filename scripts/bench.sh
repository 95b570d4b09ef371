#!/usr/bin/env bash
# Rust vs PyTorch on this machine, same shapes and timing rules: builds the release binary
# (add `--features cuda` via BENCH_FEATURES=cuda and BENCH_DEVICE=cuda on a GPU machine), runs
# `bertvision bench` and benchmarks/torch_bench.py for each model, prints the ratio tables; then
# the end-to-end row: `bertvision run` on a small real task (BENCH_RUN_TASK, default WNLI; ""
# skips it) and benchmarks/torch_run.py on the config that run wrote, wall time per phase.
# Needs python3 with torch and transformers. Results land in ${BENCH_DIR:-target/bench}.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${BENCH_DIR:-target/bench}
DEVICE=${BENCH_DEVICE:-cpu}
MODELS=${BENCH_MODELS-minilm-l6 bert-base}  # "" = only the end-to-end row
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
RUN_TASK=${BENCH_RUN_TASK-WNLI}
RUN_MODEL=${BENCH_RUN_MODEL:-minilm-l6}
GLUE=${BERTVISION_DATA:-../shared/data}/glue
if [ -n "$RUN_TASK" ]; then
    RUN_DIR="$OUT/run-$RUN_TASK-$RUN_MODEL"
    rm -rf "$RUN_DIR"  # a finished run would be resumed, i.e. not timed
    "$BV" run --task "$RUN_TASK" --model "$RUN_MODEL" --seeds 1 --device "$DEVICE" --data-dir "$GLUE" --out "$RUN_DIR"
    python3 benchmarks/torch_run.py --config "$RUN_DIR/config.json" --data-dir "$GLUE" --device "$DEVICE" \
        --model-dir "$("$BV" fetch-models --model "$RUN_MODEL" | cut -f2)" --out "$OUT/torch-run-$RUN_TASK-$RUN_MODEL.json" > /dev/null
    python3 benchmarks/compare_run.py "$RUN_DIR/results.json" "$OUT/torch-run-$RUN_TASK-$RUN_MODEL.json" |
        tee "$OUT/compare-run-$RUN_TASK-$RUN_MODEL.txt"
fi
