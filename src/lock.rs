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
/// each other. 32 characters: within MySQL's 64-character limit.
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

/// A lock name as SQL. The name may be the user's own text (`--name`), so it
/// is sent hex-encoded, never pasted in; the conversion to utf8mb4 makes it
/// the very lock an application takes with `GET_LOCK('NAME', ...)`.
fn sql_name(name: &str) -> String {
    format!("CONVERT(X'{}' USING utf8mb4)", hex(name.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
    let sql = format!("SELECT GET_LOCK({}, {seconds})", sql_name(name));
    let (answer, setup_failed) = ask(conn, &sql, setup, wait).map_err(Refused::Failed)?;
    match answer.as_deref() {
        Some("1") => Ok(setup_failed),
        Some("0") => Err(Refused::TimedOut),
        _ => Err(Refused::Failed(Error::Protocol(
            "GET_LOCK returned NULL (the wait was killed, or the server could not lock)".into(),
        ))),
    }
}

/// Send `sql` (after `setup`, in the same write) and read the one value it
/// answers, allowing `wait` beyond the usual reply timeout.
fn ask(
    conn: &mut Conn,
    sql: &str,
    setup: Option<&str>,
    wait: Duration,
) -> Result<(Option<String>, Option<Error>), Error> {
    let mut setup_failed = None;
    if let Some(setup) = setup {
        conn.send_query_pipelined(setup, sql)?;
        match conn.read_done(conn.reply_timeout()) {
            Err(e @ Error::Server { .. }) => setup_failed = Some(e),
            Err(e) => return Err(e),
            Ok(()) => {}
        }
    } else {
        conn.send_query(sql)?;
    }
    let row = conn.read_row(wait + conn.reply_timeout())?;
    Ok((first_value(row), setup_failed))
}

/// `NAME#<kind>1` to `NAME#<kind>N`: the slots of a semaphore (kind "") or
/// the seats of a waiting room (kind "room"). A NAME over 52 characters is
/// replaced by its MD5, so that every name stays within 64 characters.
pub fn numbered(name: &str, kind: &str, count: u32) -> Vec<String> {
    (1..=count)
        .map(|i| format!("{}#{kind}{i}", base(name)))
        .collect()
}

/// `NAME#queue`, where the waiters for a semaphore's slots line up.
fn turnstile(name: &str) -> String {
    format!("{}#queue", base(name))
}

fn base(name: &str) -> String {
    match name.chars().count() > 52 {
        true => md5::hex_digest(name.as_bytes()),
        false => name.to_string(),
    }
}

/// How long the first waiter in line waits on one slot before it looks at
/// all of them again: a slot freed elsewhere stays unused at most this long.
const SLOT_BEAT: Duration = Duration::from_secs(1);

/// Take the lock, or with slots any free slot, without waiting: Some(the
/// name now held). `setup` as for `acquire`.
pub fn try_take(
    conn: &mut Conn,
    name: &str,
    slots: u32,
    setup: Option<&str>,
) -> Result<(Option<String>, Option<Error>), Error> {
    if slots == 1 {
        // A bare GET_LOCK, the one statement every proxy lets through.
        return match acquire(conn, name, Duration::ZERO, setup) {
            Ok(setup_failed) => Ok((Some(name.to_string()), setup_failed)),
            Err(Refused::TimedOut) => Ok((None, None)),
            Err(Refused::Failed(e)) => Err(e),
        };
    }
    try_each(conn, &numbered(name, "", slots), setup)
}

/// Wait up to `wait` for the lock, or with slots for any slot: Ok(the name
/// now held).
pub fn wait_take(
    conn: &mut Conn,
    name: &str,
    slots: u32,
    wait: Duration,
) -> Result<String, Refused> {
    match slots {
        1 => acquire(conn, name, wait, None).map(|_| name.to_string()),
        _ => acquire_slot(conn, name, slots, wait),
    }
}

/// Take one of the semaphore's slots, waiting up to `wait`. A free slot is
/// taken at once. Otherwise only the first waiter in line, who holds the
/// turnstile, waits on the server, on one slot at a time; the others wait on
/// the turnstile. So a full semaphore costs the server one blocked query per
/// waiter and one more per second, and nobody polls.
fn acquire_slot(
    conn: &mut Conn,
    name: &str,
    slots: u32,
    wait: Duration,
) -> Result<String, Refused> {
    let deadline = std::time::Instant::now() + wait;
    let left = || deadline.saturating_duration_since(std::time::Instant::now());
    let (turnstile, slot_names) = (turnstile(name), numbered(name, "", slots));
    if let (Some(slot), _) = try_each(conn, &slot_names, None).map_err(Refused::Failed)? {
        return Ok(slot);
    }
    acquire(conn, &turnstile, left(), None)?;
    let taken = wait_in_line(conn, &slot_names, left);
    // Let the next waiter up to the front, whatever happened here. (If
    // this fails, the session is gone, and the turnstile with it.)
    let _ = release(conn, &turnstile);
    taken
}

/// First in line: wait on one slot at a time, for a beat each, and look at
/// all of them again between beats.
fn wait_in_line(
    conn: &mut Conn,
    slot_names: &[String],
    left: impl Fn() -> Duration,
) -> Result<String, Refused> {
    let mut next = 0;
    loop {
        if let (Some(slot), _) = try_each(conn, slot_names, None).map_err(Refused::Failed)? {
            return Ok(slot);
        }
        if left().is_zero() {
            return Err(Refused::TimedOut);
        }
        let slot = &slot_names[next % slot_names.len()];
        match acquire(conn, slot, left().min(SLOT_BEAT), None) {
            Ok(_) => return Ok(slot.clone()),
            Err(Refused::TimedOut) => next += 1,
            Err(e) => return Err(e),
        }
    }
}

/// `RELEASE_LOCK(name)`.
pub fn release(conn: &mut Conn, name: &str) -> Result<(), Error> {
    let sql = format!("SELECT RELEASE_LOCK({})", sql_name(name));
    ask(conn, &sql, None, Duration::ZERO).map(drop)
}

/// Try each lock without waiting, in one statement: CASE stops at the first
/// GET_LOCK that answers 1, so at most one lock is taken. Its name, if any.
pub fn try_each(
    conn: &mut Conn,
    names: &[String],
    setup: Option<&str>,
) -> Result<(Option<String>, Option<Error>), Error> {
    let cases: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, name)| format!("WHEN GET_LOCK({}, 0) = 1 THEN {i}", sql_name(name)))
        .collect();
    let sql = format!("SELECT CASE {} END", cases.join(" "));
    let (answer, setup_failed) = ask(conn, &sql, setup, Duration::ZERO)?;
    let Some(answer) = answer else {
        return Ok((None, setup_failed));
    };
    match answer.parse::<usize>().ok().and_then(|i| names.get(i)) {
        Some(name) => Ok((Some(name.clone()), setup_failed)),
        None => Err(Error::Protocol(format!(
            "the server answered {answer:?} to a choice of {} locks",
            names.len()
        ))),
    }
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
    let row = conn.query_row(&format!("SELECT IS_USED_LOCK({})", sql_name(name)), timeout)?;
    let Some(id) = first_value(row) else {
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
          WHERE ID <> {id} AND ID <> CONNECTION_ID() AND INFO LIKE '%GET_LOCK(CONVERT(X''{hex}''%') \
         FROM information_schema.PROCESSLIST WHERE ID = {id}",
        hex = hex(name.as_bytes())
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

/// How many sessions wait for the semaphore `name`, where PROCESSLIST shows
/// them: in line on its turnstile, first in line on one slot, or trying a
/// seat or the slots. A waiter waits for any slot, so it is counted once,
/// for the semaphore as a whole: the lock it happens to be blocked on says
/// nothing about which slot it will get. None if the server would not say.
pub fn semaphore_waiting(conn: &mut Conn, name: &str) -> Option<u64> {
    // Every lock of the semaphore is `NAME#...` (see `numbered`).
    let sql = format!(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
         WHERE ID <> CONNECTION_ID() AND INFO LIKE '%GET_LOCK(CONVERT(X''{}%'",
        hex(format!("{}#", base(name)).as_bytes())
    );
    let timeout = conn.reply_timeout();
    first_value(conn.query_row(&sql, timeout).ok()?)?
        .parse()
        .ok()
}

/// What a sera tells the server about itself at login, as connection
/// attributes, for `holder` to read back: its host, the command's program
/// (never its arguments, which may hold secrets), the lock, and when it
/// connected. Short values: servers keep only the first 512 bytes or so.
pub fn introduction(lock_name: &str, program: Option<&OsString>) -> Vec<(&'static str, String)> {
    let connected_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut about = vec![
        ("sera_host", host_name()),
        ("sera_lock", lock_name.to_string()),
        ("sera_connected_at", connected_at.to_string()),
    ];
    if let Some(program) = program {
        let path = std::path::Path::new(program);
        let name = path.file_name().unwrap_or(program.as_os_str());
        let name: String = name.to_string_lossy().chars().take(64).collect();
        about.push(("sera_command", name));
    }
    about
}

fn host_name() -> String {
    let mut buf = [0u8; 256];
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match ok {
        true => String::from_utf8_lossy(&buf[..end]).into_owned(),
        false => String::new(),
    }
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

fn json_string(text: &str) -> String {
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
            let sql = format!(
                "SELECT IS_USED_LOCK({}) = CONNECTION_ID()",
                sql_name(&self.name)
            );
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
