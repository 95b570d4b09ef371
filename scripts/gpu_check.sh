#!/usr/bin/env bash
# One prepared GPU session, run by the device tool in the repo root with gpu/bundle.tar.xz
# carried (scripts/gpu_bundle.sh makes it: the CUDA binary, minilm-l6, the GLUE/SQuAD files).
#
#   A. `bertvision bench` (minilm-l6, batch 32, f32) and benchmarks/torch_bench.py on the same
#      card, one sequence length per process, with CubeCL's compile and autotune logs, so the
#      first-call cost (kernel compilation + autotuning) is measured, not guessed; then one seed
#      of RTE end to end, Rust alone on the card, then PyTorch on the same config.
#   B. `bertvision run` with minilm-l6 on RTE, MRPC, STS-B, CoLA and SQuAD (22 articles train /
#      6 eval), 3 seeds: three processes per task share one run folder (each claims a seed), all
#      tasks at once, so kernel compilation (CPU-bound) spreads over the cores. Beside it, encode
#      parity: CUDA f32 and bf16 against CPU and transformers.
#   C. With the time left, in this order: RTE with the head fed by a bf16 encoder and RTE with
#      the fused head kernel and the backend's encoder kernels, a learning-rate sweep for
#      minilm-l6, bert-base shapes, a per-kernel profile, bf16 bench rows. (Stage A's bench has
#      the fused head rows, `head_step*_fused`, the encoder-kernels extraction row,
#      `extract_fused_attention`, and `fused_path_checks`: both fast paths against the plain ones
#      on a padded batch.)
#
# Environment: GPU_BUDGET_S (seconds the script may take, default 520), GPU_COLD=1 (no kept
# autotune results), GPU_TABLE_TASKS (stage B's tasks; "" skips stage B), GPU_ENCODE=0 (no encode
# parity), GPU_LR_SWEEP=0 (no learning-rate sweep), GPU_E2E=0 (no end-to-end row).
#
# Every process shares CubeCL's on-disk PTX and autotune caches, so a kernel is compiled and
# tuned once per session. The autotune results of the 2026-11-26 H200 sessions
# (benchmarks/cubecl-autotune-h200.tar.gz) are loaded first unless GPU_COLD=1: with them a process
# compiles only the chosen kernels instead of every candidate (a cold minilm-l6 forward took 74 s,
# 188 matmul candidates compiled). Leave CubeCL's autotune level alone: it changes how shapes
# are rounded into keys, so no kept result applies (at `minimal`, the first f32 fine-tuning step
# took 224 s). A bf16 encoder's first call is slow too (73 s, its keys tuned cold), hence the bf16
# slots' length. Every stage has a time slot. The device tool brings back only a
# few files, so everything lands in one archive, $OUT/gpu.tgz, refreshed after every step.
set -u
DEST=${OUT:-/tmp/gpu-out}
OUT=/tmp/gpu-work
BUDGET=${GPU_BUDGET_S:-520}
T0=$(date +%s)
mkdir -p "$DEST" "$OUT" /tmp/bv /tmp/cubecl /tmp/runs
ROOT=$PWD
now() { echo $(( $(date +%s) - T0 )); }
left() { echo $(( BUDGET - $(now) )); }
pack() { tar czf "$DEST/gpu.tgz.tmp" -C "$OUT" . && mv "$DEST/gpu.tgz.tmp" "$DEST/gpu.tgz"; }
mark() { echo "$* at +$(now)s" | tee -a "$OUT/timeline.txt"; pack; }
if [ "${GPU_COLD:-0}" != 1 ] && [ -f benchmarks/cubecl-autotune-h200.tar.gz ]; then
    tar xzf benchmarks/cubecl-autotune-h200.tar.gz -C /  # tmp/cubecl/autotune/...
