//! `bertvision encode`: every layer's hidden states for one unpadded input, as safetensors.

use std::path::{Path, PathBuf};

use anyhow::Result;
use bertvision_core::bert::EncoderDtype;
use bertvision_core::fsutil::{NamedTensor, safetensors_bytes, write_atomic};
use bertvision_core::models::ModelDir;
use bertvision_core::pretrained::Pretrained;

use crate::backend::{DeviceArg, check_float_type};
use crate::fetch::resolve_model_dir;

#[derive(Debug, clap::Args)]
pub struct EncodeArgs {
    /// A known model name (minilm-l6, splade-tiny) or a Hugging Face BERT directory.
    #[arg(long)]
    pub model: String,
    /// The text (the first segment).
    #[arg(long)]
    pub text: String,
    /// The second segment of a pair (token type 1).
    #[arg(long)]
    pub text_pair: Option<String>,
    /// Truncate to this many tokens (longest sequence first); default: no truncation.
    #[arg(long)]
    pub max_length: Option<usize>,
    /// The safetensors file to write.
    #[arg(long)]
    pub output: PathBuf,
    /// The backend: cpu (Flex with this project's kernels), ndarray, cuda, wgpu (the last two
    /// need a build with `--features cuda` / `wgpu`).
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
    /// The encoder's float type (the output file is f32 either way).
    #[arg(long, value_enum, default_value = "f32", alias = "dtype")]
    pub encoder_dtype: EncoderDtype,
}

/// `encode`: resolves the model and runs [`encode`] on the chosen backend.
impl EncodeArgs {
    /// Every flag's value, from its meaning, before the model is read.
    pub fn validate(&self) -> Result<()> {
        bertvision_core::checks::not_empty("--text", &self.text)?;
        bertvision_core::checks::output_file("--output", &self.output)?;
        if let Some(pair) = &self.text_pair {
            bertvision_core::checks::not_empty("--text-pair", pair)?;
        }
        if let Some(len) = self.max_length {
            let needed = if self.text_pair.is_some() { 5 } else { 3 };
            bertvision_core::checks::sequence_length("--max-length", len, needed, usize::MAX)?;
        }
        check_float_type("--encoder-dtype", self.encoder_dtype, self.device)
    }
}

pub fn main(args: &EncodeArgs, cache_dir: &Path) -> Result<()> {
    args.validate()?;
    let model_dir = resolve_model_dir(&args.model, cache_dir)?;
    let req = EncodeRequest {
        model_dir: &model_dir,
        text: &args.text,
        text_pair: args.text_pair.as_deref(),
        max_length: args.max_length,
        output: &args.output,
        dtype: args.encoder_dtype.float_dtype(),
    };
    with_backend!(args.device, |B, dev| encode::<B>(&req, dev))
}

pub struct EncodeRequest<'a> {
    pub model_dir: &'a Path,
    pub text: &'a str,
    pub text_pair: Option<&'a str>,
    pub max_length: Option<usize>,
    pub output: &'a Path,
    pub dtype: burn::tensor::FloatDType,
}

/// Writes `hidden_states` (f32 `[layers+1, tokens, hidden]`) and `input_ids` (i64 `[tokens]`).
pub fn encode<B: bertvision_core::KernelBackend>(
    req: &EncodeRequest<'_>,
    device: B::Device,
) -> Result<()> {
    let dir = ModelDir::open(req.model_dir)?;
    let mut model = Pretrained::<B>::load(&dir, &device)?;
    model.bert = model.bert.with_float_dtype(req.dtype);
    let (encoded, output) = model.encode_one(req.text, req.text_pair, req.max_length, &device)?;
    let [_, layers, tokens, hidden] = output.stacked().dims();
    let hidden_states = output
        .stacked()
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("reading hidden states back from the device: {e:?}"))?;
    let input_ids: Vec<i64> = encoded.ids.iter().map(|&id| id as i64).collect();
    let metadata = [
        ("model".to_string(), dir.root.display().to_string()),
        (
            "layout".to_string(),
            "hidden_states[layer, token, hidden]; layer 0 = embeddings".to_string(),
        ),
    ]
    .into_iter()
    .collect();
    let bytes = safetensors_bytes(
        &[
            (
                "hidden_states",
                NamedTensor::F32 {
                    shape: vec![layers, tokens, hidden],
                    data: &hidden_states,
                },
            ),
            (
                "input_ids",
                NamedTensor::I64 {
                    shape: vec![tokens],
                    data: &input_ids,
                },
            ),
        ],
        Some(metadata),
    )?;
    write_atomic(req.output, &bytes)?;
    eprintln!(
        "wrote {}: hidden_states [{layers}, {tokens}, {hidden}], input_ids [{tokens}]",
        req.output.display()
    );
    Ok(())
}
