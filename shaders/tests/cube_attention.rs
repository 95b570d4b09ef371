//! The frozen encoder's attention on CubeCL (Burn's wgpu backend over lavapipe; issue #20's
//! proxy for the GPU): `cube::attention` through `CubeBackend` and through `Fusion`'s custom
//! operation, on the mask `AttentionOps::encoder_attention_mask` builds (the key bias), against
//! the formula written as loops in f64 and against Burn's `module::attention` on Flex with holes
//! in the mask; then its launches and buffers against Burn's `module::attention` on the dense
//! per-head mask (the path CUDA ran before). Its own test binary: the launch log must be
//! installed before any CubeCL runtime starts.
#![cfg(feature = "wgpu-tests")]

mod common;
use common::values;

use bertvision_shaders::launches::LaunchLog;
use bertvision_shaders::{AttentionInput, AttentionMask, AttentionOps, key_padding_mask};
use burn::backend::Flex;
use burn::backend::wgpu::{CubeBackend, WgpuRuntime};
use burn::tensor::backend::Backend;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{FloatDType, Int, Tensor, TensorData};

type Cube = CubeBackend<WgpuRuntime, f32, i32, u32>;
type Fused = burn_fusion::Fusion<Cube>;

/// `[batch, heads, seq, head_dim]` and each sequence's 1/0 key mask.
#[derive(Debug, Clone)]
struct Case {
    heads: usize,
    seq: usize,
    head_dim: usize,
    keys: Vec<Vec<i64>>,
}

impl Case {
    fn padded(heads: usize, seq: usize, head_dim: usize, lengths: &[usize]) -> Self {
        let keys = lengths
            .iter()
            .map(|&len| (0..seq).map(|t| i64::from(t < len)).collect())
            .collect();
        Case {
            heads,
            seq,
            head_dim,
            keys,
        }
    }
    fn batch(&self) -> usize {
        self.keys.len()
    }
    fn hidden(&self) -> usize {
        self.heads * self.head_dim
    }
}

fn cases() -> Vec<Case> {
    vec![
        // minilm-l6's head size; one full sequence, one padded.
        Case::padded(4, 32, 32, &[32, 19]),
        // Odd sizes, a one-token sequence.
        Case::padded(2, 13, 8, &[1, 13, 7]),
        // bert-base's head size, rows past one cube (64) and keys past one tile (24).
        Case::padded(2, 130, 64, &[130, 65]),
        // Holes in the mask (not only trailing padding).
        Case {
            heads: 3,
            seq: 40,
            head_dim: 16,
            keys: vec![
                (0..40).map(|t| i64::from(t % 3 != 1 && t < 37)).collect(),
                (0..40).map(|t| i64::from(t % 5 != 0)).collect(),
            ],
        },
        // A sequence of padding only.
        Case {
            heads: 1,
            seq: 9,
            head_dim: 16,
            keys: vec![vec![0; 9], vec![1; 9]],
        },
    ]
}

/// The query, key and value projections `[batch, seq, heads·head_dim]`.
fn projections(case: &Case) -> [Vec<f32>; 3] {
    let n = case.batch() * case.seq * case.hidden();
    [values(n, 1, 2.0), values(n, 2, 2.0), values(n, 3, 1.0)]
}

