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
