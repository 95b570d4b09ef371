//! One AdamW update of every parameter of BERT (minilm-l6's and bert-base's shapes), timed
//! alone: Burn's `AdamW` arithmetic as tensor ops (`ops::adamw::reference`, what the optimizer
//! ran before issue #20's one-pass update) against Flex's one-pass kernel (`cpu::adamw`, what
//! it runs now), side by side in one run. `benchmarks/adamw_step.py` times PyTorch's AdamW on
//! the same shapes; `scripts/adamw_step.sh` runs both.
//!
//! `cargo run --release -p bertvision --example adamw_step -- [repeats]` prints one JSON line
//! per model and implementation.

use std::time::Instant;

use bertvision_shaders::ops::adamw::reference::update as reference_update;
use bertvision_shaders::{AdamWInputs, AdamWOps, AdamWSettings, Moments};
use burn::backend::Flex;
use burn::tensor::{Distribution, Tensor};

/// (model, vocabulary, hidden, layers, intermediate) of the encoders `scripts/bench.sh` measures.
const MODELS: [(&str, usize, usize, usize, usize); 2] = [
    ("minilm-l6", 30522, 384, 6, 1536),
    ("bert-base", 30522, 768, 12, 3072),
];

/// Element counts of BERT's parameters with a pooler and a two-class head, as `Bert::init`
/// makes them (512 positions, 2 token types).
fn parameter_sizes(vocab: usize, hidden: usize, layers: usize, inner: usize) -> Vec<usize> {
    let mut sizes = vec![vocab * hidden, 512 * hidden, 2 * hidden, hidden, hidden];
    for _ in 0..layers {
        for _ in 0..4 {
            sizes.extend([hidden * hidden, hidden]);
        }
        sizes.extend([
            hidden,
            hidden,
            hidden * inner,
            inner,
            inner * hidden,
            hidden,
        ]);
        sizes.extend([hidden, hidden]);
    }
    sizes.extend([hidden * hidden, hidden, hidden * 2, 2]);
    sizes
}

struct Parameter {
    param: Tensor<Flex, 1>,
    grad: Tensor<Flex, 1>,
    moments: Option<Moments<Flex>>,
}

fn main() {
    let repeats: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("usage: adamw_step [repeats]"))
        .unwrap_or(7);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let device = Default::default();
    let settings = AdamWSettings {
        lr: 2e-5,
        beta_1: 0.9,
        beta_2: 0.999,
        epsilon: 1e-8,
        weight_decay: 0.01,
    };
    for (model, vocab, hidden, layers, inner) in MODELS {
        let sizes = parameter_sizes(vocab, hidden, layers, inner);
        let elements: usize = sizes.iter().sum();
        let random =
            |n: usize| Tensor::<Flex, 1>::random([n], Distribution::Normal(0.0, 0.02), &device);
        let mut params: Vec<Parameter> = sizes
            .iter()
            .map(|&n| Parameter {
                param: random(n),
                grad: random(n),
                moments: None,
            })
            .collect();
        let factor = Tensor::<Flex, 1>::from_floats([0.5], &device);
        let mut time = 0;
        // Each implementation steps the same parameters in turn, alternating, so that both see
        // the same machine state; the first round (moments made) is not timed.
        let mut seconds = [Vec::new(), Vec::new()];
        for round in 0..=repeats {
            for (which, times) in seconds.iter_mut().enumerate() {
                time += 1;
                let scalars = settings.scalars(time);
                let start = Instant::now();
                for p in &mut params {
                    // The parameter is moved, not shared, as the optimizer holds it: a shared
                    // buffer would be copied before the update in place.
                    let param = std::mem::replace(&mut p.param, Tensor::empty([0], &device));
                    let inputs = AdamWInputs {
                        param,
                        grad: p.grad.clone(),
                        moments: p.moments.take(),
                        grad_factor: Some(factor.clone()),
                    };
                    let (param, moments) = match which {
                        0 => reference_update(inputs, scalars),
                        _ => Flex::adamw_update(inputs, scalars),
                    };
                    (p.param, p.moments) = (param, Some(moments));
                }
                if round > 0 {
                    times.push(start.elapsed().as_secs_f64());
                }
            }
        }
        for (times, implementation) in seconds.iter_mut().zip([
            "Burn AdamW ops (reference)",
            "one-pass kernel (bertvision cpu)",
        ]) {
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2];
            println!(
                "{{\"impl\": \"{implementation}\", \"model\": \"{model}\", \"parameters\": {}, \"elements\": {elements}, \"threads\": {threads}, \"repeats\": {repeats}, \"seconds\": {median:.6}}}",
                sizes.len()
            );
        }
    }
}
