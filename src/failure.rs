//! What each failure of a run says, and the hint that goes with it: the one
//! place that turns a reason (a server error code, a refused spawn, a wait
//! that ran out) into the line the user reads and its exit code.

use std::ffi::OsString;
use std::time::Duration;

use crate::child;
use crate::config::Config;
use crate::duration::seconds;
use crate::mysql;
use crate::report::{exit, Failure};
use crate::room::NoTurn;
use crate::status::Holder;

/// The wait for the lock ended without the lock.
pub fn no_turn(why: NoTurn, config: &Config, wait: Duration, slots: u32) -> Failure {
    match why {
        NoTurn::TimedOut { holder } => timed_out(wait, slots, holder),
        NoTurn::LockFailed(e) => lock_failure(e),
        NoTurn::ConnectFailed(e) => connect_failure(config, e),
    }
}

/// `holder` is looked up only for the plain lock: a semaphore has several.
fn timed_out(wait: Duration, slots: u32, holder: Option<Box<Holder>>) -> Failure {
    let held_by = match holder {
        _ if slots > 1 => {
            format!("all {slots} slots were held (sera status --slots {slots} shows by whom)")
        }
        Some(holder) => format!("held by {}", holder.describe()),
        None => "it was held by another session".into(),
    };
    Failure::new(
        exit::TIMED_OUT,
        format!("timed out after {} s waiting for the lock", seconds(wait)),
        held_by,
    )
}

pub fn connect_failure(config: &Config, e: mysql::Error) -> Failure {
    let server = &config.server;
    let failure = Failure::new(
        exit::SERVER,
        format!("cannot connect to {}", server.address),
        &e,
    );
    match e {
        mysql::Error::Server {
            code: mysql::ACCESS_DENIED,
            ..
        } => {
            let plain_tcp = matches!(server.address, crate::dsn::Address::Tcp { .. })
                && server.tls == crate::dsn::Tls::False;
            let check = if config.password_from_env {
                "check SERA_PASSWORD (it replaces the password) and the user of \"server\""
            } else {
                "check the user and password of \"server\""
            };
            failure.hint(format!(
                "{check} in {} ({}@{}){}",
                config.path.display(),
                server.user,
                server.address,
                if plain_tcp {
                    "; MariaDB says the same to a connection without TLS when it has \
                     require_secure_transport=ON: then add tls=true"
                } else {
                    ""
                }
            ))
        }
        mysql::Error::Server {
            code: mysql::UNKNOWN_DATABASE,
            ..
        } => failure.hint(
            "the database in the DSN does not exist; sera needs none: end the DSN with \"/\"",
        ),
        mysql::Error::Server {
            code: mysql::TOO_MANY_CONNECTIONS,
            ..
        } => failure.hint("the server has reached max_connections"),
        mysql::Error::Io(ref io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            failure.hint("is the server running and listening there?")
        }
        // Only for a real timeout: a refusal that came at once (TLS the
        // server or this build lacks) has nothing to do with waiting.
        mysql::Error::Timeout | mysql::Error::NoGreeting if server.timeout.is_none() => failure
            .hint(format!(
                "sera gives up after {} s; set ?timeout= in the DSN to change that",
                seconds(mysql::DEFAULT_TIMEOUT)
            )),
        _ => failure,
    }
}

pub fn cannot_run(program: &OsString, e: child::SpawnError) -> Failure {
    Failure::new(
        exit::COMMAND,
        format!("cannot run {}", program.to_string_lossy()),
        e.reason(program),
    )
}

pub fn lock_failure(e: mysql::Error) -> Failure {
    let failure = Failure::new(exit::SERVER, "cannot take the lock", &e);
    match e {
        mysql::Error::Server {
            code: mysql::NOT_SUPPORTED_YET,
            ..
        } => failure.hint(
            "this looks like a Galera cluster node, where user locks (GET_LOCK) do not work; \
             point sera at a single server",
        ),
        _ => failure,
    }
}
