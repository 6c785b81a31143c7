//! The listener's certificate files: PEM chain and key (RSA, ECDSA or Ed25519), loaded into
//! what rustls serves. Config validation and the reloading resolver in `server` share this.

use rustls::crypto::aws_lc_rs::sign::any_supported_type;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::path::Path;
use std::sync::Arc;

/// Reads `cert` (the leaf first, then the chain) and `key`, and checks that they belong
/// together. The error names the file and never holds key material.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{} is not a PEM certificate chain: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{} holds no certificate", cert.display()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("{} holds no usable PEM private key: {e}", key.display()))?;
    let signing = any_supported_type(&key_der).map_err(|e| {
        format!(
            "{}: not an RSA, ECDSA or Ed25519 key rustls can use: {e}",
            key.display()
        )
    })?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        format!(
            "{} and {} do not belong together: {e}",
            cert.display(),
            key.display()
        )
    })?;
    Ok(Arc::new(certified))
}
