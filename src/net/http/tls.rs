//! TLS trust for the VU clients (HTTP here, WebSocket through [`TlsSettings::client_config`]):
//! the Web PKI roots plus `--cacert`, or no verification with `--insecure-skip-tls-verify`.
//!
//! A certificate given with `--cacert` is trusted the way curl and OpenSSL trust it: as a CA
//! that signs server certificates, and also as a pinned end-entity certificate. The second
//! matters for the most common test setup, a self-signed certificate made with
//! `openssl req -x509`, which carries `CA:TRUE` and is then used as the server's own
//! certificate; webpki alone rejects that (`CaUsedAsEndEntity`).

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use std::sync::Arc;

/// TLS settings shared by all VUs.
#[derive(Clone)]
pub struct TlsSettings {
    pub(super) connector: tokio_rustls::TlsConnector,
    config: Arc<rustls::ClientConfig>,
}

impl TlsSettings {
    /// Web PKI roots, plus `cacert` (PEM) if given; `insecure` skips verification like k6's
    /// `--insecure-skip-tls-verify`. A `cacert` certificate is trusted as a CA and also as a
    /// pinned server certificate (the server presents exactly that certificate); a pinned
    /// certificate must still name the server and be within its validity period.
    pub fn new(cacert: Option<&std::path::Path>, insecure: bool) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?;
        let config = if insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
                .with_no_client_auth()
        } else {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let mut pinned = Vec::new();
            if let Some(path) = cacert {
                let pem = std::fs::read(path)
                    .with_context(|| format!("--cacert {}: cannot read", path.display()))?;
                for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                    let cert = cert.with_context(|| {
                        format!("--cacert {}: not a PEM certificate", path.display())
                    })?;
                    roots.add(cert.clone()).with_context(|| {
                        format!("--cacert {}: unusable certificate", path.display())
                    })?;
                    pinned.push(cert);
                }
                anyhow::ensure!(
                    !pinned.is_empty(),
                    "--cacert {}: no certificate found; give a PEM file with at least one CERTIFICATE block",
                    path.display()
                );
            }
            if pinned.is_empty() {
                builder.with_root_certificates(roots).with_no_client_auth()
            } else {
                let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .context("--cacert: building the certificate verifier")?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(PinningVerifier { webpki, pinned }))
                    .with_no_client_auth()
            }
        };
        let config = Arc::new(config);
        Ok(Self {
            connector: tokio_rustls::TlsConnector::from(config.clone()),
            config,
        })
    }

    /// The rustls configuration (the WebSocket client builds its connector from it).
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        self.config.clone()
    }
}

/// A TLS handshake failure in words a user can act on: the rustls reason (unknown issuer,
/// name mismatch, expired, …) and, where there is one, the flag that fixes it. `e` is what
/// the handshake returned (an `io::Error` wrapping a `rustls::Error`).
pub(crate) fn describe_handshake_error(e: &std::io::Error) -> String {
    use rustls::CertificateError as C;
    let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return e.to_string();
    };
    let untrusted = "certificate not trusted (unknown issuer): a self-signed or private-CA certificate? \
                     pass its CA (or the certificate itself) with --cacert FILE, or --insecure-skip-tls-verify";
    match tls {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => untrusted.to_string(),
            // webpki refuses a CA:TRUE certificate as the server's own before it looks for an
            // issuer: what `openssl req -x509` makes by default. Untrusted is what matters.
            C::Other(o) if format!("{o:?}").contains("CaUsedAsEndEntity") => {
                format!("{untrusted} (the server presents a CA certificate as its own)")
            }
            C::NotValidForName | C::NotValidForNameContext { .. } => format!(
                "certificate name mismatch: {tls} (connect by a name the certificate lists)"
            ),
            C::Expired | C::ExpiredContext { .. } => format!("certificate expired: {tls}"),
            C::NotValidYet | C::NotValidYetContext { .. } => {
                format!("certificate not valid yet: {tls}")
            }
            _ => tls.to_string(),
        },
        other => other.to_string(),
    }
}

