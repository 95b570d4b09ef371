//! Exported weights load back to the same model: BERT with its task head as a Hugging Face
//! directory (Hugging Face names), the AdapterPooler as head.safetensors + head.json.

use bertvision_core::bert::BertConfig;
use bertvision_core::head::{AdapterPoolerConfig, HeadKind, HeadOutput, LayerMix};
use bertvision_core::pipeline::export::{
    TaskHeadInfo, export_bert, export_head, load_head, load_task_model,
};
use bertvision_core::pretrained::Pretrained;
use bertvision_core::safetensors_header::SafetensorsHeader;
use bertvision_core::task_model::BertTaskModel;
use bertvision_core::tokenize::TokenBatch;
use bertvision_tests::{fixture, model_dir};
use burn::backend::NdArray;
use burn::tensor::Tensor;

type B = NdArray<f32>;

fn values(out: HeadOutput<B>) -> Vec<f32> {
    match out {
        HeadOutput::Logits(l) => l.into_data().to_vec().unwrap(),
        HeadOutput::Span { start, end } => Tensor::cat(vec![start, end], 1)
            .into_data()
            .to_vec()
            .unwrap(),
    }
}

#[test]
fn task_model_and_head_round_trip_through_export() {
    let device = Default::default();
    let dir = model_dir("splade-tiny");
    let tmp = tempfile::tempdir().unwrap();
    for span in [false, true] {
        let mut pretrained = Pretrained::<B>::load(&dir, &device).unwrap();
        let encoded = pretrained
            .tokenizer
            .encode("Where is it?", Some("It is in the box."), None)
            .unwrap();
        let batch = TokenBatch::pad(&[&encoded], pretrained.tokenizer.pad_id(), Some(20));
        let config: BertConfig = pretrained.config.clone();
        let model = BertTaskModel::new(pretrained.bert, &config, 3, span, &device);
        let info = TaskHeadInfo {
            task: "T".into(),
            span,
            num_outputs: 3,
        };
        let out = tmp.path().join(format!("span-{span}"));
        export_bert(&model, &config, &info, &dir.tokenizer, &out).unwrap();

        let header = SafetensorsHeader::read(&out.join("model.safetensors")).unwrap();
        let head_name = if span {
            "qa_outputs.weight"
        } else {
            "classifier.weight"
        };
        for key in [
            "bert.embeddings.LayerNorm.weight",
            "bert.encoder.layer.1.attention.self.query.weight",
            head_name,
        ] {
            assert!(
                header.tensors.contains_key(key),
                "{key} not exported: {:?}",
                header.tensors.keys().take(5).collect::<Vec<_>>()
            );
        }
        // Linear weights in PyTorch's [out, in] layout.
        assert_eq!(
            header.tensors[head_name].shape,
            vec![if span { 2 } else { 3 }, config.hidden_size]
        );

        let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
        let loaded = load_task_model::<B>(
            &config,
            &info,
            &out.join("model.safetensors"),
            bytes,
            &device,
        )
        .unwrap();
        let a = values(model.forward(batch.to_input(&device)).1);
        let b = values(loaded.forward(batch.to_input(&device)).1);
        assert_eq!(a, b, "span={span}");
        assert!(BertConfig::from_file(&out.join("config.json")).is_ok());

        let head_config = AdapterPoolerConfig {
            hidden_size: config.hidden_size,
            num_states: config.num_hidden_states(),
            adapter_size: 8,
            kind: if span {
                HeadKind::Span
            } else {
                HeadKind::MaskedMean
            },
            num_outputs: 3,
            max_len: 20,
            shared_adapter: true,
            skip_last_layer: span,
            layer_mix: if span {
                LayerMix::None
            } else {
                LayerMix::Tenney
            },
        };
        let head = head_config.init::<B>(&device);
        export_head(&head, &head_config, &out).unwrap();
        let loaded_head = load_head::<B>(
            &head_config,
            &out.join("head.safetensors"),
            std::fs::read(out.join("head.safetensors")).unwrap(),
            &device,
        )
        .unwrap();
        let input = batch.to_input::<B>(&device);
        let states = model.bert.forward(input.clone()).hidden_states;
        let a = values(head.forward(&states, input.attention_mask.clone()));
        let b = values(loaded_head.forward(&states, input.attention_mask));
        assert_eq!(a, b, "head span={span}");
    }
}

