//! Test certificates made with rcgen: a CA, a server certificate for `localhost` and
//! `127.0.0.1`, and a client certificate, written as PEM files (`ca.pem`, `server.pem`,
//! `server.key`, `client.pem`, `client.key`) in a temporary directory removed on drop.

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType};

pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A fresh CA and the two certificates it signs.
    pub fn new() -> Result<Self, rcgen::Error> {
        let dir = tempfile::tempdir().map_err(|e| rcgen::Error::PemError(e.to_string()))?;
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(rcgen::DnType::CommonName, "proact test CA");
        let ca_cert = ca.self_signed(&ca_key)?;
        let write = |name: &str, pem: String| {
            std::fs::write(dir.path().join(name), pem).map_err(|e| rcgen::Error::PemError(e.to_string()))
        };
        write("ca.pem", ca_cert.pem())?;
        for (name, usage) in
            [("server", ExtendedKeyUsagePurpose::ServerAuth), ("client", ExtendedKeyUsagePurpose::ClientAuth)]
        {
            let key = KeyPair::generate()?;
            let mut p = CertificateParams::new(vec!["localhost".to_string()])?;
            p.subject_alt_names.push(SanType::IpAddress([127, 0, 0, 1].into()));
            p.extended_key_usages = vec![usage];
            let cert = p.signed_by(&key, &ca_cert, &ca_key)?;
            write(&format!("{name}.pem"), cert.pem())?;
            write(&format!("{name}.key"), key.serialize_pem())?;
        }
        Ok(Self { dir })
    }

    /// One of the files, by name (`ca.pem`, `server.pem`, `server.key`, `client.pem`, `client.key`).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}
