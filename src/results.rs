//! The results folder (`results/<UTC timestamp>/`): creating it, writing every file of a run
//! (per-test JSON summaries, SUMMARY.md, junit.xml, report.html) and reading summaries back
//! for `novaload report`, `merge` and `compare`, which never go through a live session.

use crate::error::ConfigError;
use crate::report::{Summary, Verdict, json, markdown};
use anyhow::Context;
use std::path::{Path, PathBuf};

/// Creates `base/<UTC timestamp>/`, never reusing an existing folder.
pub(crate) fn create_results_dir(base: &Path) -> Result<PathBuf, ConfigError> {
    let stamp = chrono::Utc::now().format("%Y%m%d_%H%M%S").to_string();
    let fix = "pass --out DIR with a directory you can write to";
    std::fs::create_dir_all(base).map_err(|e| {
        ConfigError::new(
            "--out",
            format!("cannot create {}: {e}", base.display()),
            fix,
        )
    })?;
    for n in 0..1000 {
        let dir = if n == 0 {
            base.join(&stamp)
        } else {
            base.join(format!("{stamp}-{n}"))
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(ConfigError::new(
                    "--out",
                    format!("cannot create {}: {e}", dir.display()),
                    fix,
                ));
            }
        }
    }
    Err(ConfigError::new(
        "--out",
        "too many runs started this second",
        fix,
    ))
}

/// Writes the files over all tests: SUMMARY.md, and `junit.xml` / `report.html` when asked.
pub(crate) fn write_overview(
    dir: &Path,
    summaries: &[Summary],
    stems: &[String],
    html: bool,
    junit: bool,
) -> anyhow::Result<()> {
    std::fs::write(dir.join("SUMMARY.md"), markdown::render(summaries))
        .context("writing SUMMARY.md")?;
    write_reports(dir, summaries, stems, html, junit)
}

/// Writes `<stem>_summary.json` (write-then-rename).
pub(crate) fn write_summary(dir: &Path, stem: &str, s: &Summary) -> anyhow::Result<()> {
    let text = json::summary_file(s)?;
    let path = dir.join(format!("{stem}_summary.json"));
    // write-then-rename so a reader never sees half a summary
    let tmp = dir.join(format!(".{stem}_summary.json.tmp"));
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Writes `report.html` (summaries plus each test's `<stem>.json` time series) and `junit.xml`
/// next to SUMMARY.md.
pub(crate) fn write_reports(
    dir: &Path,
    summaries: &[Summary],
    stems: &[String],
    html: bool,
    junit: bool,
) -> anyhow::Result<()> {
    use crate::report::{html as html_report, junit as junit_report, timeseries};
    if junit {
        std::fs::write(dir.join("junit.xml"), junit_report::render(summaries))
            .context("writing junit.xml")?;
    }
    if html {
        let series: Vec<_> = summaries
            .iter()
            .zip(stems)
            .map(|(s, stem)| {
                let path = dir.join(format!("{stem}.json"));
                let lines = timeseries::read_metrics(&path, &html_report::plotted_metric)
                    .unwrap_or_default();
                (s.test.clone(), lines)
            })
            .collect();
        std::fs::write(
            dir.join("report.html"),
            html_report::render(summaries, &series),
        )
        .context("writing report.html")?;
    }
    Ok(())
}

/// Reads every `*_summary.json` of a results folder (in test order) with their file stems.
pub fn read_results(dir: &Path) -> anyhow::Result<(Vec<Summary>, Vec<String>)> {
    let mut summaries = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with("_summary.json"))
        })
        .collect();
    anyhow::ensure!(
        !entries.is_empty(),
        "{} holds no *_summary.json files; give a results/<timestamp> folder",
        dir.display()
    );
    entries.sort_by_key(|p| order_of(p));
    let mut stems = Vec::new();
    for p in entries {
        summaries.push(json::read_summary(&p)?);
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        stems.push(name.trim_end_matches("_summary.json").to_string());
    }
    Ok((summaries, stems))
}

/// `novaload report DIR`: re-renders SUMMARY.md and junit.xml from the JSON summaries.
pub fn report(dir: &Path) -> anyhow::Result<Verdict> {
    report_with(dir, false)
}

/// `novaload report DIR [--html]`: [`report`], plus report.html (with the time series) when
/// `html` is set.
pub fn report_with(dir: &Path, html: bool) -> anyhow::Result<Verdict> {
    let (summaries, stems) = read_results(dir)?;
    write_overview(dir, &summaries, &stems, html, true)?;
    Ok(markdown::overall(&summaries))
}

fn order_of(p: &Path) -> (usize, String) {
    let n = p
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_string();
    let rank = ["api_", "dwcp_", "websocket_", "database_"]
        .iter()
        .position(|s| n.starts_with(s))
        .unwrap_or(9);
    (rank, n)
}

/// `--results-dir`: exactly this folder (created), which must not hold results yet.
pub(crate) fn exact_results_dir(d: &Path) -> Result<PathBuf, ConfigError> {
    let fix = "give an empty or new folder";
    std::fs::create_dir_all(d).map_err(|e| {
        ConfigError::new(
            "--results-dir",
            format!("cannot create {}: {e}", d.display()),
            fix,
        )
    })?;
    let used = std::fs::read_dir(d)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().ends_with("_summary.json"))
        })
        .unwrap_or(false);
    if used {
        return Err(ConfigError::new(
            "--results-dir",
            format!("{} already holds results", d.display()),
            fix,
        ));
    }
    Ok(d.to_path_buf())
}
