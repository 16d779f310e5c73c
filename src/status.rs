//! `sera status`, and who holds a lock: what the server tells of the session
//! that holds it, for the status lines and JSON and for the message of a
//! run that timed out waiting for it; and `sera status --all`, every lock
//! the seras hold on a server.

use crate::lock;
use crate::mysql::{Conn, Error};
use crate::report::{exit, say, Failure};
use crate::sql;

/// `sera status`: whether the lock is free (exit 0) or held (exit 1), and
/// by whom, on stdout, as lines or as one JSON object. For a semaphore, every
/// slot, then how many wait for any of them; held means all slots are, so
/// that a run would wait.
pub fn show_status(
    mut conn: Conn,
    lock_name: &str,
    slots: u32,
    json: bool,
) -> Result<i32, Failure> {
    let names = lock::slot_names(lock_name, slots);
    let mut lines = Vec::new();
    let mut held = 0;
    for name in &names {
        let mut holder = holder(&mut conn, name)
            .map_err(|e| Failure::new(exit::SERVER, "cannot look the lock up", e))?;
        held += usize::from(holder.is_some());
        if let (Some(h), true) = (&mut holder, slots > 1) {
            // Waiters wait for the semaphore, not for this slot: counted below.
            h.waiting = None;
        }
        lines.push(match (&holder, json) {
            (_, true) => status_json(name, holder.as_ref()),
            (None, false) => format!("lock {name}: free"),
            (Some(h), false) => match h.waiting.as_deref() {
                Some(n) if n != "0" => {
                    format!("lock {name}: held by {}; {n} waiting", h.describe())
                }
                _ => format!("lock {name}: held by {}", h.describe()),
            },
        });
    }
    let waiting = match slots {
        1 => None,
        _ => semaphore_waiting(&mut conn, lock_name),
    };
    conn.quit();
    if let (false, Some(n)) = (json, &waiting) {
        lines.push(format!(
            "lock {lock_name}: {held} of {slots} slots held; {n} waiting"
        ));
    }
    match (json, names.len()) {
        (true, 1) | (false, _) => say(&format!("{}\n", lines.join("\n"))),
        (true, _) => {
            let waiting = waiting.map_or(String::new(), |n| format!(",\"waiting\":{n}"));
            say(&format!("{{\"slots\":[{}]{waiting}}}\n", lines.join(",")))
        }
    }
    Ok(if held == names.len() { 1 } else { 0 })
}

/// How many sessions wait for the semaphore `name`, where PROCESSLIST shows
/// them: in line on its turnstile, first in line on one slot, or trying a
/// seat or the slots. A waiter waits for any slot, so it is counted once,
/// for the semaphore as a whole: the lock it happens to be blocked on says
/// nothing about which slot it will get. None if the server would not say.
fn semaphore_waiting(conn: &mut Conn, name: &str) -> Option<u64> {
    // Every lock of the semaphore is `NAME#...` (see `lock::numbered`): its
    // SQL form, cut where the name's hex ends, starts each of theirs.
    let every = lock::sql_name(&format!("{}#", lock::base(name)));
    let prefix = &every[..every.rfind('\'').unwrap_or(every.len())];
    let sql = format!(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
         WHERE ID <> CONNECTION_ID() AND INFO LIKE {}",
        sql::literal(&format!("%GET_LOCK({prefix}%"))
    );
    let timeout = conn.reply_timeout();
    lock::first_value(conn.query_row(&sql, timeout).ok()?)?
        .parse()
        .ok()
}

/// Who holds a lock, as far as the server tells: the connection id always;
/// user and client address where PROCESSLIST shows the holder's session
/// (the same user, or the PROCESS privilege); and what a sera says of itself
/// in its connection attributes where `performance_schema` is on and
/// readable. Each is None when unknown, and nothing is guessed.
#[derive(Debug, Default, Clone)]
pub struct Holder {
    pub connection_id: String,
    /// `user@client`, as PROCESSLIST says.
    pub account: Option<String>,
    pub host: Option<String>,
    pub pid: Option<String>,
    /// The holder's program: the command a sera runs, or a client's name.
    pub program: Option<String>,
    /// When the holder connected (server time), and how many seconds ago.
    /// Not when it took the lock: the server does not say that.
    pub connected_at: Option<String>,
    pub connected_seconds_ago: Option<String>,
    /// Other sessions waiting in GET_LOCK for this lock, where PROCESSLIST
    /// shows them.
    pub waiting: Option<String>,
}

