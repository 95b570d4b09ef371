#!/usr/bin/env python3
"""On the GPU machine: compare `bertvision encode` outputs with Hugging Face transformers (CPU,
eager, float32) on the same weights. `enc_dir` holds `<variant>_<i>.safetensors` for each input
i and any variants (e.g. cpu, cuda, cuda-bf16); prints each variant's max abs error per input
against transformers and against the `cpu` variant, then the worst per variant."""
import collections
import glob
import json
import os
import sys

import numpy as np
import torch
from safetensors.numpy import load_file
from transformers import AutoTokenizer, BertModel

model_dir, enc_dir, cases_file = sys.argv[1:4]
cases = json.load(open(cases_file))
tok = AutoTokenizer.from_pretrained(model_dir)
model = BertModel.from_pretrained(model_dir, attn_implementation="eager", dtype=torch.float32).eval()
variants = sorted({os.path.basename(p).rsplit("_", 1)[0] for p in glob.glob(f"{enc_dir}/*_*.safetensors")})
worst = collections.defaultdict(float)
for i, case in enumerate(cases):
    enc = tok(case[0], case[1], return_tensors="pt") if len(case) > 1 else tok(case[0], return_tensors="pt")
    with torch.no_grad():
        hf = torch.stack(model(**enc, output_hidden_states=True).hidden_states, 1)[0].numpy()
    outs = {v: load_file(f"{enc_dir}/{v}_{i}.safetensors") for v in variants
            if os.path.exists(f"{enc_dir}/{v}_{i}.safetensors")}
    parts = []
    for v, out in outs.items():
        ids_ok = bool((out["input_ids"] == enc["input_ids"][0].numpy()).all())
        err = float(np.abs(out["hidden_states"] - hf).max())
        worst[f"{v}_vs_hf"] = max(worst[f"{v}_vs_hf"], err)
        parts.append(f"{v} vs hf {err:.2e} (ids {'same' if ids_ok else 'DIFFER'})")
        if v != "cpu" and "cpu" in outs:
            err = float(np.abs(out["hidden_states"] - outs["cpu"]["hidden_states"]).max())
            worst[f"{v}_vs_cpu"] = max(worst[f"{v}_vs_cpu"], err)
            parts.append(f"{v} vs cpu {err:.2e}")
    print(f"input {i}: tokens {hf.shape[1]}, max abs: " + ", ".join(parts))
print("worst:", ", ".join(f"{k} {v:.2e}" for k, v in sorted(worst.items())))
