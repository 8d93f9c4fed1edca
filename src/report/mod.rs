//! One [`Summary`] per test, many writers: the JSON summary (with a k6 `--summary-export`
//! view), the per-second time series, the Markdown `SUMMARY.md`, the console text, the
//! self-contained `report.html` and `junit.xml`.

pub mod html;
pub mod json;
pub mod junit;
pub mod markdown;
pub mod summary;
pub mod timeseries;

pub use summary::{Summary, Verdict};
