//! GLUE TSV files, read exactly as GLUE distributes them: tab-separated with no quoting (MRPC
//! sentences contain `"`), an optional UTF-8 BOM (MRPC), CoLA without header or final newline.
//! Rows the official readers skip (QQP, MNLI, QNLI) are skipped here too but counted and
//! reported; in every other task a malformed row is an error naming the file and line.

use std::path::{Path, PathBuf};

use super::registry::{Column, TaskKind, TaskSpec, TestFormat, TsvFormat};
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub enum Label {
    /// Index into the task's label list.
    Class(usize),
    Score(f32),
}

#[derive(Debug, Clone, PartialEq)]
pub struct GlueExample {
    /// 1-based line in the file, for messages and stable ids.
    pub line: usize,
    pub text_a: String,
    pub text_b: Option<String>,
    pub label: Label,
}

/// A row the official reader would drop, with why.
#[derive(Debug, Clone, PartialEq)]
pub struct SkippedRow {
    pub line: usize,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct GlueSplit {
    pub path: PathBuf,
    pub examples: Vec<GlueExample>,
    pub skipped: Vec<SkippedRow>,
}

impl GlueSplit {
    /// A one-line account of what was read, e.g. for progress output.
    pub fn summary(&self) -> String {
        let mut s = format!("{}: {} examples", self.path.display(), self.examples.len());
        if !self.skipped.is_empty() {
            s.push_str(&format!(
                ", {} malformed rows skipped as the official reader does (first at line {}: {})",
                self.skipped.len(),
                self.skipped[0].line,
                self.skipped[0].reason
            ));
        }
        s
    }
}

/// Reads the training split of a GLUE task from its folder.
pub fn load_train(task: &TaskSpec, dir: &Path) -> Result<GlueSplit> {
    load_tsv(task, &dir.join(task.train_file))
}

/// Reads every evaluation split (MNLI has two).
pub fn load_dev(task: &TaskSpec, dir: &Path) -> Result<Vec<(&'static str, GlueSplit)>> {
    task.dev_files
        .iter()
        .map(|(split, file)| Ok((*split, load_tsv(task, &dir.join(file))?)))
        .collect()
}

/// Reads one GLUE TSV file of `task`.
pub fn load_tsv(task: &TaskSpec, path: &Path) -> Result<GlueSplit> {
    let format = task
        .format
        .ok_or_else(|| Error::usage(format!("{} is not a TSV task", task.name)))?;
    let text = crate::error::read_file(path)?;
    parse_tsv(task, &format, path, &text)
}

/// Parses TSV bytes; `path` names the source in errors.
pub fn parse_tsv(
    task: &TaskSpec,
    format: &TsvFormat,
    path: &Path,
    bytes: &[u8],
) -> Result<GlueSplit> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut lines = bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix(b"\r").unwrap_or(l)));
    fn decode<'r>(path: &Path, line: usize, raw: &'r [u8]) -> Result<&'r str> {
        std::str::from_utf8(raw).map_err(|e| {
            Error::invalid_at(
                path,
                line,
                format!("not valid UTF-8 (byte {} of the line)", e.valid_up_to() + 1),
            )
        })
    }

    let header: Option<Vec<String>> = if format.has_header {
        let (line, raw) = lines
            .next()
            .ok_or_else(|| Error::invalid(path, "empty file"))?;
        Some(
            decode(path, line, raw)?
                .split('\t')
                .map(str::to_string)
                .collect(),
        )
    } else {
        None
    };
    let resolve = |col: Column, ncols: usize| -> Result<usize> {
        match col {
            Column::Index(i) => Ok(i),
            Column::Last => Ok(ncols.saturating_sub(1)),
            Column::Named(name) => header
                .as_ref()
                .and_then(|h| h.iter().position(|c| c == name))
                .ok_or_else(|| {
                    Error::invalid_at(
                        path,
                        1,
                        format!("header has no column \"{name}\" (a {} file?)", task.name),
                    )
                }),
        }
    };
    let header_cols = header.as_ref().map(|h| h.len());
    let idx_a = resolve(format.text_a, header_cols.unwrap_or(0))?;
    let idx_b = format
        .text_b
        .map(|c| resolve(c, header_cols.unwrap_or(0)))
        .transpose()?;
    // `Last` is resolved per row: MNLI dev rows carry five annotator labels, train rows one.
    let idx_label_fixed = match format.label {
        Column::Last => None,
        c => Some(resolve(c, header_cols.unwrap_or(0))?),
    };
    let needed = [Some(idx_a), idx_b, idx_label_fixed]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(0)
        + 1;

    let mut examples = Vec::new();
    let mut skipped = Vec::new();
    for (line, raw) in lines {
        if raw.is_empty() {
            continue; // the final newline, or blank lines the official readers ignore too
        }
        let row = decode(path, line, raw)?;
        let cols: Vec<&str> = row.split('\t').collect();
        let parsed = parse_row(task, &cols, needed, idx_a, idx_b, idx_label_fixed);
        match parsed {
            Ok((a, b, label)) => examples.push(GlueExample {
                line,
                text_a: a,
                text_b: b,
                label,
            }),
            Err(reason) if format.official_reader_skips_bad_rows => {
                skipped.push(SkippedRow { line, reason })
            }
            Err(reason) => return Err(Error::invalid_at(path, line, reason)),
        }
    }
    if examples.is_empty() {
        return Err(Error::invalid(
            path,
            format!("no {} examples in the file", task.name),
        ));
    }
    Ok(GlueSplit {
        path: path.to_path_buf(),
        examples,
        skipped,
    })
}

