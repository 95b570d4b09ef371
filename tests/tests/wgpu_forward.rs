//! The browser's model on its WebGPU backend, natively (Vulkan; Mesa's lavapipe in CI): a SQuAD
//! export loaded as the page loads it gives the CPU's logits. The test build turns on CubeCL's
//! `exclusive-memory-only` mode (`bertvision-tests/wgpu-tests`), the mode CubeCL always uses in
//! WebAssembly: one buffer per tensor and read-only bindings for inputs a kernel only reads, so a
//! kernel that reads and writes one buffer through two bindings is a validation error here as it
//! is in the browser (issue #23). Burn's fused backend (`burn::backend::Wgpu`) fails this way in
//! the AdapterPooler's token features (wgpu-core: "conflicting usages … STORAGE_READ_ONLY and
//! … STORAGE_READ_WRITE"); the page runs the bare `CubeBackend`, tested here. Built only with
//! `--features bertvision-tests/wgpu-tests`.
#![cfg(feature = "wgpu-tests")]

use bertvision_core::head::{AdapterPoolerConfig, HeadKind, LayerMix};
use bertvision_core::inference::ExportFiles;
use bertvision_core::inference::qa::{QaModels, QaQuery};
use bertvision_core::pipeline::export::{TaskHeadInfo, export_bert, export_head};
use bertvision_core::pretrained::Pretrained;
use bertvision_core::squad::FeatureConfig;
use bertvision_core::task_model::BertTaskModel;
use bertvision_tests::model_dir;
use burn::backend::Flex;
use burn::backend::wgpu::{CubeBackend, WgpuRuntime};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

const PASSAGE: &str = "The Normans were the people who in the 10th and 11th centuries gave their \
    name to Normandy, a region in France. They were descended from Norse raiders and pirates \
    from Denmark, Iceland and Norway who, under their leader Rollo, agreed to swear fealty to \
    King Charles III of West Francia. Through generations of assimilation and mixing with the \
    native Frankish and Roman-Gaulish populations, their descendants would gradually merge with \
    the Carolingian-based cultures of West Francia.";
/// The page's WebGPU backend (web/src/engine.rs): CubeCL without Burn's fusion.
type Gpu = CubeBackend<WgpuRuntime, f32, i32, u32>;

const QUESTION: &str = "In what country is Normandy located?";

/// A SQuAD export of splade-tiny with seeded random span and AdapterPooler heads, written the
/// way `bertvision run` writes one.
fn export(dir: &std::path::Path) {
    type B = Flex;
    let device = Default::default();
    B::seed(&device, 7);
    let model = model_dir("splade-tiny");
    let pretrained = Pretrained::<B>::load(&model, &device).unwrap();
    let config = pretrained.config.clone();
    let task_model = BertTaskModel::new(pretrained.bert, &config, 2, true, &device);
    let info = TaskHeadInfo {
        task: "SQuAD2".into(),
        span: true,
        num_outputs: 2,
    };
    export_bert(
        &task_model,
        &config,
        &info,
        &model.tokenizer,
        &dir.join("bert"),
    )
    .unwrap();
    let head_config = AdapterPoolerConfig {
        hidden_size: config.hidden_size,
        num_states: config.num_hidden_states(),
        adapter_size: 8,
        kind: HeadKind::Span,
        num_outputs: 2,
        max_len: 96,
        shared_adapter: true,
        skip_last_layer: true,
        layer_mix: LayerMix::None,
    };
    export_head(&head_config.init::<B>(&device), &head_config, dir).unwrap();
}

fn read<B: Backend>(t: Tensor<B, 2>) -> Vec<f32> {
    t.into_data().to_vec().unwrap()
}

/// BERT's and the AdapterPooler's start and end logits, flattened.
fn logits<B: bertvision_core::KernelBackend>(dir: &std::path::Path) -> Vec<Vec<f32>> {
    let device = Default::default();
    let mut models = QaModels::<B>::load(ExportFiles::read_dir(dir).unwrap(), &device).unwrap();
    // Short windows: two of them, so that the batch, the padding and the stride are exercised.
    let features = FeatureConfig {
        max_len: 96,
        doc_stride: 32,
        max_query: 24,
    };
    let query = QaQuery::new(&mut models.tokenizer, PASSAGE, QUESTION, &features).unwrap();
    assert!(
        query.features.len() >= 2,
        "{} windows",
        query.features.len()
    );
    let [(bs, be), (vs, ve)] = models.forward(query.batch.to_input(&device));
    vec![read(bs), read(be), read(vs), read(ve)]
}

