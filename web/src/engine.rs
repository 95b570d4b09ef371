//! The models in the page and the backend they run on: Burn's WebGPU backend when the browser
//! gives an adapter, else Flex (pure-Rust CPU) — the same generic core code on both. Every
//! tensor read is asynchronous (a blocking read panics on WebGPU in the browser).

use std::cell::RefCell;

use bertvision_core::inference::ExportFiles;
use bertvision_core::inference::qa::{QaModels, QaQuery};
use burn::backend::wgpu::{WgpuDevice, graphics::WebGpu as WebGpuApi, init_setup_async};
use burn::backend::{Flex, WebGpu};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use js_sys::Reflect;
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;

pub type WindowLogits = Vec<(Vec<f32>, Vec<f32>)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    Auto,
    WebGpu,
    Cpu,
}

pub enum Engine {
    Gpu(QaModels<WebGpu>),
    Cpu(QaModels<Flex>),
}

thread_local! {
    /// The loaded models; taken out while a question runs, so two runs cannot overlap.
    static ENGINE: RefCell<Option<Engine>> = const { RefCell::new(None) };
    /// WebGPU is set up once per page; then this holds its self-check's failure ("" = passed).
    static GPU_READY: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// What the browser says about its WebGPU adapter.
struct Adapter {
    description: String,
}

/// Reductions and a matmul with known results, run once on a new WebGPU device; a device that
/// fails is not used unless forced. Measured in Chromium's software adapter (SwiftShader,
/// subgroups of 4 lanes) with Burn 0.21: the sums are right but a 128-long dot product of ones
/// gives 384, and the demo model's logits are off by up to 4.1. (Not traced further; CubeCL
/// 0.10 assumes subgroups of at least 8 lanes when the browser does not report their size.)
async fn self_check(device: &WgpuDevice) -> Result<(), String> {
    let n = 384;
    let sums = read(
        Tensor::<WebGpu, 2>::ones([8, n], device)
            .sum_dim(1)
            .reshape([1, 8]),
    )
    .await?;
    if let Some(bad) = sums.iter().find(|&&v| (v - n as f32).abs() > 1e-3) {
        return Err(format!("a sum of {n} ones gave {bad}"));
    }
    let k = 128;
    let ones = || Tensor::<WebGpu, 2>::ones([16, k], device);
    let products = read(ones().matmul(ones().transpose())).await?;
    if let Some(bad) = products.iter().find(|&&v| (v - k as f32).abs() > 1e-3) {
        return Err(format!("a {k}-long dot product of ones gave {bad}"));
    }
    Ok(())
}

/// The adapter when the browser offers WebGPU, else `None`.
async fn webgpu_adapter() -> Option<Adapter> {
    let navigator: JsValue = web_sys::window()?.navigator().into();
    let gpu = Reflect::get(&navigator, &"gpu".into()).ok()?;
    if gpu.is_undefined() || gpu.is_null() {
        return None;
    }
    let request = Reflect::get(&gpu, &"requestAdapter".into()).ok()?;
    let promise = js_sys::Function::from(request).call0(&gpu).ok()?;
    let adapter = JsFuture::from(js_sys::Promise::from(promise)).await.ok()?;
    if adapter.is_null() || adapter.is_undefined() {
        return None;
    }
    let info = Reflect::get(&adapter, &"info".into()).ok();
    let field = |name: &str| {
        info.as_ref()
            .and_then(|i| Reflect::get(i, &name.into()).ok())
            .and_then(|v| v.as_string())
            .filter(|s| !s.is_empty())
    };
    let number = |name: &str| {
        info.as_ref()
            .and_then(|i| Reflect::get(i, &name.into()).ok())
            .and_then(|v| v.as_f64())
    };
    let subgroups = match (number("subgroupMinSize"), number("subgroupMaxSize")) {
        (Some(min), Some(max)) => Some(format!("subgroups {min}–{max}")),
        _ => None,
    };
    let described = [
        field("vendor"),
        field("architecture"),
        field("description"),
        subgroups,
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" ");
    Some(Adapter {
        description: if described.is_empty() {
            "adapter".to_string()
        } else {
            described
        },
    })
}

/// Loads the export onto the chosen backend; returns the backend's label for the page.
pub async fn load(files: ExportFiles, choice: BackendChoice) -> Result<String, String> {
    // The previous model goes first: a failed load must not leave it answering.
    ENGINE.with(|e| *e.borrow_mut() = None);
    let adapter = match choice {
        BackendChoice::Cpu => None,
        _ => webgpu_adapter().await,
    };
    if choice == BackendChoice::WebGpu && adapter.is_none() {
        return Err("this browser offers no WebGPU adapter; choose CPU or Auto".into());
    }
    let device = WgpuDevice::default();
    let checked = match &adapter {
        Some(a) => {
            if GPU_READY.with(|g| g.borrow().is_none()) {
                init_setup_async::<WebGpuApi>(&device, Default::default()).await;
                let verdict = self_check(&device).await.err().unwrap_or_default();
                GPU_READY.with(|g| *g.borrow_mut() = Some(verdict));
            }
            let failure = GPU_READY.with(|g| g.borrow().clone().unwrap_or_default());
            Some((a.description.clone(), failure))
        }
        None => None,
    };
    let (adapter, skipped) = match (adapter, checked) {
        (Some(_), Some((description, failure)))
            if choice == BackendChoice::Auto && !failure.is_empty() =>
        {
            (None, Some((description, failure)))
        }
        (a, _) => (a, None),
    };
    let (engine, label) = match adapter {
        Some(adapter) => {
            let models = QaModels::<WebGpu>::load(files, &device).map_err(|e| e.to_string())?;
            let failure = GPU_READY.with(|g| g.borrow().clone().unwrap_or_default());
            let warning = if failure.is_empty() {
                String::new()
            } else {
                format!(" — warning: self-check failed ({failure}); results may be wrong")
            };
            (
                Engine::Gpu(models),
                format!("WebGPU ({}){warning}", adapter.description),
            )
        }
        None => {
            let models =
                QaModels::<Flex>::load(files, &Default::default()).map_err(|e| e.to_string())?;
            let note = skipped.map_or(String::new(), |(description, failure)| {
                format!(
                    " — WebGPU adapter ({description}) skipped: its self-check failed ({failure})"
                )
            });
            (Engine::Cpu(models), format!("CPU (Flex, wasm){note}"))
        }
    };
    ENGINE.with(|e| *e.borrow_mut() = Some(engine));
    Ok(label)
}

/// Timings of one question, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RunTimings {
    pub tokenize_ms: f64,
    pub forward_ms: f64,
}

