//! One [`Summary`] per test, many writers: the JSON summary (with a k6 `--summary-export`
//! view), the per-second time series, the Markdown `SUMMARY.md`, and the console text.

pub mod json;
pub mod markdown;
pub mod summary;
pub mod timeseries;

pub use summary::{Summary, Verdict};
