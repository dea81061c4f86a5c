//! BuildKit's client side: the `moby.buildkit.v1.Control` API over any dialed stream, and the
//! session BuildKit calls back into (files, exports, credentials).
//!
//! This module speaks the protocol; it does not decide what to build (that is `build/`) and
//! does not know how the stream was reached (that is the driver's business).

pub mod client;
pub mod dockerignore;
pub mod fsutil;
pub mod session;

pub use client::BuildkitClient;

/// BuildKit's own random identifiers: 25 characters of base-36, as `identity.NewID` makes them.
pub fn new_id() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    (0..25)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_look_like_buildkits() {
        let id = super::new_id();
        assert_eq!(id.len(), 25);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()));
        assert_ne!(id, super::new_id());
    }
}
