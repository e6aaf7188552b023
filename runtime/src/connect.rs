//! Connecting from a URL: libpq's `sslmode` and `sslrootcert` over rustls, for the pool and the listener.

use std::borrow::Cow;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use percent_encoding::percent_decode_str;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::{Host, SslMode as DriverSslMode};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::describe;
use crate::error::BackendError;

/// The stream of a connection made by [`ConnectConfig`], TLS or not.
type Stream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;

/// A connection made by [`ConnectConfig::connect`]: the caller drives it.
pub(crate) type Connection = tokio_postgres::Connection<Socket, Stream>;

/// A server to connect to: the driver's settings, and TLS as libpq's parameters asked for it.
#[derive(Clone, Debug)]
pub(crate) struct ConnectConfig {
    config: tokio_postgres::Config,
    tls: Tls,
}

/// Parses a `postgres://` URL or a `key=value` connection string, taking out libpq's
/// `sslmode` and `sslrootcert` (tokio-postgres knows neither `verify-*` nor `sslrootcert`),
/// and loads the roots the certificate check needs.
pub(crate) fn parse_url(url: &str) -> Result<ConnectConfig, BackendError> {
    let invalid =
        |message: String| BackendError::InvalidConfig(format!("PostgreSQL URL {}: {message}", redact(url)));
    let (rest, params) = take_tls_params(url).map_err(invalid)?;
    let mut config = tokio_postgres::Config::from_str(&rest).map_err(|err| invalid(describe(&err)))?;
    config.ssl_mode(match params.mode {
        SslMode::Disable => DriverSslMode::Disable,
        SslMode::Prefer => DriverSslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => DriverSslMode::Require,
    });
    let tls = Tls {
        rustls: MakeRustlsConnect::new(params.client_config().map_err(invalid)?),
        endpoints: endpoints(&config).into(),
        mode: params.mode,
        settings: params.to_string().into(),
    };
    Ok(ConnectConfig { config, tls })
}

impl ConnectConfig {
    /// Sets the name the server shows for the connection (`pg_stat_activity.application_name`).
    pub(crate) fn application_name(&mut self, name: impl Into<String>) -> &mut Self {
        self.config.application_name(name.into());
        self
    }

    /// Where it connects: `host:port/database`, never the password.
    pub(crate) fn target(&self) -> String {
        describe_target(&self.config)
    }

    /// Opens one connection, TLS as for the pool; an error names the server.
    pub(crate) async fn connect(&self) -> Result<(Client, Connection), String> {
        self.config
            .connect(self.tls.clone())
            .await
            .map_err(|err| format!("{}: {}", describe_target(&self.config), self.hint(describe(&err))))
    }

    /// `err` with a hint when the server turned away a connection that `sslmode=disable` kept
    /// plain: a server that accepts only TLS says just "no pg_hba.conf entry … no encryption".
    pub(crate) fn explain(&self, err: BackendError) -> BackendError {
        match err {
            BackendError::Connect {
                target,
                message,
                retryable,
            } => BackendError::Connect {
                target,
                message: self.hint(message),
                retryable,
            },
            other => other,
        }
    }

    fn hint(&self, message: String) -> String {
        // 28000: no pg_hba.conf line admits this connection (the server's text may be localized).
        if self.tls.mode == SslMode::Disable && message.contains("SQLSTATE 28000") {
            format!(
                "{message}; no TLS was tried (sslmode=disable): if the server accepts only TLS \
                 connections, use sslmode=require or a stronger mode"
            )
        } else {
            message
        }
    }
}

/// A pool of connections to the server, and the server as `host:port/database`.
pub(crate) fn pool_from_config(
    config: ConnectConfig,
    max_connections: usize,
) -> Result<(Pool, String), BackendError> {
    let target = describe_target(&config.config);
    let manager = Manager::from_config(
        config.config,
        config.tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(max_connections)
        .build()
        .map_err(|err| BackendError::InvalidConfig(format!("connection pool for {target}: {err}")))?;
    Ok((pool, target))
}

/// Each server of the config as `(host, port)`; a Unix socket's host is its directory.
fn endpoints(config: &tokio_postgres::Config) -> Vec<(String, u16)> {
    let ports = config.get_ports();
    config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                Host::Tcp(name) => (name.clone(), port),
                Host::Unix(path) => (path.display().to_string(), port),
            }
        })
        .collect()
}