async fn read<B: Backend>(t: Tensor<B, 2>) -> Result<Vec<f32>, String> {
    t.into_data_async()
        .await
        .map_err(|e| format!("reading logits: {e:?}"))?
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| format!("reading logits: {e:?}"))
}

async fn forward<B: bertvision_core::KernelBackend>(
    models: &mut QaModels<B>,
    device: &B::Device,
    passage: &str,
    question: &str,
    features: &bertvision_core::squad::FeatureConfig,
) -> Result<(QaQuery, WindowLogits, WindowLogits, RunTimings), String> {
    let t0 = crate::fetch::now_ms();
    let query = QaQuery::new(&mut models.tokenizer, passage, question, features)
        .map_err(|e| e.to_string())?;
    let t1 = crate::fetch::now_ms();
    let [(bs, be), (vs, ve)] = models.forward(query.batch.to_input(device));
    let bert = query.window_logits(&read(bs).await?, &read(be).await?);
    let bv = query.window_logits(&read(vs).await?, &read(ve).await?);
    let t2 = crate::fetch::now_ms();
    Ok((
        query,
        bert,
        bv,
        RunTimings {
            tokenize_ms: t1 - t0,
            forward_ms: t2 - t1,
        },
    ))
}

/// Tokenises and runs one question; logits of BERT and BERTVision per window.
pub async fn ask(
    passage: &str,
    question: &str,
    features: &bertvision_core::squad::FeatureConfig,
) -> Result<(QaQuery, WindowLogits, WindowLogits, RunTimings), String> {
    let mut engine = ENGINE
        .with(|e| e.borrow_mut().take())
        .ok_or("no model loaded (or a question is still running)")?;
    let result = match &mut engine {
        Engine::Gpu(m) => forward(m, &WgpuDevice::default(), passage, question, features).await,
        Engine::Cpu(m) => forward(m, &Default::default(), passage, question, features).await,
    };
    ENGINE.with(|e| *e.borrow_mut() = Some(engine));
    result
}

/// Bytes of the five export files picked by name from a set of files.
pub fn export_from_named(files: Vec<(String, Vec<u8>)>) -> Result<ExportFiles, String> {
    let mut by_name: std::collections::HashMap<String, Vec<u8>> = files.into_iter().collect();
    let mut take = |name: &str| {
        by_name
            .remove(name)
            .map(|b| bertvision_core::inference::NamedBytes::new(name, b))
            .ok_or_else(|| format!("{name} is missing: choose config.json, model.safetensors, tokenizer.json, head.safetensors and head.json"))
    };
    Ok(ExportFiles {
        config: take("config.json")?,
        model: take("model.safetensors")?,
        tokenizer: take("tokenizer.json")?,
        head: take("head.safetensors")?,
        head_config: take("head.json")?,
    })
}
