#!/usr/bin/env bash
# Issue #20's GPU check, one short device session (about 9 minutes on an H200 with the kept
# autotune results, before step 4, which has up to 8 more): both sides' batch sweeps, each at
# its best batch, and the fraction of the card's bound.
#   1. `bertvision bench` on minilm-l6, batch sweep (GPU_BATCHES_128 at 128 tokens,
#      GPU_BATCHES_384 at 384), f32 and with a bf16 frozen encoder, every row's kernel launches
#      per call (`--count-launches`), one process per length (a crash at a large batch keeps
#      the smaller ones); then benchmarks/torch_bench.py on the same sweep (bf16 autocast);
#   2. the same for bert-base shapes (random weights), a shorter sweep;
#   3. benchmarks/compare.py per pair: the same-batch ratios, the best-batch ratios and the
#      fraction of GPU_PEAK_TFLOPS (default 790, the bound the issue uses) each side reaches;
#   4. RTE fine-tuned with `run --precision f32` and `bf16` (mixed precision), dev scores and times.
# The bf16 bench rows run the frozen encoder in bf16 and fine-tuning in mixed precision
# (`--precision bf16`), as PyTorch's side runs bf16 autocast.
# Prepare here: cargo build --release -p bertvision --features cuda --target-dir target-cuda;
# scripts/gpu_bundle.sh; run with gpu/bundle.tar.xz carried: `bash scripts/gpu_speed.sh`.
# GPU_DEVICE=wgpu runs it on Burn's wgpu backend instead (a `--features wgpu` binary as
# GPU_BV; over lavapipe on a machine without a GPU, with small GPU_BATCHES_* and GPU_MODELS);
# GPU_DEVICE=cpu checks the script itself on any machine (no launch counts there).
# Everything lands in $OUT/speed.tgz, refreshed after each step.
set -u
DEST=${OUT:-/tmp/gpu-out}
WORK=/tmp/speed-work
DEVICE=${GPU_DEVICE:-cuda}
PEAK=${GPU_PEAK_TFLOPS:-790}
B128=${GPU_BATCHES_128:-32,64,128,256}
B384=${GPU_BATCHES_384:-32,64}
MODELS=${GPU_MODELS:-minilm-l6 bert-base}
REPEATS=${GPU_REPEATS:-10}
mkdir -p "$DEST" "$WORK/bench" /tmp/bv /tmp/cubecl
ROOT=$PWD
T0=$(date +%s)
pack() { tar czf "$DEST/speed.tgz.tmp" -C "$WORK" . && mv "$DEST/speed.tgz.tmp" "$DEST/speed.tgz"; }
mark() { echo "$* at +$(( $(date +%s) - T0 ))s" | tee -a "$WORK/timeline.txt"; pack; }
if [ -z "${GPU_BV:-}" ]; then
    # The kept autotune results (see scripts/gpu_check.sh) and the bundle.
    [ "${GPU_COLD:-0}" != 1 ] && tar xzf benchmarks/cubecl-autotune-h200.tar.gz -C / 2>/dev/null
    tar -xJf gpu/bundle.tar.xz -C /tmp/bv
fi
BV=${GPU_BV:-/tmp/bv/bertvision}
MINILM=${GPU_MINILM:-/tmp/bv/models/minilm-l6}
TORCH_DEVICE=$DEVICE
[ "$DEVICE" = wgpu ] && TORCH_DEVICE=cpu
LAUNCHES=(--count-launches)
[ "$DEVICE" = cpu ] && LAUNCHES=()
{ nvidia-smi 2>&1 | head -15; nproc; python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'; } > "$WORK/machine.txt" 2>&1
# CubeCL's caches on disk, shared by every process of the session.
mkdir -p /tmp/cc && cat > /tmp/cc/cubecl.toml <<EOF
[compilation]
cache = { file = "/tmp/cubecl/ptx" }
[autotune]
cache = { file = "/tmp/cubecl/autotune" }
EOF
mark "start ($DEVICE)"

for model in $MODELS; do
    case "$model" in
        minilm-l6) source=(--model "$MINILM"); dir=(--model-dir "$MINILM") ;;
        *) source=(--model "$model"); dir=() ;;
    esac
    for seq in 128 384; do
        batches=$B128; [ "$seq" = 384 ] && batches=$B384
        [ "$model" = bert-base ] && [[ $batches == *,* ]] && batches=${batches%%,*},${batches##*,}
        for dtype in f32 bf16; do
            [ "$model" = bert-base ] && [ "$dtype" = bf16 ] && continue
            [ "$DEVICE" = wgpu ] && [ "$dtype" = bf16 ] && continue  # WGSL has no bf16
            name="rust-$model-$seq-$dtype"
            ( cd /tmp/cc && timeout 150 "$BV" bench "${source[@]}" --device "$DEVICE" --seq-lens "$seq" \
                --batch "$batches" --repeats "$REPEATS" --warmup 3 --encoder-dtype "$dtype" \
                --precision "$dtype" "${LAUNCHES[@]}" \
                --out "$WORK/bench/$name.json" ) > "$WORK/$name.log" 2>&1
            mark "$name exit $?"
        done
        name="torch-$model-$seq"
        timeout 120 python3 benchmarks/torch_bench.py --model "$model" "${dir[@]}" --device "$TORCH_DEVICE" \
            --seq-lens "$seq" --batch "$batches" --repeats "$REPEATS" --warmup 3 \
            --out "$WORK/bench/$name.json" > "$WORK/$name.log" 2>&1
        mark "$name exit $?"
        for dtype in f32 bf16; do
            rust="$WORK/bench/rust-$model-$seq-$dtype.json"
            [ -f "$rust" ] && [ -f "$WORK/bench/$name.json" ] &&
                python3 benchmarks/compare.py "$rust" "$WORK/bench/$name.json" --peak-tflops "$PEAK" \
                    > "$WORK/bench/compare-$model-$seq-$dtype.txt" 2>&1
        done
    done
done
# One real task fine-tuned in each precision (RTE, minilm-l6, one seed): dev scores and the
# fine-tuning time side by side (GPU_RUNS=0 skips it; not on wgpu, whose WGSL has no bf16).
if [ "${GPU_RUNS:-1}" = 1 ] && [ "$DEVICE" != wgpu ]; then
    GLUE=${GPU_GLUE:-/tmp/bv/data/glue}
    for precision in f32 bf16; do
        name="run-RTE-$precision"
        ( cd /tmp/cc && timeout 240 "$BV" run --model "$MINILM" --seeds 1 --device "$DEVICE" --task RTE \
            --data-dir "$GLUE" --pad-multiple 128 --precision "$precision" --out "/tmp/speed-runs/$name" ) \
            > "$WORK/$name.log" 2>&1
        status=$?
        # The scores, settings, losses and times; not the checkpoints and exports.
        mkdir -p "$WORK/runs/$name"
        cp /tmp/speed-runs/$name/{results,config}.json /tmp/speed-runs/$name/seed-1/finetune-{loss,times}.json \
            "$WORK/runs/$name/" 2>/dev/null
        mark "$name exit $status"
    done
fi
tar czf "$WORK/cubecl-autotune.tgz" /tmp/cubecl/autotune 2>/dev/null
cat "$WORK"/bench/compare-*.txt 2>/dev/null
cd "$ROOT" && mark "all done"
