//! TLS for outgoing connections: one connector that verifies the server's certificate (chain
//! to the Web PKI roots of `webpki-roots`, and the host name), and one that does not.
//!
//! Why a connector that accepts any certificate: on the public internet, SMTP between MXs uses
//! STARTTLS opportunistically (RFC 3207, RFC 7435). MX certificates are often self-signed or
//! name another host, and the alternative to accepting them is not a verified connection but
//! a plaintext one — strictly worse against a passive eavesdropper, and no worse against an
//! active attacker, who could simply strip the STARTTLS offer. So `tls` without `verify`
//! (SPEC §5.4) encrypts without authenticating. The handshake signatures are still checked
//! against the presented certificate's key, so the session keys belong to whoever holds that
//! key. `tls verify` uses the verifying connector.
//!
//! Both are built with the ring provider, like every other TLS configuration in ownmail.

use std::net::IpAddr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::TlsConnector;

pub(crate) struct Connectors {
    pub verify: TlsConnector,
    pub no_verify: TlsConnector,
}

impl Connectors {
    pub(crate) fn new() -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let verify = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS client configuration: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let no_verify = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS client configuration: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate { provider }))
            .with_no_client_auth();
        Ok(Connectors {
            verify: TlsConnector::from(Arc::new(verify)),
            no_verify: TlsConnector::from(Arc::new(no_verify)),
        })
    }
}

/// The name to present (SNI) and, when verifying, to check the certificate against: the host
/// name when it is a valid DNS name, else the address we connect to.
pub(crate) fn server_name(host: &str, addr: IpAddr) -> ServerName<'static> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return ServerName::IpAddress(ip.into());
    }
    ServerName::try_from(host.trim_end_matches('.').to_string())
        .unwrap_or_else(|_| ServerName::IpAddress(addr.into()))
}

/// Accepts every certificate chain; see the module header for why that is right for
/// opportunistic TLS. Signatures made during the handshake are verified for real.
#[derive(Debug)]
struct AcceptAnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCertificate {
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
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
