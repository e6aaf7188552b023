//! `PgServer`: a throwaway PostgreSQL cluster, or the external server named by `TIERED_TEST_DATABASE_URL`.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use crate::error::HarnessError;
use crate::process::{find_on_path, is_root, on_free_port, shell_line, spawn_watchdog, temp_dir};
use crate::tls::TlsFiles;
use crate::url;

/// Names an existing server to use instead of a throwaway cluster.
const EXTERNAL_URL_VAR: &str = "TIERED_TEST_DATABASE_URL";

const BINARIES_NOT_FOUND: &str = "PostgreSQL server binaries (initdb, pg_ctl) not found. \
Install them (Debian/Ubuntu: `apt-get install -y postgresql`) or set \
TIERED_TEST_DATABASE_URL=postgres://user:pass@host:port/db to use an existing server.";

/// Runs the rest of the command line as the `postgres` user (initdb and postgres refuse root).
const RUNUSER: &[&str] = &["runuser", "-u", "postgres", "--"];
/// The same with `su`, for systems without `runuser`: `$0 "$@"` is the program and its
/// arguments, and `--` keeps su from taking those arguments as its own options.
const SU: &[&str] = &[
    "su",
    "-s",
    "/bin/sh",
    "-c",
    "exec \"$0\" \"$@\"",
    "--",
    "postgres",
];

/// A PostgreSQL server for tests.
///
/// Either a throwaway cluster in a temporary directory, owned by this value and removed when it
/// is dropped or when the test process dies (see [`PgServer::start`]), or, when
/// `TIERED_TEST_DATABASE_URL` is set, that existing server, used as-is.
#[derive(Debug)]
pub struct PgServer {
    url: String,
    host_port: String,
    port: u16,
    /// `None` for an external server.
    cluster: Option<Cluster>,
}

impl PgServer {
    /// Starts a throwaway cluster, or uses the server at `TIERED_TEST_DATABASE_URL` when that is
    /// set (and not empty).
    ///
    /// Blocking; safe to call from sync code and from a tokio runtime thread. The cluster listens
    /// on a free port of 127.0.0.1 and trusts every local connection (user `postgres`, no
    /// password); it runs without fsync, so it is fast and does not survive a machine crash, but
    /// it keeps synchronous commits, so a killed and restarted server loses no committed row
    /// (what the fault tests rely on). When the process runs
    /// as root, initdb and the server run as the `postgres` user.
    ///
    /// Cleanup: dropping the value stops the server and removes its directory. A watchdog process
    /// does the same shortly after the test process exits without dropping it (a `static`, a
    /// panic, SIGKILL).
    ///
    /// Fails, saying what to do, when the server binaries are not installed; a failing command
    /// is reported with its exit status, output and the tail of the server log.
    pub fn start() -> Result<PgServer, HarnessError> {
        if let Some(url) = env::var(EXTERNAL_URL_VAR).ok().filter(|url| !url.is_empty()) {
            let (host_port, port) = url::host_port(&url).ok_or_else(|| {
                HarnessError::new(format!(
                    "{EXTERNAL_URL_VAR} is not a URL of the form postgres://user:pass@host:port/db"
                ))
            })?;
            return Ok(PgServer {
                url,
                host_port,
                port,
                cluster: None,
            });
        }
        PgServer::throwaway(false)
    }

    /// Starts a throwaway cluster that takes TCP connections only over TLS, with certificates
    /// made for it (see [`TlsFiles`]); `TIERED_TEST_DATABASE_URL` is not used.
    ///
    /// Its [`url`](PgServer::url) names `localhost`, which its certificate is valid for (as
    /// are `127.0.0.1` and `::1`), and no `sslmode`: tests add the one they exercise. A plain
    /// TCP connection is refused by `pg_hba.conf`; the Unix socket
    /// ([`socket_conninfo`](PgServer::socket_conninfo)) still takes plain ones, for set-up and
    /// read-backs. Otherwise as [`start`](PgServer::start).
    pub fn start_tls_only() -> Result<PgServer, HarnessError> {
        PgServer::throwaway(true)
    }

    fn throwaway(tls: bool) -> Result<PgServer, HarnessError> {
        let (cluster, port) = Cluster::create(tls)?;
        // A name, not an address, so that verify-full checks a DNS name.
        let host = if tls { "localhost" } else { "127.0.0.1" };
        Ok(PgServer {
            url: format!("postgres://postgres@{host}:{port}/postgres"),
            host_port: format!("{host}:{port}"),
            port,
            cluster: Some(cluster),
        })
    }

