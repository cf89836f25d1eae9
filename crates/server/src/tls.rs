//! TLS client configuration for the connections to PostgreSQL and Redis: rustls with the
//! `ring` provider (as the broker and gRPC connections), verifying the server's certificate
//! against a CA file when the URL names one (`sslrootcert=PATH`, libpq's parameter, accepted
//! in both URLs), else against the operating system's CA store. The certificate is always
//! verified, hostname included: libpq's `sslmode=require` would skip that, we do not.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// The URL query parameter naming a CA file (libpq's name).
pub const ROOT_CERT_PARAM: &str = "sslrootcert";

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the CA file {path}: {detail}")]
    CaFile { path: PathBuf, detail: String },
    #[error("no CA certificate: {0}")]
    NoRoots(String),
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A client configuration trusting `ca_file`'s certificates, or the system's.
pub fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let err = |detail: String| TlsError::CaFile { path: path.to_path_buf(), detail };
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| err(e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| err(e.to_string()))?;
            if certs.is_empty() {
                return Err(err("no certificate in the file".into()));
            }
            for c in certs {
                roots.add(c)?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                return Err(TlsError::NoRoots(format!(
                    "the system has none ({} errors); name one with {ROOT_CERT_PARAM}=PATH in the URL",
                    native.errors.len()
                )));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Removes `sslrootcert` from a URL's query; returns the URL left and the path it named.
/// A string that is not a URL (PostgreSQL's `key=value` form) is returned unchanged.
pub fn take_root_cert(url: &str) -> (String, Option<PathBuf>) {
    let Ok(mut u) = url::Url::parse(url) else { return (url.to_string(), None) };
    let mut root = None;
    let kept: Vec<(String, String)> = u
        .query_pairs()
        .filter_map(|(k, v)| {
            if k == ROOT_CERT_PARAM {
                root = Some(PathBuf::from(v.as_ref()));
                None
            } else {
                Some((k.into_owned(), v.into_owned()))
            }
        })
        .collect();
    if root.is_none() {
        return (url.to_string(), None);
    }
    if kept.is_empty() {
        u.set_query(None);
    } else {
        u.query_pairs_mut().clear().extend_pairs(kept);
    }
    (u.to_string(), root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_parameter_is_taken_out_of_the_url() {
        let (u, r) = take_root_cert("postgres://p:s@db:5432/proact?sslmode=require&sslrootcert=/etc/ca.pem");
        assert_eq!(u, "postgres://p:s@db:5432/proact?sslmode=require");
        assert_eq!(r, Some(PathBuf::from("/etc/ca.pem")));
        let (u, r) = take_root_cert("rediss://:pw@redis:6380?sslrootcert=%2Fetc%2Fca.pem");
        assert_eq!(u, "rediss://:pw@redis:6380");
        assert_eq!(r, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(take_root_cert("host=db sslmode=require").0, "host=db sslmode=require");
        assert_eq!(take_root_cert("redis://127.0.0.1:6379").1, None);
    }

    #[test]
    fn a_bad_ca_file_is_named() {
        let e = client_config(Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }
}
