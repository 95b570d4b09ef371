//! Where a task's data is looked for when no flag names it, in order: `$BERTVISION_DATA`, the
//! cache `bertvision fetch-data` fills (`<cache>/data`, beside `<cache>/models`), then a
//! `shared/data` folder beside or above the working directory. Each root has the layout
//! `fetch-data` writes: `glue/<Task>/<file>.tsv` and `squad2/*.json`. The first root holding the
//! task wins; a task found nowhere is an error naming the roots and the command that fetches it.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::tasks::{TaskKind, TaskSpec};

/// The environment variable naming a data root ahead of every other.
pub const DATA_ENV: &str = "BERTVISION_DATA";
/// The file `fetch-data` writes last into a folder it completed.
pub const DATA_MARKER: &str = ".bertvision-data.json";

/// The official SQuAD 2.0 files under `squad2/`, and the shared folder's 28-article dev subset.
pub const SQUAD_TRAIN: &str = "train-v2.0.json";
pub const SQUAD_DEV: &str = "dev-v2.0.json";
pub const SQUAD_SHARED_SUBSET: &str = "dev-v2.0-28-articles.json";

/// The fetched data's root in a cache folder.
pub fn data_cache_dir(cache_dir: &Path) -> PathBuf {
    cache_dir.join("data")
}

/// Where SQuAD 2.0 was found: the official train and dev files, or one file to split by article.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SquadFound {
    TrainDev { train: PathBuf, dev: PathBuf },
    Single(PathBuf),
}

/// The data roots in lookup order, each with the words that say where it came from.
#[derive(Debug, Clone)]
pub struct DataRoots {
    roots: Vec<(PathBuf, String)>,
}

impl DataRoots {
    /// `$BERTVISION_DATA`, `<cache>/data`, then `../shared/data` and `shared/data`.
    pub fn standard(cache_dir: &Path) -> Self {
        let mut roots = Vec::new();
        if let Some(dir) = std::env::var_os(DATA_ENV).filter(|d| !d.is_empty()) {
            roots.push((PathBuf::from(dir), format!("${DATA_ENV}")));
        }
        roots.push((data_cache_dir(cache_dir), "the cache".into()));
        for shared in ["../shared/data", "shared/data"] {
            roots.push((PathBuf::from(shared), "the shared folder".into()));
        }
        DataRoots { roots }
    }

    /// Explicit roots (tests, callers with their own order).
    pub fn new(roots: Vec<(PathBuf, String)>) -> Self {
        DataRoots { roots }
    }

    /// The GLUE folder (one sub-folder per task) of the first root that holds `task`'s files.
    pub fn glue_dir(&self, task: &TaskSpec) -> Result<PathBuf> {
        let holds = |glue: &Path| {
            let dir = glue.join(task.name);
            dir.join(task.train_file).is_file()
                || task.dev_files.iter().any(|(_, f)| dir.join(f).is_file())
        };
        self.roots
            .iter()
            .map(|(root, _)| root.join("glue"))
            .find(|glue| holds(glue))
            .ok_or_else(|| self.missing(task, "--data-dir <GLUE folder>"))
    }

    /// SQuAD 2.0 in the first root that has it: the official pair before the shared subset.
    pub fn squad(&self, task: &TaskSpec) -> Result<SquadFound> {
        debug_assert_eq!(task.kind, TaskKind::Span);
        for (root, _) in &self.roots {
            let dir = root.join("squad2");
            let (train, dev) = (dir.join(SQUAD_TRAIN), dir.join(SQUAD_DEV));
            if train.is_file() && dev.is_file() {
                return Ok(SquadFound::TrainDev { train, dev });
            }
            let subset = dir.join(SQUAD_SHARED_SUBSET);
            if subset.is_file() {
                return Ok(SquadFound::Single(subset));
            }
        }
        Err(self.missing(task, "--data <file> (or --train-file and --eval-file)"))
    }

    fn missing(&self, task: &TaskSpec, flag: &str) -> Error {
        let looked: Vec<String> = (self.roots.iter())
            .map(|(root, origin)| format!("{} ({origin})", root.display()))
            .collect();
        Error::usage(format!(
            "no {} data in {}: run `bertvision fetch-data --task {}`, or give {flag}",
            task.name,
            looked.join(", "),
            task.name
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::task;

    #[test]
    fn the_first_root_holding_the_task_wins() {
        let tmp = std::env::temp_dir().join(format!("bertvision-roots-{}", std::process::id()));
        let (a, b) = (tmp.join("a"), tmp.join("b"));
        std::fs::create_dir_all(a.join("glue/RTE")).unwrap();
        std::fs::create_dir_all(b.join("glue/RTE")).unwrap();
        std::fs::create_dir_all(b.join("squad2")).unwrap();
        std::fs::write(b.join("glue/RTE/dev.tsv"), "").unwrap();
        std::fs::write(b.join("squad2").join(SQUAD_SHARED_SUBSET), "").unwrap();
        let roots = DataRoots::new(vec![
            (a.clone(), "first".into()),
            (b.clone(), "second".into()),
        ]);
        let rte = task("RTE").unwrap();
        assert_eq!(
            roots.glue_dir(rte).unwrap(),
            b.join("glue"),
            "a's RTE folder is empty"
        );
        std::fs::write(a.join("glue/RTE/train.tsv"), "").unwrap();
        assert_eq!(roots.glue_dir(rte).unwrap(), a.join("glue"));
        let squad = task("SQuAD2").unwrap();
        let single = SquadFound::Single(b.join("squad2").join(SQUAD_SHARED_SUBSET));
        assert_eq!(roots.squad(squad).unwrap(), single);
        std::fs::create_dir_all(a.join("squad2")).unwrap();
        std::fs::write(a.join("squad2").join(SQUAD_TRAIN), "").unwrap();
        std::fs::write(a.join("squad2").join(SQUAD_DEV), "").unwrap();
        assert!(matches!(
            roots.squad(squad).unwrap(),
            SquadFound::TrainDev { .. }
        ));
        let message = roots
            .glue_dir(task("MRPC").unwrap())
            .unwrap_err()
            .to_string();
        assert!(message.contains("fetch-data --task MRPC"), "{message}");
        assert!(
            message.contains("(first)") && message.contains("(second)"),
            "{message}"
        );
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
