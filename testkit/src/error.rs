//! `HarnessError`: why the harness could not provide a server.

use std::fmt;
use std::fs;
use std::path::Path;
use std::process::Output;

/// Lines of `server.log` quoted in a failure report.
const LOG_TAIL_LINES: usize = 30;

/// A harness failure, with everything needed to fix it in its `Display` text
/// (command line, exit status, output and the tail of the server log, where relevant).
#[derive(Debug)]
pub struct HarnessError {
    message: String,
}

impl HarnessError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// A command that ran but exited unsuccessfully.
    pub(crate) fn command_failed(argv: &[String], output: &Output, log: Option<&Path>) -> Self {
        let mut message = format!("`{}` failed ({})", argv.join(" "), output.status);
        for (name, bytes) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
            let text = String::from_utf8_lossy(bytes);
            if !text.trim().is_empty() {
                message += &format!("\n--- {name} ---\n{}", text.trim_end());
            }
        }
        if let Some(log) = log {
            message += &format!("\n--- {} (tail) ---\n{}", log.display(), log_tail(log));
        }
        Self { message }
    }
}

/// The last lines of a log file, or a note saying why there are none.
pub(crate) fn log_tail(log: &Path) -> String {
    match fs::read(log) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
        }
        Err(e) => format!("(not readable: {e})"),
    }
}

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HarnessError {}
