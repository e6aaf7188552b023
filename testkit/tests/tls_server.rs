//! The harness's TLS-only server: TLS with its CA works for every name in its certificate,
//! plain TCP and an unrelated CA are refused, the Unix socket stays open for set-up.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tiered_testkit::{sql, PgServer};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

fn server() -> &'static PgServer {
    static SERVER: OnceLock<PgServer> = OnceLock::new();
    SERVER.get_or_init(|| PgServer::start_tls_only().unwrap_or_else(|e| panic!("{e}")))
}

/// A TLS connection that checks the server's certificate against `ca` and its host name.
async fn connect_verified(url: &str, ca: &Path) -> Result<Client, tokio_postgres::Error> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let (client, connection) =
        tokio_postgres::connect(&format!("{url}?sslmode=require"), MakeRustlsConnect::new(config)).await?;
    tokio::spawn(connection);
    Ok(client)
}

async fn uses_tls(client: &Client) -> bool {
    client
        .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn tls_with_its_ca_is_accepted_for_every_name_in_the_certificate() {
    let pg = server();
    let tls = pg.tls().expect("a TLS-only server has its certificates");
    assert!(
        pg.url().starts_with("postgres://postgres@localhost:"),
        "{}",
        pg.url()
    );
    for host in ["localhost", "127.0.0.1"] {
        let url = format!("postgres://postgres@{host}:{}/postgres", pg.port());
        let client = connect_verified(&url, tls.ca())
            .await
            .unwrap_or_else(|e| panic!("{url}: {e:?}"));
        assert!(uses_tls(&client).await, "{url}");
    }
}

#[tokio::test]
async fn plain_tcp_is_refused_by_pg_hba() {
    let err = tokio_postgres::connect(server().url(), NoTls)
        .await
        .err()
        .expect("refused");
    assert_eq!(
        err.code(),
        Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_unrelated_ca_fails_verification() {
    let pg = server();
    let err = connect_verified(pg.url(), pg.tls().unwrap().wrong_ca())
        .await
        .expect_err("the wrong CA must not verify the server");
    let source = std::error::Error::source(&err)
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(source.contains("UnknownIssuer"), "{err}: {source}");
}

#[tokio::test]
async fn the_unix_socket_takes_plain_connections_for_set_up() {
    let conninfo = server().socket_conninfo().expect("a throwaway cluster");
    let rows = sql(
        &conninfo,
        "SELECT count(*) FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND NOT ssl",
    )
    .await
    .unwrap();
    assert_eq!(rows[0].get::<_, i64>(0), 1);
}
