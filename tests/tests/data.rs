//! The shared data loads with the official counts, and SQuAD featurisation is deterministic and
//! recovers the gold answers from its labels.

use bertvision_core::squad::features::round_trip;
use bertvision_core::squad::{FeatureConfig, SquadDataset, featurize};
use bertvision_core::tasks::glue::{Label, load_dev, load_train};
use bertvision_core::tasks::task;
use bertvision_core::tokenize::BertTokenizer;
use bertvision_tests::{model_dir, shared_data};

#[test]
fn glue_tasks_load_with_official_counts() {
    let glue = shared_data().join("glue");
    for (name, train, dev) in [
        ("RTE", Some(2490), 277),
        ("MRPC", Some(3668), 408),
        ("CoLA", Some(8551), 1043),
        ("STS-B", Some(5749), 1500),
        ("WNLI", Some(635), 71),
        ("SST-2", Some(67349), 872),
        ("QNLI", None, 5463),
    ] {
        let t = task(name).unwrap();
        let dir = glue.join(name);
        if let Some(n) = train {
            let split = load_train(t, &dir).unwrap();
            assert_eq!(split.examples.len(), n, "{name} train");
            assert!(split.skipped.is_empty(), "{name}: {}", split.summary());
        }
        let devs = load_dev(t, &dir).unwrap();
        assert_eq!(devs[0].1.examples.len(), dev, "{name} dev");
    }
    // Label distributions from the manifest.
    let mrpc = load_dev(task("MRPC").unwrap(), &glue.join("MRPC"))
        .unwrap()
        .remove(0)
        .1;
    let positives = mrpc
        .examples
        .iter()
        .filter(|e| e.label == Label::Class(1))
        .count();
    assert_eq!(positives, 279);
    let rte = load_train(task("RTE").unwrap(), &glue.join("RTE")).unwrap();
    assert_eq!(
        rte.examples
            .iter()
            .filter(|e| e.label == Label::Class(0))
            .count(),
        1249
    );
}

#[test]
fn squad_features_are_deterministic_and_round_trip() {
    let dataset =
        SquadDataset::load(&shared_data().join("squad2/dev-v2.0-28-articles.json")).unwrap();
    let examples = dataset.examples();
    assert_eq!(examples.len(), 9567);
    assert_eq!(examples.iter().filter(|e| e.is_impossible()).count(), 4834);
    let mut tokenizer = BertTokenizer::from_file(&model_dir("minilm-l6").tokenizer).unwrap();
    let config = FeatureConfig::default();
    let features = featurize(&examples, &mut tokenizer, &config).unwrap();
    let again = featurize(&examples, &mut tokenizer, &config).unwrap();
    assert_eq!(features, again, "featurisation must be deterministic");
    assert!(features.iter().all(|f| f.encoded.len() <= 384));

    let report = round_trip(&examples, &features);
    println!(
        "{} features; answerable {}, labelled {}, exact {}, normalised {}",
        features.len(),
        report.answerable,
        report.labelled,
        report.exact,
        report.normalized
    );
    for m in &report.mismatches {
        println!(
            "  {}: gold {:?} recovered {:?}: {}",
            m.id, m.gold, m.recovered, m.reason
        );
        assert_ne!(m.reason, "other", "unexplained mismatch {m:?}");
    }
    assert_eq!(report.answerable, 4733);
    assert!(report.exact as f64 / report.answerable as f64 > 0.99);
}

#[test]
fn squad_windows_match_transformers() {
    // The 12 longest contexts, windowed by transformers' fast tokenizer (384 tokens, stride 128).
    let fx: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(bertvision_tests::fixture(
            "parity/squad_windows_minilm-l6.json",
        ))
        .unwrap(),
    )
    .unwrap();
    let dataset =
        SquadDataset::load(&shared_data().join("squad2/dev-v2.0-28-articles.json")).unwrap();
    let examples = dataset.examples();
    let mut tokenizer = BertTokenizer::from_file(&model_dir("minilm-l6").tokenizer).unwrap();
    let mut multi_window = 0;
    for case in fx["cases"].as_array().unwrap() {
        let example = examples
            .iter()
            .find(|e| e.id == case["id"].as_str().unwrap())
            .unwrap();
        let ours = tokenizer
            .encode_windows(example.question.trim_start(), &example.context, 384, 128)
            .unwrap();
        let theirs = case["windows"].as_array().unwrap();
        assert_eq!(ours.len(), theirs.len(), "{}: window count", example.id);
        for (w, t) in ours.iter().zip(theirs) {
            let t: Vec<u32> = t
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(w.ids, t, "{}: window ids", example.id);
        }
        multi_window += usize::from(ours.len() > 1);
    }
    assert!(
        multi_window >= 5,
        "the fixture must exercise overflowing windows"
    );
}

