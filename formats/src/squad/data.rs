//! The official SQuAD JSON format (`{"version", "data": [{"title", "paragraphs": [{"context",
//! "qas": [...]}]}]}`), validated: a wrong file fails with the file, and the question id or JSON
//! line, of the first problem.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result, parse_json, read_text};

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct RawAnswer {
    pub text: String,
    pub answer_start: usize,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct RawQa {
    pub id: String,
    pub question: String,
    pub answers: Vec<RawAnswer>,
    #[serde(default)]
    pub is_impossible: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plausible_answers: Option<Vec<RawAnswer>>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct RawParagraph {
    pub context: String,
    pub qas: Vec<RawQa>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct RawArticle {
    pub title: String,
    pub paragraphs: Vec<RawParagraph>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
struct RawFile {
    #[serde(default)]
    version: Option<String>,
    data: Vec<RawArticle>,
}

/// A SQuAD file (or a subset of its articles).
#[derive(Debug, Clone)]
pub struct SquadDataset {
    pub path: PathBuf,
    pub version: Option<String>,
    pub articles: Vec<RawArticle>,
}

/// One question with its context; offsets are in characters (Unicode scalar values), as in the
/// JSON's `answer_start` (Python string indices).
#[derive(Debug, Clone, PartialEq)]
pub struct SquadExample {
    pub id: String,
    pub title: String,
    pub question: String,
    pub context: String,
    /// `(text, start_char)` of every gold answer; empty for unanswerable questions.
    pub answers: Vec<(String, usize)>,
}

impl SquadExample {
    pub fn is_impossible(&self) -> bool {
        self.answers.is_empty()
    }
}

impl SquadDataset {
    pub fn load(path: &Path) -> Result<Self> {
        let text = read_text(path)?;
        Self::parse(path, &text)
    }

    /// Parses and validates; `path` names the source in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let raw: RawFile = parse_json(path, text)?;
        let dataset = SquadDataset {
            path: path.to_path_buf(),
            version: raw.version,
            articles: raw.data,
        };
        dataset.validate()?;
        Ok(dataset)
    }

    fn validate(&self) -> Result<()> {
        let path = &self.path;
        if self.articles.is_empty() {
            return Err(Error::invalid(path, "\"data\" holds no articles"));
        }
        let mut ids = HashSet::new();
        let mut questions = 0;
        for article in &self.articles {
            for paragraph in &article.paragraphs {
                let context_chars = paragraph.context.chars().count();
                for qa in &paragraph.qas {
                    questions += 1;
                    if !ids.insert(qa.id.as_str()) {
                        return Err(Error::invalid(
                            path,
                            format!("question id {} appears twice", qa.id),
                        ));
                    }
                    if qa.is_impossible && !qa.answers.is_empty() {
                        return Err(Error::invalid(
                            path,
                            format!(
                                "question {}: is_impossible is true but it has answers",
                                qa.id
                            ),
                        ));
                    }
                    for a in &qa.answers {
                        let end = a.answer_start + a.text.chars().count();
                        if end <= context_chars {
                            // A misplaced answer would train on the wrong span without a word.
                            let found: String = paragraph
                                .context
                                .chars()
                                .skip(a.answer_start)
                                .take(a.text.chars().count())
                                .collect();
                            if found != a.text {
                                return Err(Error::invalid(
                                    path,
                                    format!(
                                        "question {}: answer \"{}\" is not at answer_start {} (the context there reads \"{found}\")",
                                        qa.id, a.text, a.answer_start
                                    ),
                                ));
                            }
                        }
                        if end > context_chars {
                            return Err(Error::invalid(
                                path,
                                format!(
                                    "question {}: answer \"{}\" at answer_start {} ends at character {end}, outside the context ({context_chars} characters)",
                                    qa.id, a.text, a.answer_start
                                ),
                            ));
                        }
                    }
                }
            }
        }
        if questions == 0 {
            return Err(Error::invalid(path, "the file holds no questions"));
        }
        Ok(())
    }

    pub fn num_questions(&self) -> usize {
        self.articles
            .iter()
            .flat_map(|a| &a.paragraphs)
            .map(|p| p.qas.len())
            .sum()
    }

    /// Every question, in file order.
    pub fn examples(&self) -> Vec<SquadExample> {
        let mut out = Vec::with_capacity(self.num_questions());
        for article in &self.articles {
            for paragraph in &article.paragraphs {
                for qa in &paragraph.qas {
                    out.push(SquadExample {
                        id: qa.id.clone(),
                        title: article.title.clone(),
                        question: qa.question.clone(),
                        context: paragraph.context.clone(),
                        answers: qa
                            .answers
                            .iter()
                            .map(|a| (a.text.clone(), a.answer_start))
                            .collect(),
                    });
                }
            }
        }
        out
    }

    /// Splits by article: the last `eval_articles` articles (file order) are held out, so no
    /// context is shared between the two parts.
    pub fn split_by_article(&self, eval_articles: usize) -> Result<(SquadDataset, SquadDataset)> {
        let n = self.articles.len();
        if eval_articles == 0 || eval_articles >= n {
            return Err(Error::usage(format!(
                "{}: cannot hold out {eval_articles} of {} (need at least one on each side)",
                self.path.display(),
                crate::wording::count(n, "article")
            )));
        }
        let cut = n - eval_articles;
        let part = |articles: &[RawArticle]| SquadDataset {
            path: self.path.clone(),
            version: self.version.clone(),
            articles: articles.to_vec(),
        };
        Ok((part(&self.articles[..cut]), part(&self.articles[cut..])))
    }

    /// The dataset in the official JSON format (for the evaluator and for held-out splits).
    pub fn to_json(&self) -> String {
        serde_json::to_string(&RawFile {
            version: self.version.clone(),
            data: self.articles.clone(),
        })
        .expect("plain data serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SquadDataset> {
        SquadDataset::parse(Path::new("s.json"), text)
    }

    const GOOD: &str = r#"{"version":"v2.0","data":[
        {"title":"A","paragraphs":[{"context":"Paris is in France.","qas":[
            {"id":"q1","question":"Where is Paris?","answers":[{"text":"France","answer_start":12}],"is_impossible":false},
            {"id":"q2","question":"Where is Rome?","answers":[],"is_impossible":true}]}]},
        {"title":"B","paragraphs":[{"context":"x","qas":[{"id":"q3","question":"?","answers":[]}]}]}]}"#;

    #[test]
    fn loads_and_splits_by_article() {
        let d = parse(GOOD).unwrap();
        assert_eq!(d.num_questions(), 3);
        let ex = d.examples();
        assert_eq!(ex[0].answers, vec![("France".to_string(), 12)]);
        assert!(ex[1].is_impossible());
        let (train, eval) = d.split_by_article(1).unwrap();
        assert_eq!((train.articles.len(), eval.articles.len()), (1, 1));
        assert_eq!(eval.examples()[0].id, "q3");
        assert!(d.split_by_article(2).is_err());
    }

    #[test]
    fn malformed_files_are_clear_errors() {
        let e = parse(r#"{"data":[{"title":"A","paragraphs":[{"context":"c","qas":[{"id":"q","answers":[]}]}]}]}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("s.json:1: invalid JSON") && e.contains("missing field `question`"),
            "{e}"
        );
        let e = parse(r#"{"data":[]}"#).unwrap_err().to_string();
        assert_eq!(e, "s.json: \"data\" holds no articles");
        let e = parse(&GOOD.replace("\"answer_start\":12", "\"answer_start\":15"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("question q1") && e.contains("outside the context"),
            "{e}"
        );
        let e = parse(&GOOD.replace("\"answer_start\":12", "\"answer_start\":\"12\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid type"), "{e}");
        let e = parse("{\"data\": [").unwrap_err().to_string();
        assert!(e.starts_with("s.json:1: invalid JSON"), "{e}");
    }
}
