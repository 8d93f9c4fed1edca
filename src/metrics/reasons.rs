//! Why operations failed: per error kind, the distinct failure messages and how often each was
//! seen ("TLS handshake with 127.0.0.1:8443: invalid peer certificate: UnknownIssuer" × 120).
//!
//! Kept apart from the metric series on purpose: messages are high-cardinality text, so they
//! never become labels. Each kind keeps at most [`MAX_MESSAGES_PER_KIND`] distinct messages;
//! later new messages are counted as `other_messages` so memory stays bounded however many
//! distinct errors a server produces. Messages are redacted ([`redact`]) before they are kept.

use crate::error::ErrorKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::RwLock;

/// Distinct messages kept per error kind (per recorder shard, and in a summary).
pub const MAX_MESSAGES_PER_KIND: usize = 16;
/// A message longer than this is cut (at a character boundary) before it is kept.
pub const MAX_MESSAGE_BYTES: usize = 300;

/// The messages of one error kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KindReasons {
    /// Distinct message → occurrences.
    pub messages: BTreeMap<String, u64>,
    /// Occurrences whose message was not kept (the kind already held its maximum).
    #[serde(default)]
    pub other_messages: u64,
}

/// Failure messages by error kind (kind names as in the summary's errors table).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ErrorReasons {
    pub kinds: BTreeMap<String, KindReasons>,
}

impl ErrorReasons {
    /// Counts one occurrence of `message` under `kind` (the message is redacted and cut here).
    pub fn add(&mut self, kind: ErrorKind, message: &str) {
        self.add_n(kind.as_str(), &clean(message), 1);
    }

    fn add_n(&mut self, kind: &str, message: &str, n: u64) {
        let k = match self.kinds.get_mut(kind) {
            Some(k) => k,
            None => self.kinds.entry(kind.to_string()).or_default(),
        };
        if let Some(c) = k.messages.get_mut(message) {
            *c += n;
        } else if k.messages.len() < MAX_MESSAGES_PER_KIND {
            k.messages.insert(message.to_string(), n);
        } else {
            k.other_messages += n;
        }
    }

