#!/usr/bin/env python3
"""Reference hidden states from Hugging Face transformers (CPU, eager attention, float32).

Run once after `bertvision fetch-models`; the outputs are committed under tests/fixtures/parity/
and the Rust parity tests compare against them. Needs: torch, transformers, safetensors, numpy.

    python3 scripts/make_parity_fixtures.py --models-dir ~/.cache/bertvision/models --out tests/fixtures/parity
"""
import argparse
import json
import pathlib

import numpy as np
import torch
import transformers
from safetensors import safe_open
from safetensors.numpy import save_file
from transformers import AutoTokenizer, BertModel

MODELS = {"minilm-l6": "minilm-l6", "splade-tiny": "splade-tiny"}

SINGLES = [
    "A man is playing a guitar.",
    "Héllo wörld! Ça va? naïve café, 東京タワー and 🤖 emoji; punctuation-only: ?!...",
]
PAIRS = [
    ("What is the capital of France?", "Paris is the capital and most populous city of France."),
    ("Who wrote it?", "The novel, first published in 1851, was written by Herman Melville over eighteen months."),
]
BATCH = [
    "Short one.",
    "A somewhat longer sentence that needs more tokens than the others in this batch.",
    "Medium length sentence here.",
]
LONG_PARAGRAPH = (
    "The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, a region in France. "
    "They were descended from Norse raiders and pirates from Denmark, Iceland and Norway who, under their leader Rollo, "
    "agreed to swear fealty to King Charles III of West Francia. Through generations of assimilation and mixing with the "
    "native Frankish and Roman-Gaulish populations, their descendants would gradually merge with the Carolingian-based "
    "cultures of West Francia. "
)
LONG_LEN = 384
# Positions kept from the 384-token case, so the committed fixture stays small (every 8th token).
LONG_STRIDE = 8


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models-dir", default=str(pathlib.Path.home() / ".cache/bertvision/models"))
    ap.add_argument("--out", default="tests/fixtures/parity")
    ap.add_argument("--shared-data", default="../shared/data")
    args = ap.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    for name in MODELS:
        model_dir = pathlib.Path(args.models_dir) / name
        tok = AutoTokenizer.from_pretrained(model_dir)
        with safe_open(str(model_dir / "model.safetensors"), "np") as f:
            has_pooler = any(k.endswith("pooler.dense.weight") for k in f.keys())
        model, info = BertModel.from_pretrained(
            model_dir, attn_implementation="eager", output_loading_info=True, add_pooling_layer=has_pooler
        )
        assert not info["missing_keys"], info["missing_keys"]
        model.eval()
        tensors, cases = {}, []

        def run(key, enc, keep_positions=None):
            with torch.no_grad():
                o = model(**enc, output_hidden_states=True)
            hs = torch.stack(o.hidden_states, dim=1).numpy()  # [batch, layers+1, seq, hidden]
            if keep_positions is not None:
                hs = hs[:, :, keep_positions, :]
            tensors[f"{key}.hidden_states"] = np.ascontiguousarray(hs.astype(np.float32))
            if o.pooler_output is not None and keep_positions is None:
                tensors[f"{key}.pooled"] = o.pooler_output.numpy().astype(np.float32)
            tensors[f"{key}.input_ids"] = enc["input_ids"].numpy().astype(np.int64)
            tensors[f"{key}.attention_mask"] = enc["attention_mask"].numpy().astype(np.int64)

        for i, text in enumerate(SINGLES):
            run(f"single{i}", tok(text, return_tensors="pt"))
            cases.append({"key": f"single{i}", "text": text})
        for i, (a, b) in enumerate(PAIRS):
            run(f"pair{i}", tok(a, b, return_tensors="pt"))
            cases.append({"key": f"pair{i}", "text": a, "text_pair": b})
        run("batch", tok(BATCH, padding=True, return_tensors="pt"))
        cases.append({"key": "batch", "texts": BATCH})
        long_text = LONG_PARAGRAPH * 8
        enc = tok(long_text, truncation=True, max_length=LONG_LEN, return_tensors="pt")
        assert enc["input_ids"].shape[1] == LONG_LEN
        keep = list(range(0, LONG_LEN, LONG_STRIDE))
        run("long", enc, keep_positions=keep)
        cases.append({"key": "long", "text": long_text, "max_length": LONG_LEN, "kept_positions": keep})

        save_file(tensors, str(out / f"{name}.safetensors"))
        meta = {
            "model": name,
            "generator": "scripts/make_parity_fixtures.py",
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "attention": "eager",
            "dtype": "float32",
            "hidden_states_layout": "[batch, layers+1, seq, hidden]",
            "cases": cases,
        }
        (out / f"{name}.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
        print(name, {k: v.shape for k, v in tensors.items() if k.endswith("hidden_states")})
    squad_windows(args.models_dir, args.shared_data, out)



def squad_windows(models_dir, shared_data, out):
    """Token ids of the doc-stride windows of the longest SQuAD contexts, from transformers'
    fast tokenizer (only_second truncation, max_length 384, stride 128, overflowing tokens)."""
    dev = json.loads((pathlib.Path(shared_data) / "squad2" / "dev-v2.0-28-articles.json").read_text())
    tok = AutoTokenizer.from_pretrained(pathlib.Path(models_dir) / "minilm-l6")
    paragraphs = sorted(
        ((p["context"], p["qas"][0]) for a in dev["data"] for p in a["paragraphs"]), key=lambda x: -len(x[0])
    )[:12]
    cases = []
    for context, qa in paragraphs:
        enc = tok(qa["question"].lstrip(), context, truncation="only_second", max_length=384, stride=128,
                  return_overflowing_tokens=True)
        cases.append({"id": qa["id"], "windows": enc["input_ids"]})
    (pathlib.Path(out) / "squad_windows_minilm-l6.json").write_text(json.dumps({"cases": cases}) + "\n")
    print("squad windows:", [len(c["windows"]) for c in cases])


if __name__ == "__main__":
    main()
