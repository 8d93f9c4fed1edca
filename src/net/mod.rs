//! Network clients novaload owns: the HTTP/1.1 client (codec, TLS, connection) that every
//! HTTP workload's VU and the OTLP/HTTP span exporter use, and the plain-or-TLS stream the
//! WebSocket workloads share with it. It knows nothing of workloads or
//! telemetry, so both can depend on it.

pub mod http;
// crate-only: the WebSocket workload and the HTTP client are its only users
pub(crate) mod stream;
