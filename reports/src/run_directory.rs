//! Reading a run directory, writing its report, and indexing a tree of run directories.
//!
//! A run directory holds `settings.json`, `history.jsonl` and `verdict.json`, and maybe
//! other top-level `*.json` files (such as `liveness.json`), which the page shows raw.
//! Rendering adds `summary.md`, `timeline.svg` and `index.html` beside them.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use skiff_checker::{History, HistoryError, Verdict};

use crate::document::{to_html, to_markdown, Block, LinkedRow};
use crate::summary::ExtraDocument;
use crate::{render_with_extras, RenderedReport};

/// The run's drawn settings.
pub const SETTINGS_FILE_NAME: &str = "settings.json";
/// The recorded history, one event per line.
pub const HISTORY_FILE_NAME: &str = "history.jsonl";
/// The checker's verdict.
pub const VERDICT_FILE_NAME: &str = "verdict.json";
/// The Markdown summary page, written by [`crate::render`].
pub const SUMMARY_FILE_NAME: &str = "summary.md";
/// The timeline picture, written by [`crate::render`].
pub const TIMELINE_FILE_NAME: &str = crate::document::TIMELINE_FILE_NAME;
/// The HTML page embedding both, written by [`crate::render`] and [`render_index`].
pub const HTML_FILE_NAME: &str = "index.html";
/// The Markdown index of many runs, written by [`render_index`].
pub const INDEX_MARKDOWN_FILE_NAME: &str = "index.md";

/// How deep below the index root run directories are looked for.
pub const INDEX_DEPTH_MAX: usize = 4;
/// How many run directories an index lists at most.
pub const INDEX_RUNS_MAX: usize = 10_000;
/// How many extra JSON files of one run directory are shown at most.
pub const EXTRA_FILES_MAX: usize = 16;

/// Why a report could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A JSON file (settings, verdict, extra) is not valid for its purpose.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// The history file is not a valid history.
    #[error("{path}: {source}")]
    History {
        /// The file.
        path: PathBuf,
        /// The history error.
        source: HistoryError,
    },
}