/// softmax(q·kᵀ/√d + mask)·v per (sequence, head, query), in f64; a sequence without a real key
/// averages every key, as the explicit softmax over its scores, all rounded to the masked score,
/// does.
fn by_loops(case: &Case) -> Vec<f32> {
    let [q, k, v] = projections(case);
    let (h, d, s) = (case.hidden(), case.head_dim, case.seq);
    let scale = 1.0 / (d as f64).sqrt();
    let mut out = vec![0.0f32; q.len()];
    for (b, keys) in case.keys.iter().enumerate() {
        let real: Vec<usize> = (0..s).filter(|&j| keys[j] == 1).collect();
        // No real key: every score plus the dtype's minimum rounds to that minimum.
        let uniform = real.is_empty();
        let attended: Vec<usize> = if uniform { (0..s).collect() } else { real };
        for head in 0..case.heads {
            let at = |t: usize| (b * s + t) * h + head * d;
            for i in 0..s {
                let scores: Vec<f64> = attended
                    .iter()
                    .map(|&j| {
                        (0..d)
                            .map(|x| q[at(i) + x] as f64 * k[at(j) + x] as f64)
                            .sum::<f64>()
                            * scale
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::MIN, f64::max);
                let exp: Vec<f64> = scores
                    .iter()
                    .map(|x| if uniform { 1.0 } else { (x - max).exp() })
                    .collect();
                let total: f64 = exp.iter().sum();
                for x in 0..d {
                    let value: f64 = attended
                        .iter()
                        .zip(&exp)
                        .map(|(&j, e)| e / total * v[at(j) + x] as f64)
                        .sum();
                    out[at(i) + x] = value as f32;
                }
            }
        }
    }
    out
}

fn padding<B: Backend>(case: &Case, device: &B::Device) -> Tensor<B, 2, Int> {
    let ones: Vec<i64> = case.keys.concat();
    Tensor::from_data(TensorData::new(ones, [case.batch(), case.seq]), device)
}

fn to_vec<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

/// The backend's frozen-encoder attention on the mask it builds for the frozen pass.
fn frozen<B: AttentionOps>(case: &Case) -> Tensor<B, 3> {
    let device = Default::default();
    let shape = [case.batch(), case.seq, case.hidden()];
    let [query, key, value] =
        projections(case).map(|data| Tensor::from_data(TensorData::new(data, shape), &device));
    let mask = B::encoder_attention_mask(
        padding::<B>(case, &device),
        case.heads,
        FloatDType::F32,
        false,
    );
    B::encoder_attention(AttentionInput {
        query,
        key,
        value,
        mask,
        heads: case.heads,
    })
}

/// Burn's `module::attention` on the dense per-head boolean mask, back in `[batch, seq, hidden]`
/// (what `--encoder-kernels native` ran on CubeCL before the kernel).
fn burn_module<B: AttentionOps>(case: &Case) -> Tensor<B, 3> {
    let device = Default::default();
    let (batch, heads, seq, d) = (case.batch(), case.heads, case.seq, case.head_dim);
    let [q, k, v] = projections(case).map(|data| {
        Tensor::<B, 3>::from_data(TensorData::new(data, [batch, seq, heads * d]), &device)
            .reshape([batch, seq, heads, d])
            .swap_dims(1, 2)
    });
    let mask = key_padding_mask(padding::<B>(case, &device), heads, B::MASK_LAYOUT);
    attention(q, k, v, Some(mask), None, AttentionModuleOptions::default())
        .swap_dims(1, 2)
        .reshape([batch, seq, heads * d])
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn cubecl_attention_matches_the_formula_in_one_launch_without_a_score_buffer() {
    let dir = std::env::temp_dir().join(format!(
        "bertvision-attention-launches-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let launches = LaunchLog::install(&dir.join("launches.log")).unwrap();
    for case in cases() {
        let want = by_loops(&case);
        for (path, got) in [
            ("CubeBackend", to_vec(frozen::<Cube>(&case))),
            ("Fusion", to_vec(frozen::<Fused>(&case))),
        ] {
            let diff = max_abs_diff(&got, &want);
            assert!(diff <= 1e-5, "{path} {case:?}: {diff:e} off the formula");
        }
        // Holes as Burn's own op reads them on the CPU (which gives a sequence without a real
        // key zeros, not the explicit softmax's average).
        if case.keys.iter().any(|k| !k.contains(&1)) {
            continue;
        }
        let burn_cpu = to_vec(burn_module::<Flex>(&case));
        let diff = max_abs_diff(&to_vec(frozen::<Cube>(&case)), &burn_cpu);
        assert!(
            diff <= 1e-5,
            "against Burn's module::attention on Flex {case:?}: {diff:e}"
        );
    }

    // Launches and the largest buffer of one call, warm (compiled above), inputs made first.
    let case = cases().swap_remove(0);
    let device = Default::default();
    let shape = [case.batch(), case.seq, case.hidden()];
    let [query, key, value] = projections(&case)
        .map(|data| Tensor::<Cube, 3>::from_data(TensorData::new(data, shape), &device));
    let mask =
        Cube::encoder_attention_mask(padding(&case, &device), case.heads, FloatDType::F32, false);
    let AttentionMask::Bias(bias) = &mask else {
        panic!("CubeCL's frozen mask is the key bias")
    };
    let mask_elements = bias.dims().iter().product::<usize>();
    assert_eq!(
        mask_elements,
        case.batch() * case.seq,
        "no per-head or per-query mask"
    );
    // Burn's op on split heads (views) and the dense mask, made before counting.
    let (batch, heads, seq, d) = (case.batch(), case.heads, case.seq, case.head_dim);
    let split = |t: &Tensor<Cube, 3>| t.clone().reshape([batch, seq, heads, d]).swap_dims(1, 2);
    let (q, k, v) = (split(&query), split(&key), split(&value));
    let dense = key_padding_mask(padding(&case, &device), heads, Cube::MASK_LAYOUT);
    let burns_op = || {
        let (q, k, v, mask) = (q.clone(), k.clone(), v.clone(), Some(dense.clone()));
        attention(q, k, v, mask, None, AttentionModuleOptions::default())
    };
    drop(burns_op()); // autotune benchmarks its candidates on the first call
    Cube::sync(&device).unwrap();
    let before = launches.count();
    let out = Cube::encoder_attention(AttentionInput {
        query,
        key,
        value,
        mask,
        heads,
    });
    Cube::sync(&device).unwrap();
    let ours = launches.count() - before;
    let before = launches.count();
    let theirs = burns_op();
    Cube::sync(&device).unwrap();
    let burns = launches.count() - before;
    eprintln!(
        "frozen attention on CubeCL (wgpu), {case:?}: {ours} launch(es), largest buffer the output \
         ({} elements); Burn's module::attention on the per-head mask: {burns} launches, \
         a [batch, heads, seq, seq] mask of {} elements and scores as large",
        out.dims().iter().product::<usize>(),
        case.batch() * case.heads * case.seq * case.seq,
    );
    assert_eq!(ours, 1, "the frozen attention is one launch");
    assert!(burns > ours);
    drop(theirs);
    launches.remove();
    let _ = std::fs::remove_dir_all(&dir);
}
