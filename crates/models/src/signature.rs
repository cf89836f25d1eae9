//! Ed25519 signatures of model artefacts: the trainer signs every artefact it stores with a
//! secret key only it holds, and the detector runs only what one of its public keys verifies.
//!
//! The checksum in an artefact's header proves the bytes are whole; it proves nothing about who
//! wrote them, since anyone who can write the registry's table can write a matching checksum.
//! The signature covers the same body, prefixed by [`SIGNED_CONTEXT`] so that a signature made
//! for an artefact cannot be replayed as one over anything else signed with the key.
//!
//! Keys travel as text (environment variables fed from a Kubernetes Secret): 64 hex characters,
//! the 32-byte secret seed for [`ArtefactSigner`], the 32-byte public key for
//! [`ArtefactVerifier`] (which takes several, comma-separated, so a key can be rotated without
//! refusing the versions the previous one signed).

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

/// Prepended to the body before signing and verifying.
pub const SIGNED_CONTEXT: &[u8] = b"proact-model/1 ed25519\n";

/// Why a key or a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("a key must be 64 hex characters (32 bytes), got {0} characters")]
    KeyLength(usize),
    #[error("a key must be hexadecimal")]
    KeyNotHex,
    #[error("{0} is not an Ed25519 public key")]
    NotAPublicKey(String),
    #[error("no public key given")]
    NoKey,
    #[error("the artefact is not signed; only signed artefacts are loaded (sign it with the trainer's PROACT_MODEL_SIGNING_KEY)")]
    Unsigned,
    #[error("the artefact's signature is malformed (expected 128 hex characters)")]
    Malformed,
    #[error("the artefact's signature does not verify with any trusted key (PROACT_MODEL_VERIFY_KEY): it was modified, or signed by another key")]
    Invalid,
}

fn key_bytes(text: &str) -> Result<[u8; 32], SignatureError> {
    let text = text.trim();
    if text.len() != 64 {
        return Err(SignatureError::KeyLength(text.len()));
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).map_err(|_| SignatureError::KeyNotHex)?;
    Ok(out)
}

/// The trainer's secret key.
#[derive(Clone)]
pub struct ArtefactSigner {
    key: SigningKey,
}

impl std::fmt::Debug for ArtefactSigner {
    // Never the secret: logs and panics show which public key this is.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtefactSigner").field("public_key", &self.public_key_hex()).finish()
    }
}

impl ArtefactSigner {
    /// A new random key pair, from the operating system's generator.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
        ArtefactSigner { key: SigningKey::from_bytes(&seed) }
    }

    /// From 64 hex characters (the 32-byte secret seed), surrounding whitespace ignored.
    pub fn from_hex(text: &str) -> Result<Self, SignatureError> {
        Ok(ArtefactSigner { key: SigningKey::from_bytes(&key_bytes(text)?) })
    }

    pub fn secret_key_hex(&self) -> String {
        hex::encode(self.key.to_bytes())
    }

    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().to_bytes())
    }

    /// The verifier that accepts exactly what this key signs.
    pub fn verifier(&self) -> ArtefactVerifier {
        ArtefactVerifier { keys: vec![self.key.verifying_key()] }
    }

    /// The signature of an artefact body, as written in its header (128 hex characters).
    pub fn sign_body(&self, body: &[u8]) -> String {
        let mut msg = Vec::with_capacity(SIGNED_CONTEXT.len() + body.len());
        msg.extend_from_slice(SIGNED_CONTEXT);
        msg.extend_from_slice(body);
        hex::encode(self.key.sign(&msg).to_bytes())
    }
}

/// The public keys a detector trusts.
#[derive(Debug, Clone)]
pub struct ArtefactVerifier {
    keys: Vec<VerifyingKey>,
}

impl ArtefactVerifier {
    /// From one or more public keys, 64 hex characters each, separated by commas.
    pub fn from_hex_list(text: &str) -> Result<Self, SignatureError> {
        let mut keys = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let key =
                VerifyingKey::from_bytes(&key_bytes(part)?).map_err(|_| SignatureError::NotAPublicKey(part.into()))?;
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(SignatureError::NoKey);
        }
        Ok(ArtefactVerifier { keys })
    }

    /// Checks `signature` (the header's hex, `None` when the header has none) over `body`.
    pub fn verify_body(&self, body: &[u8], signature: Option<&str>) -> Result<(), SignatureError> {
        let sig_hex = signature.ok_or(SignatureError::Unsigned)?;
        let mut raw = [0u8; 64];
        if sig_hex.len() != 128 || hex::decode_to_slice(sig_hex, &mut raw).is_err() {
            return Err(SignatureError::Malformed);
        }
        let sig = Signature::from_bytes(&raw);
        let mut msg = Vec::with_capacity(SIGNED_CONTEXT.len() + body.len());
        msg.extend_from_slice(SIGNED_CONTEXT);
        msg.extend_from_slice(body);
        // Strict: no malleable or small-order forms, so one body has one valid signature per key.
        if self.keys.iter().any(|k| k.verify_strict(&msg, &sig).is_ok()) {
            Ok(())
        } else {
            Err(SignatureError::Invalid)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_with_its_key_only() {
        let (a, b) = (ArtefactSigner::generate(), ArtefactSigner::generate());
        let sig = a.sign_body(b"body");
        assert_eq!(a.verifier().verify_body(b"body", Some(&sig)), Ok(()));
        assert_eq!(b.verifier().verify_body(b"body", Some(&sig)), Err(SignatureError::Invalid));
        assert_eq!(a.verifier().verify_body(b"bodY", Some(&sig)), Err(SignatureError::Invalid));
        assert_eq!(a.verifier().verify_body(b"body", None), Err(SignatureError::Unsigned));
        assert_eq!(a.verifier().verify_body(b"body", Some("zz")), Err(SignatureError::Malformed));
        // Either of two trusted keys (a rotation) verifies.
        let both = ArtefactVerifier::from_hex_list(&format!("{}, {}", b.public_key_hex(), a.public_key_hex())).unwrap();
        assert_eq!(both.verify_body(b"body", Some(&sig)), Ok(()));
    }

    #[test]
    fn keys_round_trip_as_hex_and_bad_ones_are_named() {
        let a = ArtefactSigner::generate();
        let again = ArtefactSigner::from_hex(&format!(" {}\n", a.secret_key_hex())).unwrap();
        assert_eq!(again.public_key_hex(), a.public_key_hex());
        assert_eq!(ArtefactSigner::from_hex("abc").unwrap_err(), SignatureError::KeyLength(3));
        assert_eq!(ArtefactSigner::from_hex(&"g".repeat(64)).unwrap_err(), SignatureError::KeyNotHex);
        assert_eq!(ArtefactVerifier::from_hex_list(" , ").unwrap_err(), SignatureError::NoKey);
        assert!(!format!("{a:?}").contains(&a.secret_key_hex()), "Debug never shows the secret");
    }
}
