//! Table mode (`--lock-table DB.TABLE`): the lock is a lease row in a table,
//! not a GET_LOCK of the session.
//!
//! Why it exists: GET_LOCK is local to one server. On a Galera cluster (or
//! Percona XtraDB Cluster) each node grants it to its own clients, with no
//! error, so two seras on two nodes both run; and a lock that lives in one
//! session dies with the node that holds the session. What a cluster does
//! share is rows, certified at commit. So here the lock is a row
//! (name, holder, token, expires): taken, renewed and given back with single
//! autocommit writes, timed by the database's clock (UTC_TIMESTAMP(6), never
//! NOW(), which follows the session's time zone). The connection is not the
//! lock: when it drops, sera reconnects through the same DSN address (a load
//! balancer, a VIP) and renews within the lease; only when it cannot renew in
//! time does it stop the command (206), before the lease ends.
//!
//! Every grant of a name increments its `token` (the row is never deleted,
//! only expired), which the command gets as SERA_FENCING_TOKEN, for the
//! storage it writes to to refuse a late writer (Kleppmann's fencing token).
//!
//! Clock skew: a lease stamped by one node is judged by another node's clock.
//! A take waits TAKE_GRACE past `expires` to absorb up to that much skew, and
//! a release sets `expires` that far in the past, so that a hand-off after a
//! release is still immediate.

use std::time::{Duration, Instant};

use crate::config::Config;
use crate::dsn::Dsn;
use crate::duration::{seconds, tenths};
use crate::failure::connect_failure;
use crate::lock::{self, Check};
use crate::mysql::{self, Conn, Error, Written};
use crate::plan::Taking;
use crate::report::{exit, say, Failure, Reporter};
use crate::room::{Backoff, Connector};
use crate::settings::Settings;
use crate::sql::{hex, LockTable};
use crate::status::json_string;

/// A taker treats a lease as over only this long after its `expires`, so
/// that nodes whose clocks differ by up to this much never grant it twice.
const TAKE_GRACE_SQL: &str = "INTERVAL 1 SECOND";

/// A waiter polls after about FIRST_POLL, then twice as long each time up to
/// about POLL_CEILING, jittered by half either way: a released lock is taken
/// at most about 1 s later (POLL_CEILING * 1.5).
const FIRST_POLL: Duration = Duration::from_millis(100);
const POLL_CEILING: Duration = Duration::from_millis(660);

/// A reconnect while the lock is held gets at least this long, however
/// close the stopping is (watch.rs gives each renewal its deadline).
const SHORTEST_RECONNECT: Duration = Duration::from_millis(200);

/// The node this session talks to is part of a Galera cluster: make its
/// writes wait until the node has applied every write certified before them
/// (wsrep_sync_wait 7: reads, UPDATE/DELETE, INSERT/REPLACE). Without it a
/// renewal through a node that lags behind matches no row and looks like a
/// lost lock. Only where `wsrep_on` is ON: MySQL has no such variable, and
/// `SHOW ... LIKE` is the one way to ask that no server refuses.
fn prepare(conn: &mut Conn, timeout: Duration) -> Result<bool, Error> {
    let row = conn.query_row("SHOW GLOBAL VARIABLES LIKE 'wsrep\\_on'", timeout)?;
    let galera = matches!(row.as_deref(), Some([_, Some(on)]) if on.eq_ignore_ascii_case("ON"));
    if galera {
        conn.send_query("SET SESSION wsrep_sync_wait = 7")?;
        conn.read_done(timeout)?;
    }
    Ok(galera)
}

/// Send a write and read what it changed.
fn write(conn: &mut Conn, sql: &str, timeout: Duration) -> Result<Written, Error> {
    conn.send_query(sql)?;
    conn.read_written(timeout)
}

/// A write that lost a race: to another session on this server, or on
/// Galera to another node's write at certification. Try it again.
fn lost_a_race(e: &Error) -> bool {
    matches!(e, Error::Server { code, .. }
        if *code == mysql::DEADLOCK || *code == mysql::LOCK_WAIT_TIMEOUT)
}

