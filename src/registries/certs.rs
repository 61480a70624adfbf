//! Per-registry TLS files, containers-certs.d(5):
//!
//! ```text
//! /etc/containers/certs.d/HOST[:PORT]/
//!     *.crt            certificate authorities trusted for this registry (PEM, one or more each)
//!     NAME.cert        a client certificate, with its key NAME.key
//! ```
//! The directory is `--cert-dir DIR` itself when given (for every registry, as skopeo's
//! `--cert-dir`); otherwise the first that exists of `$HOME/.config/containers/certs.d/HOST[:PORT]`
//! (not root), `/etc/containers/certs.d/HOST[:PORT]` and `/etc/docker/certs.d/HOST[:PORT]`. The
//! authorities are added to the system's for connections to that registry only.
//!
//! Client certificates are refused with a message naming the file: the HTTP client hoist uses
//! (oci-client) cannot present one yet, and a pull that silently omitted it would fail later with a
//! less clear TLS alert.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("{}: {cause}", path.display())]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("{}: no PEM certificate in it", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: client certificates (NAME.cert + NAME.key) are not supported by hoist yet; remove the pair or use a registry that does not require one", path.display())]
    ClientCertificate { path: PathBuf },
}

/// The directories looked at for `host` (`HOST[:PORT]`), in order.
pub fn search_path(host: &str, cert_dir: Option<&Path>) -> Vec<PathBuf> {
    if let Some(d) = cert_dir {
        return vec![d.to_path_buf()];
    }
    let mut out = Vec::new();
    if !nix::unistd::geteuid().is_root()
        && let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty())
    {
        out.push(PathBuf::from(h).join(".config/containers/certs.d").join(host));
    }
    out.push(Path::new("/etc/containers/certs.d").join(host));
    out.push(Path::new("/etc/docker/certs.d").join(host));
    out
}

/// The certificate authorities for `host`, each one PEM block (none: no directory).
pub fn roots_for(host: &str, cert_dir: Option<&Path>) -> Result<Vec<Vec<u8>>, CertsError> {
    // A host name cannot climb out of the directory: references only allow [A-Za-z0-9.-:[]].
    if host.contains('/') || host.starts_with('.') {
        return Ok(Vec::new());
    }
    let Some(dir) = search_path(host, cert_dir).into_iter().find(|d| d.is_dir()) else {
        return Ok(Vec::new());
    };
    let read_err = |path: &Path, cause| CertsError::Read { path: path.to_path_buf(), cause };
    let mut names: Vec<PathBuf> =
        std::fs::read_dir(&dir).map_err(|e| read_err(&dir, e))?.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    names.sort();
    let mut roots = Vec::new();
    for p in names {
        match p.extension().and_then(|x| x.to_str()) {
            Some("crt") => {
                let text = std::fs::read(&p).map_err(|e| read_err(&p, e))?;
                let blocks = pem_certificates(&text);
                if blocks.is_empty() {
                    return Err(CertsError::NoCertificate { path: p });
                }
                roots.extend(blocks);
            }
            Some("cert") | Some("key") => return Err(CertsError::ClientCertificate { path: p }),
            _ => {}
        }
    }
    Ok(roots)
}

/// The `CERTIFICATE` PEM blocks of a file, each on its own.
fn pem_certificates(text: &[u8]) -> Vec<Vec<u8>> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let text = String::from_utf8_lossy(text);
    let mut out = Vec::new();
    let mut rest = text.as_ref();
    while let Some(start) = rest.find(BEGIN) {
        let Some(len) = rest[start..].find(END) else { break };
        let end = start + len + END.len();
        out.push(format!("{}\n", &rest[start..end]).into_bytes());
        rest = &rest[end..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_authorities_and_refuses_client_pairs() {
        let d = tempfile::tempdir().unwrap();
        let host = d.path().join("h");
        std::fs::create_dir(&host).unwrap();
        let block = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----";
        std::fs::write(host.join("ca.crt"), format!("junk\n{block}\n{block}\n")).unwrap();
        std::fs::write(host.join("README"), "ignored").unwrap();
        let roots = roots_for("r.example:5000", Some(&host)).unwrap();
        assert_eq!(roots, vec![format!("{block}\n").into_bytes(); 2]);
        std::fs::write(host.join("empty.crt"), "nothing").unwrap();
        assert_eq!(
            roots_for("x", Some(&host)).unwrap_err().to_string(),
            format!("{}: no PEM certificate in it", host.join("empty.crt").display())
        );
        std::fs::remove_file(host.join("empty.crt")).unwrap();
        std::fs::write(host.join("client.cert"), block).unwrap();
        assert!(roots_for("x", Some(&host)).unwrap_err().to_string().contains("client.cert: client certificates"));
        assert!(roots_for("x", Some(&d.path().join("absent"))).unwrap().is_empty());
    }
}
