//! Which matmuls a linear layer's forward and backward run on CubeCL (issue #20's proxy for the
//! GPU: Burn's wgpu backend over lavapipe, CubeCL's autotune logger). The encoder's linear op
//! under `Autodiff` runs 2-D matmuls over every token (`[batch·seq, in]`); Burn's
//! `module::linear`, which it replaced, runs one matmul per sequence, forward and for the weight
//! gradient. Autotune keys name each matmul's (m, n, k), rounded up to powers of two, never the
//! batch: a per-sequence matmul shows as a dimension equal to the sequence length. Its own test
//! binary: CubeCL's configuration can only be set before the runtime starts.
#![cfg(feature = "wgpu-tests")]

use std::path::Path;
use std::time::{Duration, Instant};

use bertvision_shaders::LinearOps;
use bertvision_shaders::launches::LaunchLog;
use bertvision_shaders::ops::linear::reference::{SPLIT_PART_ROWS, weight_gradient};
use burn::backend::{Autodiff, Wgpu};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use cubecl::config::CubeClRuntimeConfig;
use cubecl::config::autotune::AutotuneLogLevel;
use cubecl::config::cache::CacheConfig;

type A = Autodiff<Wgpu>;
/// A linear layer's op: `x·w + b`.
type LinearFn = fn(Tensor<A, 3>, Tensor<A, 2>, Option<Tensor<A, 1>>) -> Tensor<A, 3>;

/// Forward and backward of `x·w + b` on `[batch, seq, inputs]` → `outputs`, by `linear`.
fn run((batch, seq, inputs, outputs): (usize, usize, usize, usize), linear: LinearFn) {
    let device = Default::default();
    let ramp = |n: usize| (0..n).map(|i| (i % 13) as f32 / 13.0).collect::<Vec<_>>();
    let x = Tensor::<A, 3>::from_data(
        TensorData::new(ramp(batch * seq * inputs), [batch, seq, inputs]),
        &device,
    )
    .require_grad();
    let w = Tensor::<A, 2>::from_data(
        TensorData::new(ramp(inputs * outputs), [inputs, outputs]),
        &device,
    )
    .require_grad();
    let b = Tensor::<A, 1>::from_data(TensorData::new(ramp(outputs), [outputs]), &device)
        .require_grad();
    let grads = linear(x.clone(), w.clone(), Some(b)).sum().backward();
    let _ = (x.grad(&grads).unwrap(), w.grad(&grads).unwrap());
    <Wgpu as Backend>::sync(&device).unwrap();
}

/// The (m, n, k) of every matmul autotuned so far, from the log.
fn matmul_keys(log: &Path) -> Vec<[usize; 3]> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let field = |line: &str, name: &str| -> Option<usize> {
        let at = line.find(&format!(" {name}: "))? + name.len() + 3;
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    text.lines()
        .filter(|l| l.starts_with("Fastest result") && l.contains("MatmulProblemDefinition"))
        .filter_map(|l| Some([field(l, "m")?, field(l, "n")?, field(l, "k")?]))
        .collect()
}

