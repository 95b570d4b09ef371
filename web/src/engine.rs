//! The models in the pages (a SQuAD export, a GLUE export) and the backend they run on: Burn's
//! WebGPU backend when the browser gives an adapter, else Flex (pure-Rust CPU) — the same
//! generic core code on both. Every tensor read is asynchronous (a blocking read panics on
//! WebGPU in the browser).

use std::cell::RefCell;

use bertvision_core::inference::classify::{ClassifyAnswers, ClassifyQuery, classify};
use bertvision_core::inference::qa::{QaModels, QaQuery};
use bertvision_core::inference::{ExportFiles, ExportedModels};
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

thread_local! {
    /// The loaded models; taken out while a question runs, so two runs cannot overlap.
    static ENGINE: RefCell<Option<QaEngine>> = const { RefCell::new(None) };
    /// The classification page's models, taken out the same way.
    static CLASSIFIER: RefCell<Option<ClassifyEngine>> = const { RefCell::new(None) };
    /// WebGPU is set up once per page, whichever page asks first (a second set-up of the same
    /// device panics in CubeCL); then this holds its self-check's failure ("" = passed).
    static GPU_SETUP: RefCell<GpuSetup> = const { RefCell::new(GpuSetup::NotStarted) };
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

#[derive(Debug, Clone, PartialEq)]
enum GpuSetup {
    NotStarted,
    Running,
    /// The self-check's failure, "" when it passed.
    Done(String),
}

/// Sets WebGPU up and runs the self-check the first time; a caller arriving while that runs
/// waits for it. Returns the self-check's failure ("" = passed).
async fn gpu_self_check() -> String {
    loop {
        match GPU_SETUP.with(|g| g.borrow().clone()) {
            GpuSetup::Done(failure) => return failure,
            GpuSetup::Running => sleep_ms(20).await,
            GpuSetup::NotStarted => {
                GPU_SETUP.with(|g| *g.borrow_mut() = GpuSetup::Running);
                let device = WgpuDevice::default();
                init_setup_async::<WebGpuApi>(&device, Default::default()).await;
                let failure = self_check(&device).await.err().unwrap_or_default();
                GPU_SETUP.with(|g| *g.borrow_mut() = GpuSetup::Done(failure.clone()));
                return failure;
            }
        }
    }
}

async fn sleep_ms(ms: i32) {
    let wait = js_sys::Promise::new(&mut |resolve, _| {
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
        }
    });
    let _ = JsFuture::from(wait).await;
}

/// The backend a model goes on, with the page's label for it.
enum Placement {
    Gpu(String),
    Cpu(String),
}

/// Where `choice` puts a model: WebGPU when asked for, or on Auto when the browser offers an
/// adapter that passes the self-check (run once per page); else the CPU.
async fn place(choice: BackendChoice) -> Result<Placement, String> {
    let adapter = match choice {
        BackendChoice::Cpu => None,
        _ => webgpu_adapter().await,
    };
    if choice == BackendChoice::WebGpu && adapter.is_none() {
        return Err("this browser offers no WebGPU adapter; choose CPU or Auto".into());
    }
    let Some(adapter) = adapter else {
        return Ok(Placement::Cpu("CPU (Flex, wasm)".into()));
    };
    let failure = gpu_self_check().await;
    let description = adapter.description;
    Ok(match (choice, failure.is_empty()) {
        (_, true) => Placement::Gpu(format!("WebGPU ({description})")),
        (BackendChoice::Auto, false) => Placement::Cpu(format!(
            "CPU (Flex, wasm) — WebGPU adapter ({description}) skipped: its self-check failed ({failure})"
        )),
        (_, false) => Placement::Gpu(format!(
            "WebGPU ({description}) — warning: self-check failed ({failure}); results may be wrong"
        )),
    })
}

/// A model on one of the two backends.
pub enum OnBackend<G, C> {
    Gpu(G),
    Cpu(C),
}

type QaEngine = OnBackend<QaModels<WebGpu>, QaModels<Flex>>;
type ClassifyEngine = OnBackend<ExportedModels<WebGpu>, ExportedModels<Flex>>;

