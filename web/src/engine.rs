//! The models in the page and the backend they run on: Burn's WebGPU backend when the browser
//! gives an adapter, else Flex (pure-Rust CPU) — the same generic core code on both. Every
//! tensor read is asynchronous (a blocking read panics on WebGPU in the browser).

use std::cell::RefCell;

use bertvision_core::qa::{ExportFiles, QaModels, QaQuery};
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
    /// WebGPU can be set up once per page.
    static GPU_READY: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The adapter's description when the browser offers WebGPU, else `None`.
async fn webgpu_adapter() -> Option<String> {
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
    let described = [field("vendor"), field("architecture"), field("description")]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    Some(if described.is_empty() {
        "adapter".to_string()
    } else {
        described
    })
}

/// Loads the export onto the chosen backend; returns the backend's label for the page.
pub async fn load(files: ExportFiles, choice: BackendChoice) -> Result<String, String> {
    let adapter = match choice {
        BackendChoice::Cpu => None,
        _ => webgpu_adapter().await,
    };
    if choice == BackendChoice::WebGpu && adapter.is_none() {
        return Err("this browser offers no WebGPU adapter; choose CPU or Auto".into());
    }
    let (engine, label) = match adapter {
        Some(adapter) => {
            let device = WgpuDevice::default();
            if GPU_READY.with(|g| g.borrow().is_none()) {
                init_setup_async::<WebGpuApi>(&device, Default::default()).await;
                GPU_READY.with(|g| *g.borrow_mut() = Some(adapter.clone()));
            }
            let models = QaModels::<WebGpu>::load(files, &device).map_err(|e| e.to_string())?;
            (Engine::Gpu(models), format!("WebGPU ({adapter})"))
        }
        None => {
            let models =
                QaModels::<Flex>::load(files, &Default::default()).map_err(|e| e.to_string())?;
            (Engine::Cpu(models), "CPU (Flex, wasm)".to_string())
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

async fn forward<B: Backend>(
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
            .map(|b| bertvision_core::qa::NamedBytes::new(name, b))
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
