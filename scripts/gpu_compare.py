#!/usr/bin/env python3
"""On the GPU machine: compare `bertvision encode` outputs (cuda, cpu) with Hugging Face
transformers (CPU, eager, float32) on the same weights. Prints one line per input."""
import json
import sys

import numpy as np
import torch
from safetensors.numpy import load_file
from transformers import AutoTokenizer, BertModel

model_dir, enc_dir, cases_file = sys.argv[1:4]
cases = json.load(open(cases_file))
tok = AutoTokenizer.from_pretrained(model_dir)
model = BertModel.from_pretrained(model_dir, attn_implementation="eager", dtype=torch.float32).eval()
worst = {"cuda_vs_cpu": 0.0, "cuda_vs_hf": 0.0, "cpu_vs_hf": 0.0}
for i, case in enumerate(cases):
    enc = tok(case[0], case[1], return_tensors="pt") if len(case) > 1 else tok(case[0], return_tensors="pt")
    with torch.no_grad():
        hf = torch.stack(model(**enc, output_hidden_states=True).hidden_states, 1)[0].numpy()
    cuda = load_file(f"{enc_dir}/cuda_{i}.safetensors")
    cpu = load_file(f"{enc_dir}/cpu_{i}.safetensors")
    ids_ok = (cuda["input_ids"] == enc["input_ids"][0].numpy()).all() and (cpu["input_ids"] == cuda["input_ids"]).all()
    d = {
        "cuda_vs_cpu": float(np.abs(cuda["hidden_states"] - cpu["hidden_states"]).max()),
        "cuda_vs_hf": float(np.abs(cuda["hidden_states"] - hf).max()),
        "cpu_vs_hf": float(np.abs(cpu["hidden_states"] - hf).max()),
    }
    for k, v in d.items():
        worst[k] = max(worst[k], v)
    print(f"input {i}: tokens {hf.shape[1]}, ids identical {ids_ok}, max abs " + ", ".join(f"{k} {v:.2e}" for k, v in d.items()))
print("worst:", ", ".join(f"{k} {v:.2e}" for k, v in worst.items()))