/// The comparison page's fixtures: a current results.json (a real 2-seed WNLI run) parses; the
/// previous format is refused with a message naming the file and both versions.
#[test]
fn results_fixtures_for_the_web_page() {
    use bertvision_core::pipeline::results::{RESULTS_FORMAT, RunResults};
    let current = fixture("web/results-wnli.json");
    let run = RunResults::parse(&current, &std::fs::read_to_string(&current).unwrap()).unwrap();
    assert_eq!(run.format, RESULTS_FORMAT);
    assert_eq!(run.seeds.len(), 2);
    assert!(run.seeds.iter().all(|s| s.head_layer_share.len() == 3));
    let old = fixture("web/results-v1.json");
    let err = RunResults::parse(&old, &std::fs::read_to_string(&old).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("results-v1.json") && err.contains("bertvision-results/1"),
        "{err}"
    );
}

/// The GPU results kept in the repository (README, "Results") are complete runs in the
/// current format: 3 seeds, every method summarised, so the comparison page can show them.
#[test]
fn committed_gpu_results_parse() {
    use bertvision_core::pipeline::results::RunResults;
    let dir = bertvision_tests::workspace_root().join("results/h200-minilm-l6");
    for task in ["RTE", "MRPC", "STS-B", "CoLA", "SQuAD2"] {
        let path = dir.join(task).join("results.json");
        let run = RunResults::parse(&path, &std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(run.task, task);
        assert_eq!(run.seeds.len(), 3, "{task}");
        for method in ["bert_extract", "bert_final", "bertvision", "ensemble_mean"] {
            let dev = &run.summary[method]["dev"];
            assert!(dev.values().all(|m| m.n == 3), "{task} {method}");
        }
    }
}

/// The browser's "about this model" line from a real results.json (the H200 SQuAD run, seed 2):
/// the model's name without its folder, both parameter counts, and that seed's own scores.
#[test]
fn about_this_model_names_the_model_data_and_scores_of_its_seed() {
    use bertvision_core::inference::about::ModelAbout;
    use bertvision_core::pipeline::results::RunResults;
    let path =
        bertvision_tests::workspace_root().join("results/h200-minilm-l6/SQuAD2/results.json");
    let run = RunResults::parse(&path, &std::fs::read_to_string(&path).unwrap()).unwrap();
    let about = ModelAbout::from_results(&run, 2).unwrap();
    let seed = run.seeds.iter().find(|s| s.seed == 2).unwrap();
    let em = seed.metrics["bertvision"]["dev"]["exact"];
    let sentence = about.sentence();
    for part in [
        "minilm-l6 (".to_string(),
        format!(
            "{} parameters",
            bertvision_core::inference::about::group_digits(run.parameters.bert)
        ),
        "fine-tuned for 1 epoch on SQuAD2".to_string(),
        "22 articles".to_string(),
        "seed 2".to_string(),
        format!("BERTVision EM {em:.1}"),
        "HasAns F1".to_string(),
    ] {
        assert!(sentence.contains(&part), "{part:?} not in {sentence:?}");
    }
    assert!(!sentence.contains("/tmp/"), "{sentence}");
    // A seed the run does not have gives no line rather than another seed's scores.
    assert!(ModelAbout::from_results(&run, 99).is_none());
    // A GLUE run names its metrics, three decimals.
    let path = bertvision_tests::workspace_root().join("results/h200-minilm-l6/RTE/results.json");
    let run = RunResults::parse(&path, &std::fs::read_to_string(&path).unwrap()).unwrap();
    let sentence = ModelAbout::from_results(&run, 1).unwrap().sentence();
    let acc = run.seeds[0].metrics["bert_extract"]["dev"]["accuracy"];
    assert!(
        sentence.contains(&format!("BERT accuracy {acc:.3}")),
        "{sentence}"
    );
}
