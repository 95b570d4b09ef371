"""One AdamW update of every parameter of BERT (minilm-l6's and bert-base's shapes) on the CPU,
timed alone: PyTorch's `torch.optim.AdamW` in its default (foreach) and fused forms, on the
parameter sizes of `native/examples/adamw_step.rs`, one JSON line per model and implementation.
Run by scripts/adamw_step.sh beside the Rust side.

    python3 benchmarks/adamw_step.py [--repeats 7] [--threads 2]
"""

import argparse
import json
import os
import statistics
import time

# (model, vocabulary, hidden, layers, intermediate), as in native/examples/adamw_step.rs.
MODELS = [("minilm-l6", 30522, 384, 6, 1536), ("bert-base", 30522, 768, 12, 3072)]


def parameter_sizes(vocab, hidden, layers, inner):
    sizes = [vocab * hidden, 512 * hidden, 2 * hidden, hidden, hidden]
    for _ in range(layers):
        for _ in range(4):
            sizes += [hidden * hidden, hidden]
        sizes += [hidden, hidden, hidden * inner, inner, inner * hidden, hidden, hidden, hidden]
    return sizes + [hidden * hidden, hidden, hidden * 2, 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    for model, vocab, hidden, layers, inner in MODELS:
        sizes = parameter_sizes(vocab, hidden, layers, inner)
        for name, options in [("torch AdamW (foreach)", {"foreach": True}), ("torch AdamW (fused)", {"fused": True})]:
            params = [torch.nn.Parameter(torch.randn(n) * 0.02) for n in sizes]
            for p in params:
                p.grad = torch.randn(n_of(p)) * 0.02
            try:
                optimizer = torch.optim.AdamW(params, lr=2e-5, weight_decay=0.01, eps=1e-8, **options)
                optimizer.step()  # the state is made on the first step: not timed
            except (RuntimeError, TypeError) as e:
                print(json.dumps({"impl": name, "model": model, "error": str(e).splitlines()[0]}))
                continue
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                optimizer.step()
                times.append(time.perf_counter() - start)
            print(json.dumps({
                "impl": name, "model": model, "parameters": len(sizes), "elements": sum(sizes),
                "threads": args.threads, "repeats": args.repeats, "torch": torch.__version__,
                "seconds": round(statistics.median(times), 6),
            }))


def n_of(p):
    return p.numel()


if __name__ == "__main__":
    main()
