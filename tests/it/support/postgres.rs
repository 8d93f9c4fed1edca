//! The PostgreSQL server of the test command (`NOVALOAD_TEST_POSTGRES_URL`, a throwaway cluster
//! `scripts/test.sh` starts) and throwaway databases on it.

use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// The admin URL from `NOVALOAD_TEST_POSTGRES_URL`. Unset under `CI` is a failure (the test
/// command starts a server); elsewhere it is `None`, after a line saying what is skipped.
pub fn admin_url(skipped: &str) -> Option<String> {
    match std::env::var("NOVALOAD_TEST_POSTGRES_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            if std::env::var_os("CI").is_some() {
                panic!("NOVALOAD_TEST_POSTGRES_URL not set: run scripts/test.sh");
            }
            eprintln!("skip: {skipped} (NOVALOAD_TEST_POSTGRES_URL not set; run scripts/test.sh)");
            None
        }
    }
}

/// A throwaway database, optionally owned by a fresh role with a password; dropped (with its
/// role) by [`TestDb::drop_db`].
pub struct TestDb {
    admin: String,
    pub name: String,
    role: Option<String>,
    /// The database's URL: the admin's credentials, or the role's when there is one.
    pub url: String,
}

impl TestDb {
    pub async fn create(admin: &str, password: Option<&str>) -> TestDb {
        let name = format!("novaload_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(admin)
            .await
            .expect("connect to NOVALOAD_TEST_POSTGRES_URL");
        let mut url = url::Url::parse(admin).expect("postgres URL");
        let role = match password {
            Some(pw) => {
                let role = format!("{name}_role");
                sqlx::query(AssertSqlSafe(format!(
                    "CREATE ROLE {role} LOGIN PASSWORD '{pw}'"
                )))
                .execute(&mut conn)
                .await
                .unwrap();
                url.set_username(&role).unwrap();
                url.set_password(Some(pw)).unwrap();
                Some(role)
            }
            None => None,
        };
        let owner = role
            .as_ref()
            .map(|r| format!(" OWNER {r}"))
            .unwrap_or_default();
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}{owner}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        conn.close().await.ok();
        url.set_path(&format!("/{name}"));
        TestDb {
            admin: admin.into(),
            name,
            role,
            url: url.to_string(),
        }
    }

    /// A superuser connection to this database.
    pub async fn conn(&self) -> PgConnection {
        let mut u = url::Url::parse(&self.admin).unwrap();
        u.set_path(&format!("/{}", self.name));
        PgConnection::connect(u.as_str()).await.unwrap()
    }

    /// The one value `q` selects, over a superuser connection.
    pub async fn scalar(&self, q: &str) -> i64 {
        let mut c = self.conn().await;
        let v = sqlx::query_scalar(AssertSqlSafe(q.to_string()))
            .fetch_one(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{q}: {e}"));
        c.close().await.ok();
        v
    }

    pub async fn drop_db(self) {
        if let Ok(mut c) = PgConnection::connect(&self.admin).await {
            let _ = sqlx::query(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .execute(&mut c)
            .await;
            if let Some(r) = &self.role {
                let _ = sqlx::query(AssertSqlSafe(format!("DROP ROLE IF EXISTS {r}")))
                    .execute(&mut c)
                    .await;
            }
        }
    }
}
