#!/usr/bin/env bash
# Packs what scripts/gpu_check.sh needs on the GPU machine (which reaches no network) into
# gpu/bundle.tar.xz: the bertvision binary (default: the CUDA build), minilm-l6 with its weights
# stored as f16 (to fit the device tool's 64 MiB carry limit; both Rust and PyTorch then load
# the same f16-rounded weights), and the GLUE/SQuAD files the runs use; with a second argument,
# that export folder as export/ (scripts/gpu_wgpu_check.sh answers with it).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target-cuda/release/bertvision}
[ -x "$BIN" ] || { echo "no binary at $BIN: cargo build --release -p bertvision --features cuda --target-dir target-cuda" >&2; exit 1; }
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
cp "$BIN" "$STAGE/bertvision"
MODEL=$(target/release/bertvision fetch-models --model minilm-l6 | cut -f2)
mkdir -p "$STAGE/models/minilm-l6" "$STAGE/data/glue" "$STAGE/data/squad2"
cp "$MODEL/config.json" "$MODEL/tokenizer.json" "$STAGE/models/minilm-l6/"
python3 - "$MODEL/model.safetensors" "$STAGE/models/minilm-l6/model.safetensors" <<'PY'
import sys
import torch
from safetensors.torch import load_file, save_file
tensors = load_file(sys.argv[1])
save_file({k: (v.half() if v.is_floating_point() else v) for k, v in tensors.items()}, sys.argv[2])
PY
for task in RTE MRPC STS-B CoLA; do cp -r "../shared/data/glue/$task" "$STAGE/data/glue/"; done
cp ../shared/data/squad2/dev-v2.0-28-articles.json "$STAGE/data/squad2/"
if [ -n "${2:-}" ]; then cp -r "$2" "$STAGE/export"; fi
mkdir -p gpu
tar -cJf gpu/bundle.tar.xz -C "$STAGE" .
ls -la gpu/bundle.tar.xz
