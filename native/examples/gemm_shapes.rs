//! The CPU kernels' matmuls on the encoder's exact shapes, timed alone: GFLOP/s of the linear
//! layers' forward, input gradient and weight gradient (`bertvision_shaders::cpu::linear*`, the
//! gemm crate as `bertvision` calls it). `benchmarks/gemm_shapes.py` times OpenBLAS (numpy) and
//! PyTorch's CPU matmul on the same shapes; `scripts/gemm_shapes.sh` runs both and prints the
//! ratios (issue #20, item 9: is matmul speed what keeps the CPU rows below PyTorch?).
//!
//! `cargo run --release -p bertvision --example gemm_shapes -- [batch] [repeats]` prints one
//! JSON line per shape.

use std::time::Instant;

use bertvision_shaders::cpu::{MatrixView, linear, linear_input_grad, linear_weight_grad};

/// (model, hidden, intermediate, hidden states) of the encoders `scripts/bench.sh` measures.
const MODELS: [(&str, usize, usize, usize); 2] =
    [("minilm-l6", 384, 1536, 7), ("bert-base", 768, 3072, 13)];

/// The AdapterPooler's adapter width (the recipe's default up to hidden 384).
const ADAPTER: usize = 32;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("usage: gemm_shapes [batch] [repeats]"))
        .collect();
    let batch = args.first().copied().unwrap_or(8);
    let repeats = args.get(1).copied().unwrap_or(7);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (model, hidden, inner, states) in MODELS {
        for seq in [128, 384] {
            let tokens = batch * seq;
            // The encoder's linear layers over every token; the adapter over every token of
            // every hidden state (the head step's matmuls).
            for (layer, rows, inputs, outputs) in [
                ("attention", tokens, hidden, hidden),
                ("ffn-in", tokens, hidden, inner),
                ("ffn-out", tokens, inner, hidden),
                ("adapter", tokens * states, hidden, ADAPTER),
            ] {
                for op in ["forward", "input-grad", "weight-grad"] {
                    let seconds = time(repeats, op, rows, inputs, outputs);
                    let gflops = 2.0 * (rows * inputs * outputs) as f64 / seconds / 1e9;
                    println!(
                        "{{\"impl\": \"gemm crate (bertvision cpu kernels)\", \"model\": \"{model}\", \"seq\": {seq}, \"batch\": {batch}, \"layer\": \"{layer}\", \"op\": \"{op}\", \"m_k_n\": [{rows}, {inputs}, {outputs}], \"threads\": {threads}, \"seconds\": {seconds:.6}, \"gflops\": {gflops:.2}}}"
                    );
                }
            }
        }
    }
}

/// The median seconds of `repeats` calls of `op` after one untimed call.
fn time(repeats: usize, op: &str, rows: usize, inputs: usize, outputs: usize) -> f64 {
    let ramp = |n: usize| {
        (0..n)
            .map(|i| (i % 17) as f32 / 17.0 - 0.5)
            .collect::<Vec<_>>()
    };
    let x = ramp(rows * inputs);
    let grad = ramp(rows * outputs);
    let weight = ramp(inputs * outputs);
    let bias = ramp(outputs);
    let view = MatrixView {
        data: &weight,
        offset: 0,
        rows: inputs,
        cols: outputs,
        row_stride: outputs,
        col_stride: 1,
    };
    let call = || match op {
        "forward" => linear(&x, rows, view, Some(&bias)),
        "input-grad" => linear_input_grad(&grad, rows, view),
        _ => linear_weight_grad(&x, &grad, rows, inputs, outputs),
    };
    std::hint::black_box(call());
    let mut times: Vec<f64> = (0..repeats.max(1))
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(call());
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}
