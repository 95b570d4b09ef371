#!/usr/bin/env python3
"""PyTorch counterpart of `bertvision run` on a GLUE task, for the end-to-end wall-time row of
the benchmarks: it reads the `config.json` a Rust run wrote and repeats that recipe — fine-tune
BertForSequenceClassification (AdamW, no decay on biases and LayerNorm, linear warm-up then decay,
clipping), keep the model at `extract_at` epochs, train the AdapterPooler on that model's hidden
states computed on the fly (eval mode, no gradient into BERT), evaluate BERT-final, BERT at
`extract_at`, BERTVision and the ensembles on dev — and prints wall time per phase and the
metrics as JSON. Not a bit-for-bit replica (other random numbers, no checkpoints written, no
export), so compare times, and metrics only roughly.

    python3 benchmarks/torch_run.py --config RUN/config.json --data-dir ../shared/data/glue \
        --model-dir ~/.cache/bertvision/models/splade-tiny [--device cpu] [--threads 2] [--out F]
"""
import argparse
import copy
import csv
import json
import math
import os
import sys
import time

import numpy as np
import torch
import transformers
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_bench import AdapterPooler  # noqa: E402

# task: (text columns, label column, label names or None for a score, metrics, header row?)
TASKS = {
    "RTE": (["sentence1", "sentence2"], "label", ["entailment", "not_entailment"], ["accuracy"], True),
    "WNLI": (["sentence1", "sentence2"], "label", ["0", "1"], ["accuracy"], True),
    "QNLI": (["question", "sentence"], "label", ["entailment", "not_entailment"], ["accuracy"], True),
    "MRPC": (["#1 String", "#2 String"], "Quality", ["0", "1"], ["f1", "accuracy"], True),
    "SST-2": (["sentence"], "label", ["0", "1"], ["accuracy"], True),
    "CoLA": ([3], 1, ["0", "1"], ["matthews"], False),
    "STS-B": (["sentence1", "sentence2"], "score", None, ["pearson", "spearman"], True),
}


def read_tsv(path, task):
    texts_cols, label_col, labels, _, header = TASKS[task]
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if header:
        names = rows[0]
        rows = [dict(zip(names, r)) for r in rows[1:]]
    texts = [tuple(r[c] for c in texts_cols) for r in rows]
    raw = [r[label_col] for r in rows]
    y = [float(v) for v in raw] if labels is None else [labels.index(v) for v in raw]
    return texts, y


def ranks(x):
    order = np.argsort(x, kind="mergesort")
    r = np.empty(len(x))
    r[order] = np.arange(len(x))
    xs = np.asarray(x)[order]
    i = 0
    while i < len(xs):  # ties share their mean rank
        j = i
        while j + 1 < len(xs) and xs[j + 1] == xs[i]:
            j += 1
        r[order[i:j + 1]] = (i + j) / 2
        i = j + 1
    return r


def metrics(names, pred, gold):
    pred, gold = np.asarray(pred), np.asarray(gold)
    out = {}
    for name in names:
        if name == "accuracy":
            out[name] = float((pred == gold).mean())
        elif name == "f1":
            tp = float(((pred == 1) & (gold == 1)).sum())
            fp = float(((pred == 1) & (gold == 0)).sum())
            fn = float(((pred == 0) & (gold == 1)).sum())
            out[name] = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        elif name == "matthews":
            tp = float(((pred == 1) & (gold == 1)).sum()); tn = float(((pred == 0) & (gold == 0)).sum())
            fp = float(((pred == 1) & (gold == 0)).sum()); fn = float(((pred == 0) & (gold == 1)).sum())
            d = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
            out[name] = (tp * tn - fp * fn) / d if d else 0.0
        elif name == "pearson":
            out[name] = float(np.corrcoef(pred, gold)[0, 1])
        elif name == "spearman":
            out[name] = float(np.corrcoef(ranks(pred), ranks(gold))[0, 1])
    return out


