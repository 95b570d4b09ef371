//! AdamW's one-pass update on CubeCL (Burn's wgpu backend over lavapipe; issue #20's proxy for
//! the GPU): the kernel `cube::adamw` through `CubeBackend` and through `Fusion`'s custom
//! operation, against the reference (Burn's `AdamW` arithmetic) run on Flex, and its launches
//! against the reference's on the same backend. Its own test binary: the launch log must be
//! installed before any CubeCL runtime starts.
#![cfg(feature = "wgpu-tests")]

use bertvision_shaders::launches::LaunchLog;
use bertvision_shaders::ops::adamw::reference::update as reference_update;
use bertvision_shaders::{AdamWInputs, AdamWOps, AdamWScalars, AdamWSettings, Moments};
use burn::backend::Flex;
use burn::backend::wgpu::{CubeBackend, WgpuRuntime};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

type Cube = CubeBackend<WgpuRuntime, f32, i32, u32>;
type Fused = burn_fusion::Fusion<Cube>;

/// Odd, past one cube of units.
const N: usize = 3 * 1024 + 7;

fn values(seed: u32, scale: f32) -> Vec<f32> {
    (0..N as u32)
        .map(|i| {
            ((i.wrapping_mul(2_654_435_761).wrapping_add(seed) % 2001) as f32 / 1000.0 - 1.0)
                * scale
        })
        .collect()
}

/// (parameter, gradient, moments?, factor?) of one case.
type Case = (
    Vec<f32>,
    Vec<f32>,
    Option<(Vec<f32>, Vec<f32>)>,
    Option<f32>,
);

fn cases() -> Vec<(Case, AdamWScalars)> {
    let settings = |weight_decay| AdamWSettings {
        lr: 3e-5,
        beta_1: 0.9,
        beta_2: 0.999,
        epsilon: 1e-8,
        weight_decay,
    };
    let moments = Some((
        values(3, 1e-3),
        values(4, 1e-6).iter().map(|v| v.abs()).collect(),
    ));
    vec![
        (
            (values(1, 1.0), values(2, 0.1), None, None),
            settings(0.01).scalars(1),
        ),
        (
            (values(1, 1.0), values(2, 0.1), moments.clone(), Some(0.37)),
            settings(0.0).scalars(5),
        ),
        (
            (values(1, 1.0), values(2, 0.1), moments, Some(2.5e-5)),
            settings(0.01).scalars(9),
        ),
    ]
}

/// An AdamW update: the op's signature.
type Update<B> = fn(AdamWInputs<B>, AdamWScalars) -> (Tensor<B, 1>, Moments<B>);

/// The new parameter and moments of `case` through `update` on `B`, read back.
fn run<B: Backend>(case: &Case, scalars: AdamWScalars, update: Update<B>) -> [Vec<f32>; 3] {
    let device = Default::default();
    let t =
        |v: &Vec<f32>| Tensor::<B, 1>::from_data(TensorData::new(v.clone(), [v.len()]), &device);
    let (param, grad, moments, factor) = case;
    let moments = moments.as_ref().map(|(m, v)| Moments {
        first: t(m),
        second: t(v),
    });
    let inputs = AdamWInputs {
        param: t(param),
        grad: t(grad),
        moments,
        grad_factor: factor.map(|f| t(&vec![f])),
    };
    let (param, moments) = update(inputs, scalars);
    let read = |t: Tensor<B, 1>| t.into_data().to_vec::<f32>().unwrap();
    let out = [read(param), read(moments.first), read(moments.second)];
    B::sync(&device).unwrap();
    out
}

/// Largest difference relative to the larger magnitude (floor 1e-30: moments can be tiny).
fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / x.abs().max(y.abs()).max(1e-30))
        .fold(0.0, f32::max)
}

#[test]
fn cubecl_adamw_is_the_reference_in_one_launch() {
    let dir =
        std::env::temp_dir().join(format!("bertvision-adamw-launches-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let launches = LaunchLog::install(&dir.join("launches.log")).unwrap();
    const { assert!(<Cube as AdamWOps>::KERNEL && <Fused as AdamWOps>::KERNEL) };
    for (case, scalars) in cases() {
        let want = run::<Flex>(&case, scalars, reference_update::<Flex>);
        let cube = run::<Cube>(&case, scalars, Cube::adamw_update);
        let fused = run::<Fused>(&case, scalars, Fused::adamw_update);
        for (got, path) in [(cube, "CubeBackend"), (fused, "Fusion")] {
            for ((g, w), what) in
                got.iter()
                    .zip(&want)
                    .zip(["parameter", "first moment", "second moment"])
            {
                let diff = max_rel_diff(g, w);
                // lavapipe may contract a multiply and an add into one FMA: an ulp or two.
                assert!(
                    diff <= 1e-6,
                    "{path}, {what}, {scalars:?}: {diff:e} off the reference"
                );
            }
        }
    }
    // Launches of one update, warm (every variant compiled above), the inputs made beforehand.
    let (case, scalars) = cases().pop().unwrap();
    let count = |update: fn(&Case, AdamWScalars) -> [Vec<f32>; 3]| {
        let before = launches.count();
        update(&case, scalars);
        launches.count() - before
    };
    // The same uploads and reads around an update that launches nothing.
    let uploads_and_reads = count(|case, s| {
        run::<Cube>(case, s, |inputs, _| {
            let first = inputs.grad.clone();
            let moments = Moments {
                first,
                second: inputs.grad,
            };
            (inputs.param, moments)
        })
    });
    let ours = count(|case, s| run::<Cube>(case, s, Cube::adamw_update)) - uploads_and_reads;
    let reference =
        count(|case, s| run::<Cube>(case, s, reference_update::<Cube>)) - uploads_and_reads;
    let fused_ours =
        count(|case, s| run::<Fused>(case, s, Fused::adamw_update)) - uploads_and_reads;
    let fused_reference =
        count(|case, s| run::<Fused>(case, s, reference_update::<Fused>)) - uploads_and_reads;
    eprintln!(
        "launches of one update on CubeCL (wgpu): one-pass kernel {ours}, Burn's AdamW ops \
         {reference}; under Burn's fusion {fused_ours} and {fused_reference}"
    );
    assert_eq!(
        fused_ours, 1,
        "the one-pass update under fusion is one launch"
    );
    assert_eq!(ours, 1, "the one-pass update is one launch");
    assert!(reference > ours);
    launches.remove();
    let _ = std::fs::remove_dir_all(&dir);
}
