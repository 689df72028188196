//! # skiff-reports: one run's recorded output as a page a person reads at a glance
//!
//! The simulator (`skiff-sim`) and the real-cluster tests each leave a *run directory*
//! behind. This crate turns it into a summary page: the verdict first, the command that
//! reproduces the run, the statistics, a timeline picture of every operation and fault,
//! each anomaly with the history events it involves, the fault log and the settings.
//!
//! ```text
//!  run directory                                    run directory (after render)
//!  ├── settings.json ──┐                            ├── summary.md    Markdown page
//!  ├── history.jsonl ──┼─► render_from ─► Block[] ─►├── index.html    the same page, with
//!  ├── verdict.json ───┘        │       (summary.rs)│                 the SVG inline
//!  └── *.json (extra, raw) ─────┤                   └── timeline.svg
//!                               └──► render_timeline (timeline.rs) ──┘
//! ```
//!
//! ## Rendering a run directory
//!
//! ```text
//! cargo run -p skiff-reports --bin skiff-report -- render reports/runs/seed-42
//! cargo run -p skiff-reports --bin skiff-report -- index reports/runs
//! cargo run -p skiff-reports --bin skiff-report -- example reports/runs/example
//! ```
//!
//! Then open `reports/runs/seed-42/index.html` in a browser (it is self-contained: no
//! JavaScript, no external assets), or read `summary.md` in any Markdown viewer, which
//! shows `timeline.svg` beside it. `index` renders every run directory below the root and
//! writes `index.md` and `index.html` listing them with their verdicts. `example` writes
//! the small [`example`] run (a crash, a partition, lost writes, a duplicate...) into a
//! directory and renders it, to see what a report looks like.
//!
//! ## Rendering from memory
//!
//! ```
//! use skiff_checker::{check, CheckOptions, History, Op, Outcome, Process};
//!
//! let mut history = History::new();
//! let send = |offset| Op::Send {
//!     topic: "t".into(), partition: Some(0), key: None,
//!     value: 7.into(), idempotent: true, offset,
//! };
//! let id = history.invoke(1, 1_000_000, send(None));
//! history.complete(id, 3_000_000, Outcome::Ok(send(Some(0))));
//! history.record(Process::Nemesis, 4_000_000, Op::Crash { node: "n1".into() });
//! let verdict = check(&history, &CheckOptions::default());
//!
//! let settings = serde_json::json!({"seed": 42, "reproduce": "skiff-sim --seed 42"});
//! let report = skiff_reports::render_from(&settings, &history, &verdict);
//! // Before the final drain, an unread acknowledged send is expected, so not fatal.
//! assert!(report.markdown.starts_with("# VALID; not fatal: unseen\n"));
//! assert!(report.markdown.contains("skiff-sim --seed 42"));
//! assert!(report.svg.contains("crash n1"));
//! assert!(report.html.contains("<svg"));
//! ```
//!
//! ## Reading the timeline
//!
//! One lane per process, the nemesis on top. Each operation is a bar from its invocation
//! to its completion, so a long bar is a slow operation: green `ok`, red `fail`, orange
//! `info` (indeterminate), gray never completed (drawn to the end). A crash is a red band
//! across the whole picture from the crash to the node's restart, any other fault a purple
//! band from the fault to its heal; a fault never healed runs to the end. Below, each send
//! (dot) and poll (square) is plotted at its invocation time by its latency in
//! milliseconds, on a log scale. Hovering over a bar or band in a browser shows what it is.
//! Above [`TIMELINE_OPERATIONS_MAX`] client operations, every k-th is drawn, and both the
//! picture and the page say so.
//!
//! Everything is deterministic: the same inputs give the same bytes, so reports can be
//! pinned by snapshot tests and compared across runs.

mod document;
pub mod example;
mod operations;
mod run_directory;
mod summary;
mod timeline;

#[cfg(test)]
mod snapshot_tests;

use serde_json::Value;
use skiff_checker::{History, Verdict};

pub use run_directory::{
    render, render_index, IndexedRun, IndexedVerdict, ReportError, EXTRA_FILES_MAX,
    HISTORY_FILE_NAME, HTML_FILE_NAME, INDEX_DEPTH_MAX, INDEX_MARKDOWN_FILE_NAME, INDEX_RUNS_MAX,
    SETTINGS_FILE_NAME, SUMMARY_FILE_NAME, TIMELINE_FILE_NAME, VERDICT_FILE_NAME,
};
pub use timeline::{
    render_timeline, Timeline, TIMELINE_CLIENT_LANES_MAX, TIMELINE_NEMESIS_OPERATIONS_MAX,
    TIMELINE_OPERATIONS_MAX,
};

/// One run's report in its three forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedReport {
    /// The summary page as Markdown (`summary.md`), linking to `timeline.svg`.
    pub markdown: String,
    /// The timeline picture (`timeline.svg`).
    pub svg: String,
    /// The summary page as one self-contained HTML page with the SVG inline (`index.html`).
    pub html: String,
}

/// Renders a report from a run's settings, history and verdict, touching no file.
pub fn render_from(settings: &Value, history: &History, verdict: &Verdict) -> RenderedReport {
    render_with_extras(settings, history, verdict, &[])
}

/// Renders a report with extra JSON documents shown raw at the end of the page.
pub(crate) fn render_with_extras(
    settings: &Value,
    history: &History,
    verdict: &Verdict,
    extras: &[summary::ExtraDocument],
) -> RenderedReport {
    let timeline = render_timeline(history);
    let blocks = summary::page(&summary::PageInputs {
        settings,
        history,
        verdict,
        timeline: &timeline,
        extras,
    });
    let markdown = document::to_markdown(&blocks);
    let html = document::to_html(&blocks, &timeline.svg);
    RenderedReport {
        markdown,
        svg: timeline.svg,
        html,
    }
}