def batches(enc, y, batch, order, pad_id, multiple, device):
    for start in range(0, len(order), batch):
        idx = order[start:start + batch]
        longest = max(len(enc["input_ids"][i]) for i in idx)
        width = -(-longest // multiple) * multiple
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        types = torch.zeros((len(idx), width), dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            n = len(enc["input_ids"][i])
            ids[row, :n] = torch.tensor(enc["input_ids"][i])
            types[row, :n] = torch.tensor(enc["token_type_ids"][i])
            mask[row, :n] = 1
        target = torch.tensor([y[i] for i in idx])
        yield ids.to(device), types.to(device), mask.to(device), target.to(device)


def schedule(optimizer, total, warmup_ratio):
    warm = max(1, int(total * warmup_ratio))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm)))


def adamw(model, lr, opt):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": opt["weight_decay"]},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, eps=opt["epsilon"])


def train(module, recipe, n_train, rng, make_batches, loss_of_batch, on_step=None):
    """`recipe` (the config's finetune or head block): AdamW, warm-up then linear decay, gradient
    clipping, `epochs` passes over freshly shuffled batches; returns the loss of every step."""
    total = int(round(math.ceil(n_train / recipe["batch_size"]) * recipe["epochs"]))
    optim = adamw(module, recipe["lr"], recipe["optimizer"])
    sched = schedule(optim, total, recipe["warmup_ratio"])
    losses = []
    while len(losses) < total:
        for batch in make_batches(recipe["batch_size"], rng.permutation(n_train).tolist()):
            loss = loss_of_batch(*batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), recipe["optimizer"]["max_grad_norm"])
            optim.step(); sched.step(); optim.zero_grad(set_to_none=True)
            losses.append(loss.item())
            if on_step:
                on_step(len(losses))
            if len(losses) == total:
                break
    return losses


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True, help="config.json of a `bertvision run`")
    ap.add_argument("--data-dir", required=True, help="the GLUE folder (TASK/train.tsv, TASK/dev.tsv)")
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--pad-multiple", type=int, help="default: 1 on CPU, 32 on CUDA, as `run`")
    ap.add_argument("--out")
    args = ap.parse_args()
    cfg = json.load(open(args.config))
    task = cfg["task"]
    if task not in TASKS:
        raise SystemExit(f"{args.config}: task {task} is not a GLUE task this script runs ({', '.join(TASKS)})")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    multiple = args.pad_multiple or (32 if cuda else 1)
    _, _, labels, metric_names, _ = TASKS[task]
    classes = 1 if labels is None else len(labels)
    ft, hd = cfg["finetune"], cfg["head"]
    if hd["kind"] != "masked-mean" or not hd["shared_adapter"] or hd["skip_last_layer"] or hd["layer_mix"] != "none":
        raise SystemExit(f"{args.config}: only the default head (masked-mean, shared adapter) is mirrored")
    sync = (lambda: torch.cuda.synchronize()) if cuda else (lambda: None)

    def amp():  # bf16 autocast on CUDA, as benchmarks/torch_bench.py; f32 on the CPU
        return torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)

    wall = {"data": 0.0, "finetune": 0.0, "head": 0.0, "evaluate": 0.0}
    t0 = time.perf_counter()
    tok = transformers.AutoTokenizer.from_pretrained(args.model_dir)
    split = {}
    for name, limit in [("train", cfg.get("limit_train")), ("dev", cfg.get("limit_eval"))]:
        texts, y = read_tsv(os.path.join(args.data_dir, task, f"{name}.tsv"), task)
        texts, y = texts[:limit], y[:limit]
        cols = list(zip(*texts))
        enc = tok(*cols, truncation="longest_first", max_length=cfg["max_len"])
        split[name] = (enc, y)
    wall["data"] = time.perf_counter() - t0
    (train_enc, train_y), (dev_enc, dev_y) = split["train"], split["dev"]
    n_train = len(train_y)

    def train_batches(batch, order):
        return batches(train_enc, train_y, batch, order, tok.pad_token_id, multiple, device)

    def loss_of(logits, target):
        if classes == 1:
            return nn.functional.mse_loss(logits.view(-1).float(), target.float())
        return nn.functional.cross_entropy(logits.float(), target)

    def predict(encoder_model, head=None):
        """Dev outputs of BERT's head and, with `head`, of the AdapterPooler on the same pass."""
        encoder_model.eval()
        bert_out, head_out = [], []
        order = list(range(len(dev_y)))
        with torch.no_grad(), amp():
            for ids, types, mask, _ in batches(dev_enc, dev_y, cfg["eval_batch_size"], order, tok.pad_token_id, multiple, device):
                out = encoder_model(input_ids=ids, token_type_ids=types, attention_mask=mask,
                                    output_hidden_states=head is not None)
                bert_out.append(out.logits.float().cpu())
                if head is not None:
                    head_out.append(head([h.float() for h in out.hidden_states], mask).float().cpu())
        cat = lambda xs: torch.cat(xs) if xs else None  # noqa: E731
        return cat(bert_out), cat(head_out)

    def score(outputs):
        if classes == 1:
            return metrics(metric_names, outputs.view(-1).numpy(), dev_y)
        return metrics(metric_names, outputs.argmax(-1).numpy(), dev_y)

    seeds_out = []
    for seed in cfg["seeds"]:
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        sync(); t = time.perf_counter()
        model = transformers.BertForSequenceClassification.from_pretrained(
            args.model_dir, num_labels=classes, attn_implementation="sdpa",
            dtype=torch.float32).to(device).train()  # f32 master weights whatever the file stores
        total = int(round(math.ceil(n_train / ft["batch_size"]) * ft["epochs"]))
        # As `run`: the kept model is the one after at least one step and at most all of them.
        extract_step = min(max(int(round(math.ceil(n_train / ft["batch_size"]) * cfg["extract_at"])), 1), total)
        snapshot = {}

        def finetune_loss(ids, types, mask, target):
            with amp():
                logits = model(input_ids=ids, token_type_ids=types, attention_mask=mask).logits
            return loss_of(logits, target)

        def keep_extract_point(step):
            if step == extract_step:
                snapshot["state"] = copy.deepcopy(model.state_dict())

        losses = train(model, ft, n_train, rng, train_batches, finetune_loss, keep_extract_point)
        sync(); wall["finetune"] += time.perf_counter() - t

        t = time.perf_counter()
        final_bert, _ = predict(model)
        sync(); wall["evaluate"] += time.perf_counter() - t

        t = time.perf_counter()
        model.load_state_dict(snapshot["state"])
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        config = model.config
        head = AdapterPooler(config.hidden_size, config.num_hidden_layers + 1, hd["adapter_size"], classes).to(device)

        def head_loss(ids, types, mask, target):
            with torch.no_grad(), amp():
                hidden = model.bert(input_ids=ids, token_type_ids=types, attention_mask=mask,
                                    output_hidden_states=True).hidden_states
            return loss_of(head([h.float() for h in hidden], mask), target)

        head_losses = train(head, hd, n_train, rng, train_batches, head_loss)
        sync(); wall["head"] += time.perf_counter() - t

        t = time.perf_counter()
        head.eval()
        bert_1e, bv = predict(model, head)
        result = {"bert_final": score(final_bert), "bert_extract": score(bert_1e), "bertvision": score(bv)}
        if classes == 1:
            result["ensemble_mean"] = score((bert_1e + bv) / 2)
        else:
            p, q = bert_1e.softmax(-1), bv.softmax(-1)
            result["ensemble_max"] = score(torch.maximum(p, q))
            result["ensemble_mean"] = score((p + q) / 2)
        sync(); wall["evaluate"] += time.perf_counter() - t
        seeds_out.append({"seed": seed, "metrics": result,
                          "finetune_loss": {"first": losses[0], "last_tenth": float(np.mean(losses[-max(1, len(losses) // 10):]))},
                          "head_loss": {"first": head_losses[0], "last_tenth": float(np.mean(head_losses[-max(1, len(head_losses) // 10):]))}})
        print(f"seed {seed}: {json.dumps(result)}", file=sys.stderr)
    wall["total"] = time.perf_counter() - t0
    report = {
        "implementation": f"PyTorch {torch.__version__}, transformers {transformers.__version__}, eager, SDPA",
        "dtype": "bf16 autocast" if cuda else "f32",
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "threads": args.threads,
        "config": args.config,
        "task": task,
        "train_examples": n_train,
        "dev_examples": len(dev_y),
        "pad_multiple": multiple,
        "wall_seconds": wall,
        "seeds": seeds_out,
    }
    text = json.dumps(report, indent=2)
    if args.out:
        with open(args.out + ".tmp", "w") as f:
            f.write(text)
        os.replace(args.out + ".tmp", args.out)
    print(text)


if __name__ == "__main__":
    main()