    /// Adds another set (shards of a run, or summaries of a distributed run). When the union
    /// holds more than the bound, the least frequent messages move to `other_messages`.
    pub fn merge(&mut self, other: &ErrorReasons) {
        for (kind, theirs) in &other.kinds {
            let mine = self.kinds.entry(kind.clone()).or_default();
            for (m, n) in &theirs.messages {
                *mine.messages.entry(m.clone()).or_default() += n;
            }
            mine.other_messages += theirs.other_messages;
            if mine.messages.len() > MAX_MESSAGES_PER_KIND {
                let mut all: Vec<(String, u64)> =
                    std::mem::take(&mut mine.messages).into_iter().collect();
                all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                for (rank, (message, n)) in all.into_iter().enumerate() {
                    if rank < MAX_MESSAGES_PER_KIND {
                        mine.messages.insert(message, n);
                    } else {
                        mine.other_messages += n;
                    }
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    /// The `n` most frequent messages of a kind, most frequent first (ties by text).
    pub fn top(&self, kind: &str, n: usize) -> Vec<(&str, u64)> {
        let Some(k) = self.kinds.get(kind) else {
            return Vec::new();
        };
        let mut v: Vec<(&str, u64)> = k.messages.iter().map(|(m, c)| (m.as_str(), *c)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        v.truncate(n);
        v
    }
}

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Registers a secret (the API token, a database password) that [`redact`] replaces with
/// `***` wherever it appears. Empty strings are ignored.
pub fn register_secret(secret: &str) {
    if secret.is_empty() {
        return;
    }
    let mut s = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    if !s.iter().any(|x| x == secret) {
        s.push(secret.to_string());
    }
}

/// Removes secrets from a message: every registered secret, the password of
/// `scheme://user:password@host` URLs, and the values of `token=`, `access_token=`,
/// `api_key=` and `password=` query parameters.
pub fn redact(message: &str) -> String {
    let mut out = message.to_string();
    for s in SECRETS.read().unwrap_or_else(|e| e.into_inner()).iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "***");
        }
    }
    out = redact_userinfo(&out);
    for key in ["token=", "access_token=", "api_key=", "password="] {
        out = redact_param(&out, key);
    }
    out
}

/// Replaces the password of every `scheme://user:password@host` in `s` with `***`
/// (`postgres://bob:s3cr3t@db/x` → `postgres://bob:***@db/x`).
pub fn redact_userinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // the authority ends at the first '/', '?', '#', whitespace or quote
        let end = tail
            .find(|c: char| matches!(c, '/' | '?' | '#' | '"' | '\'') || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        let userinfo_end = authority.rfind('@');
        match userinfo_end.and_then(|at| authority[..at].find(':').map(|colon| (at, colon))) {
            Some((at, colon)) => {
                out.push_str(&authority[..colon]);
                out.push_str(":***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

fn redact_param(s: &str, key: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(key) {
        let boundary = i == 0 || matches!(rest.as_bytes()[i - 1], b'?' | b'&' | b' ');
        let (head, tail) = rest.split_at(i + key.len());
        out.push_str(head);
        if boundary {
            let end = tail
                .find(|c: char| c == '&' || c == '#' || c.is_whitespace() || c == '"')
                .unwrap_or(tail.len());
            if end > 0 {
                out.push_str("***");
            }
            rest = &tail[end..];
        } else {
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

/// Redacted, on one line, and at most [`MAX_MESSAGE_BYTES`] long.
fn clean(message: &str) -> String {
    let one_line: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut m = redact(one_line.trim());
    if m.len() > MAX_MESSAGE_BYTES {
        let mut cut = MAX_MESSAGE_BYTES;
        while !m.is_char_boundary(cut) {
            cut -= 1;
        }
        m.truncate(cut);
        m.push('…');
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_counted_per_kind_and_bounded() {
        let mut r = ErrorReasons::default();
        for i in 0..(MAX_MESSAGES_PER_KIND + 5) {
            r.add(
                ErrorKind::Connect,
                &format!("connect 127.0.0.1:{i}: refused"),
            );
        }
        r.add(ErrorKind::Connect, "connect 127.0.0.1:0: refused");
        r.add(ErrorKind::Tls, "unknown issuer");
        let c = &r.kinds["connect"];
        assert_eq!(c.messages.len(), MAX_MESSAGES_PER_KIND);
        assert_eq!(c.other_messages, 5);
        assert_eq!(c.messages["connect 127.0.0.1:0: refused"], 2);
        assert_eq!(
            r.top("connect", 1),
            vec![("connect 127.0.0.1:0: refused", 2)]
        );
        assert_eq!(r.top("tls", 3), vec![("unknown issuer", 1)]);
    }

    #[test]
    fn merge_keeps_the_most_frequent_and_counts_the_rest() {
        let mut a = ErrorReasons::default();
        let mut b = ErrorReasons::default();
        for i in 0..MAX_MESSAGES_PER_KIND {
            a.add(ErrorKind::Protocol, &format!("a{i}"));
            for _ in 0..3 {
                b.add(ErrorKind::Protocol, &format!("b{i}"));
            }
        }
        a.merge(&b);
        let p = &a.kinds["protocol"];
        assert_eq!(p.messages.len(), MAX_MESSAGES_PER_KIND);
        assert!(p.messages.keys().all(|m| m.starts_with('b')));
        assert_eq!(p.other_messages, MAX_MESSAGES_PER_KIND as u64);
        let total: u64 = p.messages.values().sum::<u64>() + p.other_messages;
        assert_eq!(total, 4 * MAX_MESSAGES_PER_KIND as u64);
    }

    #[test]
    fn secrets_and_credentials_are_redacted() {
        register_secret("s3cr3t-token-xyz");
        let m = redact(
            "GET ws://127.0.0.1:9/ws/realtime?token=abc&x=1 failed; auth s3cr3t-token-xyz; \
             postgres://nova:hunter2@127.0.0.1:5432/db refused",
        );
        assert!(!m.contains("abc"), "{m}");
        assert!(!m.contains("s3cr3t-token-xyz"), "{m}");
        assert!(!m.contains("hunter2"), "{m}");
        assert!(m.contains("token=***&x=1"), "{m}");
        assert!(m.contains("postgres://nova:***@127.0.0.1:5432/db"), "{m}");
    }

    #[test]
    fn long_and_multi_line_messages_are_cut_to_one_line() {
        let mut r = ErrorReasons::default();
        r.add(
            ErrorKind::Body,
            &format!("line1\nline2 {}", "é".repeat(400)),
        );
        let (m, _) = r.top("body", 1)[0];
        assert!(!m.contains('\n'));
        assert!(m.len() <= MAX_MESSAGE_BYTES + '…'.len_utf8());
    }
}
