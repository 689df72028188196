//! `skiff-report`: renders run directories into summary pages.
//!
//! ```text
//! skiff-report render DIR   writes DIR/summary.md, DIR/timeline.svg and DIR/index.html
//! skiff-report index DIR    renders every run directory under DIR and writes
//!                           DIR/index.md and DIR/index.html listing them
//! skiff-report example DIR  writes a small example run into DIR and renders it
//! ```

use std::path::Path;
use std::process::ExitCode;

const USAGE: &str =
    "usage: skiff-report render RUN_DIRECTORY | index DIRECTORY | example DIRECTORY";

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let [command, directory] = arguments.as_slice() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let directory = Path::new(directory);
    match command.as_str() {
        "render" => render(directory),
        "example" => match skiff_reports::example::write_example_run(directory) {
            Ok(()) => render(directory),
            Err(error) => {
                eprintln!("skiff-report: {error}");
                ExitCode::FAILURE
            }
        },
        "index" => match skiff_reports::render_index(directory) {
            Ok(runs) => {
                for run in &runs {
                    if let Err(error) = &run.outcome {
                        eprintln!("skiff-report: {}: {error}", run.relative_path);
                    }
                }
                let page = directory.join(skiff_reports::HTML_FILE_NAME);
                println!("indexed {} runs in {}", runs.len(), page.display());
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("skiff-report: {error}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn render(directory: &Path) -> ExitCode {
    match skiff_reports::render(directory) {
        Ok(_) => {
            let page = directory.join(skiff_reports::HTML_FILE_NAME);
            println!("wrote {}", page.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("skiff-report: {error}");
            ExitCode::FAILURE
        }
    }
}
