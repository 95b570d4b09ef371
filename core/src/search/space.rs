//! The search space: named settings of a run, each a range or a list of choices, written as
//! `NAME=SPEC` (`--param`, or one `NAME = "SPEC"` line per setting in a TOML file).
//!
//! | SPEC | meaning |
//! |---|---|
//! | `1e-4..1e-2:log` | a number, uniform in the logarithm |
//! | `0.5..3` | a number, uniform |
//! | `8..64:int`, `8..64:log-int` | an integer (uniform, or uniform in the logarithm) |
//! | `16,32,64` / `masked-mean,flatten` | one of the choices |

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::head::{HeadKind, LayerMix};
use crate::pipeline::config::RunConfig;

/// What a setting is drawn from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Domain {
    Range {
        low: f64,
        high: f64,
        log: bool,
        int: bool,
    },
    Choice(Vec<String>),
}

/// One setting of the space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dimension {
    pub name: String,
    pub domain: Domain,
}

/// Where a setting acts: on the heads of a finished run's checkpoints, or on fine-tuning (each
/// trial then fine-tunes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Head,
    Finetune,
}

/// Every setting `search` can vary: its name, scope, and the flag of `run`/`train-head` that sets
/// it (for `search --best`'s command line).
pub const SETTINGS: &[(&str, Scope, &str)] = &[
    ("head_lr", Scope::Head, "--head-lr"),
    ("head_epochs", Scope::Head, "--head-epochs"),
    ("head_batch_size", Scope::Head, "--head-batch-size"),
    ("adapter_size", Scope::Head, "--adapter-size"),
    ("head_kind", Scope::Head, "--head-kind"),
    ("layer_mix", Scope::Head, "--layer-mix"),
    ("skip_last_layer", Scope::Head, "--skip-last-layer"),
    ("extract_at", Scope::Head, "--at"),
    ("lr", Scope::Finetune, "--lr"),
    ("batch_size", Scope::Finetune, "--batch-size"),
    ("epochs", Scope::Finetune, "--epochs"),
    ("warmup_ratio", Scope::Finetune, "--warmup-ratio"),
];

/// One trial's values, by setting name (numbers, or the chosen word).
pub type Params = BTreeMap<String, serde_json::Value>;

fn setting(name: &str) -> Result<&'static (&'static str, Scope, &'static str)> {
    SETTINGS.iter().find(|(n, ..)| *n == name).ok_or_else(|| {
        let names: Vec<&str> = SETTINGS.iter().map(|s| s.0).collect();
        Error::usage(format!(
            "--param {name}: not a setting search can vary (one of {})",
            names.join(", ")
        ))
    })
}

impl Dimension {
    /// `NAME=SPEC`, its values checked against `base` (the configuration trials start from).
    pub fn parse(text: &str, base: &RunConfig) -> Result<Self> {
        let (name, spec) = text.split_once('=').ok_or_else(|| {
            Error::usage(format!(
                "--param {text}: expected NAME=SPEC (e.g. head_lr=1e-4..1e-2:log)"
            ))
        })?;
        Self::parse_spec(name.trim(), spec.trim(), base)
    }

    fn parse_spec(name: &str, spec: &str, base: &RunConfig) -> Result<Self> {
        setting(name)?;
        let bad = |why: &str| Error::usage(format!("--param {name}={spec}: {why}"));
        let domain = if let Some((range, kind)) = spec.split_once("..").map(|(lo, rest)| {
            let (hi, kind) = rest.split_once(':').unwrap_or((rest, ""));
            ((lo, hi), kind)
        }) {
            let number = |s: &str| s.trim().parse::<f64>().map_err(|_| bad("not a number"));
            let (low, high) = (number(range.0)?, number(range.1)?);
            let (log, int) = match kind {
                "" => (false, false),
                "log" => (true, false),
                "int" => (false, true),
                "log-int" | "int-log" => (true, true),
                _ => return Err(bad("the range's kind is log, int or log-int")),
            };
            if !(low.is_finite() && high.is_finite() && low < high) {
                return Err(bad("a range needs finite LOW < HIGH"));
            }
            if log && low <= 0.0 {
                return Err(bad("a log range needs LOW > 0"));
            }
            Domain::Range {
                low,
                high,
                log,
                int,
            }
        } else {
            let choices: Vec<String> = spec.split(',').map(|c| c.trim().to_string()).collect();
            if choices.iter().any(String::is_empty) {
                return Err(bad("an empty choice"));
            }
            Domain::Choice(choices)
        };
        let dimension = Dimension {
            name: name.to_string(),
            domain,
        };
        // Every value the domain can give must be one the run accepts.
        for probe in dimension.probes() {
            dimension.apply_to(&mut base.clone(), &probe)?;
        }
        Ok(dimension)
    }

    pub fn scope(&self) -> Scope {
        setting(&self.name).map_or(Scope::Head, |s| s.1)
    }

