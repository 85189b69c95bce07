//! Test certificates made with rcgen: a CA, and node certificates it signs for 127.0.0.1, written
//! as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// A CA that can sign node certificates; its certificate is at `pem`.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pub pem: PathBuf,
}

impl Ca {
    /// A new self-signed CA named `name`, its certificate written to `dir/name.pem`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("CA certificate");
        let pem = dir.join(format!("{name}.pem"));
        std::fs::write(&pem, issuer.pem()).expect("write CA");
        Ca { issuer, pem }
    }

    /// A certificate for 127.0.0.1 and localhost signed by this CA: `(cert.pem, key.pem)` under
    /// `dir` with the prefix `name`.
    pub fn node(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .expect("node params");
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("node key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("node certificate");
        let (c, k) = (
            dir.join(format!("{name}.crt.pem")),
            dir.join(format!("{name}.key.pem")),
        );
        std::fs::write(&c, cert.pem()).expect("write cert");
        std::fs::write(&k, key.serialize_pem()).expect("write key");
        (c, k)
    }

    /// A client configuration trusting this CA.
    pub fn client(&self) -> std::sync::Arc<rustls::ClientConfig> {
        needle_cli::client::tls_client_config(&std::fs::read(&self.pem).unwrap()).unwrap()
    }
}

/// `--tls-cert C --tls-key K --tls-ca CA` as flags.
pub fn flags(cert: &Path, key: &Path, ca: &Path) -> Vec<String> {
    [
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--tls-ca",
        ca.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec()
}
