//! Metrics against their reference implementations: GLUE against scikit-learn/scipy values and
//! SQuAD 2.0 against the official evaluator (Hugging Face's port), both recorded as fixtures by
//! `scripts/make_metric_fixtures.py`. Agreement is required to 1e-9 (we see exact equality or
//! the last bit).

use std::collections::HashMap;

use bertvision_core::metrics::glue::{accuracy, f1_binary, matthews, pearson, spearman};
use bertvision_core::squad::SquadDataset;
use bertvision_core::squad::eval::{evaluate, load_na_probs, load_predictions};
use bertvision_tests::{fixture, shared_data};
use serde_json::Value;

fn close(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() <= 1e-9 || (a.is_nan() && b.is_nan()),
        "{what}: ours {a}, reference {b}"
    );
}

#[test]
fn glue_metrics_match_sklearn_and_scipy() {
    let fx: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("metrics/glue_sklearn_scipy.json")).unwrap(),
    )
    .unwrap();
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for (i, c) in cases.iter().enumerate() {
        let ints = |k: &str| {
            c[k].as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect::<Vec<_>>()
        };
        let floats = |k: &str| {
            c[k].as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect::<Vec<_>>()
        };
        if c["kind"] == "classes" {
            let (p, g) = (ints("pred"), ints("gold"));
            close(
                accuracy(&p, &g),
                c["accuracy"].as_f64().unwrap(),
                &format!("case {i} accuracy"),
            );
            close(
                matthews(&p, &g),
                c["matthews"].as_f64().unwrap(),
                &format!("case {i} matthews"),
            );
            if let Some(f1) = c["f1"].as_f64() {
                close(f1_binary(&p, &g, 1), f1, &format!("case {i} f1"));
            }
        } else {
            let (x, y) = (floats("x"), floats("y"));
            close(
                pearson(&x, &y),
                c["pearson"].as_f64().unwrap(),
                &format!("case {i} pearson"),
            );
            close(
                spearman(&x, &y),
                c["spearman"].as_f64().unwrap(),
                &format!("case {i} spearman"),
            );
        }
    }
}

fn check_squad(dataset: &SquadDataset, name: &str) {
    let preds: HashMap<String, String> =
        load_predictions(&fixture(&format!("squad/{name}.predictions.json"))).unwrap();
    let na = load_na_probs(&fixture(&format!("squad/{name}.na_prob.json"))).unwrap();
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture(&format!("squad/{name}.expected.json"))).unwrap(),
    )
    .unwrap();
    for (variant, na) in [
        ("without_na_prob", None),
        ("with_na_prob", Some(na.as_slice())),
    ] {
        let ours = serde_json::to_value(evaluate(dataset, &preds, na).unwrap()).unwrap();
        let reference = expected[variant].as_object().unwrap();
        let ours = ours.as_object().unwrap();
        let mut ours_keys: Vec<_> = ours.keys().collect();
        let mut ref_keys: Vec<_> = reference.keys().collect();
        ours_keys.sort();
        ref_keys.sort();
        assert_eq!(ours_keys, ref_keys, "{name}/{variant}: keys");
        for (k, v) in reference {
            close(
                ours[k].as_f64().unwrap(),
                v.as_f64().unwrap(),
                &format!("{name}/{variant}/{k}"),
            );
        }
    }
}

#[test]
fn squad_eval_matches_official_on_edge_cases() {
    // Unicode, punctuation-only golds and predictions, several golds, no-answer questions, ties in na_prob.
    let dataset = SquadDataset::load(&fixture("squad/edge_cases.json")).unwrap();
    check_squad(&dataset, "edge_cases");
}

#[test]
fn squad_eval_matches_official_on_the_shared_dev_articles() {
    let dataset =
        SquadDataset::load(&shared_data().join("squad2/dev-v2.0-28-articles.json")).unwrap();
    check_squad(&dataset, "dev28");
}

/// Doubles from every part of the range: random bit patterns (finite ones), f32 values widened
/// (what the model's probabilities are), and the edges.
fn sample_doubles(n: usize) -> Vec<f64> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut values = vec![
        0.0,
        -0.0,
        1.0,
        f64::MIN_POSITIVE,
        5e-324,
        f64::MAX,
        0.1,
        1.0 / 3.0,
    ];
    while values.len() < n {
        let bits = next();
        let (x, y) = (f64::from_bits(bits), f32::from_bits(bits as u32) as f64);
        values.extend(
            [x, y, (bits >> 11) as f64 / (1u64 << 53) as f64]
                .into_iter()
                .filter(|v| v.is_finite()),
        );
    }
    values
}

/// A file we write and read back gives the same numbers to the bit, and writing them again
/// gives the same bytes (serde_json's `float_roundtrip`; issue #22).
#[test]
fn na_prob_and_results_files_round_trip_to_the_bit() {
    use bertvision_core::squad::postprocess::{SquadPrediction, SquadPredictions};
    let values = sample_doubles(3000);
    let predictions = SquadPredictions {
        predictions: values
            .iter()
            .enumerate()
            .map(|(i, &na_prob)| SquadPrediction {
                id: format!("q{i:05}"),
                text: String::new(),
                best_span: String::new(),
                best_span_at: None,
                best_span_score: 0.0,
                null_score: 0.0,
                na_prob,
            })
            .collect(),
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("na_prob.json");
    let written = predictions.na_prob_json();
    std::fs::write(&path, &written).unwrap();
    let read = load_na_probs(&path).unwrap();
    assert_eq!(read.len(), values.len());
    for ((id, got), (i, want)) in read.iter().zip(values.iter().enumerate()) {
        assert_eq!(id, &format!("q{i:05}"));
        assert_eq!(
            got.to_bits(),
            want.to_bits(),
            "{id}: wrote {want:e}, read {got:e}"
        );
    }
    let again = SquadPredictions {
        predictions: predictions
            .predictions
            .iter()
            .zip(&read)
            .map(|(p, (_, na_prob))| SquadPrediction {
                na_prob: *na_prob,
                ..p.clone()
            })
            .collect(),
    };
    assert_eq!(again.na_prob_json(), written);

    // results.json (f64 and f32 fields): once written, read → write gives the same bytes.
    let text = std::fs::read_to_string(fixture("web/results-wnli.json")).unwrap();
    let mut value: Value = serde_json::from_str(&text).unwrap();
    let mut floats = values.iter().filter(|v| v.abs() <= f32::MAX as f64).cycle();
    fn fill(v: &mut Value, floats: &mut dyn Iterator<Item = &f64>) {
        match v {
            Value::Number(n) if n.is_f64() => *v = Value::from(*floats.next().unwrap()),
            Value::Array(items) => items.iter_mut().for_each(|i| fill(i, floats)),
            Value::Object(map) => map.values_mut().for_each(|i| fill(i, floats)),
            _ => {}
        }
    }
    fill(&mut value, &mut floats);
    let name = std::path::Path::new("results.json");
    let write = |text: &str| {
        let parsed = bertvision_core::pipeline::results::RunResults::parse(name, text).unwrap();
        serde_json::to_string_pretty(&parsed).unwrap()
    };
    let first = write(&serde_json::to_string_pretty(&value).unwrap());
    assert_eq!(
        write(&first),
        first,
        "results.json changed in a write → read → write"
    );
}
