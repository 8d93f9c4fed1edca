//! The REST API workload: spec §1.1, request for request (endpoints, bodies, check names,
//! custom metrics, think times), with upstream defect B1 fixed: the `errors` Rate records a
//! success for every check group that passes, so it reads as a real error percentage.
//!
//! Every `errors` failure is explained: a group that fails on a failed request is that
//! request's failure (counted and given its reason by [`Vu::request`]); one that fails on a
//! response that arrived (an unexpected 2xx/3xx status, a body without the field) is tagged
//! `check` or `body` and its reason recorded ([`super::failure::record_group`]).

use super::endpoints::{Endpoints, field, id_string, truthy};
use super::failure::{missing_field, record_group, wrong_status};
use super::{Req, Vu, Workload};
use crate::metrics::{Contains, MetricId, MetricKind, Registry};
use bytes::Bytes;
use http::Method;
use rand::Rng;
use std::time::{Duration, Instant};

pub struct ApiWorkload {
    ep: Endpoints,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
    errors: MetricId,
    api_latency: MetricId,
    vm_creation_time: MetricId,
    failed_requests: MetricId,
}

impl ApiWorkload {
    pub fn new(ep: Endpoints, registry: &mut Registry) -> Self {
        Self {
            headers: ep.json_auth_headers(),
            ep,
            errors: registry.declare("errors", MetricKind::Rate, Contains::Default),
            api_latency: registry.declare("api_latency", MetricKind::Trend, Contains::Time),
            vm_creation_time: registry.declare(
                "vm_creation_time",
                MetricKind::Trend,
                Contains::Time,
            ),
            failed_requests: registry.declare(
                "failed_requests",
                MetricKind::Counter,
                Contains::Default,
            ),
        }
    }

    async fn send(
        &self,
        vu: &mut Vu,
        method: Method,
        path: &str,
        name: &str,
        template: &str,
        body: Option<String>,
    ) -> super::HttpResponse {
        vu.request(Req {
            method,
            url: self.ep.url(path),
            name,
            template,
            headers: &self.headers,
            body: body.map(Bytes::from),
        })
        .await
    }
}

/// All checks of a group are evaluated (each recorded), like k6's `check()`.
fn all(results: &[bool]) -> bool {
    results.iter().all(|b| *b)
}

impl Workload for ApiWorkload {
    async fn setup(&self, vu: &mut Vu) -> anyhow::Result<()> {
        // upstream logs the health status and carries on whatever it is
        let r = vu
            .request(Req {
                method: Method::GET,
                url: self.ep.url("/api/v1/health"),
                name: "GET /api/v1/health",
                template: "/api/v1/health",
                headers: &[],
                body: None,
            })
            .await;
        tracing::info!(status = r.status, "health check");
        Ok(())
    }

