//! The database workload, `--db-mode api`: spec §1.4 through the REST API, request for request,
//! with upstream defects fixed: `db_errors` counts successes too (B1) and setup reports how
//! many seed VMs it actually created (B13). Latencies are wall-clock, as upstream (B14), and
//! every operation also lands on the live `db.client.operation.duration` histogram. A
//! `db_errors` failure on a failed request is that request's (kind and reason recorded by
//! [`Vu::request`]); one on a response that arrived is tagged `check` or `body` with its reason
//! ([`super::failure::record_group`]).

use super::endpoints::{Endpoints, field, id_string, truthy};
use super::failure::{missing_field, record_group, wrong_status};
use super::{Req, Vu, Workload};
use crate::metrics::{Contains, DbSample, MetricId, MetricKind, Registry, Sample};
use bytes::Bytes;
use http::Method;
use std::time::{Duration, Instant};

pub struct DbWorkload {
    ep: Endpoints,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// VMs created by setup (upstream: 100).
    pub seed_vms: u32,
    db_errors: MetricId,
    query_latency: MetricId,
    write_latency: MetricId,
    read_latency: MetricId,
    queries: MetricId,
    writes: MetricId,
    reads: MetricId,
}

/// What kind of database work an operation stands for.
#[derive(Clone, Copy)]
enum Op {
    Read,
    Query,
    Write,
}

impl DbWorkload {
    pub fn new(ep: Endpoints, registry: &mut Registry) -> Self {
        Self {
            headers: ep.json_auth_headers(),
            ep,
            seed_vms: 100,
            db_errors: registry.declare("db_errors", MetricKind::Rate, Contains::Default),
            query_latency: registry.declare("db_query_latency", MetricKind::Trend, Contains::Time),
            write_latency: registry.declare("db_write_latency", MetricKind::Trend, Contains::Time),
            read_latency: registry.declare("db_read_latency", MetricKind::Trend, Contains::Time),
            queries: registry.declare("db_queries_total", MetricKind::Counter, Contains::Default),
            writes: registry.declare("db_writes_total", MetricKind::Counter, Contains::Default),
            reads: registry.declare("db_reads_total", MetricKind::Counter, Contains::Default),
        }
    }

    /// Sends one request, timing it on the wall clock like upstream.
    #[allow(clippy::too_many_arguments)]
    async fn op(
        &self,
        vu: &mut Vu,
        method: Method,
        path: &str,
        name: &str,
        template: &str,
        body: Option<&str>,
        sql: (&'static str, &'static str),
    ) -> (super::HttpResponse, f64) {
        let started = Instant::now();
        let r = vu
            .request(Req {
                method,
                url: self.ep.url(path),
                name,
                template,
                headers: &self.headers,
                body: body.map(|b| Bytes::from(b.to_string())),
            })
            .await;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let error = r
            .error
            .as_ref()
            .map(|(k, _)| *k)
            .or((r.status >= 400).then_some(crate::error::ErrorKind::Status));
        vu.record(Sample::Db(&DbSample {
            system: "novacron-api",
            operation: sql.0,
            collection: sql.1,
            error,
            seconds: ms / 1000.0,
            trace: None,
            counted_as: None,
        }));
        (r, ms)
    }

    fn account(&self, vu: &Vu, op: Op, ms: f64, n: f64) {
        vu.add(self.queries, n);
        match op {
            Op::Read => {
                vu.trend(self.read_latency, ms);
                vu.add(self.reads, n);
            }
            Op::Query => {
                vu.trend(self.query_latency, ms);
                vu.add(self.reads, n);
            }
            Op::Write => {
                vu.trend(self.write_latency, ms);
                vu.add(self.writes, n);
            }
        }
    }
}

