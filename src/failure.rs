//! What each failure of a run says, and the hint that goes with it: the one
//! place that turns a reason (a server error code, a refused spawn, a wait
//! that ran out) into the line the user reads and its exit code.

use std::ffi::OsString;
use std::time::Duration;

use crate::child;
use crate::config::Config;
use crate::duration::seconds;
use crate::lock::Granter;
use crate::mysql;
use crate::mysql::Error;
use crate::report::{exit, Failure};
use crate::status::Holder;

/// Why the wait ended without the lock.
pub enum NoTurn {
    /// `<wait>` is over. `holder`: who held the plain lock, as far as the
    /// server said (a semaphore's slots are not looked up).
    TimedOut { holder: Option<Box<Holder>> },
    /// The server refused the lock, or the link failed.
    LockFailed(Error),
    /// Reconnecting from outside the room failed.
    ConnectFailed(Error),
    /// The server that answered is no place for this lock: read-only (a
    /// replica) or a Galera node. The lock, if taken, was given back.
    WrongServer(Granter),
}

/// The wait for the lock ended without the lock.
pub fn no_turn(why: NoTurn, config: &Config, wait: Duration, slots: u32) -> Failure {
    match why {
        NoTurn::TimedOut { holder } => timed_out(wait, slots, holder),
        NoTurn::LockFailed(e) => lock_failure(e),
        NoTurn::ConnectFailed(e) => connect_failure(config, e),
        NoTurn::WrongServer(server) => wrong_server(config, &server),
    }
}

/// The server that answered the lock is no place for it: the lock was
/// given back and the command is not run.
fn wrong_server(config: &Config, server: &Granter) -> Failure {
    let address = &config.server.address;
    if server.galera {
        return Failure::new(
            exit::SERVER,
            "cannot take the lock",
            format!(
                "the server {address} is a Galera cluster node (wsrep_on=ON), where \
                 GET_LOCK is local to the one node: two seras on two nodes would both run"
            ),
        )
        .hint("use --lock-table DB.TABLE, a lock row that the whole cluster sees");
    }
    let variable = server.read_only.unwrap_or("read_only");
    Failure::new(
        exit::SERVER,
        "cannot take the lock",
        format!(
            "the server {address} is read-only ({variable}=ON): a lock taken there \
             excludes no one who locks on the primary"
        ),
    )
    .hint(
        "a proxy that sends SELECT to replicas routes GET_LOCK there too: route the lock \
         functions to the writer, or set \"allow_read_only\": true if this lock server is \
         meant to be read-only",
    )
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
        mysql::Error::Tls {
            hint: Some(ref hint),
            ..
        } => failure.hint(hint.clone()),
        mysql::Error::Io(ref io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            failure.hint("is the server running and listening there?")
        }
        // getaddrinfo's failure, which std gives no kind of its own.
        mysql::Error::Io(ref io) if io.to_string().starts_with("failed to lookup address") => {
            failure.hint(lookup_hint(&server.address))
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

/// A host name that did not resolve. A root that holds only sera (a
/// container FROM scratch) has nothing to resolve it with, not even
/// /etc/hosts for localhost: say so, and suggest the address.
fn lookup_hint(address: &crate::dsn::Address) -> String {
    let host = match address {
        crate::dsn::Address::Tcp { host, .. } => host.as_str(),
        crate::dsn::Address::Unix(_) => "",
    };
    let ip = match host {
        "localhost" => "127.0.0.1",
        _ => "the server's IP address",
    };
    let here = match ["/etc/hosts", "/etc/resolv.conf"].map(|f| std::path::Path::new(f).exists()) {
        [false, false] => "there is no /etc/hosts and no resolver (/etc/resolv.conf) here",
        _ => "the resolver here does not know it",
    };
    format!("{here} to look {host} up: write {ip} in the DSN instead")
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
