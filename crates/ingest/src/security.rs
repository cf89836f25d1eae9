//! Who may talk to ingest, and about which equipment: TLS for the broker connection
//! (rustls with the `ring` provider, CA and optional client certificate from files), bearer
//! token and optional mTLS on gRPC, and the optional allow-list of known equipment (from the
//! reference data's `amdec` table, or a file), refreshed periodically.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use proact_proto::v1::RejectReason;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

use crate::validate::Rejection;

/// Why a security setting could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("cannot read {what} from {path}: {detail}")]
    Pem { what: &'static str, path: PathBuf, detail: String },
    #[error("TLS configuration refused: {0}")]
    Tls(#[from] rustls::Error),
    #[error("allow-list: {0}")]
    Allowlist(String),
}

fn certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, SecurityError> {
    let pem = |detail: String| SecurityError::Pem { what, path: path.to_path_buf(), detail };
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem("no certificate in the file".into()));
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, SecurityError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| SecurityError::Pem {
        what: "a private key",
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

/// The rustls client configuration for `mqtts://`: the broker must present a certificate
/// signed by `ca`; with `cert` and `key`, ingest authenticates itself too (mutual TLS).
pub fn mqtt_tls(ca: &Path, client: Option<(&Path, &Path)>) -> Result<rustls::ClientConfig, SecurityError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(ca, "the CA certificate")? {
        roots.add(c)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    Ok(match client {
        Some((cert, k)) => builder.with_client_auth_cert(certs(cert, "the client certificate")?, key(k)?)?,
        None => builder.with_no_client_auth(),
    })
}

/// The gRPC server's TLS: its certificate and key, and with `client_ca`, mutual TLS (a client
/// without a certificate signed by it cannot connect).
pub fn grpc_tls(
    cert: &Path,
    key_path: &Path,
    client_ca: Option<&Path>,
) -> Result<tonic::transport::ServerTlsConfig, SecurityError> {
    let read = |p: &Path, what: &'static str| {
        std::fs::read(p).map_err(|e| SecurityError::Pem { what, path: p.to_path_buf(), detail: e.to_string() })
    };
    // Parse now so that a bad file is a config error at start, not a failed handshake later.
    certs(cert, "the gRPC certificate")?;
    key(key_path)?;
    let identity =
        tonic::transport::Identity::from_pem(read(cert, "the gRPC certificate")?, read(key_path, "the gRPC key")?);
    let mut tls = tonic::transport::ServerTlsConfig::new().identity(identity);
    if let Some(ca) = client_ca {
        certs(ca, "the gRPC client CA")?;
        tls = tls.client_ca_root(tonic::transport::Certificate::from_pem(read(ca, "the gRPC client CA")?));
    }
    Ok(tls)
}

/// Refuses gRPC calls without `authorization: Bearer <token>` (UNAUTHENTICATED), counting each
/// refusal in `proact_ingest_grpc_unauthenticated_total`. `None`: every call passes.
pub fn bearer_auth(token: Option<&str>) -> proact_server::auth::BearerAuth {
    proact_server::auth::BearerAuth::new(token, || {
        metrics::counter!("proact_ingest_grpc_unauthenticated_total").increment(1)
    })
}

/// Where the allow-list of known equipment comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum AllowSource {
    /// The distinct `equipement_id`s of the reference `amdec` table.
    Database(String),
    /// One id per line; blank lines and `#` comments ignored.
    File(PathBuf),
}

/// The optional allow-list; when off, every valid id passes.
#[derive(Clone, Default)]
pub struct Allowlist {
    ids: Option<Arc<RwLock<Arc<HashSet<String>>>>>,
}

/// A snapshot of the allow-list, taken once per batch.
pub struct AllowSnapshot(Option<Arc<HashSet<String>>>);

impl AllowSnapshot {
    pub fn check(&self, id: &str) -> Result<(), Rejection> {
        match &self.0 {
            Some(ids) if !ids.contains(id) => Err(Rejection {
                reason: RejectReason::UnknownEquipment,
                detail: format!("equipment {id:?} is not in the reference data's allow-list"),
            }),
            _ => Ok(()),
        }
    }
}

impl Allowlist {
    /// An allow-list holding exactly `ids`.
    pub fn fixed(ids: impl IntoIterator<Item = String>) -> Self {
        Self { ids: Some(Arc::new(RwLock::new(Arc::new(ids.into_iter().collect())))) }
    }

    /// Loads the list from `source`; fails if it cannot be read (the service should not start
    /// refusing everything, or accepting everything, by accident).
    pub async fn load(source: &AllowSource) -> Result<Self, SecurityError> {
        Ok(Self::fixed(read_source(source).await?))
    }

    pub fn snapshot(&self) -> AllowSnapshot {
        AllowSnapshot(self.ids.as_ref().map(|l| l.read().unwrap_or_else(|p| p.into_inner()).clone()))
    }

    /// Reloads from `source` every `every` until `shutdown`; keeps the last good list on error.
    pub async fn refresh(self, source: AllowSource, every: Duration, shutdown: CancellationToken) {
        let Some(slot) = self.ids else { return };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            match read_source(&source).await {
                Ok(ids) => {
                    let n = ids.len();
                    *slot.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(ids);
                    metrics::gauge!("proact_ingest_allowlist_size").set(n as f64);
                }
                Err(e) => tracing::warn!(error = %e, "allow-list refresh failed; keeping the previous list"),
            }
        }
    }
}

async fn read_source(source: &AllowSource) -> Result<HashSet<String>, SecurityError> {
    let ids: HashSet<String> = match source {
        AllowSource::File(p) => std::fs::read_to_string(p)
            .map_err(|e| SecurityError::Allowlist(format!("{}: {e}", p.display())))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect(),
        AllowSource::Database(url) => {
            let err = |e: &dyn std::fmt::Display| SecurityError::Allowlist(format!("reading table amdec: {e}"));
            let client = proact_server::db::connect(url).await.map_err(|e| err(&e))?;
            let ids = proact_store::reference::amdec_equipment_ids(&client).await.map_err(|e| err(&e))?;
            ids.into_iter().collect()
        }
    };
    if ids.is_empty() {
        tracing::warn!(?source, "the equipment allow-list is empty: every reading will be refused");
    }
    metrics::gauge!("proact_ingest_allowlist_size").set(ids.len() as f64);
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_refuses_unknown_ids_only_when_on() {
        let on = Allowlist::fixed(["PUMP-01".to_string()]).snapshot();
        assert!(on.check("PUMP-01").is_ok());
        assert_eq!(on.check("PUMP-99").unwrap_err().reason, RejectReason::UnknownEquipment);
        assert!(Allowlist::default().snapshot().check("PUMP-99").is_ok());
    }
}