impl Workload for DbWorkload {
    async fn setup(&self, vu: &mut Vu) -> anyhow::Result<()> {
        let mut created = 0;
        for i in 0..self.seed_vms {
            let body =
                format!(r#"{{"name":"seed-vm-{i}","cpu_cores":2,"memory_mb":4096,"disk_gb":50}}"#);
            let (r, _) = self
                .op(
                    vu,
                    Method::POST,
                    "/api/v1/vms",
                    "POST /api/v1/vms",
                    "/api/v1/vms",
                    Some(&body),
                    ("INSERT", "vms"),
                )
                .await;
            if r.status == 201 {
                created += 1;
            }
        }
        if created < self.seed_vms {
            tracing::warn!(
                created,
                wanted = self.seed_vms,
                "database setup created fewer seed VMs than asked"
            );
        }
        Ok(())
    }

    async fn iteration(&self, vu: &mut Vu) {
        let half = Duration::from_millis(500);
        // 1. simple read
        let (r, ms) = self
            .op(
                vu,
                Method::GET,
                "/api/v1/vms?limit=50",
                "GET /api/v1/vms?limit",
                "/api/v1/vms",
                None,
                ("SELECT", "vms"),
            )
            .await;
        let v = r.json();
        let ok = [
            vu.check("DB read status 200", r.status == 200),
            vu.check(
                "DB read has results",
                field(&v, "data").is_some_and(|d| d.is_array()),
            ),
            vu.latency_check("DB read < 200ms", ms < 200.0),
        ]
        .iter()
        .all(|b| *b);
        record_group(vu, self.db_errors, &r, ok, || match r.status {
            200 => missing_field("GET /api/v1/vms?limit", &r, "\"data\" array"),
            other => wrong_status("GET /api/v1/vms?limit", other, "200"),
        });
        self.account(vu, Op::Read, ms, 1.0);
        vu.sleep(half).await;

        // 2. complex query
        let (r, ms) = self
            .op(vu, Method::GET, "/api/v1/vms?include=metrics,tags,network&zone=us-west-1&status=running&sort=created_at&order=desc&limit=100", "GET /api/v1/vms?complex", "/api/v1/vms", None, ("SELECT", "vms"))
            .await;
        let ok = [
            vu.check("Complex query status 200", r.status == 200),
            vu.latency_check("Complex query < 300ms", ms < 300.0),
        ]
        .iter()
        .all(|b| *b);
        record_group(vu, self.db_errors, &r, ok, || {
            wrong_status("GET /api/v1/vms?complex", r.status, "200")
        });
        self.account(vu, Op::Query, ms, 1.0);
        vu.sleep(half).await;

        // 3. write (tags as an array, as upstream sends)
        let body = format!(
            r#"{{"name":"load-test-vm-{}-{}","cpu_cores":4,"memory_mb":8192,"disk_gb":100,"image":"ubuntu-22.04","zone":"us-west-1","tags":["load-test","automated"]}}"#,
            chrono::Utc::now().timestamp_millis(),
            vu.id
        );
        let (r, ms) = self
            .op(
                vu,
                Method::POST,
                "/api/v1/vms",
                "POST /api/v1/vms",
                "/api/v1/vms",
                Some(&body),
                ("INSERT", "vms"),
            )
            .await;
        let v = r.json();
        let ok = [
            vu.check("DB write status 201", r.status == 201),
            vu.check("DB write has ID", field(&v, "id").is_some()),
            vu.latency_check("DB write < 500ms", ms < 500.0),
        ]
        .iter()
        .all(|b| *b);
        record_group(vu, self.db_errors, &r, ok, || match r.status {
            201 => missing_field("POST /api/v1/vms", &r, "\"id\""),
            other => wrong_status("POST /api/v1/vms", other, "201"),
        });
        self.account(vu, Op::Write, ms, 1.0);
        let new_id = field(&v, "id").filter(|x| truthy(Some(x))).map(id_string);
        vu.sleep(half).await;

        // 4. update
        if let Some(id) = new_id {
            let (r, ms) = self
                .op(vu, Method::PATCH, &format!("/api/v1/vms/{id}"), "PATCH /api/v1/vms/{id}", "/api/v1/vms/{id}", Some(r#"{"cpu_cores":8,"memory_mb":16384,"tags":["load-test","automated","updated"]}"#), ("UPDATE", "vms"))
                .await;
            let ok = [
                vu.check("DB update status 200", r.status == 200),
                vu.latency_check("DB update < 400ms", ms < 400.0),
            ]
            .iter()
            .all(|b| *b);
            record_group(vu, self.db_errors, &r, ok, || {
                wrong_status("PATCH /api/v1/vms/{id}", r.status, "200")
            });
            self.account(vu, Op::Write, ms, 1.0);
        }
        vu.sleep(half).await;

        // 5. aggregate
        let (r, ms) = self
            .op(
                vu,
                Method::GET,
                "/api/v1/vms/stats/aggregate",
                "GET /api/v1/vms/stats/aggregate",
                "/api/v1/vms/stats/aggregate",
                None,
                ("SELECT", "vms"),
            )
            .await;
        let v = r.json();
        let ok = [
            vu.check("Aggregation query status 200", r.status == 200),
            vu.check("Aggregation has totals", field(&v, "total_vms").is_some()),
            vu.latency_check("Aggregation < 500ms", ms < 500.0),
        ]
        .iter()
        .all(|b| *b);
        record_group(vu, self.db_errors, &r, ok, || match r.status {
            200 => missing_field("GET /api/v1/vms/stats/aggregate", &r, "\"total_vms\""),
            other => wrong_status("GET /api/v1/vms/stats/aggregate", other, "200"),
        });
        self.account(vu, Op::Query, ms, 1.0);
        vu.sleep(half).await;

        // 6. search
        let (r, ms) = self
            .op(
                vu,
                Method::GET,
                "/api/v1/vms/search?q=load-test&limit=50",
                "GET /api/v1/vms/search",
                "/api/v1/vms/search",
                None,
                ("SELECT", "vms"),
            )
            .await;
        let ok = [
            vu.check("Search query status 200", r.status == 200),
            vu.latency_check("Search query < 400ms", ms < 400.0),
        ]
        .iter()
        .all(|b| *b);
        record_group(vu, self.db_errors, &r, ok, || {
            wrong_status("GET /api/v1/vms/search", r.status, "200")
        });
        self.account(vu, Op::Query, ms, 1.0);
        vu.sleep(half).await;

        // 7. batch transaction (upstream reuses the same three names every time)
        let body = r#"{"operations":[{"action":"create","data":{"name":"batch-vm-1","cpu_cores":2,"memory_mb":4096}},{"action":"create","data":{"name":"batch-vm-2","cpu_cores":2,"memory_mb":4096}},{"action":"create","data":{"name":"batch-vm-3","cpu_cores":2,"memory_mb":4096}}]}"#;
        let (r, ms) = self
            .op(
                vu,
                Method::POST,
                "/api/v1/vms/batch",
                "POST /api/v1/vms/batch",
                "/api/v1/vms/batch",
                Some(body),
                ("INSERT", "vms"),
            )
            .await;
        let ok = [
            vu.check("Transaction status 200", r.status == 200 || r.status == 201),
            vu.latency_check("Transaction < 1000ms", ms < 1000.0),
        ]
        .iter()
        .all(|b| *b);
        record_group(vu, self.db_errors, &r, ok, || {
            wrong_status("POST /api/v1/vms/batch", r.status, "200 or 201")
        });
        self.account(vu, Op::Write, ms, 3.0);
        vu.sleep(Duration::from_secs(1)).await;

        // 8. rapid reads
        for i in 0..5 {
            let (r, ms) = self
                .op(
                    vu,
                    Method::GET,
                    &format!("/api/v1/vms?offset={}&limit=10", i * 10),
                    "GET /api/v1/vms?offset",
                    "/api/v1/vms",
                    None,
                    ("SELECT", "vms"),
                )
                .await;
            let ok = vu.check("Rapid query OK", r.status == 200);
            record_group(vu, self.db_errors, &r, ok, || {
                wrong_status("GET /api/v1/vms?offset", r.status, "200")
            });
            self.account(vu, Op::Read, ms, 1.0);
            vu.sleep(Duration::from_millis(100)).await;
        }

        // 9.
        vu.sleep(Duration::from_secs(1)).await;
    }
}
