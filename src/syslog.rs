//! Lines for syslog, through libc.
//!
//! On a cron host the operator reads syslog, not sera's stderr, so every
//! outcome worth knowing (acquired, timed out, skipped, lost, failed, the
//! command's exit) can go there too. libc's syslog() quietly does nothing when
//! the host has no `/dev/log`, which is what a minimal container wants.

use std::ffi::CString;

pub use libc::{LOG_ERR, LOG_INFO, LOG_NOTICE, LOG_WARNING};

/// Open the log as `sera[pid]`. Call once, before the first `log`.
pub fn open() {
    // openlog keeps the pointer, so the identity must live for ever.
    static IDENT: &[u8] = b"sera\0";
    unsafe { libc::openlog(IDENT.as_ptr().cast(), libc::LOG_PID, libc::LOG_USER) };
}

/// Send one line at `priority`.
pub fn log(priority: libc::c_int, line: &str) {
    let Ok(line) = CString::new(line.replace('\0', " ")) else {
        return;
    };
    // Never pass user text as the format string.
    unsafe { libc::syslog(priority, c"%s".as_ptr(), line.as_ptr()) };
}
