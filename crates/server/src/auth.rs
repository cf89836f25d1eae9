//! Bearer-token checks shared by the services' gRPC interceptors and HTTP APIs (ingest's
//! gRPC, the gateway's gRPC, JSON API and WebSocket, and the internal gRPC APIs of the
//! archive, the detector and the trainer's registry).

use std::sync::Arc;

use subtle::ConstantTimeEq;

/// Whether `presented` equals `expected`, compared in constant time so that the time taken
/// does not tell how much of a guess matched (only whether its length did).
pub fn token_matches(presented: &[u8], expected: &[u8]) -> bool {
    presented.ct_eq(expected).into()
}

/// A gRPC interceptor refusing calls without `authorization: Bearer <token>` (UNAUTHENTICATED)
/// when a token is configured; `refused` counts each refusal in the service's own metric.
#[derive(Clone)]
pub struct BearerAuth {
    expected: Option<Arc<[u8]>>,
    refused: fn(),
}

impl BearerAuth {
    /// `None`: every call passes (no token configured, local use).
    pub fn new(token: Option<&str>, refused: fn()) -> Self {
        Self { expected: token.map(|t| Arc::from(format!("Bearer {t}").into_bytes())), refused }
    }
}

impl tonic::service::Interceptor for BearerAuth {
    fn call(&mut self, req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let Some(expected) = &self.expected else { return Ok(req) };
        match req.metadata().get("authorization").map(|v| v.as_bytes()) {
            Some(got) if token_matches(got, expected) => Ok(req),
            Some(_) => {
                (self.refused)();
                Err(tonic::Status::unauthenticated("invalid bearer token"))
            }
            None => {
                (self.refused)();
                Err(tonic::Status::unauthenticated("missing `authorization: Bearer <token>`"))
            }
        }
    }
}

/// Counts a refused call of the internal gRPC APIs (archive, detector, trainer registry).
pub fn count_internal_refusal() {
    metrics::counter!("proact_grpc_unauthenticated_total").increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::service::Interceptor as _;

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(token_matches(b"s3cret", b"s3cret"));
        assert!(!token_matches(b"s3cres", b"s3cret"));
        assert!(!token_matches(b"s3cre", b"s3cret"));
        assert!(!token_matches(b"", b"s3cret"));
    }

    fn call(auth: &mut BearerAuth, header: Option<&str>) -> Result<(), tonic::Code> {
        let mut req = tonic::Request::new(());
        if let Some(h) = header {
            req.metadata_mut().insert("authorization", h.parse().unwrap());
        }
        auth.call(req).map(|_| ()).map_err(|s| s.code())
    }

    #[test]
    fn bearer_auth_requires_the_exact_token_when_one_is_set() {
        let mut auth = BearerAuth::new(Some("0123456789abcdef"), || {});
        assert_eq!(call(&mut auth, Some("Bearer 0123456789abcdef")), Ok(()));
        assert_eq!(call(&mut auth, Some("Bearer 0123456789abcdeX")), Err(tonic::Code::Unauthenticated));
        assert_eq!(call(&mut auth, Some("0123456789abcdef")), Err(tonic::Code::Unauthenticated));
        assert_eq!(call(&mut auth, None), Err(tonic::Code::Unauthenticated));
        let mut open = BearerAuth::new(None, || {});
        assert_eq!(call(&mut open, None), Ok(()));
    }
}