/// One row to predict: the index a GLUE submission repeats (the test file's `index` column; the
/// row's position, from 0, in a labelled file), its texts, and its label when the file has one.
#[derive(Debug, Clone, PartialEq)]
pub struct InputRow {
    pub index: String,
    pub text_a: String,
    pub text_b: Option<String>,
    pub label: Option<Label>,
}

/// A file to predict: a labelled train/dev file, or GLUE's label-free `test.tsv` layout.
#[derive(Debug, Clone)]
pub struct GlueInputs {
    pub path: PathBuf,
    pub rows: Vec<InputRow>,
    pub labelled: bool,
    /// Rows a labelled QQP/MNLI/QNLI file's official reader skips (a test file skips none: the
    /// GLUE server wants a prediction for every index).
    pub skipped: Vec<SkippedRow>,
}

/// Reads a file to predict (see [`parse_inputs`]).
pub fn load_inputs(task: &TaskSpec, path: &Path) -> Result<GlueInputs> {
    let bytes = crate::error::read_file(path)?;
    parse_inputs(task, path, &bytes)
}

/// A labelled file of `task` (as [`parse_tsv`] reads it), or, when the header has the test
/// layout's index and text columns but not the labelled files' label column, a test file.
pub fn parse_inputs(task: &TaskSpec, path: &Path, bytes: &[u8]) -> Result<GlueInputs> {
    let (Some(format), Some(test)) = (task.format, task.test_format) else {
        return Err(Error::usage(format!("{} is not a TSV task", task.name)));
    };
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let first = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let first = String::from_utf8_lossy(first.strip_suffix(b"\r").unwrap_or(first));
    if is_test_header(&test, &first) {
        return parse_test(&test, path, bytes);
    }
    let split = parse_tsv(task, &format, path, bytes)?;
    let rows = split
        .examples
        .into_iter()
        .enumerate()
        .map(|(i, e)| InputRow {
            index: i.to_string(),
            text_a: e.text_a,
            text_b: e.text_b,
            label: Some(e.label),
        });
    Ok(GlueInputs {
        path: split.path,
        rows: rows.collect(),
        labelled: true,
        skipped: split.skipped,
    })
}

fn is_test_header(test: &TestFormat, line: &str) -> bool {
    let cols: Vec<&str> = line.split('\t').collect();
    let has = |name: &str| cols.contains(&name);
    has(test.index)
        && has(test.text_a)
        && test.text_b.is_none_or(has)
        && !test.label.is_some_and(has)
}

