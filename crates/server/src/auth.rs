//! Bearer-token checks shared by the services' gRPC interceptors and HTTP APIs (ingest's
//! gRPC, the gateway's gRPC, JSON API and WebSocket).

use subtle::ConstantTimeEq;

/// Whether `presented` equals `expected`, compared in constant time so that the time taken
/// does not tell how much of a guess matched (only whether its length did).
pub fn token_matches(presented: &[u8], expected: &[u8]) -> bool {
    presented.ct_eq(expected).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(token_matches(b"s3cret", b"s3cret"));
        assert!(!token_matches(b"s3cres", b"s3cret"));
        assert!(!token_matches(b"s3cre", b"s3cret"));
        assert!(!token_matches(b"", b"s3cret"));
    }
}