fi
tar -xJf gpu/bundle.tar.xz -C /tmp/bv
BV=/tmp/bv/bertvision
MODEL=/tmp/bv/models/minilm-l6
GLUE=/tmp/bv/data/glue
SQUAD=/tmp/bv/data/squad2/dev-v2.0-28-articles.json
export BERTVISION_CACHE=/tmp/bv/cache
{ nvidia-smi; nproc; free -g; python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'; } > "$OUT/machine.txt" 2>&1
mark "unpacked"
nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits -lms 250 > "$OUT/gpu-apps.csv" 2>/dev/null &
SMI_APPS=$!
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -lms 1000 > "$OUT/gpu-util.csv" 2>/dev/null &
SMI_UTIL=$!

# cubecl.toml is read from the working directory: one folder per logging setup, same caches.
cubecl_dir() {  # name, extra toml
    mkdir -p "/tmp/cc-$1"
    cat > "/tmp/cc-$1/cubecl.toml" <<EOF
[compilation]
cache = { file = "/tmp/cubecl/ptx" }
[autotune]
cache = { file = "/tmp/cubecl/autotune" }
$2
EOF
    echo "/tmp/cc-$1"
}
LOGGED=$(cubecl_dir logged "[compilation.logger]
level = \"basic\"
file = \"$OUT/cubecl-compile-bench.log\"
[autotune.logger]
level = \"minimal\"
file = \"$OUT/cubecl-autotune-bench.log\"")
QUIET=$(cubecl_dir quiet "")
PROFILED=$(cubecl_dir profiled "[profiling.logger]
level = \"basic\"
file = \"$OUT/cubecl-profile.log\"")

# A process in the background with a time slot, exec'd so that its pid (in $PID, and in
# pids.txt for the memory samples) is the program's own; a watchdog stops it at the end of the slot.
slot() {  # name, seconds, cwd, command...
    local name=$1 secs=$2 dir=$3; shift 3
    ( cd "$dir" && exec "$@" ) > "$OUT/$name.log" 2>&1 &
    PID=$!
    ( sleep "$secs"; kill -TERM "$PID" 2>/dev/null && echo "$name: stopped at the end of its ${secs}s slot" >> "$OUT/timeline.txt" ) > /dev/null 2>&1 &
    echo "$name $PID" >> "$OUT/pids.txt"
}
finish() {  # name, pid
    wait "$2"; mark "$1 exit $?"
}
# slot + finish when the budget has room for the whole slot.
try_slot() {  # name, seconds, cwd, command...
    local secs=$2
    if [ "$(left)" -gt $(( secs + 10 )) ]; then
        slot "$@"
        finish "$1" "$PID"
    else
        mark "$1 skipped (no time)"
    fi
}

# A. Rust bench, then PyTorch, minilm-l6, batch 32 (both lengths use the `run` batch size).
mkdir -p "$OUT/bench"
for seq in 128 384; do
    slot "bench-rust-minilm-$seq" 110 "$LOGGED" "$BV" bench --model "$MODEL" --device cuda \
        --seq-lens $seq --batch 32 --repeats 10 --warmup 3 --out "$OUT/bench/rust-minilm-$seq.json"
    finish "bench-rust-minilm-$seq" "$PID"
    echo "after bench seq $seq: $(grep -c 'Compiling kernel' "$OUT/cubecl-compile-bench.log" 2>/dev/null) kernels compiled" >> "$OUT/timeline.txt"
done
slot bench-torch-minilm 70 "$ROOT" python3 benchmarks/torch_bench.py --model minilm-l6 \
    --model-dir "$MODEL" --seq-lens 128,384 --batch 32 --repeats 10 --warmup 3 --device cuda \
    --out "$OUT/bench/torch-minilm.json"
finish bench-torch-minilm "$PID"

# A'. End to end (bench row d): one seed of RTE alone on the GPU, then benchmarks/torch_run.py
# on the config it wrote; GPU_E2E=0 skips it.
if [ "${GPU_E2E:-1}" != 0 ]; then
    try_slot e2e-rust-RTE 100 "$QUIET" "$BV" run --model "$MODEL" --seeds 1 --device cuda --task RTE \
        --data-dir "$GLUE" --pad-multiple 128 --out /tmp/runs/e2e-RTE
    if [ -f /tmp/runs/e2e-RTE/results.json ]; then
        try_slot e2e-torch-RTE 100 "$ROOT" python3 benchmarks/torch_run.py --config /tmp/runs/e2e-RTE/config.json \
            --data-dir "$GLUE" --model-dir "$MODEL" --device cuda --pad-multiple 128 --out "$OUT/bench/torch-run-RTE.json"
        cp /tmp/runs/e2e-RTE/results.json "$OUT/bench/rust-run-RTE.json"
        python3 benchmarks/compare_run.py "$OUT/bench/rust-run-RTE.json" "$OUT/bench/torch-run-RTE.json" \
            > "$OUT/bench/compare-run-RTE.txt" 2>&1
    fi
fi

# B. The pipeline: 3 processes x 5 tasks, until 45 s before the end. GPU_TABLE_TASKS="" skips
# it (the 2026-11-26 table is in results/h200-minilm-l6) and leaves the time to stage C.
TASKS=${GPU_TABLE_TASKS-RTE MRPC STS-B CoLA SQuAD2}
if [ -n "$TASKS" ]; then
    RUN_SLOT=$(( $(left) - 45 ))
else
    RUN_SLOT=150  # encode parity only
fi
mark "pipeline slot ${RUN_SLOT}s"
COMMON=(run --model "$MODEL" --seeds 1,2,3 --device cuda --eval-batch-size 32 --checkpoint-every 200)
declare -A TASK_ARGS=(
    [RTE]="--task RTE --data-dir $GLUE --pad-multiple 128"
    [MRPC]="--task MRPC --data-dir $GLUE --pad-multiple 128"
    [STS-B]="--task STS-B --data-dir $GLUE --pad-multiple 128"
    [CoLA]="--task CoLA --data-dir $GLUE --pad-multiple 128"
    [SQuAD2]="--task SQuAD2 --data $SQUAD --eval-articles 6 --batch-size 32 --head-batch-size 32 --pad-multiple 384"
)
RUN_PIDS=()
for task in $TASKS; do
    for w in 1 2 3; do
        # shellcheck disable=SC2206
        extra=(${TASK_ARGS[$task]})
        slot "run-$task-w$w" "$RUN_SLOT" "$QUIET" "$BV" "${COMMON[@]}" "${extra[@]}" --out "/tmp/runs/$task"
        RUN_PIDS+=("$PID")
    done
done
# Encode parity beside it: CPU, CUDA f32, CUDA bf16 against transformers, inputs no test used.
cat > /tmp/bv/cases.json <<'JSON'
[["The quick brown fox jumps over the lazy dog near the riverbank at dawn."],
 ["Which river flows through Vienna?", "The Danube flows through Vienna, Bratislava, Budapest and Belgrade."],
 ["Ünïcödé, punctuation!? and numbers 3.14159 — plus a very long tail: one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen."]]
JSON
python3 - <<'PY' > /tmp/bv/encode_cmds.sh
import json
cases = json.load(open("/tmp/bv/cases.json"))
for i, c in enumerate(cases):
    pair = f" --text-pair {json.dumps(c[1])}" if len(c) > 1 else ""
    for name, flags in [("cpu", "--device cpu"), ("cuda", "--device cuda"), ("cuda-bf16", "--device cuda --dtype bf16")]:
        print(f"$BV encode --model $MODEL {flags} --text {json.dumps(c[0])}{pair} --output $OUT/encode/{name}_{i}.safetensors")
PY
if [ "${GPU_ENCODE:-1}" != 0 ]; then
    mkdir -p "$OUT/encode"
    slot encode "$RUN_SLOT" "$QUIET" env BV="$BV" MODEL="$MODEL" OUT="$OUT" bash /tmp/bv/encode_cmds.sh
    finish encode "$PID"
    python3 scripts/gpu_compare.py "$MODEL" "$OUT/encode" /tmp/bv/cases.json > "$OUT/encode/compare.txt" 2>&1
    mark "encode compared"
fi
i=0
for task in $TASKS; do
    for w in 1 2 3; do
        finish "run-$task-w$w" "${RUN_PIDS[$i]}"
        i=$((i + 1))
    done
    mkdir -p "$OUT/runs/$task"
    cp /tmp/runs/$task/results.json /tmp/runs/$task/report.md /tmp/runs/$task/config.json "$OUT/runs/$task/" 2>/dev/null
    for s in 1 2 3; do
        cp "/tmp/runs/$task/seed-$s/result.json" "$OUT/runs/$task/seed-$s.json" 2>/dev/null
        cp "/tmp/runs/$task/seed-$s/finetune-loss.json" "$OUT/runs/$task/seed-$s-finetune-loss.json" 2>/dev/null
    done
done

# C. With what is left, in this order: RTE with a bf16 encoder and with the fused kernels, the
# learning-rate sweep, bert-base shapes (random weights), a kernel profile, bf16 bench rows.
# RTE twice at once: the head fed by a bf16 encoder, and the head as the fused CubeCL kernel
# (`--head-kernel fused`) with the encoder's attention as Burn's fused kernel where no gradient
# flows (`--encoder-kernels native`); compare both with stage B's RTE (f32, plain head, Burn's
# ops). Fine-tuning runs the same code in all three, so BERT's dev metrics in RTE-fused
# should match stage B's up to GPU run-to-run noise; a padding mask read wrongly by the
# attention kernel (padded to 128 tokens) would move them far more.
if [ "$(left)" -gt 220 ]; then
    slot run-RTE-bf16 210 "$QUIET" "$BV" "${COMMON[@]}" --task RTE --data-dir "$GLUE" --pad-multiple 128 \
        --encoder-dtype bf16 --out /tmp/runs/RTE-bf16
    BF16_PID=$PID
    slot run-RTE-fused 210 "$QUIET" "$BV" "${COMMON[@]}" --task RTE --data-dir "$GLUE" --pad-multiple 128 \
        --head-kernel fused --encoder-kernels native --out /tmp/runs/RTE-fused
    finish run-RTE-bf16 "$BF16_PID"
    finish run-RTE-fused "$PID"
    for run in RTE-bf16 RTE-fused; do
        mkdir -p "$OUT/runs/$run" && cp /tmp/runs/$run/results.json /tmp/runs/$run/report.md "$OUT/runs/$run/" 2>/dev/null
    done
else
    mark "RTE bf16 / fused runs skipped (no time)"
fi
# The learning rate for a 6-layer model, by measurement: RTE, MRPC and STS-B at 5e-5 and 2e-4
# (seed 1; compare with seed 1 of stage B's 1e-4 runs), one process each, all at once.
if [ "${GPU_LR_SWEEP:-1}" != 0 ] && [ "$(left)" -gt 130 ]; then
    SWEEP=()
    for task in RTE MRPC STS-B; do
        for lr in 5e-5 2e-4; do
            slot "lr-$task-$lr" 110 "$QUIET" "$BV" run --model "$MODEL" --seeds 1 --device cuda \
                --eval-batch-size 32 --task "$task" --data-dir "$GLUE" --pad-multiple 128 --lr "$lr" \
                --out "/tmp/runs/lr-$task-$lr"
            SWEEP+=("lr-$task-$lr:$PID")
        done
    done
    for job in "${SWEEP[@]}"; do
        finish "${job%%:*}" "${job##*:}"
        mkdir -p "$OUT/runs/${job%%:*}"
        cp "/tmp/runs/${job%%:*}/results.json" "/tmp/runs/${job%%:*}/report.md" "$OUT/runs/${job%%:*}/" 2>/dev/null
    done
else
    mark "lr sweep skipped (no time)"
fi
try_slot bench-rust-bert-base 120 "$QUIET" "$BV" bench --model bert-base --device cuda --seq-lens 128,384 \
    --batch 32 --repeats 10 --warmup 3 --out "$OUT/bench/rust-bert-base.json"
try_slot bench-torch-bert-base 50 "$ROOT" python3 benchmarks/torch_bench.py --model bert-base \
    --seq-lens 128,384 --batch 32 --repeats 10 --warmup 3 --device cuda --out "$OUT/bench/torch-bert-base.json"
try_slot bench-rust-minilm-profiled 40 "$PROFILED" "$BV" bench --model "$MODEL" --device cuda --seq-lens 128 \
    --batch 32 --repeats 2 --warmup 2 --out "$OUT/bench/rust-minilm-profiled.json"
try_slot bench-rust-minilm-bf16 100 "$QUIET" "$BV" bench --model "$MODEL" --device cuda --seq-lens 128,384 \
    --batch 32 --repeats 10 --warmup 3 --encoder-dtype bf16 --out "$OUT/bench/rust-minilm-bf16.json"

# The autotune results of this session, to keep in benchmarks/ for the next one.
tar czf "$OUT/cubecl-autotune.tgz" /tmp/cubecl/autotune 2>/dev/null
kill "$SMI_APPS" "$SMI_UTIL" 2>/dev/null
# shellcheck disable=SC2046
kill $(jobs -p) 2>/dev/null  # the watchdogs still sleeping
for pair in "rust-minilm-128 torch-minilm" "rust-minilm-384 torch-minilm" "rust-minilm-bf16 torch-minilm" "rust-bert-base torch-bert-base"; do
    set -- $pair
    [ -f "$OUT/bench/$1.json" ] && [ -f "$OUT/bench/$2.json" ] &&
        python3 benchmarks/compare.py "$OUT/bench/$1.json" "$OUT/bench/$2.json" > "$OUT/bench/compare-$1.txt" 2>&1
done
# Peak device memory per process, from the nvidia-smi samples.
python3 - "$OUT" <<'PY' > "$OUT/gpu-peak-memory.txt" 2>&1
import collections, sys
out = sys.argv[1]
peak = collections.defaultdict(int)
for line in open(f"{out}/gpu-apps.csv"):
    parts = [p.strip() for p in line.split(",")]
    if len(parts) == 2 and parts[1].isdigit():
        peak[parts[0]] = max(peak[parts[0]], int(parts[1]))
for line in open(f"{out}/pids.txt"):
    name, pid = line.split()
    print(f"{name:<32} peak {peak.get(pid, 0):>6} MiB")
PY
mark "all done"
