//! `TlsFiles`: a CA, the server certificate it signs, a second unrelated CA, and a TLS-only `pg_hba.conf`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

use crate::error::HarnessError;

/// The names the server certificate is valid for.
const SERVER_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Only TLS over TCP; the Unix socket stays open for the harness's own set-up and read-backs.
const PG_HBA: &str = "\
# Written by tiered-testkit: TCP connections must use TLS (plain ones are refused).
local   all all              trust
hostssl all all 127.0.0.1/32 trust
hostssl all all ::1/128      trust
";

/// The TLS files of a server started by [`PgServer::start_tls_only`](crate::PgServer::start_tls_only).
///
/// Made fresh for each server, in its temporary directory: a CA (`ca.pem`) that signed the
/// server's certificate (for `localhost`, `127.0.0.1` and `::1`), and a second CA
/// (`wrong-ca.pem`) that signed nothing the server has, for tests that must fail verification.
#[derive(Debug)]
pub struct TlsFiles {
    ca: PathBuf,
    wrong_ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    hba: PathBuf,
}

impl TlsFiles {
    /// Writes certificates, key and `pg_hba.conf` into `dir`, which is created.
    pub(crate) fn create(dir: &Path) -> Result<TlsFiles, HarnessError> {
        let files = TlsFiles {
            ca: dir.join("ca.pem"),
            wrong_ca: dir.join("wrong-ca.pem"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            hba: dir.join("pg_hba.conf"),
        };
        let certificates =
            |e: rcgen::Error| HarnessError::new(format!("could not make test certificates: {e}"));
        let ca = certificate_authority("tiered-testkit CA").map_err(certificates)?;
        let wrong_ca = certificate_authority("tiered-testkit unrelated CA").map_err(certificates)?;
        let server_key = KeyPair::generate().map_err(certificates)?;
        let server_cert = server_params()
            .and_then(|params| params.signed_by(&server_key, &ca))
            .map_err(certificates)?;
        fs::create_dir(dir)
            .map_err(|e| HarnessError::new(format!("could not create {}: {e}", dir.display())))?;
        for (path, contents) in [
            (&files.ca, ca.pem()),
            (&files.wrong_ca, wrong_ca.pem()),
            (&files.server_cert, server_cert.pem()),
            (&files.server_key, server_key.serialize_pem()),
            (&files.hba, PG_HBA.to_owned()),
        ] {
            fs::write(path, contents)
                .map_err(|e| HarnessError::new(format!("could not write {}: {e}", path.display())))?;
        }
        // The server refuses a key that others may read.
        fs::set_permissions(&files.server_key, fs::Permissions::from_mode(0o600)).map_err(|e| {
            HarnessError::new(format!("could not restrict {}: {e}", files.server_key.display()))
        })?;
        Ok(files)
    }

    /// The CA that signed the server's certificate, as PEM: give it as `sslrootcert`.
    pub fn ca(&self) -> &Path {
        &self.ca
    }

    /// A CA unrelated to the server's certificate, as PEM: verification against it fails.
    pub fn wrong_ca(&self) -> &Path {
        &self.wrong_ca
    }

    /// Server options (`postgres -c …`) that turn TLS on and allow TCP connections only over it.
    pub(crate) fn server_options(&self) -> String {
        format!(
            " -c ssl=on -c ssl_cert_file='{}' -c ssl_key_file='{}' -c hba_file='{}'",
            self.server_cert.display(),
            self.server_key.display(),
            self.hba.display()
        )
    }
}

fn certificate_authority(name: &str) -> Result<CertifiedIssuer<'static, KeyPair>, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate()?)
}

fn server_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(SERVER_NAMES.map(String::from).to_vec())?;
    params.distinguished_name.push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    Ok(params)
}