/// The log once it has `count` matmul keys (autotune may log from another thread), or after 30 s.
fn wait_for_keys(log: &Path, count: usize) -> Vec<[usize; 3]> {
    let start = Instant::now();
    loop {
        let keys = matmul_keys(log);
        if keys.len() >= count || start.elapsed() > Duration::from_secs(30) {
            return keys;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_encoders_linear_layers_run_2d_matmuls_over_every_token() {
    // A fresh autotune cache: a key tuned before (by another test, another run) is read from
    // the cache, not tuned, and so not logged.
    let dir = std::env::temp_dir().join(format!("bertvision-matmul-keys-{}", std::process::id()));
    let log = dir.join("autotune.log");
    let mut config = CubeClRuntimeConfig::default();
    config.autotune.logger.level = AutotuneLogLevel::Full;
    config.autotune.logger.file = Some(log.clone());
    config.autotune.cache = CacheConfig::File(dir.join("cache"));
    std::fs::create_dir_all(&dir).unwrap();
    let launches = LaunchLog::install_with(&dir.join("launches.log"), config).unwrap();

    // 4 sequences of 16 tokens, 32 → 128 (powers of two, so the keys show them as they are).
    run((4, 16, 32, 128), <A as LinearOps>::encoder_linear);
    let ours = wait_for_keys(&log, 3);
    eprintln!(
        "the encoder's linear op, batch 4 × seq 16, 32 → 128: matmul keys (m, n, k) {ours:?}"
    );
    assert_eq!(
        ours.len(),
        3,
        "forward, input and weight gradients: {ours:?}"
    );
    for key in &ours {
        assert!(
            key.contains(&64),
            "{key:?}: every matmul spans the 64 tokens"
        );
        assert!(!key.contains(&16), "{key:?}: a per-sequence matmul");
    }

    // Burn's `module::linear` on 8 sequences of 8 tokens: the control, which the same reading
    // of the log catches running per sequence.
    run((8, 8, 32, 128), burn::tensor::module::linear);
    let all = wait_for_keys(&log, ours.len() + 1);
    let burns = &all[ours.len()..];
    eprintln!("Burn's module::linear, batch 8 × seq 8, 32 → 128: matmul keys (m, n, k) {burns:?}");
    assert!(
        burns.iter().any(|key| key.contains(&8)),
        "Burn's linear runs a matmul per sequence: {burns:?}"
    );

    // Kernel launches of one forward and backward, tuned already (autotune's own trial
    // launches are logged too), at the same shape for both ops.
    let count = |linear: LinearFn| {
        run((4, 16, 32, 128), linear);
        let before = launches.count();
        run((4, 16, 32, 128), linear);
        let after = launches.count();
        (after - before, launches.kernels_since(before))
    };
    let (ours, our_kernels) = count(<A as LinearOps>::encoder_linear);
    let (burns, burn_kernels) = count(burn::tensor::module::linear);
    eprintln!("kernel launches, forward + backward: ours {ours} {our_kernels:?}");
    eprintln!("Burn's module::linear {burns} {burn_kernels:?}");
    assert!(ours > 0 && burns > 0, "the launch log counts launches");
    assert!(ours <= burns, "ours {ours} launches, Burn's {burns}");

    // A small weight over many rows (the AdapterPooler's adapter): its gradient is split into
    // parts of SPLIT_PART_ROWS rows, no product over every row (issue #20).
    let split_keys = |rows: usize, split: bool| {
        let known = matmul_keys(&log).len();
        let ramp = |n: usize| (0..n).map(|i| (i % 11) as f32 / 11.0).collect::<Vec<_>>();
        let device = Default::default();
        let x = Tensor::<Wgpu, 2>::from_data(TensorData::new(ramp(rows * 64), [rows, 64]), &device);
        let g = Tensor::<Wgpu, 2>::from_data(TensorData::new(ramp(rows * 32), [rows, 32]), &device);
        let _ = match split {
            true => weight_gradient(x, g).into_data(),
            false => x.transpose().matmul(g).into_data(),
        };
        let all = wait_for_keys(&log, known + 1);
        all[known..].to_vec()
    };
    let rows = 16 * SPLIT_PART_ROWS + 100;
    let split = split_keys(rows, true);
    eprintln!("the weight gradient of 64 → 32 over {rows} rows, split: matmul keys {split:?}");
    assert!(
        split.iter().all(|key| key.iter().all(|&d| d < rows)),
        "a product over every row remains: {split:?}"
    );
    let plain = split_keys(rows, false);
    eprintln!("the same as one product: matmul keys {plain:?}");
    assert!(
        plain.iter().any(|key| key.iter().any(|&d| d >= rows)),
        "the log shows the unsplit product's inner size: {plain:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