#[test]
fn a_squad_export_on_wgpu_gives_the_cpu_logits() {
    let dir = tempfile::tempdir().unwrap();
    export(dir.path());
    let want = logits::<Flex>(dir.path());
    let got = logits::<Gpu>(dir.path());
    for (name, (g, w)) in [
        "bert start",
        "bert end",
        "bertvision start",
        "bertvision end",
    ]
    .iter()
    .zip(got.iter().zip(&want))
    {
        assert_eq!(g.len(), w.len(), "{name}");
        let diff = g.iter().zip(w).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        // Padding positions hold -10000 on both sides: the scale is that of the real logits.
        let scale = w
            .iter()
            .filter(|v| v.abs() < 1e3)
            .fold(1f32, |m, v| m.max(v.abs()));
        eprintln!("{name}: max |wgpu - cpu| = {diff:.2e} (largest real |logit| {scale:.2})");
        assert!(diff <= 1e-4 * scale, "{name}: {diff}");
    }
}

/// The page's quick self-check (web/src/engine.rs) natively: reductions and a matmul of ones.
/// In Chromium's SwiftShader adapter the matmul gave 384 for 128; run with
/// `VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json` to try SwiftShader's Vulkan here.
#[test]
fn sums_and_dot_products_of_ones_are_exact() {
    let device = Default::default();
    let sums: Vec<f32> = Tensor::<Gpu, 2>::ones([8, 384], &device)
        .sum_dim(1)
        .into_data()
        .to_vec()
        .unwrap();
    assert!(sums.iter().all(|&v| v == 384.0), "{sums:?}");
    for k in [16, 128, 384] {
        let ones = || Tensor::<Gpu, 2>::ones([16, k], &device);
        let products: Vec<f32> = ones()
            .matmul(ones().transpose())
            .into_data()
            .to_vec()
            .unwrap();
        assert!(
            products.iter().all(|&v| v == k as f32),
            "k = {k}: {:?}",
            &products[..4]
        );
    }
}

/// Mixed-precision fine-tuning on a CubeCL backend (the code CUDA runs: Burn's autodiff over the
/// references and their casts): an encoder fine-tuned with `--precision f16` on wgpu gives
/// gradients near the CPU's f32 ones, in f32 (measured 4.6e-4 of the largest; the bound is
/// 5e-3). bf16 has no WGSL type; CUDA runs it on the GPU. Only f16 runs on wgpu: lavapipe
/// compiles every kernel on first use, most of this test's time.
#[test]
fn f16_mixed_precision_fine_tuning_runs_on_cubecl() {
    use bertvision_core::bert::{Bert, BertConfig, EncoderDtype};
    use burn::backend::Autodiff;
    use burn::module::Module;
    use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
    let config = BertConfig::from_json(
        std::path::Path::new("tiny/config.json"),
        r#"{"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 64, "vocab_size": 64, "max_position_embeddings": 32,
            "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}"#,
    )
    .unwrap();
    // Seeded weights made on the CPU, carried over.
    let cpu = Default::default();
    Flex::seed(&cpu, 3);
    let weights = Bert::<Flex>::init(&config, false, &cpu);
    let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();
    let bytes = recorder.record(weights.into_record(), ()).unwrap();
    let want = probe_gradients(
        Bert::<Autodiff<Flex>>::init(&config, false, &cpu)
            .load_record(recorder.load(bytes.clone(), &cpu).unwrap()),
        &cpu,
    );
    let device = Default::default();
    let got = probe_gradients(
        Bert::<Autodiff<Gpu>>::init(&config, false, &device)
            .load_record(recorder.load(bytes, &device).unwrap())
            .with_precision(EncoderDtype::F16),
        &device,
    );
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    eprintln!(
        "f16 on wgpu: gradients {:.2e} of the largest",
        worst / scale
    );
    assert!(got.iter().all(|g| g.is_finite()));
    assert!(worst > 0.0 && worst <= 5e-3 * scale, "{worst} of {scale}");
}

/// Two weights' gradients of `sin` summed over the last hidden state of a padded batch, in f32.
fn probe_gradients<B>(model: bertvision_core::bert::Bert<B>, device: &B::Device) -> Vec<f32>
where
    B: burn::tensor::backend::AutodiffBackend + bertvision_core::KernelBackend,
{
    use burn::tensor::{Int, TensorData};
    let make = |v: Vec<i64>| Tensor::<B, 2, Int>::from_data(TensorData::new(v, [2, 12]), device);
    let input = bertvision_core::bert::BertInput {
        input_ids: make((0..24).map(|i| 1 + (i * 7) % 60).collect()),
        token_type_ids: make(vec![0; 24]),
        // The second sequence padded after 7 tokens.
        attention_mask: make((0..24).map(|i| i64::from(i < 12 || i % 12 < 7)).collect()),
    };
    let last = model.forward(input).last_hidden_state();
    assert_eq!(last.dtype(), burn::tensor::DType::F32);
    let grads = last.sin().sum().backward();
    let weight = model.encoder.layer[0].intermediate.dense.weight.val();
    let query = model.encoder.layer[1]
        .attention
        .self_attn
        .query
        .weight
        .val();
    [weight, query]
        .into_iter()
        .flat_map(|w| w.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap())
        .collect()
}
