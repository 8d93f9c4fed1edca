//! Durations as users write them, parsed in one place for the command line, scenario files,
//! thresholds (`delayAbortEval`) and the reference target's flags: k6's syntax (`30s`,
//! `1m30s`, `2h`, `500ms`, or a bare number of milliseconds).

use crate::error::ConfigError;
use std::time::Duration;

/// Parses a k6 duration: `30s`, `1m30s`, `2h`, `500ms`, or a bare number of milliseconds.
pub fn parse(s: &str, field: &str) -> Result<Duration, ConfigError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(ConfigError::new(
            field,
            "empty duration",
            "write a duration like 30s, 1m30s or 500ms",
        ));
    }
    if let Ok(ms) = t.parse::<f64>() {
        if ms < 0.0 || !ms.is_finite() {
            return Err(ConfigError::new(
                field,
                format!("'{s}' is negative"),
                "durations must be >= 0",
            ));
        }
        return Ok(Duration::from_secs_f64(ms / 1000.0));
    }
    // humantime wants spaces between units only optionally; k6 writes "1m30s".
    humantime::parse_duration(t).map_err(|e| {
        ConfigError::new(
            field,
            format!("'{s}' is not a duration ({e})"),
            "write a duration like 30s, 1m30s, 2h or 500ms",
        )
    })
}

/// A clap value parser for flags that take a duration (the reference target's).
pub(crate) fn parse_flag(s: &str) -> Result<Duration, String> {
    parse(s, "duration")
        .map_err(|e| format!("{} (expected a duration such as 20ms, 1s or 2m)", e.problem))
}

/// A duration as k6 writes it in summaries: `1m30s`, `500ms`.
pub fn format(d: Duration) -> String {
    humantime::format_duration(d).to_string().replace(' ', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_k6s() {
        assert_eq!(parse("30s", "f").unwrap(), Duration::from_secs(30));
        assert_eq!(parse("1m30s", "f").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("500ms", "f").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("250", "f").unwrap(), Duration::from_millis(250));
        let e = parse("30 parsecs", "scenarios.x.duration").unwrap_err();
        assert_eq!(e.field, "scenarios.x.duration");
    }

    #[test]
    fn flags_and_formatting() {
        assert_eq!(parse_flag("20ms"), Ok(Duration::from_millis(20)));
        assert!(
            parse_flag("soon")
                .unwrap_err()
                .contains("expected a duration")
        );
        assert_eq!(format(Duration::from_secs(90)), "1m30s");
    }
}
