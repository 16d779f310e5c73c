//! The lock itself: its name, taking it, and proving it is still ours.
//!
//! A MySQL user lock belongs to the session that took it and is freed when
//! that session ends, however it ends. So sera holds one connection for the
//! whole run and, while the command runs, asks the server now and then
//! whether the lock is still held by that very connection: a ping would not
//! notice a proxy that moved the session, and the asking also keeps the
//! server's `wait_timeout` from closing an idle connection under a long job.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use crate::md5;
use crate::mysql::{Conn, Error};

/// The lock name: hex MD5 of the command and its arguments joined with single
/// spaces, byte for byte as the Go sera computes it, so the two tools exclude
/// each other. 32 characters of [0-9a-f]: safe to put in SQL as it is, and
/// within MySQL's 64-character limit.
pub fn name(command: &[OsString]) -> String {
    let mut line = Vec::new();
    for (i, arg) in command.iter().enumerate() {
        if i > 0 {
            line.push(b' ');
        }
        line.extend_from_slice(arg.as_bytes());
    }
    md5::hex_digest(&line)
}

/// Why the server would not give us the lock.
#[derive(Debug)]
pub enum Refused {
    /// Someone else held it for the whole wait.
    TimedOut,
    /// GET_LOCK said NULL, or the server or the link failed.
    Failed(Error),
}

/// The longest idle time MySQL and MariaDB accept for a session: 365 days.
const LONGEST_IDLE_SECONDS: u32 = 31_536_000;

/// The statement that keeps the server from ending the lock session for
/// being idle. A server's `wait_timeout` (often lowered from its 8 h default)
/// shorter than the check interval, no checks at all, or a SIGKILLed sera
/// whose lifeline still lives in the command's tree would all otherwise let
/// the server free a running command's lock. Variables the DSN sets itself
/// are the user's choice and stay as they are.
pub fn keep_session_sql(dsn_vars: &[(String, String)]) -> Option<String> {
    let raised: Vec<String> = ["wait_timeout", "interactive_timeout"]
        .iter()
        .filter(|var| {
            !dsn_vars
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case(var))
        })
        .map(|var| format!("{var}={LONGEST_IDLE_SECONDS}"))
        .collect();
    (!raised.is_empty()).then(|| format!("SET SESSION {}", raised.join(", ")))
}

/// `SELECT GET_LOCK(name, wait)`: Ok when the lock is ours.
///
/// `setup` (from `keep_session_sql`) goes out in the same write as the
/// GET_LOCK, so it costs no round trip of its own. If only the setup fails,
/// the lock is still taken and the server's reason comes back in the Ok.
pub fn acquire(
    conn: &mut Conn,
    name: &str,
    wait: Duration,
    setup: Option<&str>,
) -> Result<Option<Error>, Refused> {
    let seconds = if conn.is_mariadb() {
        // Milliseconds, rounded up.
        let ms = wait.as_nanos().div_ceil(1_000_000);
        format!("{}.{:03}", ms / 1000, ms % 1000)
    } else {
        // MySQL takes whole seconds; round up so we never wait less than asked.
        (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).to_string()
    };
    let sql = format!("SELECT GET_LOCK('{name}', {seconds})");
    if let Some(setup) = setup {
        conn.send_query_pipelined(setup, &sql)
            .map_err(Refused::Failed)?;
    } else {
        conn.send_query(&sql).map_err(Refused::Failed)?;
    }
    let setup_failed = match setup.map(|_| conn.read_done(conn.reply_timeout())) {
        Some(Err(e @ Error::Server { .. })) => Some(e),
        Some(Err(e)) => return Err(Refused::Failed(e)),
        _ => None,
    };
    let row = conn
        .read_row(wait + conn.reply_timeout())
        .map_err(Refused::Failed)?;
    match first_value(row).as_deref() {
        Some("1") => Ok(setup_failed),
        Some("0") => Err(Refused::TimedOut),
        _ => Err(Refused::Failed(Error::Protocol(
            "GET_LOCK returned NULL (the wait was killed, or the server could not lock)".into(),
        ))),
    }
}

/// Who holds the lock, for the message when we time out: the connection id
/// and, where PROCESSLIST shows it, the user, host and how long it has run.
pub fn holder(conn: &mut Conn, name: &str) -> Option<String> {
    let sql = format!(
        "SELECT IS_USED_LOCK('{name}'), \
         (SELECT CONCAT(USER, '@', HOST, ', running for ', TIME, ' s') \
          FROM information_schema.PROCESSLIST WHERE ID = IS_USED_LOCK('{name}'))"
    );
    let row = conn.query_row(&sql, conn.reply_timeout()).ok()??;
    match row.as_slice() {
        [Some(id), Some(who)] => Some(format!("connection {id} ({who})")),
        [Some(id), None] => Some(format!("connection {id}")),
        _ => None,
    }
}

/// What one liveness check found.
#[derive(Debug)]
pub enum Check {
    Ours,
    /// No answer yet; the question stays open for the next check.
    Uncertain,
    Lost(String),
}

/// Asks the server, every check interval, whether the lock is still ours.
/// A check that gets no answer before its deadline leaves the question
/// pending: the next check waits for that same answer instead of asking
/// again, so a late reply is never mistaken for a new one.
pub struct Watch {
    pub name: String,
    /// How long one check waits for its answer.
    pub deadline: Duration,
    pending: bool,
    /// Checks in a row that got no answer.
    pub unanswered: u32,
}

/// After this many unanswered checks in a row the lock counts as lost.
pub const MAX_UNANSWERED: u32 = 3;

impl Watch {
    pub fn new(name: &str, deadline: Duration) -> Watch {
        Watch {
            name: name.to_string(),
            deadline,
            pending: false,
            unanswered: 0,
        }
    }

    pub fn check(&mut self, conn: &mut Conn) -> Check {
        if !self.pending {
            let sql = format!("SELECT IS_USED_LOCK('{}') = CONNECTION_ID()", self.name);
            if let Err(e) = conn.send_query(&sql) {
                return Check::Lost(format!("the connection failed: {e}"));
            }
            self.pending = true;
        }
        match conn.read_row(self.deadline) {
            Err(Error::Timeout) => {
                self.unanswered += 1;
                if self.unanswered >= MAX_UNANSWERED {
                    Check::Lost(format!(
                        "the server did not answer {} checks in a row",
                        self.unanswered
                    ))
                } else {
                    Check::Uncertain
                }
            }
            Err(e) => Check::Lost(format!("the connection failed: {e}")),
            Ok(row) => {
                self.pending = false;
                self.unanswered = 0;
                match first_value(row).as_deref() {
                    Some("1") => Check::Ours,
                    _ => Check::Lost("the server says this session no longer holds it".into()),
                }
            }
        }
    }
}

fn first_value(row: Option<Vec<Option<String>>>) -> Option<String> {
    row?.into_iter().next()?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_go_tool() {
        // md5("sleep 10"), as the Go sera names it.
        let cmd: Vec<OsString> = ["sleep", "10"].iter().map(OsString::from).collect();
        assert_eq!(name(&cmd), "af6d97b15d4cf0b81242b250029197b5");
        // Arguments are joined with single spaces, so these share a lock.
        let spaced: Vec<OsString> = ["sh", "-c", "x", "a b"]
            .iter()
            .map(OsString::from)
            .collect();
        let split: Vec<OsString> = ["sh", "-c", "x", "a", "b"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(name(&spaced), name(&split));
    }
}