#[test]
fn tasks_without_shared_files_load_from_fixtures_in_their_real_format() {
    let glue = bertvision_tests::fixture("glue");
    // QQP: a row with missing fields, as in the real file, is skipped and reported.
    let qqp = load_train(task("QQP").unwrap(), &glue.join("QQP")).unwrap();
    assert_eq!(qqp.examples.len(), 3);
    assert_eq!(qqp.skipped.len(), 1);
    assert_eq!(qqp.skipped[0].line, 4);
    assert_eq!(qqp.examples[1].label, Label::Class(1));
    // MNLI: gold_label is the last column (12 columns in train, 16 in dev); two dev splits.
    let mnli = task("MNLI").unwrap();
    let train = load_train(mnli, &glue.join("MNLI")).unwrap();
    assert_eq!(
        train
            .examples
            .iter()
            .map(|e| e.label.clone())
            .collect::<Vec<_>>(),
        [Label::Class(2), Label::Class(1)]
    );
    let dev = load_dev(mnli, &glue.join("MNLI")).unwrap();
    assert_eq!(
        dev.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        ["dev_matched", "dev_mismatched"]
    );
    assert_eq!(dev[0].1.examples.len(), 2);
    assert_eq!(dev[0].1.skipped.len(), 1);
    assert_eq!(dev[0].1.examples[1].label, Label::Class(0));
    assert_eq!(dev[1].1.examples.len(), 1);
    // QNLI train.
    let qnli = load_train(task("QNLI").unwrap(), &glue.join("QNLI")).unwrap();
    assert_eq!((qnli.examples.len(), qnli.skipped.len()), (2, 1));
    assert!(qnli.summary().contains("1 malformed rows skipped"));
}

/// The validation split (`--validation-fraction`) is carved from the training file: disjoint
/// from the training examples a run uses (all of them, or a `--train-fraction` sample) and from
/// dev, stratified by label, and the same examples for every load (every seed, every trial).
#[test]
fn the_validation_split_is_held_out_of_training_and_fixed() {
    use bertvision_core::pipeline::config::RunConfig;
    use bertvision_core::pipeline::data::{DataSource, Sample, Target, load_task_data};
    use bertvision_core::pipeline::sample::fraction_of;
    use std::collections::HashSet;

    let model = model_dir("splade-tiny");
    let mut tokenizer = BertTokenizer::from_file(&model.tokenizer).unwrap();
    let bert = bertvision_core::bert::BertConfig::from_file(&model.config).unwrap();
    let ids = |samples: &[Sample]| -> HashSet<Vec<u32>> {
        samples.iter().map(|s| s.encoded.ids.clone()).collect()
    };
    let rte = task("RTE").unwrap();
    let mut config = RunConfig::new(rte, "splade-tiny", &bert);
    config.validation_fraction = Some(0.1);
    let source = DataSource::Glue {
        dir: shared_data().join("glue"),
    };
    let data = load_task_data(rte, &source, &mut tokenizer, &config).unwrap();
    let [validation, dev] = [&data.eval[0], &data.eval[1]];
    assert_eq!(
        (validation.name.as_str(), dev.name.as_str()),
        ("validation", "dev")
    );
    assert_eq!(validation.samples.len(), 249, "10% of 2490, by label");
    assert_eq!(data.train.len() + validation.samples.len(), 2490);
    let held = ids(&validation.samples);
    for used in [data.train.clone(), fraction_of(&data.train, 3, 0.3)] {
        assert!(ids(&used).is_disjoint(&held), "training examples held out");
    }
    assert!(
        ids(&dev.samples).is_disjoint(&held),
        "dev is not validation"
    );
    let entailed = |s: &[Sample]| s.iter().filter(|x| x.target == Target::Class(0)).count();
    assert_eq!(
        entailed(&validation.samples),
        125,
        "1249 of 2490 entailed, kept at 10%"
    );
    let again = load_task_data(rte, &source, &mut tokenizer, &config).unwrap();
    assert_eq!(
        again.eval[0].samples, validation.samples,
        "the same every load"
    );

    // SQuAD: whole articles of the training side, never the evaluation articles.
    let squad = task("SQuAD2").unwrap();
    let mut config = RunConfig::new(squad, "splade-tiny", &bert);
    config.validation_fraction = Some(0.1);
    let source = DataSource::SquadSplit {
        data: shared_data().join("squad2/dev-v2.0-28-articles.json"),
        eval_articles: 6,
    };
    let data = load_task_data(squad, &source, &mut tokenizer, &config).unwrap();
    let titles = |i: usize| -> HashSet<String> {
        let set = &data.eval[i].squad.as_ref().unwrap().0;
        set.articles.iter().map(|a| a.title.clone()).collect()
    };
    let (validation, dev) = (titles(0), titles(1));
    assert_eq!(
        (validation.len(), dev.len()),
        (2, 6),
        "2 of the 22 training articles"
    );
    assert!(validation.is_disjoint(&dev));
    assert!(ids(&data.train).is_disjoint(&ids(&data.eval[0].samples)));
    let again = load_task_data(squad, &source, &mut tokenizer, &config).unwrap();
    assert_eq!(again.eval[0].samples, data.eval[0].samples);
}
