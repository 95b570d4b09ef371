//! Where every task's data comes from and how a download is known to be the official one: the
//! table `bertvision fetch-data` follows. GLUE's task zips are the ones GLUE's own
//! `download_glue_data.py` fetches (MRPC built from SentEval's copy of the Microsoft files by
//! that script's procedure, [`mrpc_split`]); SQuAD 2.0 is the official explorer's JSON.
//!
//! Every file that ends up in the data folder is checked, after unpacking, by one of:
//! - **sha256**: the checksum of the official file (those of `shared/data/MANIFEST.md`, which
//!   were verified there against independent copies, and the official `dev-v2.0.json`'s);
//! - **rows**: the official number of examples (GLUE's published split sizes, as Hugging Face's
//!   `glue` dataset and TFDS report them), where no checksum of the official file is known here.
//!   A truncated or foreign file fails it; a same-sized edit would not, hence the distinction
//!   in `fetch-data`'s summary.
//!
//! No zip itself is pinned: a corrupt archive fails its members' CRC-32 when unpacked.

/// How one unpacked file is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileCheck {
    /// The sha256 (lowercase hex) of the official file.
    Sha256(&'static str),
    /// The official number of data rows of a TSV (lines after the header, if it has one).
    Rows { header: bool, rows: usize },
    /// The official number of questions of a SQuAD JSON file.
    Questions(usize),
}

/// One file of a task's data folder and its check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataFile {
    pub name: &'static str,
    pub check: FileCheck,
}

/// How the downloads become the folder's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unpack {
    /// One zip: the members `<prefix><file name>` for every listed file (the rest is left out).
    Zip { prefix: &'static str },
    /// Each download is one listed file, under the download's name.
    AsIs,
    /// GLUE's MRPC procedure on `msr_paraphrase_train.txt`, `msr_paraphrase_test.txt` and
    /// `mrpc_dev_ids.tsv` ([`mrpc_split`]).
    MrpcSplit,
}

/// A file to download: its official address and the name it is kept under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Download {
    pub name: &'static str,
    pub url: &'static str,
}

/// One fetchable data folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataSet {
    /// The registry's task name (`AX` is GLUE's diagnostic set, predicted by MNLI models).
    pub name: &'static str,
    /// The folder under the data root: `glue/RTE`, `squad2`.
    pub folder: &'static str,
    pub downloads: &'static [Download],
    pub unpack: Unpack,
    pub files: &'static [DataFile],
}

const fn sha(name: &'static str, sha256: &'static str) -> DataFile {
    DataFile {
        name,
        check: FileCheck::Sha256(sha256),
    }
}

const fn rows(name: &'static str, rows: usize) -> DataFile {
    DataFile {
        name,
        check: FileCheck::Rows { header: true, rows },
    }
}

/// A GLUE task zip from GLUE's own host, unpacked from its `<prefix>` folder.
const fn glue_zip(
    name: &'static str,
    folder: &'static str,
    downloads: &'static [Download],
    prefix: &'static str,
    files: &'static [DataFile],
) -> DataSet {
    DataSet {
        name,
        folder,
        downloads,
        unpack: Unpack::Zip { prefix },
        files,
    }
}

const fn download(name: &'static str, url: &'static str) -> Download {
    Download { name, url }
}

