//! TLS for the lock connection (the cargo feature `tls`, on by default).
//!
//! Across a real network the lock server is reached over TLS, and managed
//! MySQL services insist on it. rustls with the ring provider links
//! statically for musl, so the single binary keeps working on minimal hosts;
//! building without the feature keeps the binary small for those who only
//! talk to a local or private server.

use std::io;
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, StreamOwned};

use crate::dsn::{Dsn, Tls};

pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// Where distributions keep the system's CA bundle; `SSL_CERT_FILE` first.
const SYSTEM_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu, Alpine
    "/etc/pki/tls/certs/ca-bundle.crt",   // Fedora, RHEL
    "/etc/ssl/ca-bundle.pem",             // SUSE
    "/etc/ssl/cert.pem",                  // Alpine, BSDs
];

/// Start a TLS session over `tcp` to `host`, as the DSN's `tls` value and the
/// config's `tls_ca`, `tls_cert` and `tls_key` say. The handshake itself runs
/// at the first read or write.
pub fn start(dsn: &Dsn, host: &str, tcp: TcpStream) -> Result<TlsStream, String> {
    let config = client_config(dsn)?;
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| format!("\"{host}\" is not a host name TLS can verify"))?;
    let conn = ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    Ok(StreamOwned::new(conn, tcp))
}

/// Finish the handshake now, so that a certificate problem is reported as
/// such rather than as a failed write later.
pub fn handshake(stream: &mut TlsStream) -> io::Result<()> {
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(())
}

/// A handshake error in the operator's words, and what to do about it
/// where there is something to do.
pub fn explain(error: &io::Error, host: &str) -> Option<(String, Option<String>)> {
    let tls_error = error.get_ref()?.downcast_ref::<rustls::Error>()?;
    Some(match tls_error {
        rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => (
            "TLS: the server's certificate is not trusted (unknown issuer)".to_string(),
            Some("name its CA with tls_ca in the config".to_string()),
        ),
        rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)
        | rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext {
            ..
        }) => (
            format!("TLS: the server's certificate is not valid for host \"{host}\""),
            Some("connect by the name the certificate was made for, or use tls=skip-verify".into()),
        ),
        other => (format!("TLS handshake failed: {other}"), None),
    })
}

fn client_config(dsn: &Dsn) -> Result<ClientConfig, String> {
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match dsn.tls {
        // Encrypt, but accept any certificate: go-sql-driver's meaning of
        // both values.
        Tls::SkipVerify | Tls::Preferred => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider))),
        Tls::True | Tls::False => builder.with_root_certificates(roots(dsn.tls_ca.as_deref())?),
    };
    // One without the other never gets here: the config refuses it (exit 200).
    match (&dsn.tls_cert, &dsn.tls_key) {
        (Some(cert), Some(key)) => {
            let certs = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("tls_cert {}: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("tls_key {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("tls_cert and tls_key: {e}"))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// The CAs to trust: the config's `tls_ca`, or the system's bundle.
fn roots(ca: Option<&Path>) -> Result<RootCertStore, String> {
    let env_bundle = std::env::var_os("SSL_CERT_FILE");
    let path = match (ca, &env_bundle) {
        (Some(ca), _) => ca,
        (None, Some(file)) => Path::new(file),
        (None, None) => SYSTEM_BUNDLES
            .iter()
            .map(Path::new)
            .find(|p| p.exists())
            .ok_or("no system CA bundle found; name a CA file with tls_ca in the config")?,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("CA file {}: {e}", path.display()))?;
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!(
            "CA file {}: no usable certificate in it",
            path.display()
        ));
    }
    Ok(store)
}

/// `tls=skip-verify`: encryption without knowing who is at the other end.
/// Signatures are still checked, so the session is at least consistent.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
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

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
