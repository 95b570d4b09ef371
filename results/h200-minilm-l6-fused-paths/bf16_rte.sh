#!/usr/bin/env bash
# Second device call of 2026-11-26 (late): `run --extract-dtype bf16` on RTE, 3 seeds, one process
# per seed sharing the run folder; CubeCL's autotune at its minimal level (a correctness run: the
# first bf16 call cost 73 s at the default level, and this call has ~290 s).
set -u
DEST=$OUT; W=/tmp/w; mkdir -p $W /tmp/bv /tmp/cc
T0=$(date +%s)
tar xzf benchmarks/cubecl-autotune-h200.tar.gz -C /
tar -xJf gpu/bundle.tar.xz -C /tmp/bv
printf '[compilation]\ncache = { file = "/tmp/cubecl/ptx" }\n[autotune]\nlevel = "minimal"\ncache = { file = "/tmp/cubecl/autotune" }\n' > /tmp/cc/cubecl.toml
export BERTVISION_CACHE=/tmp/bv/cache
nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits -lms 500 > $W/gpu-apps.csv 2>/dev/null &
pids=()
for w in 1 2 3; do
  (cd /tmp/cc && exec timeout -s TERM 245 /tmp/bv/bertvision run --model /tmp/bv/models/minilm-l6 --seeds 1,2,3 \
     --device cuda --eval-batch-size 32 --checkpoint-every 200 --task RTE --data-dir /tmp/bv/data/glue \
     --pad-multiple 128 --extract-dtype bf16 --out /tmp/runs/RTE-bf16) > $W/run-w$w.log 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait $p; echo "worker $p exit $? at +$(( $(date +%s) - T0 ))s" >> $W/timeline.txt; done
cp /tmp/runs/RTE-bf16/results.json /tmp/runs/RTE-bf16/report.md $W/ 2>/dev/null
for s in 1 2 3; do cp /tmp/runs/RTE-bf16/seed-$s/result.json $W/seed-$s.json 2>/dev/null; done
tar czf $W/cubecl-autotune.tgz /tmp/cubecl/autotune 2>/dev/null
tar czf $DEST/bf16.tgz -C $W .
cat $W/timeline.txt; cat $W/report.md 2>/dev/null