/// The Web PKI verifier, and when it refuses a server certificate that is byte-identical to a
/// `--cacert` certificate, acceptance after the checks that still apply to a pinned
/// certificate: the server name and the validity period. The handshake signature is always
/// verified (by webpki, against the presented certificate's key), so pinning a certificate
/// never trusts a server that does not hold its private key.
#[derive(Debug)]
struct PinningVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for PinningVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Ok(verified) => Ok(verified),
            Err(_)
                if self
                    .pinned
                    .iter()
                    .any(|p| p.as_ref() == end_entity.as_ref()) =>
            {
                verify_pinned(end_entity, server_name, now)?;
                Ok(ServerCertVerified::assertion())
            }
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// The checks a pinned certificate still has to pass: it names `server_name` (subjectAltName,
/// as webpki checks it) and `now` is inside its validity period.
fn verify_pinned(
    cert: &CertificateDer<'_>,
    server_name: &ServerName<'_>,
    now: UnixTime,
) -> Result<(), rustls::Error> {
    let parsed = rustls::server::ParsedCertificate::try_from(cert)?;
    rustls::client::verify_server_name(&parsed, server_name)?;
    let (not_before, not_after) = validity(cert.as_ref()).ok_or(
        rustls::Error::InvalidCertificate(CertificateError::BadEncoding),
    )?;
    // Certificates with dates before 1970 exist; UnixTime cannot go below 0, so compare in i64.
    let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    if now < not_before {
        return Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidYet,
        ));
    }
    if now > not_after {
        return Err(rustls::Error::InvalidCertificate(CertificateError::Expired));
    }
    Ok(())
}

/// notBefore and notAfter (Unix seconds) of an X.509 certificate in DER, read along
/// `Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serialNumber,
/// signature, issuer, validity SEQUENCE { notBefore, notAfter }, ... }, ... }` (RFC 5280
/// §4.1). None when the encoding is not that shape. webpki checks the same dates but does not
/// expose them, and a full X.509 parser is more dependency than two timestamps need.
fn validity(cert: &[u8]) -> Option<(i64, i64)> {
    const SEQUENCE: u8 = 0x30;
    const INTEGER: u8 = 0x02;
    const VERSION: u8 = 0xA0; // [0] EXPLICIT, constructed
    let (SEQUENCE, certificate, _) = der_element(cert)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = der_element(certificate)? else {
        return None;
    };
    let mut rest = tbs;
    let (tag, _, after) = der_element(rest)?;
    if tag == VERSION {
        rest = after;
    }
    let (INTEGER, _, rest) = der_element(rest)? else {
        return None;
    };
    let (SEQUENCE, _, rest) = der_element(rest)? else {
        return None; // signature AlgorithmIdentifier
    };
    let (SEQUENCE, _, rest) = der_element(rest)? else {
        return None; // issuer Name
    };
    let (SEQUENCE, validity, _) = der_element(rest)? else {
        return None;
    };
    let (tag, not_before, rest) = der_element(validity)?;
    let not_before = der_time(tag, not_before)?;
    let (tag, not_after, _) = der_element(rest)?;
    Some((not_before, der_time(tag, not_after)?))
}

/// One DER element at the start of `input`: (tag, contents, what follows). Only the
/// single-byte tags X.509 uses and definite lengths of up to 4 length bytes; None when the
/// element is truncated or its length is not representable.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None; // indefinite length (not DER) or longer than any certificate
        }
        let (bytes, after) = rest.split_at_checked(count)?;
        rest = after;
        bytes
            .iter()
            .fold(0usize, |len, b| (len << 8) | usize::from(*b))
    };
    let (contents, after) = rest.split_at_checked(len)?;
    Some((tag, contents, after))
}