    /// The server shared by all tests of this process, started on first use.
    ///
    /// It is never dropped; its watchdog removes it after the process exits. Do not
    /// [`stop`](PgServer::stop) it: other tests are using it. Start a dedicated server for that.
    ///
    /// # Panics
    ///
    /// When the server cannot be started, with the full [`HarnessError`] text.
    pub fn shared() -> &'static PgServer {
        static SHARED: OnceLock<PgServer> = OnceLock::new();
        SHARED.get_or_init(|| PgServer::start().unwrap_or_else(|e| panic!("{e}")))
    }

    /// Connection URL, e.g. `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `host:port` of the server, e.g. to put a [`FaultProxy`](crate::FaultProxy) in front of it.
    pub fn host_port(&self) -> &str {
        &self.host_port
    }

    /// TCP port of the server (for an external URL without a port: 5432).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether this is the external server named by `TIERED_TEST_DATABASE_URL`.
    pub fn is_external(&self) -> bool {
        self.cluster.is_none()
    }

    /// The certificates of a server started by [`start_tls_only`](PgServer::start_tls_only);
    /// `None` for any other.
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.cluster.as_ref()?.tls.as_ref()
    }

    /// A connection string (libpq's `key=value` form, which [`sql`](crate::sql) takes) for the
    /// throwaway cluster's Unix socket, where user `postgres` is trusted without TLS; `None`
    /// for an external server.
    pub fn socket_conninfo(&self) -> Option<String> {
        let dir = self.cluster.as_ref()?.dir.display().to_string();
        let dir = dir.replace('\\', "\\\\").replace('\'', "\\'");
        Some(format!(
            "host='{dir}' port={} user=postgres dbname=postgres",
            self.port
        ))
    }

    /// The throwaway cluster's server log; `None` for an external server.
    pub fn log_path(&self) -> Option<&Path> {
        self.cluster.as_ref().map(|cluster| cluster.log.as_path())
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`): open connections break and new
    /// ones are refused until [`start_again`](PgServer::start_again).
    ///
    /// Fails for an external server: fault tests then need a [`FaultProxy`](crate::FaultProxy).
    pub fn stop(&self) -> Result<(), HarnessError> {
        self.cluster()?.stop()
    }

    /// Starts a stopped server again on the same port and waits until it accepts connections.
    ///
    /// Fails for an external server, and when the port was taken meanwhile.
    pub fn start_again(&self) -> Result<(), HarnessError> {
        self.cluster()?.start_server(self.port)
    }

    fn cluster(&self) -> Result<&Cluster, HarnessError> {
        self.cluster.as_ref().ok_or_else(|| {
            HarnessError::new(format!(
                "stopping and restarting the server needs the throwaway cluster, but \
                 {EXTERNAL_URL_VAR} is set; inject faults with a FaultProxy instead"
            ))
        })
    }
}

/// A cluster in its own temporary directory, removed on drop.
#[derive(Debug)]
struct Cluster {
    /// Directory holding initdb and pg_ctl.
    bin_dir: PathBuf,
    /// The temporary directory: data directory, server log and Unix socket.
    dir: PathBuf,
    data: PathBuf,
    log: PathBuf,
    /// Command prefix that runs a tool as the `postgres` user; empty when not root.
    run_as: &'static [&'static str],
    /// Set for a TLS-only server.
    tls: Option<TlsFiles>,
    /// Stops the server and removes `dir` once this process is gone.
    watchdog: Child,
}

impl Cluster {
    /// Creates, initializes and starts a cluster, TLS-only if `tls`; returns it with its port.
    fn create(tls: bool) -> Result<(Cluster, u16), HarnessError> {
        let bin_dir = find_bin_dir().ok_or_else(|| HarnessError::new(BINARIES_NOT_FOUND))?;
        let run_as = if is_root() {
            if find_on_path("runuser").is_some() {
                RUNUSER
            } else {
                SU
            }
        } else {
            &[]
        };
        let dir = temp_dir("pg")?;
        let data = dir.join("data");
        let log = dir.join("server.log");
        // Spawned before anything else so that no exit path leaves the directory behind.
        let watchdog = spawn_watchdog(&dir, &shell_line(&stop_argv(run_as, &bin_dir, &data)))?;
        // From here on, `Drop` cleans up after any failure.
        let mut cluster = Cluster {
            bin_dir,
            dir,
            data,
            log,
            run_as,
            tls: None,
            watchdog,
        };
        if tls {
            // Before the chown below: the server reads these as the `postgres` user.
            cluster.tls = Some(TlsFiles::create(&cluster.dir.join("tls"))?);
        }
        if !run_as.is_empty() {
            let dir = cluster.dir.display().to_string();
            cluster.run(
                &["chown".into(), "-R".into(), "postgres:postgres".into(), dir],
                false,
            )?;
        }
        cluster.initdb()?;
        let ((), port) = on_free_port(|port| cluster.start_server(port))?;
        Ok((cluster, port))
    }

    fn initdb(&self) -> Result<(), HarnessError> {
        let data = self.data.display().to_string();
        let mut args = vec!["-D", &data, "-U", "postgres", "--auth=trust", "-E", "UTF8"];
        // C locale: the environment's locale may not exist on this system.
        args.extend(["--locale=C", "--no-sync"]);
        let help = Command::new(self.bin_dir.join("initdb")).arg("--help").output();
        if help.is_ok_and(|help| String::from_utf8_lossy(&help.stdout).contains("--no-instructions")) {
            args.push("--no-instructions");
        }
        self.run(&self.tool_argv("initdb", &args), false)
    }

    /// `pg_ctl start -w`: returns once the server accepts connections.
    fn start_server(&self, port: u16) -> Result<(), HarnessError> {
        let mut options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='{}' \
             -c fsync=off -c full_page_writes=off -c max_connections=200",
            self.dir.display()
        );
        options.extend(self.tls.as_ref().map(TlsFiles::server_options));
        let (data, log) = (self.data.display().to_string(), self.log.display().to_string());
        let args = ["-D", &data, "-l", &log, "-w", "-o", &options, "start"];
        self.run(&self.tool_argv("pg_ctl", &args), true)
    }

    fn stop(&self) -> Result<(), HarnessError> {
        self.run(&stop_argv(self.run_as, &self.bin_dir, &self.data), true)
    }

    fn tool_argv(&self, tool: &str, args: &[&str]) -> Vec<String> {
        tool_argv(self.run_as, &self.bin_dir, tool, args)
    }

    /// Runs `argv` in the cluster directory; a failure report quotes the server log if `with_log`.
    fn run(&self, argv: &[String], with_log: bool) -> Result<(), HarnessError> {
        let output = Command::new(&argv[0])
            .args(&argv[1..])
            // The `postgres` user may not be allowed into the caller's working directory.
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| HarnessError::new(format!("could not run `{}`: {e}", argv.join(" "))))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(HarnessError::command_failed(
                argv,
                &output,
                with_log.then_some(self.log.as_path()),
            ))
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Errors are moot here: the server may be stopped already, or never have started.
        let _ = self.stop();
        let _ = fs::remove_dir_all(&self.dir);
        // Nothing is left to watch; reap the watchdog so it does not linger as a zombie.
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
    }
}

/// Full command line for a server tool, prefixed to run as `postgres` when needed.
fn tool_argv(run_as: &[&str], bin_dir: &Path, tool: &str, args: &[&str]) -> Vec<String> {
    let tool = bin_dir.join(tool).display().to_string();
    run_as
        .iter()
        .copied()
        .chain([tool.as_str()])
        .chain(args.iter().copied())
        .map(String::from)
        .collect()
}

/// `pg_ctl stop -m immediate`: the server exits at once, without a checkpoint.
fn stop_argv(run_as: &[&str], bin_dir: &Path, data: &Path) -> Vec<String> {
    let data = data.display().to_string();
    tool_argv(
        run_as,
        bin_dir,
        "pg_ctl",
        &["-D", &data, "-m", "immediate", "stop"],
    )
}

/// The directory with initdb and pg_ctl: from `$PATH`, else the newest `/usr/lib/postgresql/*/bin`.
fn find_bin_dir() -> Option<PathBuf> {
    // Resolve symlinks: pg_ctl finds `postgres` next to its real location.
    let on_path = find_on_path("initdb")
        .and_then(|initdb| fs::canonicalize(initdb).ok())
        .and_then(|initdb| initdb.parent().map(Path::to_path_buf));
    let mut installed: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.split('.').next()?.parse().ok()?;
            Some((major, entry.path().join("bin")))
        })
        .collect();
    installed.sort_by_key(|(major, _)| std::cmp::Reverse(*major));
    on_path
        .into_iter()
        .chain(installed.into_iter().map(|(_, bin)| bin))
        .find(|bin| bin.join("initdb").is_file() && bin.join("pg_ctl").is_file())
}
