//! `bertvision answer`: one question about one passage with an exported SQuAD model — BERT's,
//! BERTVision's and the ensemble's answers, as the browser demo computes them.

use std::path::Path;

use anyhow::Result;
use bertvision_core::fsutil::write_atomic;
use bertvision_core::qa::{ExportFiles, QaAnswers, QaModels, QaQuery, answer};
use bertvision_core::squad::{FeatureConfig, PostprocessConfig};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

pub struct AnswerRequest<'a> {
    pub export: &'a Path,
    pub passage: &'a str,
    pub question: &'a str,
    pub features: FeatureConfig,
    pub postprocess: PostprocessConfig,
    pub json: Option<&'a Path>,
}

fn host(t: Tensor<impl Backend, 2>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("reading logits back from the device: {e:?}"))
}

pub fn run<B: bertvision_core::AdapterHeadBackend>(
    req: &AnswerRequest<'_>,
    device: B::Device,
) -> Result<()> {
    let mut models = QaModels::<B>::load(ExportFiles::read_dir(req.export)?, &device)?;
    let query = QaQuery::new(
        &mut models.tokenizer,
        req.passage,
        req.question,
        &req.features,
    )?;
    let [(bs, be), (vs, ve)] = models.forward(query.batch.to_input(&device));
    let bert = query.window_logits(&host(bs)?, &host(be)?);
    let bertvision = query.window_logits(&host(vs)?, &host(ve)?);
    let answers = answer(&query, bert, bertvision, &req.postprocess);
    print_answers(&answers);
    if let Some(path) = req.json {
        write_atomic(path, serde_json::to_string_pretty(&answers)?.as_bytes())?;
    }
    Ok(())
}

fn print_answers(answers: &QaAnswers) {
    println!("{} window(s)", answers.windows);
    println!(
        "{:<11} {:<40} {:>9} {:>9} {:>8}",
        "method", "answer", "span p", "no-ans p", "null-span"
    );
    for m in &answers.methods {
        let p = &m.prediction;
        let shown = if p.text.is_empty() {
            format!("(no answer; best span: {:?})", p.best_span)
        } else {
            p.text.clone()
        };
        println!(
            "{:<11} {:<40} {:>9.4} {:>9.4} {:>8.3}",
            m.method,
            shown,
            m.span_probability,
            p.na_prob,
            p.null_score - p.best_span_score
        );
    }
}
