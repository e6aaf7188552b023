//! `PgBouncer`: a throwaway pgbouncer in transaction pooling mode in front of a [`PgServer`].

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::thread;
use std::time::Duration;

use tokio_postgres::config::Host;

use crate::error::{log_tail, HarnessError};
use crate::process::{find_on_path, is_root, on_free_port, shell_line, spawn_watchdog, temp_dir};
use crate::{url, PgServer};

const NOT_FOUND: &str = "pgbouncer not found on PATH nor in /usr/sbin. Install it \
(Debian/Ubuntu: `apt-get update && apt-get install -y pgbouncer`).";

/// Where Debian installs it, which is not on a non-root user's `PATH`.
const SBIN_PATH: &str = "/usr/sbin/pgbouncer";

/// Logged once pgbouncer listens and accepts clients.
const READY_LINE: &str = "process up:";

/// Longest wait for [`READY_LINE`]; pgbouncer usually takes milliseconds.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The first version that can track named prepared statements in transaction mode
/// (`max_prepared_statements`); older versions reject the setting.
const PREPARED_STATEMENTS_SINCE: (u32, u32) = (1, 21);

/// Clients pgbouncer accepts; above its default of 100 so that several pools of a test fit.
const MAX_CLIENT_CONN: u32 = 500;

/// A pgbouncer with `pool_mode = transaction` in front of a [`PgServer`], as managed
/// PostgreSQL offerings put in front of their servers.
///
/// A client's server connection is handed to other clients at the end of each transaction, so
/// session state (named prepared statements, `SET`, `LISTEN`) is not the client's own. Named
/// prepared statements are not tracked, even by pgbouncer 1.21 and later: the pooler behaves
/// like Debian's 1.18. It listens on a free port of 127.0.0.1, accepts any user name without a
/// password (`auth_type = any`) and logs in to the server as the user of the server's URL.
///
/// Cleanup: dropping the value kills pgbouncer and removes its directory; a watchdog process
/// does the same shortly after the test process exits without dropping it.
#[derive(Debug)]
pub struct PgBouncer {
    url: String,
    admin_url: String,
    instance: Instance,
}

impl PgBouncer {
    /// Starts a pgbouncer in front of `server` and waits until it accepts clients.
    ///
    /// Blocking; safe to call from sync code and from a tokio runtime thread. When the process
    /// runs as root, pgbouncer switches to the `postgres` user (it refuses to run as root).
    ///
    /// Fails, saying how to install it, when pgbouncer is not installed; when it does not start,
    /// the error quotes its log.
    pub fn start(server: &PgServer) -> Result<PgBouncer, HarnessError> {
        let binary = find_on_path("pgbouncer")
            .or_else(|| Some(PathBuf::from(SBIN_PATH)).filter(|path| path.is_file()))
            .ok_or_else(|| HarnessError::new(NOT_FOUND))?;
        let settings = settings(&binary, server.url())?;
        let mut instance = Instance::create()?;
        let ((), port) = on_free_port(|port| instance.launch(&binary, &settings, port))?;
        let host_port = format!("127.0.0.1:{port}");
        let url = url::with_host_port(server.url(), &host_port)
            .ok_or_else(|| HarnessError::new(format!("no host:port to replace in {:?}", server.url())))?;
        Ok(PgBouncer {
            url,
            admin_url: format!("postgres://pgbouncer@{host_port}/pgbouncer"),
            instance,
        })
    }

    /// A pgbouncer in front of [`PgServer::shared`], shared by all tests of this process and
    /// started on first use; never dropped (its watchdog removes it after the process exits).
    ///
    /// # Panics
    ///
    /// When it cannot be started, with the full [`HarnessError`] text.
    pub fn shared() -> &'static PgBouncer {
        static SHARED: OnceLock<PgBouncer> = OnceLock::new();
        SHARED.get_or_init(|| PgBouncer::start(PgServer::shared()).unwrap_or_else(|e| panic!("{e}")))
    }

    /// Connection URL through the pooler: the server's URL with pgbouncer's `host:port`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// URL of pgbouncer's admin console (database `pgbouncer`), which takes `SHOW POOLS`,
    /// `SHOW CONFIG` and the like through the simple query protocol only.
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    /// pgbouncer's log (its standard error).
    pub fn log_path(&self) -> &Path {
        &self.instance.log
    }
}

/// pgbouncer.ini without `listen_port`, for the server at `server_url`.
fn settings(binary: &Path, server_url: &str) -> Result<String, HarnessError> {
    let config: tokio_postgres::Config = server_url
        .parse()
        .map_err(|e| HarnessError::new(format!("pgbouncer: cannot parse the server URL: {e}")))?;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        Some(Host::Unix(dir)) => dir.display().to_string(),
        None => return Err(HarnessError::new("pgbouncer: the server URL names no host")),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config
        .get_user()
        .ok_or_else(|| HarnessError::new("pgbouncer: the server URL names no user"))?;
    // `auth_type = any` needs every database to log in as one fixed user.
    let mut server = format!("host={} port={port} user={}", quote(&host), quote(user));
    if let Some(password) = config.get_password() {
        let password = std::str::from_utf8(password)
            .map_err(|_| HarnessError::new("pgbouncer: the server password is not UTF-8"))?;
        server += &format!(" password={}", quote(password));
    }
    let mut settings = format!(
        "[databases]\n\
         * = {server}\n\
         [pgbouncer]\n\
         pool_mode = transaction\n\
         auth_type = any\n\
         listen_addr = 127.0.0.1\n\
         unix_socket_dir =\n\
         max_client_conn = {MAX_CLIENT_CONN}\n"
    );
    if is_root() {
        settings += "user = postgres\n";
    }
    if version(binary)? >= PREPARED_STATEMENTS_SINCE {
        settings += "max_prepared_statements = 0\n";
    }
    Ok(settings)
}