/// A UTCTime (`YYMMDDHHMMSSZ`, years 1950–2049 as RFC 5280 §4.1.2.5.1 says) or
/// GeneralizedTime (`YYYYMMDDHHMMSSZ`) as Unix seconds; None for anything else.
fn der_time(tag: u8, value: &[u8]) -> Option<i64> {
    const UTC_TIME: u8 = 0x17;
    const GENERALIZED_TIME: u8 = 0x18;
    let (year, rest) = match (tag, value.len()) {
        (UTC_TIME, 13) => {
            let yy = digits(&value[..2])?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &value[2..])
        }
        (GENERALIZED_TIME, 15) => (digits(&value[..4])?, &value[4..]),
        _ => return None,
    };
    if rest.last() != Some(&b'Z') {
        return None;
    }
    let date = chrono::NaiveDate::from_ymd_opt(
        i32::try_from(year).ok()?,
        u32::try_from(digits(&rest[0..2])?).ok()?,
        u32::try_from(digits(&rest[2..4])?).ok()?,
    )?;
    let time = date.and_hms_opt(
        u32::try_from(digits(&rest[4..6])?).ok()?,
        u32::try_from(digits(&rest[6..8])?).ok()?,
        u32::try_from(digits(&rest[8..10])?).ok()?,
    )?;
    Some(time.and_utc().timestamp())
}

/// ASCII decimal digits as a number; None when any byte is not a digit.
fn digits(ascii: &[u8]) -> Option<i64> {
    ascii.iter().try_fold(0i64, |n, b| {
        b.is_ascii_digit().then(|| n * 10 + i64::from(b - b'0'))
    })
}

