//! Lines for syslog, written to `/dev/log` by hand.
//!
//! On a cron host the operator reads syslog, not sera's stderr, so every
//! outcome worth knowing (acquired, timed out, skipped, lost, failed, the
//! command's exit) can go there too. A line is one datagram in the format
//! syslog daemons (rsyslog, syslog-ng, journald) read from the local socket:
//! `<priority>sera[pid]: message`; they add the time and host themselves.
//! libc's syslog() would do the same, but drags printf, strftime and the time
//! zone code into the static binary. When the host has no `/dev/log` (a
//! minimal container), nothing is sent and nothing fails: `open` says why,
//! and the reporter sends the lines to stderr instead.

use std::os::unix::net::UnixDatagram;
use std::sync::OnceLock;

pub use libc::{LOG_ERR, LOG_NOTICE, LOG_WARNING};

static SOCKET: OnceLock<Option<UnixDatagram>> = OnceLock::new();

/// Open the log. Call once, before the first `log`; Err says why there is
/// no log to write to.
pub fn open() -> std::io::Result<()> {
    let connect = || -> std::io::Result<UnixDatagram> {
        let socket = UnixDatagram::unbound()?;
        socket.connect("/dev/log")?;
        // A stalled syslog daemon must never hold sera up.
        socket.set_nonblocking(true)?;
        Ok(socket)
    };
    let mut result = Ok(());
    SOCKET.get_or_init(|| connect().map_err(|e| result = Err(e)).ok());
    result
}

/// Send one line at `priority` (facility user).
pub fn log(priority: libc::c_int, line: &str) {
    let Some(Some(socket)) = SOCKET.get() else {
        return;
    };
    let message = format!(
        "<{}>sera[{}]: {}",
        libc::LOG_USER | priority,
        std::process::id(),
        line.replace('\0', " ")
    );
    let _ = socket.send(message.as_bytes());
}
