//! The models in the pages (a SQuAD export, a GLUE export) and the backend they run on: Burn's
//! WebGPU backend when the browser gives an adapter, else Flex (pure-Rust CPU) — the same
//! generic core code on both. Every tensor read is asynchronous (a blocking read panics on
//! WebGPU in the browser).

use std::cell::RefCell;

use bertvision_core::inference::classify::{ClassifyAnswers, ClassifyQuery, classify};
use bertvision_core::inference::qa::{QaModels, QaQuery};
use bertvision_core::inference::{ExportFiles, ExportedModels};
use burn::backend::Flex;
use burn::backend::wgpu::{
    CubeBackend, WgpuDevice, WgpuRuntime, graphics::WebGpu as WebGpuApi, init_setup_async,
};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use js_sys::Reflect;
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;

pub type WindowLogits = Vec<(Vec<f32>, Vec<f32>)>;

/// The WebGPU backend, without Burn's kernel fusion (`burn::backend::WebGpu` wraps it in
/// `Fusion`): in WebAssembly CubeCL gives every tensor its own buffer and binds a kernel's
/// read-only inputs read-only, and Burn 0.21's fused kernels bind one buffer both read-only and
/// read-write in a dispatch, which WebGPU rejects — the whole command buffer with it, so the
/// model's outputs were garbage. `tests/tests/wgpu_forward.rs` reproduces it natively (in
/// CubeCL's `exclusive-memory-only` mode) and holds this backend to the CPU's logits.
pub type WebGpu = CubeBackend<WgpuRuntime, f32, i32, u32>;

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

/// Reductions and a matmul with known results, run once on a new WebGPU device: the quick part
/// of the self-check (on Auto a device that fails it is not tried further; the model check in
/// [`place_model`] is the one that decides). Measured in Chromium's software adapter
/// (SwiftShader) with Burn 0.21: the sums are right but a 128-long dot product of ones gives
/// 384.
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

/// Something the page says under the backend's label: why the model is not on WebGPU, as
/// information (Auto) or as a warning (WebGPU was asked for).
#[derive(Debug, Clone, PartialEq)]
pub struct BackendNote {
    pub text: String,
    pub warning: bool,
}

/// Where a loaded model runs: the page's label, and a note when it is not where asked.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    pub label: String,
    pub note: Option<BackendNote>,
}

const CPU_LABEL: &str = "CPU (Flex, wasm)";

/// How far WebGPU's logits may be from the CPU's on the model self-check, relative to the
/// largest logit (at least 1): the same bound the browser test holds WebGPU to against the
/// native CPU code (`web/e2e/e2e.mjs`, 2e-3), for f32 sums taken in another order.
pub const MODEL_CHECK_TOLERANCE: f32 = 2e-3;

/// The adapter to try, `None` for the CPU; an error when WebGPU is asked for and not offered.
async fn adapter_for(choice: BackendChoice) -> Result<Option<Adapter>, String> {
    if choice == BackendChoice::Cpu {
        return Ok(None);
    }
    let adapter = webgpu_adapter().await;
    if choice == BackendChoice::WebGpu && adapter.is_none() {
        return Err("this browser offers no WebGPU adapter; choose CPU or Auto".into());
    }
    Ok(adapter)
}

/// The largest |gpu − cpu| over every output, relative to the largest |cpu| (at least 1).
fn relative_diff(gpu: &[Vec<f32>], cpu: &[Vec<f32>]) -> f32 {
    let scale = cpu.iter().flatten().fold(1f32, |m, v| m.max(v.abs()));
    let mut worst = 0f32;
    for (g, c) in gpu.iter().zip(cpu) {
        if g.len() != c.len() {
            return f32::INFINITY;
        }
        for (a, b) in g.iter().zip(c) {
            // NaN compares false: a NaN output is a failure, not a pass.
            let d = (a - b).abs();
            worst = if d.is_nan() {
                f32::INFINITY
            } else {
                worst.max(d)
            };
        }
    }
    worst / scale
}

/// What the WebGPU checks found, and whether to use the device: the quick reductions and
/// matmul (`ops`, "" = passed) and the loaded model on a fixed input against the CPU (`model`,
/// the relative difference; `None` = not run because `ops` failed on Auto).
fn decide(
    choice: BackendChoice,
    adapter: &Adapter,
    ops: &str,
    model: Option<f32>,
) -> (bool, Option<BackendNote>) {
    let model_ok = model.is_some_and(|d| d <= MODEL_CHECK_TOLERANCE);
    if ops.is_empty() && model_ok {
        return (true, None);
    }
    let mut why = Vec::new();
    if !ops.is_empty() {
        why.push(ops.to_string());
    }
    match model {
        Some(d) if d > MODEL_CHECK_TOLERANCE => why.push(format!(
            "the model's logits off the CPU's by {d:.1e} of the largest, tolerance {MODEL_CHECK_TOLERANCE:.0e}"
        )),
        _ => {}
    }
    let device = &adapter.description;
    let text = match choice {
        BackendChoice::WebGpu => format!(
            "WebGPU refused: the adapter ({device}) failed the self-check ({}); the CPU answers instead.",
            why.join("; ")
        ),
        _ => format!(
            "WebGPU not used: the adapter ({device}) failed the self-check ({}); the CPU gives the right numbers.",
            why.join("; ")
        ),
    };
    (
        false,
        Some(BackendNote {
            text,
            warning: choice == BackendChoice::WebGpu,
        }),
    )
}