fn parse_test(test: &TestFormat, path: &Path, bytes: &[u8]) -> Result<GlueInputs> {
    let mut lines = bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix(b"\r").unwrap_or(l)));
    let header: Vec<String> = match lines.next() {
        Some((_, raw)) => String::from_utf8_lossy(raw)
            .split('\t')
            .map(str::to_string)
            .collect(),
        None => Vec::new(),
    };
    let col = |name: &str| header.iter().position(|c| c == name).unwrap_or(0);
    let (index, a, b) = (col(test.index), col(test.text_a), test.text_b.map(col));
    let needed = [index, a, b.unwrap_or(0)].into_iter().max().unwrap_or(0) + 1;
    let mut rows = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (line, raw) in lines.filter(|(_, raw)| !raw.is_empty()) {
        let row = std::str::from_utf8(raw)
            .map_err(|_| Error::invalid_at(path, line, "not valid UTF-8"))?;
        let cols: Vec<&str> = row.split('\t').collect();
        if cols.len() < needed {
            return Err(Error::invalid_at(
                path,
                line,
                format!(
                    "{} columns, expected at least {needed} (a test file's every row is predicted)",
                    cols.len()
                ),
            ));
        }
        if !seen.insert(cols[index].to_string()) {
            return Err(Error::invalid_at(
                path,
                line,
                format!("index \"{}\" repeats an earlier row's", cols[index]),
            ));
        }
        rows.push(InputRow {
            index: cols[index].to_string(),
            text_a: cols[a].to_string(),
            text_b: b.map(|b| cols[b].to_string()),
            label: None,
        });
    }
    if rows.is_empty() {
        return Err(Error::invalid(path, "no rows to predict in the file"));
    }
    Ok(GlueInputs {
        path: path.to_path_buf(),
        rows,
        labelled: false,
        skipped: Vec::new(),
    })
}

type Row = (String, Option<String>, Label);

