//! What `sera --version` says: the version, the target it was built for and
//! which optional features it holds, so that a binary found on a host tells
//! which artefact it is (x86_64 or aarch64, full or small).

/// `sera 0.1.0 (x86_64-unknown-linux-musl; tls, ed25519)`, or
/// `sera 0.1.0 (aarch64-unknown-linux-musl; no tls, no ed25519)`.
pub fn line() -> String {
    let tls = if cfg!(feature = "tls") {
        "tls"
    } else {
        "no tls"
    };
    let ed25519 = if cfg!(feature = "ed25519") {
        "ed25519"
    } else {
        "no ed25519"
    };
    let version = env!("CARGO_PKG_VERSION");
    format!("sera {version} ({}; {tls}, {ed25519})", target())
}

/// The target triple, pieced together from cfg! rather than taken from a
/// build script: exact for every Linux target sera is built for (x86_64 and
/// aarch64, musl and gnu), whose vendor is always "unknown".
fn target() -> String {
    let libc = if cfg!(target_env = "musl") {
        "-musl"
    } else if cfg!(target_env = "gnu") {
        "-gnu"
    } else {
        ""
    };
    format!(
        "{}-unknown-{}{libc}",
        std::env::consts::ARCH,
        std::env::consts::OS
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_version_target_and_features() {
        let line = line();
        let version = format!("sera {} (", env!("CARGO_PKG_VERSION"));
        assert!(line.starts_with(&version), "{line}");
        // The tests run on the host target, which is x86_64 or aarch64 gnu.
        let arch = std::env::consts::ARCH;
        assert!(line.contains(&format!("({arch}-unknown-linux-")), "{line}");
        assert_eq!(line.contains("; tls,"), cfg!(feature = "tls"), "{line}");
        assert_eq!(
            line.ends_with(", ed25519)"),
            cfg!(feature = "ed25519"),
            "{line}"
        );
    }
}