/// Look the lock up: Ok(None) when it is free.
pub fn holder(conn: &mut Conn, name: &str) -> Result<Option<Holder>, Error> {
    let timeout = conn.reply_timeout();
    let row = conn.query_row(
        &format!("SELECT IS_USED_LOCK({})", lock::sql_name(name)),
        timeout,
    )?;
    let Some(id) = lock::first_value(row) else {
        return Ok(None);
    };
    if !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Protocol(format!(
            "IS_USED_LOCK returned {}",
            json_string(&id)
        )));
    }
    let mut holder = Holder {
        connection_id: id.clone(),
        ..Holder::default()
    };
    // Every query below may be refused (privileges, performance_schema off
    // or absent): then that part stays unknown.
    let who = format!(
        "SELECT CONCAT(USER, '@', HOST), \
         (SELECT COUNT(*) FROM information_schema.PROCESSLIST \
          WHERE ID <> {id} AND ID <> CONNECTION_ID() AND INFO LIKE {waiting_for}) \
         FROM information_schema.PROCESSLIST WHERE ID = {id}",
        // The statement a waiter sends, as `lock::acquire` writes it.
        waiting_for = sql::literal(&format!("%GET_LOCK({},%", lock::sql_name(name)))
    );
    if let Ok(Some(row)) = conn.query_row(&who, timeout) {
        let mut values = row.into_iter();
        holder.account = values.next().flatten();
        holder.waiting = values.next().flatten();
    }
    let attribute = |name: &str| format!("MAX(IF(ATTR_NAME = '{name}', ATTR_VALUE, NULL))");
    let connected = format!("CAST({} AS SIGNED)", attribute("sera_connected_at"));
    let attributes = format!(
        "SELECT {}, {}, COALESCE({}, {}), FROM_UNIXTIME({connected}), \
         UNIX_TIMESTAMP() - {connected} \
         FROM performance_schema.session_connect_attrs WHERE PROCESSLIST_ID = {id}",
        attribute("sera_host"),
        attribute("_pid"),
        attribute("sera_command"),
        attribute("program_name"),
    );
    if let Ok(Some(row)) = conn.query_row(&attributes, timeout) {
        let mut values = row.into_iter();
        holder.host = values.next().flatten();
        holder.pid = values.next().flatten();
        holder.program = values.next().flatten();
        holder.connected_at = values.next().flatten();
        holder.connected_seconds_ago = values.next().flatten();
    }
    Ok(Some(holder))
}

/// `sera status --json`: one object, for monitoring scripts. Numbers are
/// numbers; what is unknown is left out.
pub fn status_json(lock_name: &str, holder: Option<&Holder>) -> String {
    let mut out = format!(
        "{{\"lock\":{},\"held\":{}",
        json_string(lock_name),
        holder.is_some()
    );
    if let Some(h) = holder {
        let fields = [
            ("connection_id", Some(&h.connection_id)),
            ("account", h.account.as_ref()),
            ("host", h.host.as_ref()),
            ("pid", h.pid.as_ref()),
            ("program", h.program.as_ref()),
            ("connected_at", h.connected_at.as_ref()),
            ("connected_seconds_ago", h.connected_seconds_ago.as_ref()),
        ];
        let known: Vec<String> = fields
            .iter()
            .filter_map(|(key, value)| Some(format!("\"{key}\":{}", json_value(value.as_ref()?))))
            .collect();
        out += &format!(",\"holder\":{{{}}}", known.join(","));
        if let Some(waiting) = &h.waiting {
            out += &format!(",\"waiting\":{}", json_value(waiting));
        }
    }
    out + "}"
}

fn json_value(text: &str) -> String {
    match text.parse::<u64>() {
        Ok(n) if text.bytes().all(|b| b.is_ascii_digit()) => n.to_string(),
        _ => json_string(text),
    }
}

pub(crate) fn json_string(text: &str) -> String {
    crate::report::quoted(text)
}

impl Holder {
    /// One line: `connection 42 (sera@10.0.0.5:50312): web-3, pid 1234,
    /// backup.sh, connected at 2026-11-30 14:20:01 (125 s ago)`.
    pub fn describe(&self) -> String {
        let mut line = format!("connection {}", self.connection_id);
        if let Some(account) = &self.account {
            line += &format!(" ({account})");
        }
        let mut about = Vec::new();
        if let Some(host) = &self.host {
            about.push(format!("host {host}"));
        }
        if let Some(pid) = &self.pid {
            about.push(format!("pid {pid}"));
        }
        if let Some(program) = &self.program {
            about.push(format!("running {program}"));
        }
        if let (Some(at), Some(ago)) = (&self.connected_at, &self.connected_seconds_ago) {
            about.push(format!("connected at {at} server time ({ago} s ago)"));
        }
        if !about.is_empty() {
            line += &format!(": {}", about.join(", "));
        }
        line
    }
}

/// `sera status --all`: every lock a sera holds on the server, on stdout,
/// as lines or as one JSON object `{"locks":[...]}`. Exit 0, however many.
/// Where performance_schema is off, MariaDB's metadata_lock_info plugin
/// still lists the server's user locks, without what a sera says of itself.
pub fn show_all(mut conn: Conn, json: bool) -> Result<i32, Failure> {
    let held = all_held(&mut conn);
    conn.quit();
    let held = held?;
    let lines: Vec<String> = held
        .iter()
        .map(|(name, holder)| match json {
            true => status_json(name, Some(holder)),
            false => format!("lock {name}: held by {}", holder.describe()),
        })
        .collect();
    match (json, lines.is_empty()) {
        (true, _) => say(&format!("{{\"locks\":[{}]}}\n", lines.join(","))),
        (false, true) => say("no lock is held by a sera\n"),
        (false, false) => say(&format!("{}\n", lines.join("\n"))),
    }
    Ok(0)
}