/// This node cannot write now (it left the cluster's primary component), or
/// the link is gone: another connection, maybe to another node, may.
fn node_unusable(e: &Error) -> bool {
    match e {
        Error::Server { code, .. } => {
            *code == mysql::NODE_NOT_READY || *code == mysql::NODE_LEFT_CLUSTER
        }
        Error::Io(_) | Error::Protocol(_) => true,
        // A handshake refused by the server's certificate stays refused.
        Error::Timeout | Error::NoGreeting | Error::Tls { .. } => false,
    }
}

fn micros(d: Duration) -> u64 {
    d.as_micros() as u64
}

/// Who holds a lease: the host, the pid and a random number, unique per run.
fn holder_id() -> String {
    let mut random = [0u8; 4];
    let read = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut random));
    let random = match read {
        Ok(()) => u32::from_le_bytes(random),
        Err(_) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            now ^ std::process::id().rotate_left(16)
        }
    };
    let host: String = lock::host_name().chars().take(200).collect();
    format!("{host} pid {} run {random:08x}", std::process::id())
}

/// One statement takes the lock if the row is missing or its lease is over
/// (with the grace), and leaves it alone otherwise. Assignments of ON
/// DUPLICATE KEY UPDATE run left to right, so `expires` comes last. The
/// token travels back in the OK packet through LAST_INSERT_ID(expr).
fn take_sql(table: &LockTable, name: &str, holder: &str, lease: Duration) -> String {
    let (name, holder, lease) = (hex(name.as_bytes()), hex(holder.as_bytes()), micros(lease));
    let over = format!("expires + {TAKE_GRACE_SQL} <= UTC_TIMESTAMP(6)");
    let until = format!("UTC_TIMESTAMP(6) + INTERVAL {lease} MICROSECOND");
    format!(
        "INSERT INTO {} (name, holder, token, expires) \
         VALUES (X'{name}', X'{holder}', LAST_INSERT_ID(1), {until}) \
         ON DUPLICATE KEY UPDATE \
         token = IF({over}, LAST_INSERT_ID(token + 1), token), \
         holder = IF({over}, X'{holder}', holder), \
         expires = IF({over}, {until}, expires)",
        table.sql()
    )
}

/// Ok(Some(token)) when the row is ours now, Ok(None) when it is held. 1
/// row changed: inserted; 2: taken over; 0: held, and the OK packet's
/// last_insert_id means nothing. (Were CLIENT_FOUND_ROWS set, a held row
/// would count 1: mysql.rs never sets it.)
fn try_take(conn: &mut Conn, sql: &str) -> Result<Option<u64>, Error> {
    let timeout = conn.reply_timeout();
    let written = write(conn, sql, timeout)?;
    Ok(matches!(written.rows, 1 | 2).then_some(written.last_insert_id))
}

/// Step 4 of a run in table mode: the lease row, or the news that the run we waited
/// for is over. `about` is what a reconnection tells the server.
pub fn take_turn(
    conn: &mut Conn,
    table: &LockTable,
    taking: &Taking,
    connector: &mut Connector,
    about: &[(&'static str, String)],
    reporter: &Reporter,
) -> Result<Taken, Failure> {
    let asking = Asking {
        table,
        lock_name: &taking.plan.lock_name,
        wait_and_skip: taking.args.wait_and_skip,
        wait: taking.args.wait,
        deadline: taking.deadline,
        settings: &taking.plan.settings,
        config: &taking.plan.config,
        about,
        reporter,
    };
    take_lock(conn, &asking, connector)
}

/// What `take_lock` needs to know about the run.
pub struct Asking<'a> {
    pub table: &'a LockTable,
    pub lock_name: &'a str,
    pub wait_and_skip: bool,
    /// When `<wait>` is over.
    pub wait: Duration,
    pub deadline: Instant,
    pub settings: &'a Settings,
    pub config: &'a Config,
    /// The connection attributes, for the connections of reconnects.
    pub about: &'a [(&'static str, String)],
    pub reporter: &'a Reporter,
}

