"""The encoder's linear-layer matmuls on the CPU, timed alone: OpenBLAS (numpy's) and PyTorch's
CPU matmul on the shapes of `native/examples/gemm_shapes.rs` (forward x·W + b, input gradient
g·Wᵀ, weight gradient xᵀ·g), one JSON line per shape and implementation. Run by
scripts/gemm_shapes.sh beside the Rust side.

    python3 benchmarks/gemm_shapes.py [--batch 8] [--repeats 7] [--threads 2]
"""

import argparse
import json
import os
import sys
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    # Before numpy loads OpenBLAS, which reads it once.
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
    import numpy as np

    impls = {"openblas (numpy)": numpy_ops(np)}
    try:
        import torch

        torch.set_num_threads(args.threads)
        impls["pytorch (" + torch.__version__ + ")"] = torch_ops(torch)
    except ImportError:
        print("torch not installed: OpenBLAS only", file=sys.stderr)
    config = np.show_config(mode="dicts")
    blas = config.get("Build Dependencies", {}).get("blas", {})
    for model, hidden, inner, states in [("minilm-l6", 384, 1536, 7), ("bert-base", 768, 3072, 13)]:
        for seq in (128, 384):
            tokens = args.batch * seq
            for layer, rows, inputs, outputs in [
                ("attention", tokens, hidden, hidden),
                ("ffn-in", tokens, hidden, inner),
                ("ffn-out", tokens, inner, hidden),
                ("adapter", tokens * states, hidden, 32),
            ]:
                for name, ops in impls.items():
                    for op in ("forward", "input-grad", "weight-grad"):
                        seconds = median_time(ops(op, rows, inputs, outputs), args.repeats)
                        flops = 2.0 * rows * inputs * outputs
                        print(json.dumps({
                            "impl": name,
                            "blas": blas.get("openblas configuration", blas.get("name", "")) if "numpy" in name else "",
                            "model": model, "seq": seq, "batch": args.batch, "layer": layer,
                            "op": op, "m_k_n": [rows, inputs, outputs], "threads": args.threads,
                            "seconds": round(seconds, 6), "gflops": round(flops / seconds / 1e9, 2),
                        }), flush=True)


def ramp(np, shape):
    n = 1
    for d in shape:
        n *= d
    return ((np.arange(n) % 17) / 17.0 - 0.5).astype(np.float32).reshape(shape)


def numpy_ops(np):
    def make(op, rows, inputs, outputs):
        x, g = ramp(np, (rows, inputs)), ramp(np, (rows, outputs))
        w, b = ramp(np, (inputs, outputs)), ramp(np, (outputs,))
        return {
            "forward": lambda: x @ w + b,
            "input-grad": lambda: g @ w.T,
            "weight-grad": lambda: x.T @ g,
        }[op]
    return make


def torch_ops(torch):
    import numpy as np

    def make(op, rows, inputs, outputs):
        x = torch.from_numpy(ramp(np, (rows, inputs)))
        g = torch.from_numpy(ramp(np, (rows, outputs)))
        w = torch.from_numpy(ramp(np, (outputs, inputs)))  # nn.Linear's [out, in]
        b = torch.from_numpy(ramp(np, (outputs,)))
        return {
            "forward": lambda: torch.nn.functional.linear(x, w, b),
            "input-grad": lambda: g @ w,
            "weight-grad": lambda: g.T @ x,
        }[op]
    return make


def median_time(call, repeats):
    call()
    times = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


if __name__ == "__main__":
    main()