fn read_text(path: &Path) -> Result<String, ReportError> {
    fs::read_to_string(path).map_err(|source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write_text(path: &Path, text: &str) -> Result<(), ReportError> {
    fs::write(path, text).map_err(|source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_json<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, ReportError> {
    serde_json::from_str(text).map_err(|source| ReportError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a run directory, renders its report and writes `summary.md`, `timeline.svg` and
/// `index.html` into it.
pub fn render(run_directory: &Path) -> Result<RenderedReport, ReportError> {
    let settings_path = run_directory.join(SETTINGS_FILE_NAME);
    let settings: Value = parse_json(&settings_path, &read_text(&settings_path)?)?;
    let history_path = run_directory.join(HISTORY_FILE_NAME);
    let history = History::from_json_lines(&read_text(&history_path)?).map_err(|source| {
        ReportError::History {
            path: history_path.clone(),
            source,
        }
    })?;
    let verdict_path = run_directory.join(VERDICT_FILE_NAME);
    let verdict_text = read_text(&verdict_path)?;
    let verdict: Verdict = parse_json(&verdict_path, &verdict_text)?;
    let mut extras = verdict_extra_fields(&parse_json(&verdict_path, &verdict_text)?);
    extras.extend(extra_files(run_directory)?);
    let report = render_with_extras(&settings, &history, &verdict, &extras);
    write_text(&run_directory.join(SUMMARY_FILE_NAME), &report.markdown)?;
    write_text(&run_directory.join(TIMELINE_FILE_NAME), &report.svg)?;
    write_text(&run_directory.join(HTML_FILE_NAME), &report.html)?;
    Ok(report)
}

/// Top-level fields of `verdict.json` that a [`Verdict`] does not have (a `liveness`
/// result, for instance), shown raw so nothing recorded is hidden.
fn verdict_extra_fields(verdict: &Value) -> Vec<ExtraDocument> {
    const VERDICT_FIELDS: [&str; 3] = ["valid", "statistics", "anomalies"];
    let Some(map) = verdict.as_object() else {
        return Vec::new();
    };
    let mut extras: Vec<ExtraDocument> = map
        .iter()
        .filter(|(key, _)| !VERDICT_FIELDS.contains(&key.as_str()))
        .map(|(key, value)| ExtraDocument {
            name: format!("{VERDICT_FILE_NAME}: {key}"),
            value: value.clone(),
        })
        .collect();
    extras.sort_by(|left, right| left.name.cmp(&right.name));
    extras
}

/// Every other top-level `*.json` file of the run directory, sorted by name.
fn extra_files(run_directory: &Path) -> Result<Vec<ExtraDocument>, ReportError> {
    let entries = fs::read_dir(run_directory).map_err(|source| ReportError::Io {
        path: run_directory.to_path_buf(),
        source,
    })?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| name.ends_with(".json"))
        .filter(|name| name != SETTINGS_FILE_NAME && name != VERDICT_FILE_NAME)
        .collect();
    names.sort();
    names.truncate(EXTRA_FILES_MAX);
    let mut extras = Vec::new();
    for name in names {
        let path = run_directory.join(&name);
        let value: Value = parse_json(&path, &read_text(&path)?)?;
        extras.push(ExtraDocument { name, value });
    }
    Ok(extras)
}

/// One run found by [`render_index`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedRun {
    /// The run directory, relative to the index root, with `/` separators.
    pub relative_path: String,
    /// The verdict, or why it could not be rendered.
    pub outcome: Result<IndexedVerdict, String>,
}

/// What the index shows of a run's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedVerdict {
    /// Whether the run was valid.
    pub valid: bool,
    /// The anomaly kinds found, with counts, in report order.
    pub anomalies: Vec<(String, u64)>,
    /// The run's seed, when its settings have one.
    pub seed: Option<String>,
}

/// Renders every run directory (a directory holding `verdict.json`) under `root`, at
/// most [`INDEX_DEPTH_MAX`] levels down, and writes `index.md` and `index.html` listing
/// them with their verdicts. A run that fails to render is listed with its error.
pub fn render_index(root: &Path) -> Result<Vec<IndexedRun>, ReportError> {
    // The root itself is never a run: its index.html is the index's own page.
    let mut directories = Vec::new();
    for subdirectory in subdirectories(root)? {
        find_run_directories(&subdirectory, 1, &mut directories)?;
    }
    directories.sort();
    directories.truncate(INDEX_RUNS_MAX);
    let mut runs = Vec::new();
    for directory in directories {
        let relative_path = directory
            .strip_prefix(root)
            .unwrap_or(&directory)
            .components()
            .map(|component| component.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        let outcome = render(&directory)
            .and_then(|_| indexed_verdict(&directory))
            .map_err(|error| error.to_string());
        runs.push(IndexedRun {
            relative_path,
            outcome,
        });
    }
    let blocks = index_blocks(&runs);
    write_text(&root.join(INDEX_MARKDOWN_FILE_NAME), &to_markdown(&blocks))?;
    write_text(&root.join(HTML_FILE_NAME), &to_html(&blocks, ""))?;
    Ok(runs)
}

fn find_run_directories(
    directory: &Path,
    depth: usize,
    found: &mut Vec<PathBuf>,
) -> Result<(), ReportError> {
    if directory.join(VERDICT_FILE_NAME).is_file() {
        found.push(directory.to_path_buf());
        return Ok(());
    }
    if depth >= INDEX_DEPTH_MAX {
        return Ok(());
    }
    for subdirectory in subdirectories(directory)? {
        find_run_directories(&subdirectory, depth + 1, found)?;
    }
    Ok(())
}

fn subdirectories(directory: &Path) -> Result<Vec<PathBuf>, ReportError> {
    let entries = fs::read_dir(directory).map_err(|source| ReportError::Io {
        path: directory.to_path_buf(),
        source,
    })?;
    let mut subdirectories: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
        .map(|entry| entry.path())
        .collect();
    subdirectories.sort();
    Ok(subdirectories)
}

fn indexed_verdict(directory: &Path) -> Result<IndexedVerdict, ReportError> {
    let verdict_path = directory.join(VERDICT_FILE_NAME);
    let verdict: Verdict = parse_json(&verdict_path, &read_text(&verdict_path)?)?;
    let settings_path = directory.join(SETTINGS_FILE_NAME);
    let settings: Value = parse_json(&settings_path, &read_text(&settings_path)?)?;
    let seed = settings.get("seed").map(|seed| match seed {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    });
    Ok(IndexedVerdict {
        valid: verdict.valid,
        anomalies: verdict
            .anomalies
            .iter()
            .map(|(kind, report)| (kind.name().to_string(), report.count))
            .collect(),
        seed,
    })
}

fn verdict_cell(outcome: &Result<IndexedVerdict, String>) -> (String, String, String) {
    match outcome {
        Ok(verdict) => {
            let anomalies: Vec<String> = verdict
                .anomalies
                .iter()
                .map(|(kind, count)| format!("{kind} ({count})"))
                .collect();
            (
                if verdict.valid { "VALID" } else { "INVALID" }.to_string(),
                verdict.seed.clone().unwrap_or_default(),
                anomalies.join(", "),
            )
        }
        Err(error) => ("ERROR".to_string(), String::new(), error.clone()),
    }
}

fn index_blocks(runs: &[IndexedRun]) -> Vec<Block> {
    let not_valid = runs
        .iter()
        .filter(|run| !matches!(&run.outcome, Ok(verdict) if verdict.valid))
        .count();
    let rows = runs
        .iter()
        .map(|run| {
            let (verdict, seed, anomalies) = verdict_cell(&run.outcome);
            LinkedRow {
                markdown_target: format!("{}/{SUMMARY_FILE_NAME}", run.relative_path),
                html_target: format!("{}/{HTML_FILE_NAME}", run.relative_path),
                cells: vec![run.relative_path.clone(), verdict, seed, anomalies],
            }
        })
        .collect();
    vec![
        Block::Heading {
            level: 1,
            text: format!("Skiff runs: {} runs, {not_valid} not valid", runs.len()),
        },
        Block::LinkedTable {
            header: vec![
                "run".into(),
                "verdict".into(),
                "seed".into(),
                "anomalies".into(),
            ],
            rows,
        },
    ]
}
