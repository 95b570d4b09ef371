//! The fused AdapterPooler head against references: a loop over the formula (CPU), the
//! reference's recompute and plain Burn autodiff for the gradients (CPU, where Flex runs the
//! head through its CPU kernels), and — with `--features wgpu-tests` — the CubeCL kernels on
//! Burn's wgpu backend against the CPU reference, forward and gradients.

use bertvision_shaders::ops::adapter_head::reference;
use bertvision_shaders::{AdapterHeadOps, adapter_head};
use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData, TensorPrimitive};

/// One case: tokens = sequences × positions.
#[derive(Debug, Clone, Copy)]
struct Case {
    sequences: usize,
    seq_len: usize,
    layers: usize,
    hidden: usize,
    adapter: usize,
    classes: usize,
    per_layer_adapters: bool,
    /// Position-specific head weights (the flattened GLUE head).
    per_position_head: bool,
}

impl Case {
    fn tokens(&self) -> usize {
        self.sequences * self.seq_len
    }
    fn adapters(&self) -> usize {
        if self.per_layer_adapters {
            self.layers
        } else {
            1
        }
    }
    fn positions(&self) -> usize {
        if self.per_position_head {
            self.seq_len
        } else {
            1
        }
    }
}

const CASES: [Case; 5] = [
    // splade-tiny's shape in a `run` batch (3 states, hidden 128, A = 32, 32 × 48 tokens).
    Case {
        sequences: 32,
        seq_len: 48,
        layers: 3,
        hidden: 128,
        adapter: 32,
        classes: 2,
        per_layer_adapters: false,
        per_position_head: false,
    },
    // SQuAD's span head: shared adapter, 2 classes.
    Case {
        sequences: 3,
        seq_len: 7,
        layers: 3,
        hidden: 24,
        adapter: 8,
        classes: 2,
        per_layer_adapters: false,
        per_position_head: false,
    },
    // The original GLUE head: weights per position, 3 classes.
    Case {
        sequences: 2,
        seq_len: 5,
        layers: 4,
        hidden: 16,
        adapter: 4,
        classes: 3,
        per_layer_adapters: false,
        per_position_head: true,
    },
    // Unshared adapters, a regression output.
    Case {
        sequences: 2,
        seq_len: 6,
        layers: 3,
        hidden: 20,
        adapter: 16,
        classes: 1,
        per_layer_adapters: true,
        per_position_head: false,
    },
    // minilm-l6's shape (7 states, hidden 384, A = 32): many cubes, long dot products.
    Case {
        sequences: 2,
        seq_len: 40,
        layers: 7,
        hidden: 384,
        adapter: 32,
        classes: 2,
        per_layer_adapters: false,
        per_position_head: false,
    },
];

/// Deterministic values in [-scale, scale].
fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// The case's inputs as flat vectors: features, adapter weight, adapter bias, head weight.
fn inputs(case: &Case) -> [(Vec<f32>, Vec<usize>); 4] {
    let Case {
        layers,
        hidden,
        adapter,
        classes,
        ..
    } = *case;
    let (tokens, adapters, positions) = (case.tokens(), case.adapters(), case.positions());
    [
        (
            values(tokens * layers * hidden, 1, 2.0),
            vec![tokens, layers, hidden],
        ),
        (
            values(adapters * hidden * adapter, 2, 0.2),
            vec![adapters, hidden, adapter],
        ),
        (values(adapters * adapter, 3, 0.5), vec![adapters, adapter]),
        (
            values(positions * layers * adapter * classes, 4, 0.3),
            vec![positions, layers * adapter, classes],
        ),
    ]
}

fn tensor<B: Backend, const D: usize>(
    (data, shape): &(Vec<f32>, Vec<usize>),
    device: &B::Device,
) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(data.clone(), shape.clone()), device)
}

