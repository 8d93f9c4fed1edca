//! Before the load: the pre-flight connection check of a direct-mode run, the error kinds and
//! reasons of database failures (with the URL's password cut out), and setup's schema and seed.

use super::{DbDirectWorkload, MIGRATOR, Vu, sql};
use crate::error::ErrorKind;
use crate::metrics::{DbSample, Sample};
use anyhow::Context;
use sqlx::ConnectOptions;
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// Replaces the password of every `scheme://user:password@host` in `s` with `***`.
pub(crate) fn redact_url(s: &str) -> String {
    crate::metrics::reasons::redact_userinfo(s)
}

/// `postgresql://host:port/dbname` of a database URL, without credentials or query.
pub(crate) fn display_target(url: &str) -> String {
    match PgConnectOptions::from_str(url) {
        Ok(o) => format!(
            "postgresql://{}:{}/{}",
            o.get_host(),
            o.get_port(),
            o.get_database().unwrap_or("")
        ),
        Err(_) => "postgresql://(invalid URL)".into(),
    }
}

/// The closed error kind of a failed acquire or statement (a metric label and the summary's
/// errors-by-kind key).
pub fn error_kind(e: &sqlx::Error) -> ErrorKind {
    match e {
        sqlx::Error::PoolTimedOut => ErrorKind::Timeout,
        sqlx::Error::Io(_) | sqlx::Error::PoolClosed => ErrorKind::Connect,
        sqlx::Error::Tls(_) => ErrorKind::Tls,
        sqlx::Error::Protocol(_) => ErrorKind::Protocol,
        _ => ErrorKind::Database,
    }
}

/// A failed statement's or connection's reason, on one line: the SQLSTATE code and the
/// server's message when the server answered (`42P01 relation "vms" does not exist`), else the
/// driver's text; `password` and URL passwords replaced with `***`.
pub(crate) fn driver_reason(e: &sqlx::Error, password: Option<&str>) -> String {
    let text = match e.as_database_error() {
        Some(d) => match d.code() {
            Some(code) => format!("{code} {}", d.message()),
            None => d.message().to_string(),
        },
        None => e.to_string(),
    };
    let mut text = redact_url(&text);
    if let Some(p) = password.filter(|p| !p.is_empty()) {
        text = text.replace(p, "***");
    }
    text
}

/// The flag (and variable) a database pre-flight error names.
const DATABASE_URL_FIELD: &str = "--database-url (DATABASE_URL)";

/// Opens one connection to `database_url` within `timeout` and closes it: the pre-flight of a
/// direct-mode run, so that an unreachable or misconfigured database stops the run at once with
/// a config error naming `--database-url (DATABASE_URL)`, the driver's reason (redacted: never
/// the password) and the fix — instead of every VU waiting 30 s for "pool timed out".
pub async fn preflight(
    database_url: &str,
    timeout: Duration,
) -> Result<(), crate::error::ConfigError> {
    use crate::error::ConfigError;
    let password = url::Url::parse(database_url)
        .ok()
        .and_then(|u| u.password().map(str::to_string));
    let password = password.as_deref();
    let options = PgConnectOptions::from_str(database_url).map_err(|e| {
        ConfigError::new(
            DATABASE_URL_FIELD,
            format!(
                "not a valid postgres:// URL: {}",
                driver_reason(&e, password)
            ),
            "give a URL like postgres://user:password@127.0.0.1:5432/novacron",
        )
    })?;
    let target = display_target(database_url);
    match tokio::time::timeout(timeout, options.connect()).await {
        Ok(Ok(conn)) => {
            // a polite goodbye, bounded too: the check already passed
            let _ = tokio::time::timeout(timeout, sqlx::Connection::close(conn)).await;
            Ok(())
        }
        Ok(Err(e)) => Err(ConfigError::new(
            DATABASE_URL_FIELD,
            format!(
                "cannot connect to {target}: {}",
                driver_reason(&e, password)
            ),
            preflight_fix(&e),
        )),
        Err(_) => Err(ConfigError::new(
            DATABASE_URL_FIELD,
            format!(
                "no connection to {target} within {:.0?} (no answer from the server)",
                timeout
            ),
            "check the host and port in the URL, and that the server accepts connections from \
             this machine (listen_addresses, pg_hba.conf, firewall)",
        )),
    }
}

/// What to do about a failed pre-flight connection, by SQLSTATE code or error class.
fn preflight_fix(e: &sqlx::Error) -> &'static str {
    let code = e
        .as_database_error()
        .and_then(|d| d.code().map(|c| c.into_owned()));
    match code.as_deref() {
        // invalid_password, invalid_authorization_specification
        Some("28P01" | "28000") => {
            "check the user and password in the URL (and the server's pg_hba.conf for this host)"
        }
        // invalid_catalog_name: the database does not exist
        Some("3D000") => {
            "create the database (createdb NAME) or name an existing one in the URL's path"
        }
        // too_many_connections
        Some("53300") => "the server is at max_connections: wait, or raise max_connections",
        Some(_) => "check the URL's user, database and options against the server",
        None => match e {
            sqlx::Error::Io(_) => {
                "start PostgreSQL, or fix the host and port in the URL \
                 (e.g. postgres://user:password@127.0.0.1:5432/novacron)"
            }
            sqlx::Error::Tls(_) => {
                "check sslmode and the server's certificate (sslrootcert) in the URL"
            }
            _ => "check that the URL points at a PostgreSQL server (host, port, sslmode)",
        },
    }
}

