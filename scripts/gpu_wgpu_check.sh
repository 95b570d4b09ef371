#!/usr/bin/env bash
# Issue #23's real-GPU check, one short device session: native `--device wgpu` (Burn's wgpu
# backend over the card's Vulkan driver) against `--device cpu` on the same inputs.
#   1. `encode` of minilm-l6 on three inputs (one long, one pair, one with Unicode): the max abs
#      difference of every layer's hidden states, wgpu vs CPU (scripts/gpu_compare.py also
#      compares both with transformers).
#   2. `answer` of a SQuAD export on two questions: every number of the answers' JSON (logits,
#      probabilities, spans), wgpu vs CPU, relative to the largest CPU value, and the answers.
# Prepare here:
#   cargo build --release -p bertvision --features cuda,wgpu --target-dir target-cuda
#   scripts/gpu_bundle.sh target-cuda/release/bertvision <a SQuAD export, e.g. runs/x/seed-1/export>
# then run it with gpu/bundle.tar.xz carried: `bash scripts/gpu_wgpu_check.sh`. Everything
# lands in $OUT/wgpu.tgz (refreshed after each step). The tolerance is the page's
# (web/src/engine.rs, MODEL_CHECK_TOLERANCE = 2e-3 of the largest logit); exit 1 past it.
set -u
DEST=${OUT:-/tmp/gpu-out}
WORK=/tmp/wgpu-work
mkdir -p "$DEST" "$WORK/encode" /tmp/bv
pack() { tar czf "$DEST/wgpu.tgz.tmp" -C "$WORK" . && mv "$DEST/wgpu.tgz.tmp" "$DEST/wgpu.tgz"; }
tar -xJf gpu/bundle.tar.xz -C /tmp/bv
BV=/tmp/bv/bertvision
MODEL=/tmp/bv/models/minilm-l6
EXPORT=/tmp/bv/export
{ nvidia-smi -L; vulkaninfo --summary 2>&1 | head -40 || echo "no vulkaninfo"; ls /usr/share/vulkan/icd.d /etc/vulkan/icd.d 2>&1; } > "$WORK/machine.txt" 2>&1
pack

cat > "$WORK/cases.json" <<'JSON'
[["The quick brown fox jumps over the lazy dog near the riverbank at dawn."],
 ["Which river flows through Vienna?", "The Danube flows through Vienna, Bratislava, Budapest and Belgrade."],
 ["Ünïcödé, punctuation!? and numbers 3.14159 — plus a very long tail: one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen."]]
JSON
python3 - "$WORK/cases.json" > "$WORK/encode_cmds.sh" <<'PY'
import json, shlex, sys
for i, c in enumerate(json.load(open(sys.argv[1]))):
    pair = f" --text-pair {shlex.quote(c[1])}" if len(c) > 1 else ""
    for device in ("cpu", "wgpu"):
        print(f'timeout 120 "$BV" encode --model "$MODEL" --device {device} --text {shlex.quote(c[0])}{pair}'
              f' --output "$WORK/encode/{device}_{i}.safetensors"')
PY
BV=$BV MODEL=$MODEL WORK=$WORK bash -x "$WORK/encode_cmds.sh" > "$WORK/encode.log" 2>&1
python3 scripts/gpu_compare.py "$MODEL" "$WORK/encode" "$WORK/cases.json" > "$WORK/encode/compare.txt" 2>&1
pack

PASSAGE="The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, a region in France. They were descended from Norse raiders and pirates from Denmark, Iceland and Norway who, under their leader Rollo, agreed to swear fealty to King Charles III of West Francia."
for q in "In what country is Normandy located?" "Who was the Norse leader?"; do
    n=$((${n:-0} + 1))
    for device in cpu wgpu; do
        timeout 120 "$BV" answer --export "$EXPORT" --device "$device" --passage "$PASSAGE" \
            --question "$q" --json "$WORK/answer-$device-$n.json" >> "$WORK/answer.log" 2>&1
    done
done
python3 - "$WORK" > "$WORK/answer-compare.txt" 2>&1 <<'PY'
import json, sys
work = sys.argv[1]
def leaves(x, path=""):
    if isinstance(x, dict):
        for k, v in x.items(): yield from leaves(v, f"{path}.{k}")
    elif isinstance(x, list):
        for i, v in enumerate(x): yield from leaves(v, f"{path}[{i}]")
    else: yield path, x
ok = True
for n in (1, 2):
    try:
        cpu = dict(leaves(json.load(open(f"{work}/answer-cpu-{n}.json"))))
        gpu = dict(leaves(json.load(open(f"{work}/answer-wgpu-{n}.json"))))
    except OSError as e:
        print(f"question {n}: missing output ({e})"); ok = False; continue
    nums = [k for k, v in cpu.items() if isinstance(v, float)]
    scale = max(abs(cpu[k]) for k in nums)
    worst = max(nums, key=lambda k: abs(cpu[k] - gpu.get(k, float("inf"))))
    rel = abs(cpu[worst] - gpu.get(worst, float("inf"))) / scale
    texts = [k for k, v in cpu.items() if not isinstance(v, float) and gpu.get(k) != v]
    print(f"question {n}: {len(nums)} numbers, worst {worst} cpu {cpu[worst]} wgpu {gpu.get(worst)}, "
          f"{rel:.2e} of the largest |value| {scale:.3g}; other fields differing: {texts[:5] or 'none'}")
    ok &= rel <= 2e-3 and not texts
print("PASS" if ok else "FAIL", "(tolerance 2e-3 of the largest value, the page's)")
sys.exit(0 if ok else 1)
PY
STATUS=$?
cat "$WORK/encode/compare.txt" "$WORK/answer-compare.txt"
pack
exit $STATUS