    pub fn flag(&self) -> &'static str {
        setting(&self.name).map_or("", |s| s.2)
    }

    /// The ends of a range, or every choice: what parsing checks against the run's settings.
    fn probes(&self) -> Vec<serde_json::Value> {
        match &self.domain {
            Domain::Range { low, high, int, .. } => {
                [*low, *high].iter().map(|&v| value_of(v, *int)).collect()
            }
            Domain::Choice(c) => c.iter().map(|w| choice_value(w)).collect(),
        }
    }

    /// Sets this dimension's `value` in `config`.
    pub fn apply_to(&self, config: &mut RunConfig, value: &serde_json::Value) -> Result<()> {
        let bad = || {
            Error::usage(format!(
                "--param {}: {value} is not a value of this setting",
                self.name
            ))
        };
        let number = || value.as_f64().filter(|v| v.is_finite()).ok_or_else(bad);
        let positive = || number().and_then(|v| if v > 0.0 { Ok(v) } else { Err(bad()) });
        let count = || {
            let n = number()?;
            (n >= 1.0 && n.fract() == 0.0)
                .then_some(n as usize)
                .ok_or_else(bad)
        };
        let word = || {
            value
                .as_str()
                .map(str::to_string)
                .unwrap_or(value.to_string())
        };
        let (h, f) = (&mut config.head, &mut config.finetune);
        match self.name.as_str() {
            "head_lr" => h.lr = positive()?,
            "head_epochs" => h.epochs = positive()?,
            "head_batch_size" => h.batch_size = count()?,
            "adapter_size" => h.adapter_size = count()?,
            "head_kind" => {
                h.kind = match word().as_str() {
                    "masked-mean" => HeadKind::MaskedMean,
                    "flatten" => HeadKind::Flatten,
                    _ => return Err(bad()),
                }
            }
            "layer_mix" => {
                h.layer_mix = match word().as_str() {
                    "none" => LayerMix::None,
                    "tenney" => LayerMix::Tenney,
                    _ => return Err(bad()),
                }
            }
            "skip_last_layer" => {
                h.skip_last_layer = match word().as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad()),
                }
            }
            "extract_at" => config.extract_at = vec![positive()?],
            "lr" => f.lr = positive()?,
            "batch_size" => f.batch_size = count()?,
            "epochs" => f.epochs = positive()?,
            "warmup_ratio" => {
                f.warmup_ratio = number().and_then(|v| {
                    if (0.0..1.0).contains(&v) {
                        Ok(v)
                    } else {
                        Err(bad())
                    }
                })?;
                h.warmup_ratio = f.warmup_ratio;
            }
            _ => return Err(bad()),
        }
        Ok(())
    }
}

/// A range's number as a parameter value (an integer for `int` ranges).
pub fn value_of(v: f64, int: bool) -> serde_json::Value {
    if int {
        serde_json::Value::from(v.round() as i64)
    } else {
        serde_json::Value::from(v)
    }
}

/// A choice as a parameter value: a number when it reads as one, else the word.
pub fn choice_value(word: &str) -> serde_json::Value {
    if let Ok(i) = word.parse::<i64>() {
        return serde_json::Value::from(i);
    }
    match word.parse::<f64>() {
        Ok(v) if v.is_finite() => serde_json::Value::from(v),
        _ => serde_json::Value::from(word),
    }
}

/// The whole space, from `--param` flags and a TOML file (`name = "SPEC"` lines).
pub fn parse_space(
    params: &[String],
    toml_text: Option<(&std::path::Path, &str)>,
    base: &RunConfig,
) -> Result<Vec<Dimension>> {
    let mut space: Vec<Dimension> = Vec::new();
    if let Some((path, text)) = toml_text {
        let table: toml::Table = toml::from_str(text)
            .map_err(|e| Error::invalid(path, format!("not a TOML table: {}", e.message())))?;
        for (name, spec) in table {
            let Some(spec) = spec.as_str() else {
                return Err(Error::invalid(
                    path,
                    format!("{name}: give the range or choices as a string, e.g. \"8..64:int\""),
                ));
            };
            space.push(Dimension::parse_spec(&name, spec, base)?);
        }
    }
    for text in params {
        let dimension = Dimension::parse(text, base)?;
        space.retain(|d| d.name != dimension.name);
        space.push(dimension);
    }
    if space.is_empty() {
        return Err(Error::usage(
            "search: give the space with --param NAME=SPEC or --space FILE.toml",
        ));
    }
    space.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(space)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> RunConfig {
        let bert =
            crate::bert::BertConfig::from_json(std::path::Path::new("config.json"), "{}").unwrap();
        RunConfig::new(crate::tasks::task("RTE").unwrap(), "m", &bert)
    }

    #[test]
    fn specs_parse_and_bad_ones_name_the_setting() {
        let base = base();
        let parse = |text: &str| Dimension::parse(text, &base);
        let lr = parse("head_lr=1e-4..1e-2:log").unwrap();
        assert_eq!(
            lr.domain,
            Domain::Range {
                low: 1e-4,
                high: 1e-2,
                log: true,
                int: false
            }
        );
        let a = parse("adapter_size=8,16,32").unwrap();
        assert_eq!(
            a.domain,
            Domain::Choice(vec!["8".into(), "16".into(), "32".into()])
        );
        assert_eq!(a.scope(), Scope::Head);
        assert_eq!(parse("lr=1e-5..1e-3:log").unwrap().scope(), Scope::Finetune);
        for (bad, says) in [
            ("head_lr", "NAME=SPEC"),
            ("dropout=0.1..0.2", "not a setting"),
            ("head_lr=0..1:log", "LOW > 0"),
            ("warmup_ratio=0.5..1", "not a value"),
            ("head_lr=2..1", "LOW < HIGH"),
            ("adapter_size=0..8:int", "not a value"),
            ("head_kind=masked-mean,cls", "not a value"),
            ("head_lr=1..2:cubic", "log, int or log-int"),
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let path = std::path::Path::new("space.toml");
        let toml = "head_lr = \"1e-4..1e-2:log\"\nadapter_size = \"8,16\"\n";
        let space = parse_space(&["adapter_size=4,8".into()], Some((path, toml)), &base).unwrap();
        assert_eq!(space.len(), 2);
        assert_eq!(
            space[0].domain,
            Domain::Choice(vec!["4".into(), "8".into()])
        );
        let e = parse_space(&[], Some((path, "head_lr = 3")), &base)
            .unwrap_err()
            .to_string();
        assert!(e.contains("space.toml") && e.contains("head_lr"), "{e}");
    }
}
