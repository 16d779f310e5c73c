//! `sera status`, and who holds a lock: what the server tells of the session
//! that holds it, for the status lines and JSON and for the message of a
//! run that timed out waiting for it.

use crate::lock;
use crate::mysql::{Conn, Error};
use crate::report::{exit, say, Failure};
use crate::sql;

/// `sera status`: whether the lock is free (exit 0) or held (exit 1), and
/// by whom, on stdout, as lines or as one JSON object. For a semaphore, every
/// slot; held means all of them are, so that a run would wait.
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
        let holder = holder(&mut conn, name)
            .map_err(|e| Failure::new(exit::SERVER, "cannot look the lock up", e))?;
        held += usize::from(holder.is_some());
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
    conn.quit();
    match (json, names.len()) {
        (true, 1) | (false, _) => say(&format!("{}\n", lines.join("\n"))),
        (true, _) => say(&format!("{{\"slots\":[{}]}}\n", lines.join(","))),
    }
    Ok(if held == names.len() { 1 } else { 0 })
}

/// Who holds a lock, as far as the server tells: the connection id always;
/// user and client address where PROCESSLIST shows the holder's session
/// (the same user, or the PROCESS privilege); and what a sera says of itself
/// in its connection attributes where `performance_schema` is on and
/// readable. Each is None when unknown, and nothing is guessed.
#[derive(Debug, Default)]
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
        return Err(Error::Protocol(format!("IS_USED_LOCK returned {id:?}")));
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
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out += "\\\"",
            '\\' => out += "\\\\",
            c if (c as u32) < 0x20 => out += &format!("\\u{:04x}", c as u32),
            c => out.push(c),
        }
    }
    out + "\""
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
