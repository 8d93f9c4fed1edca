//! The HTTP client each VU owns: one keep-alive HTTP/1.1 connection (reconnecting as needed),
//! plain TCP or rustls TLS, with k6's timing breakdown. Its own small HTTP/1.1 codec
//! (`codec.rs`: httparse for the response head, a sans-IO body decoder) rather than reqwest or
//! hyper's client: reqwest hides connect/TLS/first-byte times and adds a shared pool to the hot
//! path, and hyper's client runs each connection in a second task the request and response
//! cross by channel.
//!
//! Owning the codec means owning its robustness against any server: no panic on any bytes,
//! no allocation of what a header claims, a timeout that is a deadline for the whole request,
//! and at most [`HttpClient::body_limit`] body bytes kept.
//!
//! Where things are:
//! - `client.rs`: [`HttpClient`], its connection (open, reuse, stale-connection retry) and
//!   [`HttpClient::send`], which runs one request against its deadline;
//! - `codec.rs`: the request encoder and response decoder, no I/O (property-tested with
//!   arbitrary bytes in `codec/tests.rs`);
//! - `response.rs`: [`HttpResponse`], [`Timings`], and the internal `Failure` error;
//! - `tls.rs`: [`TlsSettings`] (trust roots, `--cacert` pinning, `--insecure-skip-tls-verify`)
//!   and readable TLS handshake errors, shared with the WebSocket workloads.

mod client;
mod codec;
mod response;
mod tls;

pub use client::{DEFAULT_BODY_LIMIT, HttpClient};
pub(crate) use codec::percent_decode_into;
pub use response::{HttpResponse, Timings};
pub use tls::TlsSettings;
pub(crate) use tls::describe_handshake_error;
