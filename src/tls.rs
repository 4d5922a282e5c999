//! One rustls crypto provider for the whole binary.
//!
//! kube and reqwest are both built without a provider of their own (`ring` for kube, `rustls-no-provider`
//! for reqwest), so the process installs ring's provider once before any TLS connection is made.

/// Installs ring as the process-wide rustls provider. Safe to call more than once.
pub fn install_crypto_provider() {
    // `install_default` fails only when a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
