//! What sera says, and where: one line on stderr per event, the same line in
//! syslog when the config asks for it, and the exit codes that go with them.
//!
//! stdout belongs to the command, so nothing of sera's goes there during a
//! run; only what the user asked to read goes there, through `say`: `sera
//! status`, `--help` and `--version`, which run no command. Failures are one
//! line, `sera: <what failed>: <why>`, optionally followed by a hint (their
//! words are in failure.rs).

use crate::syslog;

/// The exit codes, as the Go sera defined them (200-204) plus ours.
pub mod exit {
    /// Config file missing, unreadable or invalid, or a bad DSN in it.
    pub const CONFIG: i32 = 200;
    pub const ARGUMENTS: i32 = 201;
    /// Could not connect, authenticate or lock.
    pub const SERVER: i32 = 202;
    /// The command could not be started.
    pub const COMMAND: i32 = 203;
    /// Timed out waiting for the lock.
    pub const TIMED_OUT: i32 = 204;
    /// `--wait-and-skip --detailed-exit-codes`: another host ran it.
    pub const SKIPPED: i32 = 205;
    /// The lock was lost while the command ran, and the command was stopped.
    pub const LOCK_LOST: i32 = 206;
}

/// A run that cannot go on: what failed, why, perhaps a hint, and the code.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub what: String,
    pub why: String,
    pub hint: Option<String>,
}

impl Failure {
    pub fn new(code: i32, what: impl Into<String>, why: impl ToString) -> Failure {
        Failure {
            code,
            what: what.into(),
            why: why.to_string(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Failure {
        self.hint = Some(hint.into());
        self
    }
}

/// Where messages go. Before the config is read, only stderr is known.
pub struct Reporter {
    pub verbose: bool,
    pub syslog: bool,
    /// Syslog was asked for and is not there: its lines go to stderr.
    pub syslog_on_stderr: bool,
    /// Says which run a syslog line is about: the lock name and the command.
    pub context: String,
}

impl Reporter {
    pub fn stderr_only() -> Reporter {
        Reporter {
            verbose: false,
            syslog: false,
            syslog_on_stderr: false,
            context: String::new(),
        }
    }

    /// Start logging to syslog as well. Without a syslog (no `/dev/log`,
    /// as in a container), say so once and send its lines to stderr, which
    /// is where a container's log is.
    pub fn use_syslog(&mut self) {
        match syslog::open() {
            Ok(()) => self.syslog = true,
            Err(e) => {
                self.warn(&format!(
                    "syslog is unavailable (/dev/log: {e}): its lines go to stderr instead"
                ));
                self.syslog_on_stderr = true;
            }
        }
    }

    /// Progress, for the verbose: connected, waiting, acquired, released.
    pub fn progress(&self, line: &str) {
        if self.verbose {
            eprintln!("sera: {line}");
        }
    }

    /// An outcome an operator wants in syslog (acquired, skipped, the
    /// command's exit), shown on stderr only when verbose.
    pub fn event(&self, line: &str) {
        match self.syslog_on_stderr {
            true => eprintln!("sera: {line}"),
            false => self.progress(line),
        }
        self.to_syslog(syslog::LOG_NOTICE, line);
    }

    /// Something an operator must see even without `-v`, because it changes
    /// how the run behaves (it explains a run that seems to hang).
    pub fn notice(&self, line: &str) {
        eprintln!("sera: {line}");
        self.to_syslog(syslog::LOG_NOTICE, line);
    }

    /// Something wrong that does not stop the run.
    pub fn warn(&self, line: &str) {
        eprintln!("sera: warning: {line}");
        self.to_syslog(syslog::LOG_WARNING, line);
    }

    pub fn fail(&self, failure: &Failure) {
        eprintln!("sera: {}: {}", failure.what, failure.why);
        if let Some(hint) = &failure.hint {
            eprintln!("sera: hint: {hint}");
        }
        self.to_syslog(
            syslog::LOG_ERR,
            &format!("{}: {}", failure.what, failure.why),
        );
    }

    fn to_syslog(&self, priority: libc::c_int, line: &str) {
        if self.syslog {
            syslog::log(priority, &format!("{line} [{}]", self.context));
        }
    }
}

/// Print on stdout. A reader that went away (`sera status | head -0`) is
/// no reason to fail, and no reason for a panic's backtrace.
pub fn say(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// `text` in double quotes, with `"`, `\` and control characters escaped as
/// JSON escapes them: for user text inside a message (where `{:?}` would do,
/// but drags Unicode tables into the static binary) and for JSON strings.
pub fn quoted(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out += "\\\"",
            '\\' => out += "\\\\",
            '\n' => out += "\\n",
            '\r' => out += "\\r",
            '\t' => out += "\\t",
            c if (c as u32) < 0x20 || c == '\u{7f}' => out += &format!("\\u{:04x}", c as u32),
            c => out.push(c),
        }
    }
    out + "\""
}