/// `--insecure-skip-tls-verify`: any certificate, while still checking that the handshake is
/// signed by the key of the certificate presented.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::net::http::HttpClient;
    use http::Method;
    use std::path::{Path, PathBuf};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const OPENSSL: &str = "/usr/bin/openssl";

    /// A self-signed certificate and key made the way people make one for a test server
    /// (`openssl req -x509`, which marks it CA:TRUE), for `subject_alt_name`. None (with the
    /// reason printed) when openssl is not installed.
    fn self_signed(dir: &Path, name: &str, subject_alt_name: &str) -> Option<(PathBuf, PathBuf)> {
        if !Path::new(OPENSSL).exists() {
            eprintln!("skipped: {OPENSSL} is not installed, cannot make test certificates");
            return None;
        }
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        let status = std::process::Command::new(OPENSSL)
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .args(["-subj", "/CN=localhost", "-addext"])
            .arg(format!("subjectAltName={subject_alt_name}"))
            .stderr(std::process::Stdio::null())
            .status()
            .expect("run openssl");
        assert!(status.success(), "openssl req failed: {status}");
        Some((cert, key))
    }

    /// A TLS server on 127.0.0.1:0 presenting `cert`/`key`, answering every request with
    /// `200 ok`. Returns its https URL.
    async fn tls_server(cert: &Path, key: &Path) -> url::Url {
        let certs = rustls_pemfile::certs(&mut std::fs::read(cert).unwrap().as_slice())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls_pemfile::private_key(&mut std::fs::read(key).unwrap().as_slice())
            .unwrap()
            .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // a client that refuses the certificate ends the handshake: nothing to do
                    let Ok(mut s) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = [0u8; 4096];
                    let mut seen = Vec::new();
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await;
                    let _ = s.shutdown().await;
                });
            }
        });
        format!("https://127.0.0.1:{}/", addr.port())
            .parse()
            .unwrap()
    }

    async fn get(tls: TlsSettings, url: &url::Url) -> Result<u16, (ErrorKind, String)> {
        let mut client = HttpClient::new(Some(tls), Duration::from_secs(5));
        let r = client.send(Method::GET, url, &[], None).await;
        match r.error {
            Some(e) => Err(e),
            None => Ok(r.status),
        }
    }

    #[tokio::test]
    async fn a_self_signed_server_certificate_is_trusted_when_given_with_cacert() {
        let dir = tempfile::tempdir().unwrap();
        let Some((cert, key)) = self_signed(dir.path(), "server", "DNS:localhost,IP:127.0.0.1")
        else {
            return;
        };
        let url = tls_server(&cert, &key).await;

        let pinned = TlsSettings::new(Some(&cert), false).unwrap();
        assert_eq!(get(pinned, &url).await, Ok(200));

        // without --cacert it is an unknown issuer, and the message says so
        let (kind, message) = get(TlsSettings::new(None, false).unwrap(), &url)
            .await
            .unwrap_err();
        assert_eq!(kind, ErrorKind::Tls, "{message}");
        assert!(
            message.starts_with(&format!(
                "TLS handshake with 127.0.0.1:{}: certificate not trusted (unknown issuer)",
                url.port().unwrap()
            )),
            "{message}"
        );
        assert!(message.contains("--cacert FILE"), "{message}");
        // --insecure-skip-tls-verify still accepts anything
        assert_eq!(
            get(TlsSettings::new(None, true).unwrap(), &url).await,
            Ok(200)
        );
    }

    #[tokio::test]
    async fn a_pinned_certificate_for_another_name_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let Some((cert, key)) = self_signed(dir.path(), "other", "DNS:other.example") else {
            return;
        };
        let url = tls_server(&cert, &key).await;
        let (kind, message) = get(TlsSettings::new(Some(&cert), false).unwrap(), &url)
            .await
            .unwrap_err();
        assert_eq!(kind, ErrorKind::Tls, "{message}");
        assert!(message.contains("not valid for name"), "{message}");
    }

    #[test]
    fn a_pinned_certificate_outside_its_validity_period_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let Some((cert, _)) = self_signed(dir.path(), "dated", "DNS:localhost") else {
            return;
        };
        let der = rustls_pemfile::certs(&mut std::fs::read(&cert).unwrap().as_slice())
            .next()
            .unwrap()
            .unwrap();
        let (not_before, not_after) =
            validity(der.as_ref()).expect("validity of an openssl certificate");
        let now = chrono::Utc::now().timestamp();
        assert!(
            (not_before - now).abs() < 3600,
            "notBefore {not_before}, now {now}"
        );
        assert_eq!(not_after - not_before, 2 * 86_400, "-days 2");

        let name = ServerName::try_from("localhost").unwrap();
        let at = |secs: i64| UnixTime::since_unix_epoch(Duration::from_secs(secs as u64));
        assert_eq!(verify_pinned(&der, &name, at(now)), Ok(()));
        assert_eq!(
            verify_pinned(&der, &name, at(not_after + 1)),
            Err(rustls::Error::InvalidCertificate(CertificateError::Expired))
        );
        assert_eq!(
            verify_pinned(&der, &name, at(not_before - 1)),
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidYet
            ))
        );
        let other = ServerName::try_from("example.com").unwrap();
        assert!(verify_pinned(&der, &other, at(now)).is_err());
    }

    #[test]
    fn certificate_dates_are_read_from_der() {
        // the committed fixture: Nov 25 16:29:17 2026 GMT to Nov 1 16:29:17 2126 GMT
        let pem = include_bytes!("../../../tests/support/tls/server.pem");
        let der = rustls_pemfile::certs(&mut pem.as_slice())
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(validity(der.as_ref()), Some((1_795_624_157, 4_949_224_157)));

        assert_eq!(der_time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(der_time(0x17, b"491231235959Z"), Some(2_524_607_999)); // 2049
        assert_eq!(der_time(0x17, b"500101000000Z"), Some(-631_152_000)); // 1950
        assert_eq!(der_time(0x18, b"20000229120000Z"), Some(951_825_600));
        for bad in [
            &b"700101000000"[..],
            b"7001010000000",
            b"701301000000Z",
            b"70010100000aZ",
        ] {
            assert_eq!(
                der_time(0x17, bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(der_time(0x18, b"20000230120000Z"), None);
        assert_eq!(der_time(0x04, b"700101000000Z"), None);
        // truncated or odd DER never panics
        for cut in 0..der.as_ref().len().min(300) {
            let _ = validity(&der.as_ref()[..cut]);
        }
        assert_eq!(der_element(&[0x30, 0x85, 1, 1, 1, 1, 1]), None);
        assert_eq!(der_element(&[0x30, 0x80]), None);
    }
}