/// `host:port/database`, for error messages; never the password.
fn describe_target(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = endpoints(config)
        .into_iter()
        .map(|(host, port)| format!("{host}:{port}"))
        .collect();
    let hosts = if hosts.is_empty() {
        "localhost:5432".to_owned()
    } else {
        hosts.join(",")
    };
    format!(
        "{hosts}/{}",
        config.get_dbname().or(config.get_user()).unwrap_or("postgres")
    )
}

/// The connection string with any password replaced, fit for an error message.
fn redact(url: &str) -> String {
    let Some(conn) = ConnString::parse(url) else {
        return "(not shown: it does not parse)".to_owned();
    };
    // `scheme://user:password@host…`: the password is between the first `:` and the `@`.
    let base = match (conn.base.find("://"), conn.base.find('@')) {
        (Some(scheme), Some(at)) => match conn.base[scheme + 3..at].find(':') {
            Some(colon) => format!("{}:***{}", &conn.base[..scheme + 3 + colon], &conn.base[at..]),
            None => conn.base.to_owned(),
        },
        _ => conn.base.to_owned(),
    };
    conn.render(&base, |param| {
        Some(if param.key == "password" {
            "password=***"
        } else {
            param.raw
        })
    })
}

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SslMode {
    /// Never TLS.
    Disable,
    /// TLS if the server offers it, else plain.
    Prefer,
    /// TLS, with no check of the certificate (unless `sslrootcert` is given: then as `VerifyCa`).
    Require,
    /// TLS, with the certificate's chain checked but not its host name.
    VerifyCa,
    /// TLS, with the certificate's chain and host name checked.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, String> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            "allow" => {
                return Err(
                    "sslmode=allow (plain first, TLS as a fallback) is not supported: use prefer".into(),
                )
            }
            other => {
                return Err(format!(
                    "sslmode={other:?} is not one of disable, prefer, require, verify-ca, verify-full"
                ))
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// What a connection string asks of TLS, in libpq's terms.
#[derive(Debug, PartialEq)]
struct TlsParams {
    mode: SslMode,
    /// A PEM file of trusted roots, or `system` (libpq 16) for the operating system's.
    root_cert: Option<String>,
}

impl TlsParams {
    fn new(mode: Option<&str>, root_cert: Option<String>) -> Result<TlsParams, String> {
        let system = root_cert.as_deref() == Some("system");
        let mode = match mode {
            Some(mode) => SslMode::parse(mode)?,
            // As libpq: the system's roots are meant for verify-full, which they make the default.
            None if system => SslMode::VerifyFull,
            None => SslMode::Prefer,
        };
        if system && mode != SslMode::VerifyFull {
            return Err(format!(
                "sslmode={} may not be used with sslrootcert=system: use sslmode=verify-full",
                mode.name()
            ));
        }
        Ok(TlsParams { mode, root_cert })
    }

    /// The rustls configuration for these settings, with its roots loaded.
    fn client_config(&self) -> Result<ClientConfig, String> {
        // An explicit provider: the process-wide default may be unset, or another one.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let algorithms = provider.signature_verification_algorithms;
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|err| format!("TLS: {err}"))?;
        let builder = if self.mode == SslMode::VerifyFull {
            builder.with_root_certificates(self.roots()?)
        } else {
            // As libpq, a root file given makes require and prefer check the chain too. (Under
            // disable the driver never asks for TLS.)
            let check_chain =
                self.mode == SslMode::VerifyCa || (self.mode != SslMode::Disable && self.root_cert.is_some());
            let roots = if check_chain {
                Some(Arc::new(self.roots()?))
            } else {
                None
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(CaOnly { roots, algorithms }))
        };
        Ok(builder.with_no_client_auth())
    }

    /// The roots of `sslrootcert`, else the operating system's (as a browser or curl trusts).
    fn roots(&self) -> Result<RootCertStore, String> {
        let mut roots = RootCertStore::empty();
        match self.root_cert.as_deref().filter(|path| *path != "system") {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|err| format!("sslrootcert {path}: {err}"))?;
                roots.add_parsable_certificates(certs);
                if roots.is_empty() {
                    return Err(format!("sslrootcert {path} holds no usable PEM certificate"));
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
                    return Err(format!(
                        "sslmode={} needs trusted roots, and none were found on this system ({}): \
                         name a CA file with sslrootcert",
                        self.mode.name(),
                        errors.join("; ")
                    ));
                }
            }
        }
        Ok(roots)
    }
}

