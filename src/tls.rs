//! The HTTPS listener's certificate: files named by `POSTEE_CERT_PEM`/`POSTEE_KEY_PEM`
//! (or Postee's `AQUAALERT_CERT_PEM`/`AQUAALERT_KEY_PEM`), else a self-signed certificate
//! generated once in the data directory and reused at every start.

use std::path::{Path, PathBuf};

/// Where the certificate and key are, and whether they were just generated.
#[derive(Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub generated: bool,
}

fn env_path(names: &[&str]) -> Option<PathBuf> {
    names
        .iter()
        .filter_map(|n| std::env::var(n).ok())
        .rfind(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Picks or creates the certificate files. The `POSTEE_*` variables win over `AQUAALERT_*`.
/// Why HTTPS cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS file {0} does not exist")]
    Missing(String),
    #[error(
        "set both POSTEE_CERT_PEM and POSTEE_KEY_PEM (or AQUAALERT_CERT_PEM and AQUAALERT_KEY_PEM), not one"
    )]
    OnlyOne,
    #[error("cannot generate a TLS certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

fn write_error(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Write {
        path: path.display().to_string(),
        source,
    }
}

pub fn cert_files(data_dir: &Path) -> Result<CertFiles, TlsError> {
    let cert = env_path(&["AQUAALERT_CERT_PEM", "POSTEE_CERT_PEM"]);
    let key = env_path(&["AQUAALERT_KEY_PEM", "POSTEE_KEY_PEM"]);
    match (cert, key) {
        (Some(cert), Some(key)) => {
            for p in [&cert, &key] {
                if !p.is_file() {
                    return Err(TlsError::Missing(p.display().to_string()));
                }
            }
            Ok(CertFiles {
                cert,
                key,
                generated: false,
            })
        }
        (Some(_), None) | (None, Some(_)) => Err(TlsError::OnlyOne),
        (None, None) => {
            let cert = data_dir.join("cert.pem");
            let key = data_dir.join("key.pem");
            if cert.is_file() && key.is_file() {
                return Ok(CertFiles {
                    cert,
                    key,
                    generated: false,
                });
            }
            generate(&cert, &key)?;
            Ok(CertFiles {
                cert,
                key,
                generated: true,
            })
        }
    }
}

/// A self-signed certificate for `localhost`, `127.0.0.1`, `::1` and the host name.
fn generate(cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if let Ok(h) = std::fs::read_to_string("/etc/hostname") {
        let h = h.trim();
        if !h.is_empty() && !names.iter().any(|n| n == h) {
            names.push(h.to_string());
        }
    }
    let ck = rcgen::generate_simple_self_signed(names)?;
    if let Some(dir) = cert_path.parent() {
        std::fs::create_dir_all(dir).map_err(write_error(dir))?;
    }
    std::fs::write(cert_path, ck.cert.pem()).map_err(write_error(cert_path))?;
    write_private(key_path, ck.signing_key.serialize_pem().as_bytes())
        .map_err(write_error(key_path))?;
    Ok(())
}

/// Writes a file only its owner can read (keys).
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}