/// A value of a pgbouncer connection string, single-quoted.
fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// `(major, minor)` from the first line of `pgbouncer --version`, e.g. `PgBouncer 1.18.0`.
fn version(binary: &Path) -> Result<(u32, u32), HarnessError> {
    let output = Command::new(binary)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| HarnessError::new(format!("could not run `{} --version`: {e}", binary.display())))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let parsed = text.lines().next().and_then(|line| {
        let mut numbers = line.strip_prefix("PgBouncer ")?.split('.');
        Some((numbers.next()?.parse().ok()?, numbers.next()?.parse().ok()?))
    });
    parsed.ok_or_else(|| {
        HarnessError::new(format!(
            "no version in the output of `{} --version`: {text:?}",
            binary.display()
        ))
    })
}

/// pgbouncer's directory (configuration, log, pid file) and process; removed and killed on drop.
#[derive(Debug)]
struct Instance {
    dir: PathBuf,
    log: PathBuf,
    /// Read by the watchdog, which starts before pgbouncer does.
    pid_file: PathBuf,
    process: Option<Child>,
    /// Kills pgbouncer and removes `dir` once this process is gone.
    watchdog: Child,
}

impl Instance {
    fn create() -> Result<Instance, HarnessError> {
        let dir = temp_dir("pgbouncer")?;
        let pid_file = dir.join("pgbouncer.pid");
        let stop_line = format!(
            "kill -KILL \"$(cat {})\"",
            shell_line(&[pid_file.display().to_string()])
        );
        let watchdog = spawn_watchdog(&dir, &stop_line)?;
        Ok(Instance {
            log: dir.join("pgbouncer.log"),
            dir,
            pid_file,
            process: None,
            watchdog,
        })
    }

    /// Starts pgbouncer on `port` and returns once it accepts clients.
    fn launch(&mut self, binary: &Path, settings: &str, port: u16) -> Result<(), HarnessError> {
        let config = self.dir.join("pgbouncer.ini");
        fs::write(&config, format!("{settings}listen_port = {port}\n"))
            .map_err(|e| HarnessError::new(format!("could not write {}: {e}", config.display())))?;
        let log = File::create(&self.log)
            .map_err(|e| HarnessError::new(format!("could not create {}: {e}", self.log.display())))?;
        let argv = [binary.display().to_string(), config.display().to_string()];
        let mut child = Command::new(binary)
            .arg(&config)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| HarnessError::new(format!("could not run `{}`: {e}", argv.join(" "))))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let written = fs::write(&self.pid_file, child.id().to_string());
        let process = self.process.insert(child);
        written
            .map_err(|e| HarnessError::new(format!("could not write {}: {e}", self.pid_file.display())))?;
        let ready = copy_log_until_ready(stderr, log);
        match ready.recv_timeout(STARTUP_TIMEOUT) {
            Ok(()) => Ok(()),
            Err(waited) => {
                let outcome = match waited {
                    mpsc::RecvTimeoutError::Timeout => {
                        let _ = process.kill();
                        format!("did not report `{READY_LINE}` within {STARTUP_TIMEOUT:?}")
                    }
                    mpsc::RecvTimeoutError::Disconnected => "exited".to_string(),
                };
                let status = process
                    .wait()
                    .map_or_else(|e| format!("status unknown: {e}"), |status| status.to_string());
                self.process = None;
                // The copy thread ends, and the channel with it, once it has logged every line.
                ready.iter().for_each(drop);
                Err(HarnessError::new(format!(
                    "`{}` {outcome} ({status})\n--- {} ---\n{}",
                    argv.join(" "),
                    self.log.display(),
                    log_tail(&self.log)
                )))
            }
        }
    }
}

/// Copies pgbouncer's log lines from `stderr` to `log` on a thread of its own, for as long as
/// pgbouncer runs (a full pipe would stall it); the channel gets `()` once [`READY_LINE`] is
/// seen and is disconnected when pgbouncer exits.
fn copy_log_until_ready(stderr: impl std::io::Read + Send + 'static, mut log: File) -> mpsc::Receiver<()> {
    let (ready, receiver) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            // A log that cannot be written is no reason to stop draining the pipe.
            let _ = writeln!(log, "{line}");
            if line.contains(READY_LINE) {
                // The receiver is gone once startup is over; later lines only go to the log.
                let _ = ready.send(());
            }
        }
    });
    receiver
}

impl Drop for Instance {
    fn drop(&mut self) {
        // Errors are moot here: pgbouncer may have exited already, or never have started.
        if let Some(process) = &mut self.process {
            let _ = process.kill();
            let _ = process.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
        // Nothing is left to watch; reap the watchdog so it does not linger as a zombie.
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
    }
}
