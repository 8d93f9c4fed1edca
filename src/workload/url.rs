//! `novaload run --url URL`: the quick mode (like oha/hey): one request per iteration to any
//! HTTP endpoint, with a method, headers and a body. Useful on day one and the benchmark
//! workload against other tools.

use super::{Req, Vu, Workload};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};

pub struct UrlWorkload {
    pub method: Method,
    pub url: url::Url,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Option<Bytes>,
    /// Operation name: `METHOD path` (the path only, no query: keeps the label bounded).
    pub name: String,
    pub template: String,
}

impl UrlWorkload {
    pub fn new(
        method: Method,
        url: url::Url,
        headers: Vec<(HeaderName, HeaderValue)>,
        body: Option<Bytes>,
    ) -> Self {
        let template = url.path().to_string();
        let name = format!("{} {}", method.as_str(), template);
        Self {
            method,
            url,
            headers,
            body,
            name,
            template,
        }
    }
}

impl Workload for UrlWorkload {
    async fn iteration(&self, vu: &mut Vu) {
        vu.request(Req {
            method: self.method.clone(),
            url: self.url.clone(),
            name: &self.name,
            template: &self.template,
            headers: &self.headers,
            body: self.body.clone(),
        })
        .await;
    }
}
