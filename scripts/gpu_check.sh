#!/usr/bin/env bash
# One prepared GPU session (run by the device tool in the repo root, with gpu/bundle.tar.xz
# carried): encode parity on CUDA vs CPU vs transformers, then `bertvision run` with minilm-l6
# on RTE, MRPC, STS-B, CoLA and SQuAD (22 articles train / 6 eval), 3 seeds. Everything small
# lands in $OUT; a task that runs out of its time slot leaves its partial log.
set -u
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT" /tmp/bv
T0=$(date +%s)
tar -xJf gpu/bundle.tar.xz -C /tmp/bv
BV=/tmp/bv/bertvision
MODEL=/tmp/bv/models/minilm-l6
export BERTVISION_CACHE=/tmp/bv/cache
{ nvidia-smi; echo; nvcc --version 2>/dev/null; ls /usr/local/cuda/lib64/libnvrtc.so* 2>/dev/null; } > "$OUT/machine.txt" 2>&1
nproc >> "$OUT/machine.txt"

# 1. encode: CUDA vs CPU vs transformers on inputs the tests never used.
mkdir -p "$OUT/encode"
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
    for dev in ["cuda", "cpu"]:
        print(f"$BV encode --model $MODEL --device {dev} --text {json.dumps(c[0])}{pair} --output $OUT/encode/{dev}_{i}.safetensors")
PY
( export BV MODEL OUT; time bash -e /tmp/bv/encode_cmds.sh ) > "$OUT/encode/log.txt" 2>&1
python3 scripts/gpu_compare.py "$MODEL" "$OUT/encode" /tmp/bv/cases.json > "$OUT/encode/compare.txt" 2>&1
echo "encode done at +$(( $(date +%s) - T0 ))s" >> "$OUT/timeline.txt"

# 2. the pipeline, 3 seeds per task, each task in its own time slot.
run_task() {
  local name=$1 slot=$2; shift 2
  local dir=/tmp/runs/$name
  timeout "$slot" "$BV" run --model "$MODEL" --seeds 1,2,3 --device cuda --out "$dir" "$@" > "$OUT/run-$name.log" 2>&1
  echo "$name exit $? at +$(( $(date +%s) - T0 ))s" >> "$OUT/timeline.txt"
  mkdir -p "$OUT/runs/$name"
  cp "$dir"/results.json "$dir"/report.md "$dir"/config.json "$OUT/runs/$name/" 2>/dev/null
  for s in 1 2 3; do cp "$dir/seed-$s/result.json" "$OUT/runs/$name/seed-$s.json" 2>/dev/null; done
}
GLUE=/tmp/bv/data/glue
run_task RTE 70 --task RTE --data-dir $GLUE
run_task MRPC 70 --task MRPC --data-dir $GLUE
run_task STS-B 80 --task STS-B --data-dir $GLUE
run_task CoLA 80 --task CoLA --data-dir $GLUE
run_task SQuAD2 190 --task SQuAD2 --data /tmp/bv/data/squad2/dev-v2.0-28-articles.json --eval-articles 6
echo "all done at +$(( $(date +%s) - T0 ))s" >> "$OUT/timeline.txt"
