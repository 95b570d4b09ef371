#!/usr/bin/env python3
"""PyTorch baseline for `bertvision bench`: the same rows, shapes and timing rules.

Hugging Face transformers, eager execution, SDPA attention; f32 on CPU, bf16 autocast on CUDA.
Rows: extract (forward returning every hidden state, inference mode), finetune_step
(BertForSequenceClassification forward + backward + AdamW, clip 1.0), head_step_streamed (frozen
encoder forward without grad feeding an AdapterPooler step) and head_step (the AdapterPooler step
on ready hidden states). Warm-up excluded, device synchronised before each clock read, median of
repeats. `--batch 32,64,128` sweeps batch sizes (a batch that runs out of CUDA memory is skipped
and listed) and names each row's fastest batch (`best`). Writes JSON like the Rust side.
"""
import argparse
import json
import os
import platform
import statistics
import time

import torch
import transformers
from torch import nn


class AdapterPooler(nn.Module):
    """Shared Linear(hidden -> A) + GELU on every token of every layer, masked mean, Linear(L*A -> C)."""

    def __init__(self, hidden, states, adapter, classes):
        super().__init__()
        self.adapter = nn.Linear(hidden, adapter)
        self.head = nn.Linear(states * adapter, classes)

    def forward(self, hidden_states, mask):
        feats = torch.cat([nn.functional.gelu(self.adapter(h)) for h in hidden_states], dim=-1)
        m = mask.unsqueeze(-1).to(feats.dtype)
        pooled = (feats * m).sum(1) / m.sum(1).clamp_min(1.0)
        return self.head(pooled)


def config_for(model, model_dir):
    if model == "bert-base":
        return transformers.BertConfig(), "random"
    if model == "bert-large":
        return transformers.BertConfig(hidden_size=1024, num_hidden_layers=24,
                                       num_attention_heads=16, intermediate_size=4096), "random"
    return transformers.BertConfig.from_pretrained(model_dir), "pretrained"


def measure(args, seq, n, device, models):
    """Every row at length `seq` and batch `n`."""
    config, encoder, classifier, states, adapter, autocast, timed = models
    rows = []
    ids = (1000 + (torch.arange(n * seq, dtype=torch.int64) * 2654435761) % (config.vocab_size - 1000)).view(n, seq).to(device)
    mask = torch.ones(n, seq, dtype=torch.int64, device=device)
    labels = torch.zeros(n, dtype=torch.int64, device=device)

    def record(measure, t):
        median, low, first = t
        rows.append({"model": args.model, "measure": measure, "seq_len": seq, "batch": n,
                     "median_seconds": median, "min_seconds": low, "first_call_seconds": first,
                     "sequences_per_second": n / median})
        print(f"  {measure:<20} seq {seq:>3} batch {n:>4}: {median:9.4f} s median, {n / median:8.2f} sequences/s"
              f" (first call {first:.2f} s)", flush=True)

    def extract():
        with torch.inference_mode(), autocast:
            encoder(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    record("extract", timed(extract))

    optim = torch.optim.AdamW(classifier.parameters(), lr=1e-5, weight_decay=0.01)

    def finetune():
        with autocast:
            loss = classifier(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(classifier.parameters(), 1.0)
        optim.step()
        optim.zero_grad(set_to_none=True)
    record("finetune_step", timed(finetune))
    del optim

    head = AdapterPooler(config.hidden_size, states, adapter, 2).to(device)
    head_optim = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=0.01)

    def head_step(hidden):
        with autocast:
            loss = nn.functional.cross_entropy(head(hidden, mask), labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
        head_optim.step()
        head_optim.zero_grad(set_to_none=True)

    def streamed():
        with torch.no_grad(), autocast:
            hidden = encoder(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        head_step(hidden)
    record("head_step_streamed", timed(streamed))
    with torch.no_grad(), autocast:
        ready = encoder(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    record("head_step", timed(lambda: head_step(ready)))

    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="minilm-l6")
    ap.add_argument("--model-dir", help="the model folder (for minilm-l6 / splade-tiny)")
    ap.add_argument("--seq-lens", default="128,384")
    ap.add_argument("--batch", default="8", help="batch sizes, comma-separated")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out")
    args = ap.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    config, weights = config_for(args.model, args.model_dir)
    config.attn_implementation = "sdpa"
    if weights == "pretrained":
        # f32 master weights whatever the file stores (transformers 5 would keep its dtype).
        encoder = transformers.BertModel.from_pretrained(
            args.model_dir, attn_implementation="sdpa", dtype=torch.float32)
        classifier = transformers.BertForSequenceClassification.from_pretrained(
            args.model_dir, num_labels=2, attn_implementation="sdpa", dtype=torch.float32)
    else:
        encoder = transformers.BertModel(config)
        classifier = transformers.BertForSequenceClassification(config)
    encoder.to(device).eval()
    classifier.to(device).train()
    adapter = 32 if config.hidden_size <= 384 else 64
    states = config.num_hidden_layers + 1
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def timed(fn):
        start = time.perf_counter()
        fn()
        sync()
        first = time.perf_counter() - start
        for _ in range(args.warmup - 1):
            fn()
        sync()
        times = []
        for _ in range(max(args.repeats, 1)):
            start = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - start)
        return statistics.median(times), min(times), first

    rows, skipped = [], []
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    models = (config, encoder, classifier, states, adapter, autocast, timed)
    for seq in [int(s) for s in args.seq_lens.split(",")]:
        for n in [int(b) for b in args.batch.split(",")]:
            try:
                rows += measure(args, seq, n, device, models)
            except torch.cuda.OutOfMemoryError:
                skipped.append({"seq_len": seq, "batch": n, "why": "CUDA out of memory"})
                print(f"  seq {seq} batch {n}: out of CUDA memory, skipped", flush=True)
                torch.cuda.empty_cache()
    best = {}
    for r in rows:
        key = (r["measure"], r["seq_len"])
        if key not in best or r["sequences_per_second"] > best[key]["sequences_per_second"]:
            best[key] = r
    if cuda:
        peak, kind = torch.cuda.max_memory_allocated() / 2**20, "torch.cuda.max_memory_allocated"
    else:
        import resource
        peak, kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process peak RSS (CPU)"
    report = {
        "implementation": f"PyTorch {torch.__version__}, transformers {transformers.__version__}, eager, SDPA",
        "model": args.model, "weights": weights,
        "config": {"layers": config.num_hidden_layers, "hidden": config.hidden_size, "heads": config.num_attention_heads,
                   "intermediate": config.intermediate_size},
        "device": args.device if not cuda else torch.cuda.get_device_name(device),
        "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "dtype": "bf16 autocast" if cuda else "f32", "batches": [int(b) for b in args.batch.split(",")],
        "repeats": args.repeats, "warmup": args.warmup,
        "peak_memory_mb": peak, "peak_memory_kind": kind, "best": list(best.values()), "rows": rows,
        "skipped": skipped,
    }
    text = json.dumps(report, indent=2)
    if args.out:
        with open(args.out + ".tmp", "w") as f:
            f.write(text)
        os.replace(args.out + ".tmp", args.out)
    else:
        print(text)


if __name__ == "__main__":
    main()