/// How the wait ended with the lock step over.
pub enum Taken {
    Ours(Box<Lease>),
    /// `--wait-and-skip`: someone else ran it and has finished.
    Skip,
}

/// Take the lease row, polling with jittered backoff until `deadline`. A
/// write that loses a race is a poll that lost; a node that cannot write, or
/// a dropped link, is a reconnect through the same address; a missing table
/// is created once, where the user may.
pub fn take_lock(
    conn: &mut Conn,
    asking: &Asking,
    connector: &mut Connector,
) -> Result<Taken, Failure> {
    let Asking {
        table,
        lock_name,
        deadline,
        reporter,
        ..
    } = *asking;
    let lease = asking.settings.table_lease();
    let holder = holder_id();
    let sql = take_sql(table, lock_name, &holder, lease);
    let mut backoff = Backoff::new(FIRST_POLL, POLL_CEILING);
    let mut created = false;
    let mut first = true;
    let mut prepared = false;
    loop {
        if !prepared {
            let galera = prepare(conn, conn.reply_timeout()).map_err(|e| lock_failure(table, e))?;
            if galera {
                reporter.progress(
                    "a Galera node: this session waits for causality (wsrep_sync_wait=7)",
                );
            }
            prepared = true;
        }
        let sent = lock::clock();
        match try_take(conn, &sql) {
            Ok(Some(token)) if asking.wait_and_skip && !first => {
                // The run we waited for is over: give the lock straight back.
                let mut ours = Lease::new(asking, holder, token, sent);
                ours.release(conn, Duration::ZERO, reporter);
                return Ok(Taken::Skip);
            }
            Ok(Some(token)) => {
                reporter.progress(&format!(
                    "took the lease of {lock_name} in {table}, fencing token {token}"
                ));
                return Ok(Taken::Ours(Box::new(Lease::new(
                    asking, holder, token, sent,
                ))));
            }
            Ok(None) => {}
            Err(e) if lost_a_race(&e) => {}
            Err(Error::Server { code, .. }) if code == mysql::NO_SUCH_TABLE && !created => {
                create_table(conn, table, reporter)?;
                created = true;
                continue;
            }
            Err(e) if node_unusable(&e) && Instant::now() < deadline => {
                reporter.progress(&format!(
                    "cannot take the lease through this connection: {e}; reconnecting"
                ));
                conn.quit();
                // A node that says "not ready" says it again at once.
                backoff.sleep(deadline);
                *conn = connector
                    .connect()
                    .map_err(|e| connect_failure(asking.config, e))?;
                prepared = false;
                continue;
            }
            Err(e) => return Err(lock_failure(table, e)),
        }
        if first {
            reporter.progress(&match asking.wait_and_skip {
                true => {
                    "someone else has the lock: waiting for them, then skipping the command".into()
                }
                false => format!(
                    "waiting up to {} s for the lock {lock_name} (table {table})",
                    seconds(asking.wait)
                ),
            });
        }
        first = false;
        if Instant::now() >= deadline {
            return Err(timed_out(conn, asking));
        }
        backoff.sleep(deadline);
    }
}

fn create_table(conn: &mut Conn, table: &LockTable, reporter: &Reporter) -> Result<(), Failure> {
    let timeout = conn.reply_timeout();
    conn.send_query(&table.create_sql())
        .and_then(|()| conn.read_done(timeout))
        .map_err(|e| {
            let hint = match &e {
                Error::Server { code, .. } if *code == mysql::UNKNOWN_DATABASE => format!(
                    "create the database and the table once: CREATE DATABASE IF NOT EXISTS `{}`; {}",
                    table.database(),
                    table.create_sql()
                ),
                _ => format!(
                    "create it once as a user who may (sera needs SELECT, INSERT and \
                     UPDATE on it): {}",
                    table.create_sql()
                ),
            };
            Failure::new(exit::SERVER, format!("cannot create the lock table {table}"), e)
                .hint(hint)
        })?;
    reporter.progress(&format!("created the lock table {table}"));
    Ok(())
}

