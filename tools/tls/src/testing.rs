//! Certificates made at test time (feature `testing`): a CA, and leaf certificates it signs for
//! 127.0.0.1 and localhost, good as a server and as a client, written as PEM files.

use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};

use crate::TlsFiles;

/// A certificate authority.
pub struct Ca {
    params: CertificateParams,
    key: KeyPair,
    /// Its certificate (PEM).
    pub pem: String,
}

impl Ca {
    /// A new self-signed CA called `name`.
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        let pem = params.self_signed(&key).expect("CA certificate").pem();
        Ca { params, key, pem }
    }

    /// `cert.pem`, `key.pem` (a certificate this CA signs for 127.0.0.1 and localhost) and
    /// `ca.pem` (`trust`'s certificate: the CA this holder accepts) under `dir/name/`.
    pub fn leaf(&self, dir: &Path, name: &str, trust: &Ca) -> TlsFiles {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("leaf parameters");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().expect("leaf key");
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("leaf certificate");
        let d = dir.join(name);
        std::fs::create_dir_all(&d).expect("certificate directory");
        let files = TlsFiles { cert: d.join("cert.pem"), key: d.join("key.pem"), ca: d.join("ca.pem") };
        std::fs::write(&files.cert, cert.pem()).expect("write cert.pem");
        std::fs::write(&files.key, key.serialize_pem()).expect("write key.pem");
        std::fs::write(&files.ca, &trust.pem).expect("write ca.pem");
        files
    }
}

impl Ca {
    /// A client that trusts this CA and presents no certificate.
    pub fn client_without_certificate(&self) -> rustls::ClientConfig {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls::pki_types::CertificateDer::pem_slice_iter(self.pem.as_bytes()) {
            roots.add(c.expect("CA PEM")).expect("CA certificate");
        }
        rustls::ClientConfig::builder_with_provider(crate::files::provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth()
    }
}

impl TlsFiles {
    /// The `tls:` section naming these files (YAML flow map, one line).
    pub fn yaml(&self) -> String {
        format!(
            "tls: {{ cert: \"{}\", key: \"{}\", ca: \"{}\" }}\n",
            self.cert.display(),
            self.key.display(),
            self.ca.display()
        )
    }
}
