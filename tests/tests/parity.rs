//! The encoder against Hugging Face transformers on the real checkpoints.
//!
//! Fixtures come from `scripts/make_parity_fixtures.py` (transformers, CPU, eager attention, f32):
//! token ids and every layer's hidden states for texts, pairs, a padded batch and a 384-token
//! input. Tolerance: 1e-4 max absolute error on every hidden state (we see about 2e-6).

use bertvision_core::pretrained::Pretrained;
use bertvision_core::tokenize::{Encoded, TokenBatch};
use bertvision_tests::{fixture, model_dir};
use burn::backend::NdArray;
use burn::tensor::Tensor;
use safetensors::SafeTensors;
use serde_json::Value;

type B = NdArray<f32>;
const TOLERANCE: f32 = 1e-4;

struct Fixture {
    bytes: Vec<u8>,
    meta: Value,
}

impl Fixture {
    fn load(model: &str) -> Self {
        let bytes = std::fs::read(fixture(&format!("parity/{model}.safetensors"))).unwrap();
        let meta = serde_json::from_str(
            &std::fs::read_to_string(fixture(&format!("parity/{model}.json"))).unwrap(),
        )
        .unwrap();
        Fixture { bytes, meta }
    }

    fn f32s(&self, key: &str) -> Option<(Vec<usize>, Vec<f32>)> {
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        let t = st.tensor(key).ok()?;
        let data = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        Some((t.shape().to_vec(), data))
    }

    fn i64s(&self, key: &str) -> Vec<i64> {
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        st.tensor(key)
            .unwrap()
            .data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn to_vec<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

/// Runs every fixture case of `model`; returns the worst error seen.
fn check_model(name: &str) -> f32 {
    let device = Default::default();
    let mut model = Pretrained::<B>::load(&model_dir(name), &device).unwrap();
    let fx = Fixture::load(name);
    let mut worst = 0.0f32;
    for case in fx.meta["cases"].as_array().unwrap() {
        let key = case["key"].as_str().unwrap();
        let encodings: Vec<Encoded> = if let Some(texts) = case["texts"].as_array() {
            texts
                .iter()
                .map(|t| {
                    model
                        .tokenizer
                        .encode(t.as_str().unwrap(), None, None)
                        .unwrap()
                })
                .collect()
        } else {
            let max_len = case["max_length"].as_u64().map(|m| m as usize);
            vec![
                model
                    .tokenizer
                    .encode(
                        case["text"].as_str().unwrap(),
                        case["text_pair"].as_str(),
                        max_len,
                    )
                    .unwrap(),
            ]
        };
        let refs: Vec<&Encoded> = encodings.iter().collect();
        let batch = TokenBatch::pad(&refs, model.tokenizer.pad_id(), None);
        assert_eq!(
            batch.input_ids,
            fx.i64s(&format!("{key}.input_ids")),
            "{name}/{key}: input_ids differ"
        );
        assert_eq!(
            batch.attention_mask,
            fx.i64s(&format!("{key}.attention_mask")),
            "{name}/{key}: attention mask differs"
        );

        let out = model.bert.forward(batch.to_input(&device));
        let mut ours = out.stacked(); // [batch, layers+1, seq, hidden]
        if let Some(kept) = case["kept_positions"].as_array() {
            let idx: Vec<i64> = kept.iter().map(|v| v.as_i64().unwrap()).collect();
            let n = idx.len();
            ours = ours.select(
                2,
                Tensor::from_data(burn::tensor::TensorData::new(idx, [n]), &device),
            );
        }
        let (shape, reference) = fx.f32s(&format!("{key}.hidden_states")).unwrap();
        assert_eq!(
            ours.dims().to_vec(),
            shape,
            "{name}/{key}: hidden state shape"
        );
        let err = max_abs_diff(&to_vec(ours), &reference);
        assert!(
            err < TOLERANCE,
            "{name}/{key}: hidden states differ by {err}"
        );
        worst = worst.max(err);
        if let Some((_, pooled)) = fx.f32s(&format!("{key}.pooled")) {
            let err = max_abs_diff(
                &to_vec(out.pooled.clone().expect("checkpoint has a pooler")),
                &pooled,
            );
            assert!(
                err < TOLERANCE,
                "{name}/{key}: pooled output differs by {err}"
            );
            worst = worst.max(err);
        }
    }
    println!("{name}: worst max-abs error over all cases {worst:e}");
    worst
}

#[test]
fn minilm_l6_matches_transformers() {
    check_model("minilm-l6");
}

#[test]
fn splade_tiny_matches_transformers() {
    // Legacy names: `bert.` prefix and LayerNorm gamma/beta; no pooler.
    check_model("splade-tiny");
}