fn lock_failure(table: &LockTable, e: Error) -> Failure {
    let failure = Failure::new(
        exit::SERVER,
        format!("cannot take the lock in table {table}"),
        &e,
    );
    match e {
        Error::Server { code, .. } if code == mysql::TABLE_ACCESS_DENIED => failure.hint(format!(
            "sera needs SELECT, INSERT and UPDATE on {}",
            table.sql()
        )),
        Error::Server { code, .. } if code == mysql::NO_SUCH_TABLE => {
            failure.hint(format!("create it once: {}", table.create_sql()))
        }
        _ => failure,
    }
}

/// The wait is over: who holds the lease, for the message.
fn timed_out(conn: &mut Conn, asking: &Asking) -> Failure {
    let held_by = match look_up(conn, asking.table, asking.lock_name) {
        Ok(Some(row)) if row.held => row.describe(),
        _ => "it was held by another run".into(),
    };
    Failure::new(
        exit::TIMED_OUT,
        format!(
            "timed out after {} s waiting for the lock",
            seconds(asking.wait)
        ),
        held_by,
    )
}

/// A lease row as `sera status` and a timed-out run show it.
struct Row {
    holder: String,
    token: String,
    /// Microseconds until `expires`, by the server's clock (negative: past).
    ends_in_us: i64,
    /// A take now would fail: the lease, with the grace, is not over.
    held: bool,
}

impl Row {
    fn describe(&self) -> String {
        format!(
            "held by {}, fencing token {}, its lease ends in {} s unless renewed",
            self.holder,
            self.token,
            tenths(Duration::from_micros(self.ends_in_us.max(0) as u64))
        )
    }
}

fn look_up(conn: &mut Conn, table: &LockTable, name: &str) -> Result<Option<Row>, Error> {
    let sql = format!(
        "SELECT holder, token, TIMESTAMPDIFF(MICROSECOND, UTC_TIMESTAMP(6), expires), \
         expires + {TAKE_GRACE_SQL} > UTC_TIMESTAMP(6) FROM {} WHERE name = X'{}'",
        table.sql(),
        hex(name.as_bytes())
    );
    let timeout = conn.reply_timeout();
    let Some(row) = conn.query_row(&sql, timeout)? else {
        return Ok(None);
    };
    match row.as_slice() {
        [Some(holder), Some(token), Some(ends), Some(held)] => Ok(Some(Row {
            holder: holder.clone(),
            token: token.clone(),
            ends_in_us: ends.parse().unwrap_or(0),
            held: held == "1",
        })),
        _ => {
            let values: Vec<&str> = row.iter().map(|v| v.as_deref().unwrap_or("NULL")).collect();
            Err(Error::Protocol(format!(
                "unreadable lease row ({})",
                values.join(", ")
            )))
        }
    }
}

/// `sera status` in table mode: free (0) or held (1), by whom, its fencing
/// token and when its lease ends. A missing table is a free lock.
pub fn show_status(
    mut conn: Conn,
    table: &LockTable,
    name: &str,
    json: bool,
) -> Result<i32, Failure> {
    let row = match look_up(&mut conn, table, name) {
        Err(Error::Server { code, .. }) if code == mysql::NO_SUCH_TABLE => None,
        found => found.map_err(|e| {
            Failure::new(
                exit::SERVER,
                format!("cannot look the lock up in table {table}"),
                e,
            )
        })?,
    };
    conn.quit();
    let held = row.as_ref().is_some_and(|row| row.held);
    let line = match (&row, json) {
        (_, true) => {
            let mut out = format!(
                "{{\"lock\":{},\"held\":{held},\"table\":{}",
                json_string(name),
                json_string(&table.to_string())
            );
            if let Some(row) = &row {
                if row.held {
                    out += &format!(
                        ",\"holder\":{{\"id\":{}}},\"lease_ends_in_seconds\":{}",
                        json_string(&row.holder),
                        tenths(Duration::from_micros(row.ends_in_us.max(0) as u64))
                    );
                }
                out += &format!(",\"fencing_token\":{}", row.token);
            }
            out + "}"
        }
        (Some(row), false) if row.held => {
            format!("lock {name}: {} (table {table})", row.describe())
        }
        (Some(row), false) => format!(
            "lock {name}: free (table {table}; the last fencing token was {})",
            row.token
        ),
        (None, false) => format!("lock {name}: free (table {table})"),
    };
    say(&format!("{line}\n"));
    Ok(if held { 1 } else { 0 })
}