fn to_vec<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The formula, written as loops in f64.
fn by_loops(case: &Case) -> Vec<f32> {
    let [(f, _), (w, _), (b, _), (h, _)] = inputs(case);
    let Case {
        layers,
        hidden,
        adapter,
        classes,
        ..
    } = *case;
    let erf = |x: f64| -> f64 {
        // Abramowitz–Stegun 7.1.26 is only 1.5e-7 accurate; integrate instead (Simpson).
        let n = 2000;
        let h = x / n as f64;
        let f = |t: f64| (-t * t).exp();
        let mut s = f(0.0) + f(x);
        for i in 1..n {
            s += f(i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
        }
        s * h / 3.0 * std::f64::consts::FRAC_2_SQRT_PI
    };
    let mut out = vec![0.0f32; case.tokens() * classes];
    for n in 0..case.tokens() {
        let p = n % case.positions();
        for l in 0..layers {
            let s = if case.per_layer_adapters { l } else { 0 };
            for a in 0..adapter {
                let mut pre = b[s * adapter + a] as f64;
                for d in 0..hidden {
                    pre += f[(n * layers + l) * hidden + d] as f64
                        * w[(s * hidden + d) * adapter + a] as f64;
                }
                let z = 0.5 * pre * (1.0 + erf(pre / std::f64::consts::SQRT_2));
                for c in 0..classes {
                    out[n * classes + c] +=
                        (z * h[((p * layers + l) * adapter + a) * classes + c] as f64) as f32;
                }
            }
        }
    }
    out
}

/// The reference's forward on Flex (plain Burn ops).
fn reference_forward(case: &Case) -> Vec<f32> {
    let device = Default::default();
    let [f, w, b, h] = inputs(case);
    to_vec(reference::forward::<Flex>(
        tensor(&f, &device),
        tensor(&w, &device),
        tensor(&b, &device),
        tensor(&h, &device),
    ))
}

/// A backend's `adapter_head` (its kernels where it has them).
fn kernel_forward<B: AdapterHeadOps>(case: &Case, device: &B::Device) -> Vec<f32> {
    let [f, w, b, h] = inputs(case);
    to_vec(
        adapter_head::<B>(
            tensor(&f, device),
            tensor(&w, device),
            tensor(&b, device),
            tensor(&h, device),
        )
        .unwrap(),
    )
}

#[test]
fn reference_and_cpu_kernels_match_the_formula_written_as_loops() {
    let device = Default::default();
    for case in CASES {
        let want = by_loops(&case);
        for (name, got) in [
            ("reference", reference_forward(&case)),
            ("flex kernels", kernel_forward::<Flex>(&case, &device)),
        ] {
            let diff = max_abs_diff(&got, &want);
            assert!(diff < 1e-4, "{name} {case:?}: {diff}");
        }
    }
}

/// A backend's recompute (activations, gradient at the GELU input) and the reference's on
/// Flex, for a fixed output gradient.
fn recompute_pair<B: AdapterHeadOps>(case: &Case, device: &B::Device) -> [[Vec<f32>; 2]; 2] {
    let cpu = Default::default();
    let [f, w, b, h] = inputs(case);
    let g = (
        values(case.tokens() * case.classes, 7, 1.0),
        vec![case.tokens(), case.classes],
    );
    let want = reference::recompute::<Flex>(
        tensor(&f, &cpu),
        tensor(&w, &cpu),
        tensor(&b, &cpu),
        tensor(&h, &cpu),
        tensor(&g, &cpu),
    );
    let (act, grad) = B::adapter_head_recompute(
        tensor::<B, 3>(&f, device).into_primitive().tensor(),
        tensor::<B, 3>(&w, device).into_primitive().tensor(),
        tensor::<B, 2>(&b, device).into_primitive().tensor(),
        tensor::<B, 3>(&h, device).into_primitive().tensor(),
        tensor::<B, 2>(&g, device).into_primitive().tensor(),
    );
    let wrap = |t| to_vec(Tensor::<B, 3>::from_primitive(TensorPrimitive::Float(t)));
    [[wrap(act), wrap(grad)], [to_vec(want.0), to_vec(want.1)]]
}

fn assert_recompute_close<B: AdapterHeadOps>(name: &str, device: &B::Device) {
    for case in CASES {
        let [got, want] = recompute_pair::<B>(&case, device);
        for (part, (g, w)) in ["activations", "grad at GELU input"]
            .iter()
            .zip(got.iter().zip(&want))
        {
            let scale = w.iter().fold(1.0f32, |m, v| m.max(v.abs()));
            let diff = max_abs_diff(g, w);
            assert!(diff <= 1e-5 * scale, "{name} {part} {case:?}: {diff}");
        }
    }
}

#[test]
fn cpu_recompute_matches_the_reference() {
    assert_recompute_close::<Flex>("flex kernels", &Default::default());
}

/// Output and the four gradients of `Σ out · weights` (weights fixed, so every output element
/// gets a different gradient).
fn forward_and_gradients<B: burn::tensor::backend::AutodiffBackend + AdapterHeadOps>(
    case: &Case,
    fused: bool,
    device: &B::Device,
) -> Vec<Vec<f32>> {
    let [f, w, b, h] = inputs(case);
    let features = tensor::<B, 3>(&f, device).require_grad();
    let adapter_weight = tensor::<B, 3>(&w, device).require_grad();
    let adapter_bias = tensor::<B, 2>(&b, device).require_grad();
    let head_weight = tensor::<B, 3>(&h, device).require_grad();
    let out = if fused {
        adapter_head(
            features.clone(),
            adapter_weight.clone(),
            adapter_bias.clone(),
            head_weight.clone(),
        )
        .unwrap()
    } else {
        reference::forward(
            features.clone(),
            adapter_weight.clone(),
            adapter_bias.clone(),
            head_weight.clone(),
        )
    };
    let weights = Tensor::<B, 2>::from_data(
        TensorData::new(values(out.dims().iter().product(), 9, 1.0), out.dims()),
        device,
    );
    let grads = (out.clone() * weights).sum().backward();
    let grad = |t: &Tensor<B, 3>| to_vec(t.grad(&grads).expect("gradient"));
    vec![
        to_vec(out),
        grad(&features),
        grad(&adapter_weight),
        to_vec(adapter_bias.grad(&grads).expect("gradient")),
        grad(&head_weight),
    ]
}

const PARTS: [&str; 5] = [
    "output",
    "d features",
    "d adapter weight",
    "d adapter bias",
    "d head weight",
];

fn assert_close(case: &Case, got: &[Vec<f32>], want: &[Vec<f32>], tolerance: f32) {
    for ((name, g), w) in PARTS.iter().zip(got).zip(want) {
        let scale = w.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let diff = max_abs_diff(g, w);
        assert!(
            diff <= tolerance * scale,
            "{case:?} {name}: max |diff| {diff} > {tolerance} × {scale}"
        );
    }
}

#[test]
fn fused_backward_matches_plain_autodiff_on_the_cpu() {
    // Autodiff<Flex> runs the custom backward (recompute + matmuls) over the reference ops;
    // the plain version lets Burn differentiate every op.
    let device = Default::default();
    for case in CASES {
        let fused = forward_and_gradients::<Autodiff<Flex>>(&case, true, &device);
        let plain = forward_and_gradients::<Autodiff<Flex>>(&case, false, &device);
        assert_close(&case, &fused, &plain, 1e-5);
    }
}

#[test]
fn shape_errors_name_the_problem() {
    let device = Default::default();
    let t3 = |shape: [usize; 3]| Tensor::<Flex, 3>::zeros(shape, &device);
    let t2 = |shape: [usize; 2]| Tensor::<Flex, 2>::zeros(shape, &device);
    let err = adapter_head(t3([6, 3, 8]), t3([2, 8, 4]), t2([2, 4]), t3([1, 12, 2])).unwrap_err();
    assert!(err.to_string().contains("2 adapters for 3 layers"), "{err}");
    let err = adapter_head(t3([6, 3, 8]), t3([1, 8, 4]), t2([1, 4]), t3([4, 12, 2])).unwrap_err();
    assert!(
        err.to_string().contains("not whole sequences of 4"),
        "{err}"
    );
    let err = adapter_head(t3([6, 3, 8]), t3([1, 8, 4]), t2([1, 4]), t3([1, 10, 2])).unwrap_err();
    assert!(
        err.to_string().contains("want layers × adapter = 12"),
        "{err}"
    );
}

/// The CubeCL kernels on Burn's native wgpu backend (any Vulkan device; in CI Mesa's lavapipe).
#[cfg(feature = "wgpu-tests")]
mod wgpu {
    use super::*;
    use burn::backend::Wgpu;
    use burn::backend::wgpu::{CubeBackend, WgpuRuntime};

    type Cube = CubeBackend<WgpuRuntime, f32, i32, u32>;

    #[test]
    fn forward_kernel_matches_the_reference() {
        let gpu = Default::default();
        for case in CASES {
            let want = reference_forward(&case);
            let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
            // Bare CubeBackend and the Fusion-wrapped one the binary uses.
            for (name, got) in [
                ("cube", kernel_forward::<Cube>(&case, &gpu)),
                ("fusion", kernel_forward::<Wgpu>(&case, &gpu)),
            ] {
                let diff = max_abs_diff(&got, &want);
                assert!(diff <= 1e-5 * scale, "{name} {case:?}: {diff}");
            }
        }
    }

    #[test]
    fn recompute_kernel_matches_the_reference() {
        assert_recompute_close::<Cube>("cube", &Default::default());
    }

    #[test]
    fn gradients_on_the_gpu_match_plain_autodiff_on_the_cpu() {
        let cpu = Default::default();
        let gpu = Default::default();
        for case in CASES {
            let want = forward_and_gradients::<Autodiff<Flex>>(&case, false, &cpu);
            let got = forward_and_gradients::<Autodiff<Wgpu>>(&case, true, &gpu);
            assert_close(&case, &got, &want, 1e-5);
        }
    }
}