/// Every data set `fetch-data` knows, in the registry's order, then GLUE's diagnostic set.
pub const DATA_SETS: &[DataSet] = &[
    glue_zip(
        "CoLA",
        "glue/CoLA",
        &[download(
            "CoLA.zip",
            "https://dl.fbaipublicfiles.com/glue/data/CoLA.zip",
        )],
        "CoLA/",
        &[
            sha(
                "train.tsv",
                "cb368ebeb9f27d7ad03720d27ddc95687a311bdb100781a2fe59a5f5b1bc0624",
            ),
            sha(
                "dev.tsv",
                "8c013e21dc39957cac37378d87bebe225b694a0d5fe13eded66c2856628833fd",
            ),
            rows("test.tsv", 1063),
        ],
    ),
    glue_zip(
        "SST-2",
        "glue/SST-2",
        &[download(
            "SST-2.zip",
            "https://dl.fbaipublicfiles.com/glue/data/SST-2.zip",
        )],
        "SST-2/",
        &[
            sha(
                "train.tsv",
                "48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1",
            ),
            sha(
                "dev.tsv",
                "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0",
            ),
            rows("test.tsv", 1821),
        ],
    ),
    DataSet {
        name: "MRPC",
        folder: "glue/MRPC",
        downloads: &[
            download(
                "msr_paraphrase_train.txt",
                "https://dl.fbaipublicfiles.com/senteval/senteval_data/msr_paraphrase_train.txt",
            ),
            download(
                "msr_paraphrase_test.txt",
                "https://dl.fbaipublicfiles.com/senteval/senteval_data/msr_paraphrase_test.txt",
            ),
            download(
                "mrpc_dev_ids.tsv",
                "https://firebasestorage.googleapis.com/v0/b/mtl-sentence-representations.appspot.com/o/data%2Fmrpc_dev_ids.tsv?alt=media&token=ec5c0836-31d5-48f4-b431-7480817f1adc",
            ),
        ],
        unpack: Unpack::MrpcSplit,
        files: &[
            sha(
                "train.tsv",
                "69abcedee3cf738c6ce58d772e43e1b7cdf5b4edee4aceda459c0d9f4e5599f3",
            ),
            sha(
                "dev.tsv",
                "9e8f284788040f7c9ecde2e1b3c07237c756f926bd9ef8548ef5d34b56f69f17",
            ),
            rows("test.tsv", 1725),
        ],
    },
    glue_zip(
        "STS-B",
        "glue/STS-B",
        &[download(
            "STS-B.zip",
            "https://dl.fbaipublicfiles.com/glue/data/STS-B.zip",
        )],
        "STS-B/",
        &[
            sha(
                "train.tsv",
                "41c4d978b6162abdcada7e49a982211954cca5459c228db478af333124b257a2",
            ),
            sha(
                "dev.tsv",
                "fe7dc0632a5033562f3cadff991f6e8d9b9b6311861660e78c3c82eb7db67f59",
            ),
            rows("test.tsv", 1379),
        ],
    ),
    glue_zip(
        "QQP",
        "glue/QQP",
        &[download(
            "QQP-clean.zip",
            "https://dl.fbaipublicfiles.com/glue/data/QQP-clean.zip",
        )],
        "QQP/",
        &[
            rows("train.tsv", 363_846),
            rows("dev.tsv", 40_430),
            rows("test.tsv", 390_965),
        ],
    ),
    glue_zip(
        "MNLI",
        "glue/MNLI",
        &[download(
            "MNLI.zip",
            "https://dl.fbaipublicfiles.com/glue/data/MNLI.zip",
        )],
        "MNLI/",
        &[
            rows("train.tsv", 392_702),
            rows("dev_matched.tsv", 9_815),
            rows("dev_mismatched.tsv", 9_832),
            rows("test_matched.tsv", 9_796),
            rows("test_mismatched.tsv", 9_847),
        ],
    ),
    glue_zip(
        "QNLI",
        "glue/QNLI",
        &[download(
            "QNLIv2.zip",
            "https://dl.fbaipublicfiles.com/glue/data/QNLIv2.zip",
        )],
        "QNLI/",
        &[
            rows("train.tsv", 104_743),
            sha(
                "dev.tsv",
                "ac19409dcb04631eaaa094bdebdcf621086bc352503dfb6a1a648b614986f4fd",
            ),
            rows("test.tsv", 5_463),
        ],
    ),
    glue_zip(
        "RTE",
        "glue/RTE",
        &[download(
            "RTE.zip",
            "https://dl.fbaipublicfiles.com/glue/data/RTE.zip",
        )],
        "RTE/",
        &[
            sha(
                "train.tsv",
                "41e3a9b063433392343fad9e962cf2f58b681c78d8f71592f4186f0837246c5c",
            ),
            sha(
                "dev.tsv",
                "80230dfa1347282e7b532b06a1004a76a710087541189bf874223ddf0e3819fb",
            ),
            rows("test.tsv", 3_000),
        ],
    ),
    glue_zip(
        "WNLI",
        "glue/WNLI",
        &[download(
            "WNLI.zip",
            "https://dl.fbaipublicfiles.com/glue/data/WNLI.zip",
        )],
        "WNLI/",
        &[
            sha(
                "train.tsv",
                "9a88e9d54b6861cc796a088e9acf4f5f65064a9ef65ae6fa7a688b28391e5c9a",
            ),
            sha(
                "dev.tsv",
                "cba00490596dd14be8cf53b4f53bb744abe3a7b89f81ab210528d80225338ed5",
            ),
            rows("test.tsv", 146),
        ],
    ),
    DataSet {
        name: "SQuAD2",
        folder: "squad2",
        downloads: &[
            download(
                "train-v2.0.json",
                "https://rajpurkar.github.io/SQuAD-explorer/dataset/train-v2.0.json",
            ),
            download(
                "dev-v2.0.json",
                "https://rajpurkar.github.io/SQuAD-explorer/dataset/dev-v2.0.json",
            ),
        ],
        unpack: Unpack::AsIs,
        files: &[
            DataFile {
                name: "train-v2.0.json",
                check: FileCheck::Questions(130_319),
            },
            sha(
                "dev-v2.0.json",
                "80a5225e94905956a6446d296ca1093975c4d3b3260f1d6c8f68bc2ab77182d8",
            ),
        ],
    },
    DataSet {
        name: "AX",
        folder: "glue/diagnostic",
        downloads: &[download(
            "diagnostic.tsv",
            "https://dl.fbaipublicfiles.com/glue/data/AX.tsv",
        )],
        unpack: Unpack::AsIs,
        files: &[rows("diagnostic.tsv", 1_104)],
    },
];