impl std::fmt::Display for TlsParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sslmode={}", self.mode.name())?;
        match &self.root_cert {
            Some(path) => write!(f, ", sslrootcert={path}"),
            None => Ok(()),
        }
    }
}

/// Splits libpq's `sslmode` and `sslrootcert` off a connection string; the rest is for
/// tokio-postgres. A string that does not parse is left whole, for tokio-postgres to say why.
fn take_tls_params(conn: &str) -> Result<(String, TlsParams), String> {
    let Some(parsed) = ConnString::parse(conn) else {
        return Ok((conn.to_owned(), TlsParams::new(None, None)?));
    };
    let (mut mode, mut root_cert) = (None, None);
    for param in &parsed.params {
        match &*param.key {
            "sslmode" => mode = Some(&*param.value),
            "sslrootcert" => root_cert = Some(param.value.clone().into_owned()),
            _ => {}
        }
    }
    let rest = parsed.render(parsed.base, |param| {
        (!matches!(&*param.key, "sslmode" | "sslrootcert")).then_some(param.raw)
    });
    Ok((rest, TlsParams::new(mode, root_cert)?))
}

/// A connection string cut into its parameters, as tokio-postgres reads it: the query of a
/// `postgres://` URL, or each `key=value` of libpq's other form.
struct ConnString<'a> {
    /// The URL up to its `?`; empty for the `key=value` form.
    base: &'a str,
    params: Vec<Param<'a>>,
}

struct Param<'a> {
    key: Cow<'a, str>,
    value: Cow<'a, str>,
    /// As written, e.g. `sslrootcert=%2Ftmp%2Fca.pem` or `password = 'it''s'`.
    raw: &'a str,
}

impl<'a> ConnString<'a> {
    /// `None` when `conn` is malformed.
    fn parse(conn: &'a str) -> Option<ConnString<'a>> {
        if conn.starts_with("postgres://") || conn.starts_with("postgresql://") {
            let Some((base, query)) = conn.split_once('?') else {
                return Some(ConnString {
                    base: conn,
                    params: Vec::new(),
                });
            };
            let params = query
                .split('&')
                .map(|raw| {
                    let (key, value) = raw.split_once('=')?;
                    Some(Param {
                        key: percent_decode_str(key).decode_utf8().ok()?,
                        value: percent_decode_str(value).decode_utf8().ok()?,
                        raw,
                    })
                })
                .collect::<Option<_>>()?;
            Some(ConnString { base, params })
        } else {
            let mut params = Vec::new();
            let mut rest = conn.trim_start();
            while !rest.is_empty() {
                let (param, after) = key_value(rest)?;
                params.push(param);
                rest = after.trim_start();
            }
            Some(ConnString { base: "", params })
        }
    }

    /// The string again from `base`, with each parameter as `keep` writes it (`None`: left out).
    fn render(&self, base: &str, mut keep: impl FnMut(&Param<'a>) -> Option<&'a str>) -> String {
        let params: Vec<&str> = self.params.iter().filter_map(&mut keep).collect();
        match (base, params.is_empty()) {
            ("", _) => params.join(" "),
            (base, true) => base.to_owned(),
            (base, false) => format!("{base}?{}", params.join("&")),
        }
    }
}

/// The first `key = value` of `s` (which starts with the key) and what follows it. A value is
/// a word or `'quoted'`, with `\` escaping the next character, as libpq and tokio-postgres read it.
fn key_value(s: &str) -> Option<(Param<'_>, &str)> {
    let key_end = s.find(|c: char| c.is_whitespace() || c == '=').unwrap_or(s.len());
    let key = &s[..key_end];
    let after_eq = s[key_end..].trim_start().strip_prefix('=')?.trim_start();
    let quoted = after_eq.starts_with('\'');
    let body = if quoted { &after_eq[1..] } else { after_eq };
    let mut value = String::new();
    let mut chars = body.char_indices();
    let end = loop {
        match chars.next() {
            Some((i, '\'')) if quoted => break i + 1,
            Some((i, c)) if c.is_whitespace() && !quoted => break i,
            Some((_, '\\')) => value.extend(chars.next().map(|(_, c)| c)),
            Some((_, c)) => value.push(c),
            None if quoted => return None,
            None => break body.len(),
        }
    };
    if key.is_empty() || (!quoted && value.is_empty()) {
        return None;
    }
    let consumed = s.len() - body.len() + end;
    let param = Param {
        key: Cow::Borrowed(key),
        value: Cow::Owned(value),
        raw: &s[..consumed],
    };
    Some((param, &s[consumed..]))
}

/// rustls for tokio-postgres, with handshake failures that name the server and the settings.
#[derive(Clone)]
struct Tls {
    rustls: MakeRustlsConnect,
    /// Each server's `(host, port)`, to name the one a handshake failed with.
    endpoints: Arc<[(String, u16)]>,
    mode: SslMode,
    /// `sslmode=…, sslrootcert=…`.
    settings: Arc<str>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl MakeTlsConnect<Socket> for Tls {
    type Stream = Stream;
    type TlsConnect = Handshake;
    type Error = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Error;

    fn make_tls_connect(&mut self, host: &str) -> Result<Handshake, Self::Error> {
        let port = self
            .endpoints
            .iter()
            .find(|(name, _)| name == host)
            .map_or(5432, |(_, port)| *port);
        Ok(Handshake {
            rustls: MakeTlsConnect::<Socket>::make_tls_connect(&mut self.rustls, host)?,
            server: format!("{host}:{port}"),
            settings: self.settings.clone(),
        })
    }
}

/// One TLS handshake with one server.
struct Handshake {
    rustls: <MakeRustlsConnect as MakeTlsConnect<Socket>>::TlsConnect,
    server: String,
    settings: Arc<str>,
}

impl TlsConnect<Socket> for Handshake {
    type Stream = Stream;
    type Error = TlsError;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, TlsError>> + Send>>;

    fn connect(self, socket: Socket) -> Self::Future {
        let Handshake {
            rustls,
            server,
            settings,
        } = self;
        let handshake = rustls.connect(socket);
        Box::pin(async move {
            handshake.await.map_err(|err| TlsError {
                server,
                settings,
                what: what_failed(&err),
            })
        })
    }
}

/// A failed TLS handshake: with which server, under which settings, and what failed.
#[derive(Debug, thiserror::Error)]
#[error("TLS handshake with {server} failed ({settings}): {what}")]
struct TlsError {
    server: String,
    settings: Arc<str>,
    what: String,
}

/// rustls's reason, led by plain words for the certificate failures an operator meets.
fn what_failed(err: &io::Error) -> String {
    let certificate = match err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(certificate)) => Some(certificate),
        _ => None,
    };
    let plainly = match certificate {
        Some(CertificateError::UnknownIssuer) => "certificate not trusted",
        Some(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }) => {
            "certificate not valid for this host name"
        }
        Some(
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. },
        ) => "certificate expired or not yet valid",
        _ => return err.to_string(),
    };
    format!("{plainly} ({err})")
}