/// The locks held, by name, and who holds each.
fn all_held(conn: &mut Conn) -> Result<Vec<(String, Holder)>, Failure> {
    let timeout = conn.reply_timeout();
    let cannot = |e: Error| Failure::new(exit::SERVER, "cannot list the locks", e);
    let on = conn
        .query_row("SELECT @@performance_schema", timeout)
        .ok()
        .and_then(lock::first_value);
    if on.as_deref() == Some("1") {
        return held_by_seras(conn).map_err(cannot);
    }
    // MariaDB's plugin lists every user lock; which are a sera's, only
    // performance_schema would tell.
    let listed = conn.query_rows(
        "SELECT m.TABLE_SCHEMA, m.THREAD_ID, \
         (SELECT CONCAT(p.USER, '@', p.HOST) FROM information_schema.PROCESSLIST p \
          WHERE p.ID = m.THREAD_ID) \
         FROM information_schema.METADATA_LOCK_INFO m WHERE m.LOCK_TYPE = 'User lock' \
         ORDER BY m.TABLE_SCHEMA",
        timeout,
    );
    match listed {
        Ok(rows) => Ok(rows
            .into_iter()
            .filter_map(|row| {
                let mut values = row.into_iter();
                let name = values.next().flatten()?;
                let holder = Holder {
                    connection_id: values.next().flatten()?,
                    account: values.next().flatten(),
                    ..Holder::default()
                };
                Some((name, holder))
            })
            .collect()),
        Err(Error::Server { .. }) => Err(Failure::new(
            exit::SERVER,
            "cannot list the locks",
            "the server has performance_schema off and no metadata_lock_info plugin: \
             set performance_schema=ON in its config (a restart), or on MariaDB \
             INSTALL SONAME 'metadata_lock_info'",
        )),
        Err(e) => Err(cannot(e)),
    }
}

/// With performance_schema: every session that introduced itself as a sera,
/// and which of its lock's names (the slots of a semaphore) it holds.
fn held_by_seras(conn: &mut Conn) -> Result<Vec<(String, Holder)>, Error> {
    let timeout = conn.reply_timeout();
    let attribute = |name: &str| format!("MAX(IF(ATTR_NAME = '{name}', ATTR_VALUE, NULL))");
    let connected = format!("CAST({} AS SIGNED)", attribute("sera_connected_at"));
    let seras = conn.query_rows(
        &format!(
            "SELECT PROCESSLIST_ID, {}, {}, {}, {}, COALESCE({}, {}), \
             FROM_UNIXTIME({connected}), UNIX_TIMESTAMP() - {connected} \
             FROM performance_schema.session_connect_attrs \
             WHERE PROCESSLIST_ID <> CONNECTION_ID() \
             GROUP BY PROCESSLIST_ID HAVING {} IS NOT NULL ORDER BY 2, 1",
            attribute("sera_lock"),
            attribute("sera_slots"),
            attribute("sera_host"),
            attribute("_pid"),
            attribute("sera_command"),
            attribute("program_name"),
            attribute("sera_lock"),
        ),
        timeout,
    )?;
    let mut held = Vec::new();
    for row in seras {
        let mut values = row.into_iter();
        let (Some(id), Some(lock_name)) = (values.next().flatten(), values.next().flatten()) else {
            continue;
        };
        if !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::Protocol(format!(
                "PROCESSLIST_ID {}",
                json_string(&id)
            )));
        }
        let slots = values.next().flatten().and_then(|n| n.parse().ok());
        let names = lock::slot_names(&lock_name, slots.unwrap_or(1));
        // Who it is, and which of its names it holds, in one question.
        let checks: Vec<String> = names
            .iter()
            .map(|name| format!("IS_USED_LOCK({}) = {id}", lock::sql_name(name)))
            .collect();
        let answer = conn.query_row(
            &format!(
                "SELECT (SELECT CONCAT(USER, '@', HOST) FROM information_schema.PROCESSLIST \
                 WHERE ID = {id}), {}",
                checks.join(", ")
            ),
            timeout,
        )?;
        let mut answers = answer.unwrap_or_default().into_iter();
        let account = answers.next().flatten();
        let holder = Holder {
            connection_id: id,
            account,
            host: values.next().flatten(),
            pid: values.next().flatten(),
            program: values.next().flatten(),
            connected_at: values.next().flatten(),
            connected_seconds_ago: values.next().flatten(),
            waiting: None,
        };
        for (name, answer) in names.into_iter().zip(answers) {
            if answer.as_deref() == Some("1") {
                held.push((name, holder.clone()));
            }
        }
    }
    Ok(held)
}