/// The lock, held: renewed by `renew` (the lock checks), given back by
/// `release`.
pub struct Lease {
    table: LockTable,
    name: String,
    holder: String,
    pub token: u64,
    length: Duration,
    /// Where to reconnect: the same address, as behind a load balancer.
    dsn: Dsn,
    about: Vec<(&'static str, String)>,
    /// When the last renewal that the server confirmed was sent (the take
    /// for the first): the server's `expires` is at least this plus the
    /// lease; watch.rs counts the lease from it (`lock::clock`).
    pub renewed_at: Duration,
    /// A renewal sent whose answer has not come yet.
    sent_at: Option<Duration>,
    /// false once the link or the node failed: the next renewal reconnects.
    connected: bool,
    /// Why the last renewal did not succeed, for the message of a lost lock.
    trouble: Option<String>,
}

impl Lease {
    fn new(asking: &Asking, holder: String, token: u64, sent: Duration) -> Lease {
        Lease {
            table: asking.table.clone(),
            name: asking.lock_name.to_string(),
            holder,
            token,
            length: asking.settings.table_lease(),
            dsn: asking.config.server.clone(),
            about: asking.about.to_vec(),
            renewed_at: sent,
            sent_at: None,
            connected: true,
            trouble: None,
        }
    }

    /// The row, matched by holder and token: a row someone else took over
    /// has another of either.
    fn row_sql(&self) -> String {
        format!(
            "WHERE name = X'{}' AND holder = X'{}' AND token = {}",
            hex(self.name.as_bytes()),
            hex(self.holder.as_bytes()),
            self.token
        )
    }

    /// Why the last renewal did not succeed, if it did not.
    pub fn trouble(&self) -> Option<&str> {
        self.trouble.as_deref()
    }

    /// Renew the lease, within `deadline`: Ours, Renewing (not yet: why),
    /// or Lost (another run holds the row, or it is gone). watch.rs decides
    /// when a lease that is not renewed must stop the command.
    pub fn renew(&mut self, conn: &mut Conn, deadline: Duration) -> Check {
        match self.try_renew(conn, deadline) {
            Ok(None) => {
                self.trouble = None;
                Check::Ours
            }
            Ok(Some(why)) => Check::Lost(why),
            Err(why) => {
                self.trouble = Some(why.clone());
                Check::Renewing(why)
            }
        }
    }

    /// Ok(None): renewed; Ok(Some(why)): not ours; Err(why): could not say
    /// yet.
    fn try_renew(&mut self, conn: &mut Conn, deadline: Duration) -> Result<Option<String>, String> {
        if !self.connected {
            let mut dsn = self.dsn.clone();
            let wait = deadline.max(SHORTEST_RECONNECT);
            dsn.timeout = Some(wait);
            let mut fresh = Conn::connect_as(&dsn, &self.about)
                .map_err(|e| format!("cannot reconnect to {}: {e}", dsn.address))?;
            prepare(&mut fresh, wait)
                .map_err(|e| format!("cannot prepare the new connection: {e}"))?;
            conn.quit();
            *conn = fresh;
            self.connected = true;
            self.sent_at = None;
        }
        if self.sent_at.is_none() {
            let sql = format!(
                "UPDATE {} SET expires = UTC_TIMESTAMP(6) + INTERVAL {} MICROSECOND {}",
                self.table.sql(),
                micros(self.length),
                self.row_sql()
            );
            let sent = lock::clock();
            if let Err(e) = conn.send_query(&sql) {
                self.connected = false;
                return Err(format!("the connection failed: {e}"));
            }
            self.sent_at = Some(sent);
        }
        match conn.read_written(deadline) {
            Ok(written) => {
                let sent = self.sent_at.take().unwrap_or_else(lock::clock);
                if written.rows != 1 {
                    return Ok(Some(format!(
                        "another run took the lease row over (it no longer names \
                         holder \"{}\" with fencing token {})",
                        self.holder, self.token
                    )));
                }
                self.renewed_at = sent;
                Ok(None)
            }
            Err(Error::Timeout) => Err("no answer from the server yet".into()),
            Err(e) => {
                self.sent_at = None;
                if lost_a_race(&e) {
                    return Err(format!("the renewal lost a race: {e}"));
                }
                if node_unusable(&e) {
                    self.connected = false;
                    return Err(format!("this connection cannot renew: {e}"));
                }
                // A table dropped, a privilege revoked: not a passing trouble.
                Ok(Some(format!("the renewal failed: {e}")))
            }
        }
    }

