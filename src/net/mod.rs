//! Network clients novaload owns: the HTTP/1.1 client (codec, TLS, connection) that every
//! HTTP workload's VU and the OTLP/HTTP span exporter use. It knows nothing of workloads or
//! telemetry, so both can depend on it.

pub mod http;
