//! Half-precision checkpoints: the same weights stored as F16 or BF16 load (cast to f32) and give
//! the f32 model's hidden states up to the storage rounding.

use std::collections::HashMap;

use bertvision_core::bert::{BertConfig, WeightSource, load_bert};
use bertvision_core::tokenize::{BertTokenizer, TokenBatch};
use bertvision_tests::model_dir;
use burn::backend::NdArray;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

type B = NdArray<f32>;

/// Rewrites every F32 tensor of `bytes` as `dtype` (F16 or BF16).
fn convert(bytes: &[u8], dtype: Dtype) -> Vec<u8> {
    let st = SafeTensors::deserialize(bytes).unwrap();
    let mut buffers: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in st.tensors() {
        let data = if view.dtype() == Dtype::F32 {
            view.data()
                .chunks_exact(4)
                .flat_map(|c| {
                    let v = f32::from_le_bytes(c.try_into().unwrap());
                    match dtype {
                        Dtype::F16 => half::f16::from_f32(v).to_le_bytes(),
                        _ => half::bf16::from_f32(v).to_le_bytes(),
                    }
                })
                .collect()
        } else {
            view.data().to_vec()
        };
        let dt = if view.dtype() == Dtype::F32 {
            dtype
        } else {
            view.dtype()
        };
        buffers.push((name, dt, view.shape().to_vec(), data));
    }
    let views: Vec<(String, TensorView)> = buffers
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::tensor::serialize(views, Some(HashMap::new())).unwrap()
}

#[test]
fn f16_and_bf16_checkpoints_load_and_match_f32() {
    let dir = model_dir("splade-tiny");
    let config = BertConfig::from_file(&dir.config).unwrap();
    let bytes = std::fs::read(&dir.weights).unwrap();
    let mut tokenizer = BertTokenizer::from_file(&dir.tokenizer).unwrap();
    let encoded = tokenizer
        .encode(
            "Half precision weights, full precision compute.",
            None,
            None,
        )
        .unwrap();
    let batch = TokenBatch::pad(&[&encoded], tokenizer.pad_id(), None);
    let device = Default::default();
    let hidden = |bytes: Vec<u8>| -> Vec<f32> {
        let name = std::path::Path::new("converted.safetensors");
        let model = load_bert::<B>(&config, WeightSource::Bytes { name, bytes }, &device).unwrap();
        model
            .forward(batch.to_input(&device))
            .stacked()
            .into_data()
            .to_vec::<f32>()
            .unwrap()
    };
    let reference = hidden(bytes.clone());
    for (dtype, tolerance) in [(Dtype::F16, 0.05f32), (Dtype::BF16, 0.3)] {
        let ours = hidden(convert(&bytes, dtype));
        let err = ours
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        println!("{dtype:?}: max abs difference to f32 weights {err:e}");
        assert!(
            err > 0.0,
            "{dtype:?} weights must actually be half precision"
        );
        assert!(err < tolerance, "{dtype:?}: {err}");
    }
}