/// libpq's checks short of `verify-full`: the chain up to `roots` but not the host name
/// (`verify-ca`, and `require` or `prefer` given `sslrootcert`), or without roots no check of
/// the certificate at all (`require`, `prefer`: encryption only). The handshake's signatures
/// are checked either way.
#[derive(Debug)]
struct CaOnly {
    roots: Option<Arc<RootCertStore>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for CaOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let certificate = ParsedCertificate::try_from(end_entity)?;
            verify_server_cert_signed_by_trust_anchor(
                &certificate,
                roots,
                intermediates,
                now,
                self.algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_error_messages() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/x?sslmode=require"),
            "postgres://app:***@db:5432/x?sslmode=require"
        );
        assert_eq!(redact("postgres://app@db/x"), "postgres://app@db/x");
        assert_eq!(
            redact("postgres://app@db/x?password=s3cret&sslmode=require"),
            "postgres://app@db/x?password=***&sslmode=require"
        );
        assert_eq!(
            redact("host=db password = 'it\\'s s3cret' user=app"),
            "host=db password=*** user=app"
        );
        assert_eq!(
            redact("host=db password='s3cret"),
            "(not shown: it does not parse)"
        );
        for url in [
            "postgres://app:s3cret@db:notaport/x",
            "postgres://app:s3cret@db/x?sslmode=verify-all",
            "postgres://app:s3cret@db/x?sslrootcert=/no/such/ca.pem",
            "host=db password=s3cret sslcert=/client.pem",
        ] {
            let err = parse_url(url).unwrap_err();
            assert!(matches!(err, BackendError::InvalidConfig(_)), "{err:?}");
            assert!(!format!("{err} {err:?}").contains("s3cret"), "{err}");
            assert!(err.to_string().contains("PostgreSQL URL"), "{err}");
        }
    }

    #[test]
    fn libpq_tls_parameters_are_taken_out_of_both_forms() {
        let (rest, tls) = take_tls_params(
            "postgres://u:p@db/app?sslmode=verify-full&sslrootcert=%2Fetc%2Fca%20x.pem&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(rest, "postgres://u:p@db/app?connect_timeout=3");
        assert_eq!(
            tls,
            TlsParams {
                mode: SslMode::VerifyFull,
                root_cert: Some("/etc/ca x.pem".into())
            }
        );
        let (rest, tls) =
            take_tls_params("host=db sslrootcert = '/etc/it\\'s ca.pem'  sslmode=verify-ca user=app")
                .unwrap();
        assert_eq!(rest, "host=db user=app");
        assert_eq!(tls.mode, SslMode::VerifyCa);
        assert_eq!(tls.root_cert.as_deref(), Some("/etc/it's ca.pem"));
        let (rest, tls) = take_tls_params("postgres://db/app?sslmode=require").unwrap();
        assert_eq!((rest.as_str(), tls.mode), ("postgres://db/app", SslMode::Require));
    }

    #[test]
    fn sslmode_defaults_to_prefer_and_maps_onto_the_driver() {
        for (url, mode) in [
            ("postgres://db/app", DriverSslMode::Prefer),
            ("postgres://db/app?sslmode=disable", DriverSslMode::Disable),
            ("postgres://db/app?sslmode=prefer", DriverSslMode::Prefer),
            ("host=db sslmode=require", DriverSslMode::Require),
        ] {
            let config = parse_url(url).unwrap();
            assert_eq!(config.config.get_ssl_mode(), mode, "{url}");
        }
        assert_eq!(
            TlsParams::new(None, Some("system".into())).unwrap().mode,
            SslMode::VerifyFull
        );
    }

    #[test]
    fn bad_tls_settings_are_invalid_config_saying_what_to_do() {
        for (url, says) in [
            (
                "postgres://db/app?sslmode=verify",
                "disable, prefer, require, verify-ca, verify-full",
            ),
            ("postgres://db/app?sslmode=allow", "use prefer"),
            (
                "postgres://db/app?sslmode=require&sslrootcert=system",
                "use sslmode=verify-full",
            ),
            (
                "postgres://db/app?sslmode=verify-ca&sslrootcert=/no/such.pem",
                "sslrootcert /no/such.pem",
            ),
        ] {
            let err = parse_url(url).unwrap_err().to_string();
            assert!(err.contains(says), "{url}: {err}");
        }
    }

    #[test]
    fn without_sslrootcert_verification_uses_the_system_roots() {
        let parsed = parse_url("postgres://db/app?sslmode=verify-full");
        if rustls_native_certs::load_native_certs().certs.is_empty() {
            let err = parsed.unwrap_err().to_string();
            assert!(err.contains("name a CA file with sslrootcert"), "{err}");
        } else {
            parsed.expect("the system's roots load");
        }
    }

    #[test]
    fn targets_name_host_port_and_database() {
        let config = parse_url("postgres://u:p@db.example:6543/app").unwrap();
        assert_eq!(describe_target(&config.config), "db.example:6543/app");
    }

    #[test]
    fn certificate_failures_are_said_plainly() {
        let failure = |err: CertificateError| {
            what_failed(&io::Error::new(
                io::ErrorKind::InvalidData,
                rustls::Error::InvalidCertificate(err),
            ))
        };
        assert!(failure(CertificateError::UnknownIssuer).starts_with("certificate not trusted ("));
        assert!(failure(CertificateError::NotValidForName)
            .starts_with("certificate not valid for this host name"));
        assert!(failure(CertificateError::Expired).starts_with("certificate expired"));
        let reset = io::Error::new(io::ErrorKind::ConnectionReset, "reset by peer");
        assert_eq!(what_failed(&reset), "reset by peer");
    }

    #[test]
    fn a_server_refusing_plain_connections_under_disable_gets_a_tls_hint() {
        let refused = || BackendError::Connect {
            target: "db:5432/app".into(),
            message: "no pg_hba.conf entry for host \"10.0.0.1\", no encryption (SQLSTATE 28000)".into(),
            retryable: false,
        };
        let disable = parse_url("postgres://db/app?sslmode=disable").unwrap();
        assert!(disable.explain(refused()).to_string().contains("sslmode=require"));
        let require = parse_url("postgres://db/app?sslmode=require").unwrap();
        assert_eq!(require.explain(refused()), refused());
    }
}