/// The data set of a task name (case-insensitive, as the registry matches names).
pub fn data_set(name: &str) -> Option<&'static DataSet> {
    DATA_SETS.iter().find(|d| d.name.eq_ignore_ascii_case(name))
}

impl DataSet {
    /// The data sets a task needs: MNLI also brings GLUE's diagnostic set, which MNLI models
    /// are submitted on.
    pub fn with_companions(&'static self) -> Vec<&'static DataSet> {
        let mut sets = vec![self];
        if self.name == "MNLI" {
            sets.extend(data_set("AX"));
        }
        sets
    }
}

/// What a check found wrong with a file's bytes (the caller names the file).
pub fn check_rows_or_questions(check: FileCheck, bytes: &[u8]) -> Result<(), String> {
    match check {
        FileCheck::Sha256(_) => Ok(()),
        FileCheck::Rows { header, rows } => {
            let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8 ({e})"))?;
            let found = data_rows(text, header);
            if found == rows {
                Ok(())
            } else {
                Err(format!(
                    "{found} rows where the official file has {rows} (truncated or not the official file)"
                ))
            }
        }
        FileCheck::Questions(questions) => {
            let found = squad_questions(bytes)?;
            if found == questions {
                Ok(())
            } else {
                Err(format!(
                    "{found} questions where the official file has {questions} (not the official file)"
                ))
            }
        }
    }
}

/// Non-empty lines after the header: GLUE's rows (no field ever holds a newline).
pub fn data_rows(text: &str, header: bool) -> usize {
    let lines = text
        .lines()
        .filter(|l| !l.trim_end_matches('\r').is_empty())
        .count();
    lines.saturating_sub(usize::from(header))
}

fn squad_questions(bytes: &[u8]) -> Result<usize, String> {
    #[derive(serde::Deserialize)]
    struct File {
        data: Vec<Article>,
    }
    #[derive(serde::Deserialize)]
    struct Article {
        paragraphs: Vec<Paragraph>,
    }
    #[derive(serde::Deserialize)]
    struct Paragraph {
        qas: Vec<serde::de::IgnoredAny>,
    }
    let file: File =
        serde_json::from_slice(bytes).map_err(|e| format!("not a SQuAD JSON file ({e})"))?;
    Ok(file
        .data
        .iter()
        .flat_map(|a| &a.paragraphs)
        .map(|p| p.qas.len())
        .sum())
}

/// GLUE's MRPC files from the SentEval copies of Microsoft's, as `download_glue_data.py` makes
/// them: `train.tsv` and `dev.tsv` start with the train file's header line (its BOM included,
/// its line end read as Python reads it) and take each row, stripped and re-joined `label\tid1\tid2\ts1\ts2`, by whether
/// `[id1, id2]` is a line of the dev ids; `test.tsv` numbers the test rows under GLUE's header.
/// Returns (train, dev, test), or the first malformed row.
pub fn mrpc_split(train: &str, test: &str, dev_ids: &str) -> Result<[String; 3], String> {
    let dev: std::collections::HashSet<(&str, &str)> = dev_ids
        .lines()
        .filter_map(|l| l.trim().split_once('\t'))
        .collect();
    let mut lines = train.split_inclusive('\n');
    let first = lines.next().ok_or("msr_paraphrase_train.txt is empty")?;
    // Python's text mode reads `\r\n` as `\n`.
    let header = format!("{}\n", first.trim_end_matches(['\r', '\n']));
    let (mut train_tsv, mut dev_tsv) = (header.clone(), header);
    for (i, line) in lines.enumerate() {
        let [label, id1, id2, s1, s2] = five_fields(line)
            .ok_or_else(|| format!("msr_paraphrase_train.txt:{}: not 5 fields", i + 2))?;
        let row = format!("{label}\t{id1}\t{id2}\t{s1}\t{s2}\n");
        if dev.contains(&(id1, id2)) {
            dev_tsv.push_str(&row);
        } else {
            train_tsv.push_str(&row);
        }
    }
    let mut test_tsv = String::from("index\t#1 ID\t#2 ID\t#1 String\t#2 String\n");
    for (i, line) in test.lines().skip(1).enumerate() {
        let [_, id1, id2, s1, s2] = five_fields(line)
            .ok_or_else(|| format!("msr_paraphrase_test.txt:{}: not 5 fields", i + 2))?;
        test_tsv.push_str(&format!("{i}\t{id1}\t{id2}\t{s1}\t{s2}\n"));
    }
    Ok([train_tsv, dev_tsv, test_tsv])
}

/// Python's `row.strip().split('\t')` unpacked into five names.
fn five_fields(line: &str) -> Option<[&str; 5]> {
    let fields: Vec<&str> = line.trim().split('\t').collect();
    fields.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_glue_task_and_squad_has_a_data_set() {
        for task in crate::tasks::TASKS {
            let set = data_set(task.name).unwrap_or_else(|| panic!("{}", task.name));
            let names: Vec<&str> = set.files.iter().map(|f| f.name).collect();
            assert!(names.contains(&task.train_file), "{}", task.name);
            for (_, dev) in task.dev_files {
                assert!(names.contains(dev), "{}: {dev}", task.name);
            }
        }
        let mnli: Vec<&str> = data_set("mnli")
            .unwrap()
            .with_companions()
            .iter()
            .map(|d| d.name)
            .collect();
        assert_eq!(mnli, ["MNLI", "AX"]);
    }

    #[test]
    fn rows_and_questions_are_counted_as_the_official_counts_are() {
        assert_eq!(data_rows("h\na\nb", true), 2, "no final newline (CoLA)");
        assert_eq!(data_rows("a\r\nb\r\n\n", false), 2);
        let check = FileCheck::Rows {
            header: true,
            rows: 2,
        };
        assert!(check_rows_or_questions(check, b"h\na\nb\n").is_ok());
        assert!(
            check_rows_or_questions(check, b"h\na\n")
                .unwrap_err()
                .contains("1 rows")
        );
        let squad = br#"{"data": [{"paragraphs": [{"qas": [{}, {}]}, {"qas": [{}]}]}]}"#;
        assert!(check_rows_or_questions(FileCheck::Questions(3), squad).is_ok());
        assert!(check_rows_or_questions(FileCheck::Questions(4), squad).is_err());
        assert!(check_rows_or_questions(FileCheck::Questions(3), b"<html>").is_err());
    }

    #[test]
    fn mrpc_split_follows_glues_script() {
        let train = "\u{feff}Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\r\n\
                     1\t10\t11\tA .\tB .\r\n0\t12\t13\tC\tD \r\n1\t14\t15\tE\tF\n";
        let test = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t20\t21\tG\tH\n";
        let [train_tsv, dev_tsv, test_tsv] = mrpc_split(train, test, "12\t13\n").unwrap();
        let header = "\u{feff}Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n";
        assert_eq!(
            train_tsv,
            format!("{header}1\t10\t11\tA .\tB .\n1\t14\t15\tE\tF\n")
        );
        assert_eq!(dev_tsv, format!("{header}0\t12\t13\tC\tD\n"));
        assert_eq!(
            test_tsv,
            "index\t#1 ID\t#2 ID\t#1 String\t#2 String\n0\t20\t21\tG\tH\n"
        );
        assert!(
            mrpc_split("h\n1\t2\n", test, "")
                .unwrap_err()
                .contains(":2:")
        );
    }
}