/// Loads the SQuAD export onto the chosen backend; returns the backend's label for the page.
pub async fn load(files: ExportFiles, choice: BackendChoice) -> Result<String, String> {
    // The previous model goes first: a failed load must not leave it answering.
    ENGINE.with(|e| *e.borrow_mut() = None);
    let text = |e: bertvision_core::Error| e.to_string();
    let (engine, label) = match place(choice).await? {
        Placement::Gpu(label) => (
            OnBackend::Gpu(QaModels::load(files, &WgpuDevice::default()).map_err(text)?),
            label,
        ),
        Placement::Cpu(label) => (
            OnBackend::Cpu(QaModels::load(files, &Default::default()).map_err(text)?),
            label,
        ),
    };
    ENGINE.with(|e| *e.borrow_mut() = Some(engine));
    Ok(label)
}

/// Loads a GLUE export for the classification page; a SQuAD export is refused.
pub async fn load_classifier(files: ExportFiles, choice: BackendChoice) -> Result<String, String> {
    CLASSIFIER.with(|e| *e.borrow_mut() = None);
    let text = |e: bertvision_core::Error| e.to_string();
    let (engine, span, label) = match place(choice).await? {
        Placement::Gpu(label) => {
            let models = ExportedModels::load(files, &WgpuDevice::default()).map_err(text)?;
            let span = models.info.span;
            (OnBackend::Gpu(models), span, label)
        }
        Placement::Cpu(label) => {
            let models = ExportedModels::load(files, &Default::default()).map_err(text)?;
            let span = models.info.span;
            (OnBackend::Cpu(models), span, label)
        }
    };
    if span {
        return Err("this is a SQuAD export: load it on the question-answering page".into());
    }
    CLASSIFIER.with(|e| *e.borrow_mut() = Some(engine));
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
        OnBackend::Gpu(m) => forward(m, &WgpuDevice::default(), passage, question, features).await,
        OnBackend::Cpu(m) => forward(m, &Default::default(), passage, question, features).await,
    };
    ENGINE.with(|e| *e.borrow_mut() = Some(engine));
    result
}

/// One sentence (pair) through the classifier: every method's decision, the tokens, both
/// models' logits (what the end-to-end test compares with native) and the timings.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifyRun {
    pub answers: ClassifyAnswers,
    pub tokens: Vec<String>,
    pub bert: Vec<f32>,
    pub bertvision: Vec<f32>,
    pub timings: RunTimings,
}

async fn classify_on<B: bertvision_core::KernelBackend>(
    models: &mut ExportedModels<B>,
    device: &B::Device,
    text: &str,
    pair: Option<&str>,
) -> Result<ClassifyRun, String> {
    let t0 = crate::fetch::now_ms();
    let query = ClassifyQuery::new(models, text, pair).map_err(|e| e.to_string())?;
    let t1 = crate::fetch::now_ms();
    let [bert, head] = models.forward(query.batch.to_input(device));
    let (bert, bertvision) = (read(bert).await?, read(head).await?);
    let t2 = crate::fetch::now_ms();
    Ok(ClassifyRun {
        answers: classify(models.task, &bert, &bertvision),
        tokens: query.tokens,
        bert,
        bertvision,
        timings: RunTimings {
            tokenize_ms: t1 - t0,
            forward_ms: t2 - t1,
        },
    })
}

/// Classifies one sentence (pair) with the loaded GLUE export.
pub async fn classify_text(text: &str, pair: Option<&str>) -> Result<ClassifyRun, String> {
    let mut engine = CLASSIFIER
        .with(|e| e.borrow_mut().take())
        .ok_or("no model loaded (or a sentence is still running)")?;
    let result = match &mut engine {
        OnBackend::Gpu(m) => classify_on(m, &WgpuDevice::default(), text, pair).await,
        OnBackend::Cpu(m) => classify_on(m, &Default::default(), text, pair).await,
    };
    CLASSIFIER.with(|e| *e.borrow_mut() = Some(engine));
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