fn parse_row(
    task: &TaskSpec,
    cols: &[&str],
    needed: usize,
    a: usize,
    b: Option<usize>,
    label: Option<usize>,
) -> Result<Row, String> {
    if cols.len() < needed {
        return Err(format!(
            "{} columns, expected at least {needed}",
            cols.len()
        ));
    }
    let label_col = label.unwrap_or(cols.len() - 1);
    let raw = cols[label_col].trim();
    let label = match task.kind {
        TaskKind::Classification { labels } => Label::Class(
            labels
                .iter()
                .position(|l| *l == raw)
                .ok_or_else(|| format!("unknown label \"{raw}\" (expected one of {labels:?})"))?,
        ),
        TaskKind::Regression => Label::Score(
            raw.parse::<f32>()
                .ok()
                .filter(|s| s.is_finite())
                .ok_or_else(|| format!("label \"{raw}\" is not a number"))?,
        ),
        TaskKind::Span => return Err("span tasks are not TSV".into()),
    };
    Ok((cols[a].to_string(), b.map(|b| cols[b].to_string()), label))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::task;

    fn parse(name: &str, text: &str) -> Result<GlueSplit> {
        let t = task(name).unwrap();
        parse_tsv(t, &t.format.unwrap(), Path::new("x.tsv"), text.as_bytes())
    }

    #[test]
    fn cola_without_header_or_final_newline() {
        let s = parse(
            "CoLA",
            "gj04\t1\t\tThe sailors rode.\ngj04\t0\t*\tRode the.",
        )
        .unwrap();
        assert_eq!(s.examples.len(), 2);
        assert_eq!(s.examples[1].label, Label::Class(0));
        assert_eq!(s.examples[1].text_a, "Rode the.");
    }

    #[test]
    fn mrpc_bom_and_quotes() {
        let s = parse(
            "MRPC",
            "\u{feff}Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\t\" Quoted \" text .\tOther\n",
        )
        .unwrap();
        assert_eq!(s.examples[0].text_a, "\" Quoted \" text .");
        assert_eq!(s.examples[0].label, Label::Class(1));
    }

    #[test]
    fn mnli_label_is_last_column_and_bad_rows_are_counted() {
        let header = "index\tpromptID\tpairID\tgenre\ts1b\ts2b\ts1p\ts2p\tsentence1\tsentence2\tlabel1\tgold_label";
        let good = "0\t1\t2\tg\tx\tx\tx\tx\tA premise.\tA hypothesis.\tneutral\tneutral";
        let dev_row = "1\t1\t2\tg\tx\tx\tx\tx\tP.\tH.\tneutral\tentailment\tentailment\tentailment\tentailment\tentailment";
        let s = parse(
            "MNLI",
            &format!("{header}\n{good}\nbroken\trow\n{dev_row}\n"),
        )
        .unwrap();
        assert_eq!(s.examples.len(), 2);
        assert_eq!(s.examples[1].label, Label::Class(1));
        assert_eq!(s.skipped.len(), 1);
        assert_eq!(s.skipped[0].line, 3);
        assert!(s.summary().contains("1 malformed rows skipped"));
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse(
            "RTE",
            "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "x.tsv:2: unknown label \"maybe\" (expected one of [\"entailment\", \"not_entailment\"])"
        );
        let e = parse("RTE", "index\tsentence1\tsentence2\tlabel\n0\ta\n")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "x.tsv:2: 2 columns, expected at least 4");
        let e = parse("STS-B", "index\tsentence1\tsentence2\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no column \"score\""), "{e}");
        let e = parse("SST-2", "sentence\tlabel\n").unwrap_err().to_string();
        assert!(e.contains("no SST-2 examples"), "{e}");
        let t = task("SST-2").unwrap();
        let e = parse_tsv(
            t,
            &t.format.unwrap(),
            Path::new("x.tsv"),
            b"sentence\tlabel\nbad \xff byte\t1\n",
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("x.tsv:2: not valid UTF-8"), "{e}");
    }

    #[test]
    fn test_files_are_read_without_labels_and_labelled_files_with_them() {
        let t = task("RTE").unwrap();
        let test = b"index\tsentence1\tsentence2\n0\tA.\tB.\n7\tC.\tD.\n";
        let inputs = parse_inputs(t, Path::new("test.tsv"), test).unwrap();
        assert!(!inputs.labelled);
        assert_eq!(inputs.rows[1].index, "7");
        assert_eq!(inputs.rows[1].text_b.as_deref(), Some("D."));
        assert_eq!(inputs.rows[1].label, None);
        let dev = b"index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tentailment\n";
        let inputs = parse_inputs(t, Path::new("dev.tsv"), dev).unwrap();
        assert!(inputs.labelled);
        assert_eq!(inputs.rows[0].label, Some(Label::Class(0)));
        // CoLA: the labelled files have no header, the test file has one.
        let cola = task("CoLA").unwrap();
        let inputs =
            parse_inputs(cola, Path::new("t.tsv"), b"index\tsentence\n0\tRode the.").unwrap();
        assert!(!inputs.labelled && inputs.rows[0].text_a == "Rode the.");
        let inputs = parse_inputs(cola, Path::new("d.tsv"), b"gj04\t0\t*\tRode the.").unwrap();
        assert!(inputs.labelled);
        // QQP's test index is `id`.
        let qqp = task("QQP").unwrap();
        let inputs = parse_inputs(
            qqp,
            Path::new("t.tsv"),
            b"id\tquestion1\tquestion2\n3\ta?\tb?\n",
        )
        .unwrap();
        assert_eq!(inputs.rows[0].index, "3");
    }

    #[test]
    fn test_file_errors_name_file_and_line() {
        let t = task("RTE").unwrap();
        let e = parse_inputs(
            t,
            Path::new("t.tsv"),
            b"index\tsentence1\tsentence2\n0\tA.\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("t.tsv:2: 2 columns, expected at least 3"),
            "{e}"
        );
        let e = parse_inputs(
            t,
            Path::new("t.tsv"),
            b"index\tsentence1\tsentence2\n0\tA\tB\n0\tC\tD\n",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(e, "t.tsv:3: index \"0\" repeats an earlier row's");
        let e = parse_inputs(t, Path::new("t.tsv"), b"index\tsentence1\tsentence2\n")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "t.tsv: no rows to predict in the file");
    }
}