    async fn iteration(&self, vu: &mut Vu) {
        // 1. list
        let r = self
            .send(
                vu,
                Method::GET,
                "/api/v1/vms",
                "GET /api/v1/vms",
                "/api/v1/vms",
                None,
            )
            .await;
        let body = r.json();
        let ok = all(&[
            vu.check("VM list status 200", r.status == 200),
            vu.check("VM list has data", field(&body, "data").is_some()),
            vu.latency_check("VM list response time < 500ms", r.timings.duration < 500.0),
        ]);
        record_group(vu, self.errors, &r, ok, || match r.status {
            200 => missing_field("GET /api/v1/vms", &r, "\"data\""),
            other => wrong_status("GET /api/v1/vms", other, "200"),
        });
        if !ok {
            vu.add(self.failed_requests, 1.0);
        }
        vu.trend(self.api_latency, r.timings.duration);
        vu.sleep(Duration::from_secs(1)).await;

        // 2. detail of a random id
        let vm_id: u32 = vu.rng.random_range(1..=1000);
        let r = self
            .send(
                vu,
                Method::GET,
                &format!("/api/v1/vms/{vm_id}"),
                "GET /api/v1/vms/{id}",
                "/api/v1/vms/{id}",
                None,
            )
            .await;
        let ok = all(&[
            vu.check(
                "VM detail status 200 or 404",
                r.status == 200 || r.status == 404,
            ),
            vu.latency_check(
                "VM detail response time < 300ms",
                r.timings.duration < 300.0,
            ),
        ]);
        record_group(vu, self.errors, &r, ok, || {
            wrong_status("GET /api/v1/vms/{id}", r.status, "200 or 404")
        });
        vu.trend(self.api_latency, r.timings.duration);
        vu.sleep(Duration::from_millis(500)).await;

        // 3. create, timed on the wall clock
        let body = format!(
            r#"{{"name":"test-vm-{}-{}","cpu_cores":4,"memory_mb":8192,"disk_gb":100,"image":"ubuntu-22.04","zone":"us-west-1"}}"#,
            chrono::Utc::now().timestamp_millis(),
            vu.id
        );
        let started = Instant::now();
        let r = self
            .send(
                vu,
                Method::POST,
                "/api/v1/vms",
                "POST /api/v1/vms",
                "/api/v1/vms",
                Some(body),
            )
            .await;
        let wall_ms = started.elapsed().as_secs_f64() * 1000.0;
        let json = r.json();
        let ok = all(&[
            vu.check("VM create status 201", r.status == 201),
            vu.check("VM create has id", field(&json, "id").is_some()),
            vu.latency_check("VM create time < 2s", wall_ms < 2000.0),
        ]);
        record_group(vu, self.errors, &r, ok, || match r.status {
            201 => missing_field("POST /api/v1/vms", &r, "\"id\""),
            other => wrong_status("POST /api/v1/vms", other, "201"),
        });
        if !ok {
            vu.add(self.failed_requests, 1.0);
        }
        vu.trend(self.vm_creation_time, wall_ms);
        let new_id = field(&json, "id")
            .filter(|v| truthy(Some(v)))
            .map(id_string);
        vu.sleep(Duration::from_secs(1)).await;

        // 4. update and delete what we created
        if let Some(id) = new_id {
            let path = format!("/api/v1/vms/{id}");
            let r = self
                .send(
                    vu,
                    Method::PATCH,
                    &path,
                    "PATCH /api/v1/vms/{id}",
                    "/api/v1/vms/{id}",
                    Some(r#"{"cpu_cores":8,"memory_mb":16384}"#.into()),
                )
                .await;
            let ok = all(&[
                vu.check("VM update status 200", r.status == 200),
                vu.latency_check(
                    "VM update response time < 400ms",
                    r.timings.duration < 400.0,
                ),
            ]);
            record_group(vu, self.errors, &r, ok, || {
                wrong_status("PATCH /api/v1/vms/{id}", r.status, "200")
            });
            vu.trend(self.api_latency, r.timings.duration);
            vu.sleep(Duration::from_millis(500)).await;

            let r = self
                .send(
                    vu,
                    Method::DELETE,
                    &path,
                    "DELETE /api/v1/vms/{id}",
                    "/api/v1/vms/{id}",
                    None,
                )
                .await;
            let ok = vu.check("VM delete status 204", r.status == 204);
            record_group(vu, self.errors, &r, ok, || {
                wrong_status("DELETE /api/v1/vms/{id}", r.status, "204")
            });
        }

        // 5. think
        vu.sleep(Duration::from_secs(2)).await;

        // 6. filtered search
        let r = self
            .send(
                vu,
                Method::GET,
                "/api/v1/vms?zone=us-west-1&status=running",
                "GET /api/v1/vms?zone&status",
                "/api/v1/vms",
                None,
            )
            .await;
        let ok = all(&[
            vu.check("VM search status 200", r.status == 200),
            vu.latency_check(
                "VM search response time < 600ms",
                r.timings.duration < 600.0,
            ),
        ]);
        record_group(vu, self.errors, &r, ok, || {
            wrong_status("GET /api/v1/vms?zone&status", r.status, "200")
        });
        vu.trend(self.api_latency, r.timings.duration);
        vu.sleep(Duration::from_secs(1)).await;

        // 7. metrics of the random id
        let r = self
            .send(
                vu,
                Method::GET,
                &format!("/api/v1/vms/{vm_id}/metrics"),
                "GET /api/v1/vms/{id}/metrics",
                "/api/v1/vms/{id}/metrics",
                None,
            )
            .await;
        let ok = vu.check(
            "VM metrics status 200 or 404",
            r.status == 200 || r.status == 404,
        );
        record_group(vu, self.errors, &r, ok, || {
            wrong_status("GET /api/v1/vms/{id}/metrics", r.status, "200 or 404")
        });
        vu.sleep(Duration::from_secs(1)).await;
    }
}
