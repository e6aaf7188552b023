//! Helpers for the harness's servers: temporary directories, free ports and cleanup watchdogs.

use std::env;
use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::error::HarnessError;
use crate::unique_suffix;

/// Extra tries with a new port when another process grabbed the one we picked.
const PORT_RETRIES: usize = 2;

/// What servers (PostgreSQL, pgbouncer) report when they cannot bind their port.
const PORT_TAKEN: &str = "Address already in use";

/// Creates `$TMPDIR/tiered-<kind>-<unique suffix>`, readable by every user (a server running as
/// `postgres` reads and writes in it).
pub(crate) fn temp_dir(kind: &str) -> Result<PathBuf, HarnessError> {
    let dir = env::temp_dir().join(format!("tiered-{kind}-{}", unique_suffix()));
    fs::create_dir(&dir)
        .and_then(|()| fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)))
        .map_err(|e| HarnessError::new(format!("could not create {}: {e}", dir.display())))?;
    Ok(dir)
}

/// Runs `start` with a free port of 127.0.0.1, again with another port when its error says the
/// port was taken meanwhile; returns what `start` returned, with the port.
pub(crate) fn on_free_port<T>(
    mut start: impl FnMut(u16) -> Result<T, HarnessError>,
) -> Result<(T, u16), HarnessError> {
    let mut retries = 0;
    loop {
        let port = free_port()?;
        match start(port) {
            Err(e) if retries < PORT_RETRIES && e.to_string().contains(PORT_TAKEN) => retries += 1,
            started => return started.map(|value| (value, port)),
        }
    }
}

/// A port that was free a moment ago (another process may still take it: see `on_free_port`).
fn free_port() -> Result<u16, HarnessError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| HarnessError::new(format!("could not find a free port on 127.0.0.1: {e}")))
}

/// `argv` as a single-quoted `sh` command line.
pub(crate) fn shell_line(argv: &[String]) -> String {
    let quoted: Vec<String> = argv
        .iter()
        .map(|arg| format!("'{}'", arg.replace('\'', r"'\''")))
        .collect();
    quoted.join(" ")
}

/// Starts a detached `sh` that waits for this process to exit, then runs `stop_line` and removes
/// `dir`. It has its own process group, so a Ctrl-C to the test run does not kill it before it
/// cleans up, and no stdio, so `cargo test` does not wait for it to close the output pipes.
pub(crate) fn spawn_watchdog(dir: &Path, stop_line: &str) -> Result<Child, HarnessError> {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.3 2>/dev/null || sleep 1; done\n\
         {stop_line} >/dev/null 2>&1\n\
         rm -rf {dir}\n",
        pid = std::process::id(),
        dir = shell_line(&[dir.display().to_string()]),
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| HarnessError::new(format!("could not start the cleanup watchdog (sh): {e}")))
}

pub(crate) fn find_on_path(program: &str) -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// Whether the effective uid is 0: the second `Uid:` field of /proc/self/status, else `id -u`.
pub(crate) fn is_root() -> bool {
    match fs::read_to_string("/proc/self/status") {
        Ok(status) => {
            let uid = status.lines().find_map(|line| line.strip_prefix("Uid:"));
            uid.and_then(|uids| uids.split_whitespace().nth(1)) == Some("0")
        }
        Err(_) => Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|out| out.stdout.trim_ascii() == b"0"),
    }
}