/// Where the model goes: the CPU copy (`cpu`, loaded first: the reference and the fall-back)
/// or, when an adapter is offered and passes the checks, the WebGPU copy `load_gpu` makes.
/// `check` runs a model on the fixed input and returns its outputs.
async fn place_model<C, G, L, K, KG>(
    choice: BackendChoice,
    cpu: C,
    load_gpu: L,
    check: K,
    check_gpu: KG,
) -> Result<(OnBackend<G, C>, Placed), String>
where
    L: FnOnce() -> Result<G, String>,
    K: AsyncFnOnce(&C) -> Result<Vec<Vec<f32>>, String>,
    KG: AsyncFnOnce(&G) -> Result<Vec<Vec<f32>>, String>,
{
    let cpu_placed = |note| Placed {
        label: CPU_LABEL.to_string(),
        note,
    };
    let Some(adapter) = adapter_for(choice).await? else {
        return Ok((OnBackend::Cpu(cpu), cpu_placed(None)));
    };
    let ops = gpu_self_check().await;
    let (gpu, model) = if ops.is_empty() || choice == BackendChoice::WebGpu {
        let gpu = load_gpu()?;
        let want = check(&cpu).await?;
        let got = check_gpu(&gpu).await?;
        (Some(gpu), Some(relative_diff(&got, &want)))
    } else {
        (None, None)
    };
    match (decide(choice, &adapter, &ops, model), gpu) {
        ((true, _), Some(gpu)) => Ok((
            OnBackend::Gpu(gpu),
            Placed {
                label: format!("WebGPU ({})", adapter.description),
                note: None,
            },
        )),
        ((_, note), _) => Ok((OnBackend::Cpu(cpu), cpu_placed(note))),
    }
}

/// A model on one of the two backends.
pub enum OnBackend<G, C> {
    Gpu(G),
    Cpu(C),
}

type QaEngine = OnBackend<QaModels<WebGpu>, QaModels<Flex>>;
type ClassifyEngine = OnBackend<ExportedModels<WebGpu>, ExportedModels<Flex>>;

/// The self-check's passage and question: short (one 64-token window), so that it costs little.
const CHECK_PASSAGE: &str = "The AdapterPooler reads the hidden states of every layer of BERT and \
    answers from them with a tenth of a percent of its parameters.";
const CHECK_QUESTION: &str = "What does the AdapterPooler read?";

async fn qa_check_outputs<B: bertvision_core::KernelBackend>(
    models: &QaModels<B>,
    query: &QaQuery,
    device: &B::Device,
) -> Result<Vec<Vec<f32>>, String> {
    let [(bs, be), (vs, ve)] = models.forward(query.batch.to_input(device));
    Ok(vec![
        read(bs).await?,
        read(be).await?,
        read(vs).await?,
        read(ve).await?,
    ])
}

/// Loads the SQuAD export onto the chosen backend; returns where it runs for the page.
pub async fn load(files: ExportFiles, choice: BackendChoice) -> Result<Placed, String> {
    // The previous model goes first: a failed load must not leave it answering.
    ENGINE.with(|e| *e.borrow_mut() = None);
    let text = |e: bertvision_core::Error| e.to_string();
    let mut cpu = QaModels::<Flex>::load(files.clone(), &Default::default()).map_err(text)?;
    let features = bertvision_core::squad::FeatureConfig {
        max_len: 64,
        doc_stride: 32,
        max_query: 16,
    };
    let query = QaQuery::new(&mut cpu.tokenizer, CHECK_PASSAGE, CHECK_QUESTION, &features)
        .map_err(|e| e.to_string())?;
    let (engine, placed) = place_model(
        choice,
        cpu,
        || QaModels::load(files, &WgpuDevice::default()).map_err(text),
        async |m: &QaModels<Flex>| qa_check_outputs(m, &query, &Default::default()).await,
        async |m: &QaModels<WebGpu>| qa_check_outputs(m, &query, &WgpuDevice::default()).await,
    )
    .await?;
    ENGINE.with(|e| *e.borrow_mut() = Some(engine));
    Ok(placed)
}

async fn classify_check_outputs<B: bertvision_core::KernelBackend>(
    models: &ExportedModels<B>,
    batch: &bertvision_core::tokenize::TokenBatch,
    device: &B::Device,
) -> Result<Vec<Vec<f32>>, String> {
    let [bert, head] = models.forward(batch.to_input(device));
    Ok(vec![read(bert).await?, read(head).await?])
}

/// Loads a GLUE export for the classification page; a SQuAD export is refused.
pub async fn load_classifier(files: ExportFiles, choice: BackendChoice) -> Result<Placed, String> {
    CLASSIFIER.with(|e| *e.borrow_mut() = None);
    let text = |e: bertvision_core::Error| e.to_string();
    let mut cpu = ExportedModels::<Flex>::load(files.clone(), &Default::default()).map_err(text)?;
    if cpu.info.span {
        return Err("this is a SQuAD export: load it on the question-answering page".into());
    }
    let batch = ClassifyQuery::new(&mut cpu, CHECK_PASSAGE, Some(CHECK_QUESTION))
        .map_err(|e| e.to_string())?
        .batch;
    let (engine, placed) = place_model(
        choice,
        cpu,
        || ExportedModels::load(files, &WgpuDevice::default()).map_err(text),
        async |m: &ExportedModels<Flex>| {
            classify_check_outputs(m, &batch, &Default::default()).await
        },
        async |m: &ExportedModels<WebGpu>| {
            classify_check_outputs(m, &batch, &WgpuDevice::default()).await
        },
    )
    .await?;
    CLASSIFIER.with(|e| *e.borrow_mut() = Some(engine));
    Ok(placed)
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