impl DbDirectWorkload {
    /// Creates the schema when `vms` is missing. A failure here (no connection, no rights) is a
    /// setup error: nothing could run.
    pub(super) async fn ensure_schema(&self, pool: &PgPool) -> anyhow::Result<()> {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass('vms') IS NOT NULL")
            .fetch_one(pool)
            .await
            .context("connecting and checking for the vms table")?;
        if !exists {
            MIGRATOR
                .run(pool)
                .await
                .context("applying the target's migrations (src/novacron/schema)")?;
        }
        Ok(())
    }

    /// Inserts `seed-vm-0..n-1` unless present; returns how many were new.
    pub(super) async fn seed(&self, pool: &PgPool) -> Result<u64, sqlx::Error> {
        sqlx::query(sql::SEED)
            .bind(i64::from(self.seed_vms))
            .bind(chrono::Utc::now().timestamp_millis())
            .execute(pool)
            .await
            .map(|d| d.rows_affected())
    }

    /// Setup's work on its own pool: schema, then seed VMs.
    pub(super) async fn setup_on(&self, vu: &Vu, pool: &PgPool) -> anyhow::Result<()> {
        if let Err(e) = self.ensure_schema(pool).await {
            return Err(anyhow::anyhow!(self.redact(&format!("{e:#}"))));
        }
        let started = Instant::now();
        let r = self.seed(pool).await;
        vu.record(Sample::Db(&DbSample {
            system: "postgresql",
            operation: "INSERT",
            collection: "vms",
            error: r.as_ref().err().map(error_kind),
            seconds: started.elapsed().as_secs_f64(),
            trace: None,
            counted_as: None,
        }));
        match r {
            Ok(created) => tracing::info!(
                created,
                wanted = self.seed_vms,
                target = %self.target,
                "database seeded (seed VMs already present are kept)"
            ),
            Err(e) => tracing::warn!(
                error = %self.redact(&e.to_string()),
                target = %self.target,
                "seeding the database failed; running the iterations anyway"
            ),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::pool::connection_broken;
    use super::*;
    use crate::metrics::Registry;

    #[test]
    fn redact_url_hides_passwords_only() {
        assert_eq!(
            redact_url("postgres://bob:s3cr%40t@db:5432/novacron?sslmode=disable"),
            "postgres://bob:***@db:5432/novacron?sslmode=disable"
        );
        assert_eq!(
            redact_url("error connecting to postgresql://u:p@h/x: refused"),
            "error connecting to postgresql://u:***@h/x: refused"
        );
        assert_eq!(redact_url("postgres://bob@db/x"), "postgres://bob@db/x");
        assert_eq!(redact_url("http://h:80/a"), "http://h:80/a");
        assert_eq!(redact_url("no url here"), "no url here");
        assert_eq!(
            redact_url("a=postgres://a:b@h1 b=postgres://c:d@h2"),
            "a=postgres://a:***@h1 b=postgres://c:***@h2"
        );
        assert_eq!(redact_url("x://"), "x://");
    }

    #[test]
    fn sqlx_errors_map_to_closed_kinds() {
        let io = || sqlx::Error::Io(std::io::Error::other("connection reset"));
        assert_eq!(error_kind(&sqlx::Error::PoolTimedOut), ErrorKind::Timeout);
        assert_eq!(error_kind(&io()), ErrorKind::Connect);
        assert_eq!(
            error_kind(&sqlx::Error::Protocol("bad".into())),
            ErrorKind::Protocol
        );
        assert_eq!(error_kind(&sqlx::Error::RowNotFound), ErrorKind::Database);
        // a broken connection is dropped, one after an SQL error is kept
        assert!(connection_broken(&io()));
        assert!(!connection_broken(&sqlx::Error::RowNotFound));
        assert!(!connection_broken(&sqlx::Error::PoolTimedOut));
    }

    #[test]
    fn the_shown_target_has_no_credentials() {
        assert_eq!(
            display_target("postgres://bob:pw@db.example:6543/novacron?sslmode=disable"),
            "postgresql://db.example:6543/novacron"
        );
    }

    #[test]
    fn bad_urls_are_reported_without_the_password() {
        let mut r = Registry::new();
        let e = DbDirectWorkload::new("postgres://u:hunter2@h:notaport/x", 4, &mut r)
            .err()
            .expect("invalid port");
        assert!(!format!("{e:#}").contains("hunter2"), "{e:#}");
    }
}