    /// Give the lock back: `expires` set in the past by the grace, so that
    /// the next take anywhere succeeds at once; or, with `hold` left of
    /// min_hold, set to the hold's end, so that the row keeps the lock
    /// without sera (a take succeeds the grace after it). The row stays, so
    /// the token keeps growing. A release that fails leaves the lease to run
    /// out, and says why.
    pub fn release(&mut self, conn: &mut Conn, hold: Duration, reporter: &Reporter) {
        if let Err(why) = self.give_back(conn, hold) {
            reporter.warn(&format!(
                "could not give the lease row back: {why}; it is free again when its \
                 lease ends, within {} s",
                seconds(self.length)
            ));
        }
    }

    fn give_back(&mut self, conn: &mut Conn, hold: Duration) -> Result<(), String> {
        if !self.connected || self.sent_at.is_some() {
            // The link is in doubt or busy with an unanswered renewal: one
            // fresh connection, quickly, or the lease simply runs out.
            let mut dsn = self.dsn.clone();
            dsn.timeout = Some(Duration::from_secs(1));
            let reconnect = |e: Error| format!("cannot reconnect to {}: {e}", dsn.address);
            let mut fresh = Conn::connect_as(&dsn, &self.about).map_err(reconnect)?;
            prepare(&mut fresh, Duration::from_secs(1)).map_err(reconnect)?;
            conn.quit();
            *conn = fresh;
        }
        let expires = match hold.as_micros() as u64 {
            0 => format!("UTC_TIMESTAMP(6) - {TAKE_GRACE_SQL}"),
            us => format!("UTC_TIMESTAMP(6) + INTERVAL {us} MICROSECOND"),
        };
        let sql = format!(
            "UPDATE {} SET expires = {expires} {}",
            self.table.sql(),
            self.row_sql()
        );
        let mut tries = 3;
        loop {
            match write(conn, &sql, Duration::from_secs(1)) {
                Err(e) if lost_a_race(&e) && tries > 1 => tries -= 1,
                Err(e) => return Err(e.to_string()),
                Ok(_) => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_checked_strictly() {
        let t = LockTable::parse("sera.locks").unwrap();
        assert_eq!(t.sql(), "`sera`.`locks`");
        assert_eq!(t.to_string(), "sera.locks");
        assert!(LockTable::parse("a$_1.B_2$").is_ok());
        let long = "x".repeat(65);
        for bad in [
            "locks",
            "sera.",
            ".locks",
            "sera.lo`cks",
            "se ra.locks",
            "sera.locks.x",
            "sera.lo'cks",
            "sera.lö",
            &format!("sera.{long}"),
        ] {
            assert!(LockTable::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn the_take_assigns_expires_last_and_hex_encodes_values() {
        let t = LockTable::parse("db.t").unwrap();
        let sql = take_sql(&t, "a'b", "h", Duration::from_secs(30));
        assert!(sql.contains("X'612762'"), "{sql}");
        assert!(!sql.contains("a'b"));
        assert!(sql.contains("30000000 MICROSECOND"));
        let update = sql.split("UPDATE").nth(1).unwrap();
        assert!(update.find("token =") < update.find("holder ="));
        assert!(update.find("holder =") < update.find("expires ="));
        assert!(!sql.contains("NOW("));
    }
}
