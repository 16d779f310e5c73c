//! The lock itself: its name, taking it, and proving it is still ours.
//!
//! A MySQL user lock belongs to the session that took it and is freed when
//! that session ends, however it ends. So sera holds one connection for the
//! whole run and, while the command runs, asks the server now and then
//! whether the lock is still held by that very connection: a ping would not
//! notice a proxy that moved the session.
//!
//! The asking is also the lease's renewal. The session's `wait_timeout` is
//! set to the lease in the same write as the GET_LOCK, so a session that
//! goes silent (its host powered off, cut off, frozen) is ended by the
//! server's own clock, and its lock freed, one lease after the last
//! statement the server received; every check restarts that clock.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use crate::dsn::Dsn;
use crate::duration::left;
use crate::md5;
use crate::mysql::{Conn, Error, Row, UNKNOWN_SYSTEM_VARIABLE};
use crate::settings::Lease;
use crate::sql;

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
/// goes through `sql::text`, never pasted in.
pub(crate) fn sql_name(name: &str) -> String {
    sql::text(name)
}

/// Why the server would not give us the lock.
#[derive(Debug)]
pub enum Refused {
    /// Someone else held it for the whole wait.
    TimedOut,
    /// GET_LOCK said NULL, or the server or the link failed.
    Failed(Error),
}

/// The statement that makes the session's idle timeout the lease, sent in
/// the same write as the first GET_LOCK of a session (so before a waiter
/// blocks: a waiter whose host vanished and that is granted the lock then
/// gives it back within the lease too). A `wait_timeout` the DSN sets is
/// already the lease, and stays as it is. (`interactive_timeout` only seeds
/// wait_timeout at connect, so it is left alone.)
pub fn keep_session_sql(dsn: &Dsn, lease: Lease) -> Option<String> {
    dsn.session_var("wait_timeout")
        .is_none()
        .then(|| format!("SET SESSION wait_timeout={}", lease.seconds()))
}

/// The time a lease is counted in: CLOCK_BOOTTIME, which, unlike Instant,
/// goes on counting while the host is suspended, as the server's clock does.
pub fn clock() -> Duration {
    // SAFETY: an all-zero timespec is a valid value.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_BOOTTIME
    // exists on every Linux sera runs on.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// What a try that does not wait found: the name now held, if any; and,
/// when the `keep_session` statement went with it, the server's reason if
/// it refused that statement (the lock is taken all the same); and, on the
/// first try of a session, what the server says of itself.
pub struct Tried {
    pub held: Option<String>,
    /// The waiting-room seat taken instead, when the lock was busy and the
    /// try offered seats.
    pub seat: Option<String>,
    pub keep_session_refused: Option<Error>,
    pub server: Granter,
}

/// `SELECT GET_LOCK(name, wait)`: Ok when the lock is ours. (A session's
/// first try, with `keep_session`, is a `Try`.)
fn acquire(conn: &mut Conn, name: &str, wait: Duration) -> Result<(), Refused> {
    acquire_then_release(conn, name, wait, None)
}

/// As `acquire`, and then, in the same statement, `RELEASE_LOCK(release)`:
/// the server evaluates the columns in order, so the waiting-room seat is
/// given back the moment the wait ends, at no round trip.
fn acquire_then_release(
    conn: &mut Conn,
    name: &str,
    wait: Duration,
    release: Option<&str>,
) -> Result<(), Refused> {
    let seconds = wait_sql(conn, wait);
    let sql = match release {
        None => format!("SELECT GET_LOCK({}, {seconds})", sql_name(name)),
        Some(release) => format!(
            "SELECT GET_LOCK({}, {seconds}) AS l, RELEASE_LOCK({}) AS r",
            sql_name(name),
            sql_name(release)
        ),
    };
    let (row, _) = ask(conn, &sql, None, wait).map_err(Refused::Failed)?;
    match first_value(row).as_deref() {
        Some("1") => Ok(()),
        Some("0") => Err(Refused::TimedOut),
        _ => Err(Refused::Failed(Error::Protocol(
            "GET_LOCK returned NULL (the wait was killed, or the server could not lock)".into(),
        ))),
    }
}

/// `wait` as GET_LOCK's timeout for this server.
fn wait_sql(conn: &Conn, wait: Duration) -> String {
    if conn.is_mariadb() {
        // Milliseconds, rounded up.
        let ms = wait.as_secs() * 1000 + u64::from(wait.subsec_nanos().div_ceil(1_000_000));
        format!("{}.{:03}", ms / 1000, ms % 1000)
    } else {
        // MySQL takes whole seconds; round up so we never wait less than asked.
        (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).to_string()
    }
}

/// Send `sql` (after `keep_session`, in the same write) and read the row
/// it answers, allowing `wait` beyond the usual reply timeout; and the
/// server's refusal of `keep_session`, if it refused it.
fn ask(
    conn: &mut Conn,
    sql: &str,
    keep_session: Option<&str>,
    wait: Duration,
) -> Result<(Option<Row>, Option<Error>), Error> {
    send(conn, sql, keep_session)?;
    answer(conn, keep_session.is_some(), wait)
}

/// The sending half of `ask`.
fn send(conn: &mut Conn, sql: &str, keep_session: Option<&str>) -> Result<(), Error> {
    match keep_session {
        Some(keep_session) => conn.send_query_pipelined(keep_session, sql),
        None => conn.send_query(sql),
    }
}

/// The reading half of `ask`: `keep_session` says whether it went first.
fn answer(
    conn: &mut Conn,
    keep_session: bool,
    wait: Duration,
) -> Result<(Option<Row>, Option<Error>), Error> {
    let mut keep_session_refused = None;
    if keep_session {
        match conn.read_done(conn.reply_timeout()) {
            Err(e @ Error::Server { .. }) => keep_session_refused = Some(e),
            Err(e) => return Err(e),
            Ok(()) => {}
        }
    }
    let row = conn.read_row(wait + conn.reply_timeout())?;
    Ok((row, keep_session_refused))
}

/// The names of the lock's slots: one slot is the plain lock, the bare
/// name, which is what an application's `GET_LOCK('NAME', ...)` and the Go
/// sera take; more are `NAME#1` to `NAME#N`.
pub fn slot_names(name: &str, slots: u32) -> Vec<String> {
    match slots {
        1 => vec![name.to_string()],
        _ => numbered(name, "", slots),
    }
}

/// `NAME#<kind>1` to `NAME#<kind>N`: the slots of a semaphore (kind "") or
/// the seats of a waiting room (kind "room"). A NAME over 52 characters is
/// replaced by its MD5, so that every name stays within 64 characters.
pub fn numbered(name: &str, kind: &str, count: u32) -> Vec<String> {
    numbered_from(name, kind, 1..=count)
}

/// The names of `numbered` with the numbers `which` only.
pub fn numbered_from(name: &str, kind: &str, which: impl Iterator<Item = u32>) -> Vec<String> {
    let base = base(name);
    which.map(|i| format!("{base}#{kind}{i}")).collect()
}

/// `NAME#queue`, where the waiters for a semaphore's slots line up.
fn turnstile(name: &str) -> String {
    format!("{}#queue", base(name))
}

pub(crate) fn base(name: &str) -> String {
    match name.chars().count() > 52 {
        true => md5::hex_digest(name.as_bytes()),
        false => name.to_string(),
    }
}

/// How long the first waiter in line waits on one slot before it looks at
/// all of them again: a slot freed elsewhere stays unused at most this long
/// (about half of it on average). Each beat is one short statement of the
/// head's, ten a second while the semaphore is full: waiting on every slot
/// at once would need a connection per slot. MySQL rounds a GET_LOCK wait up
/// to whole seconds, so there the beat is 1 s.
const SLOT_BEAT: Duration = Duration::from_millis(100);

/// A try for the lock that does not wait: the lock, or with slots any free
/// slot; failing that, one of `seats` (a few of the waiting room's, for a
/// run that may wait), so that a waiter usually needs no round trip of its
/// own to get into the room. CASE stops at the first GET_LOCK that answers 1: the lock
/// is tried first, and at most one lock is taken. Each seat costs the server
/// the parse of one more WHEN (about 8 µs of its CPU, measured), whether or
/// not the lock was free, so only a few go with the try.
/// `keep_session` (from `keep_session_sql`) goes out in the same write, so
/// it costs no round trip of its own. The same statement asks the server what
/// it is (`probe`), so that a proxy that routes each statement on its own
/// cannot send the question to another server than the lock, and it costs
/// no round trip. A server that refuses the question's form is asked again
/// with a smaller one, and `probe` remembers which form worked, for the
/// next session of the run.
pub struct Try<'a> {
    pub name: &'a str,
    pub slots: u32,
    pub seats: &'a [String],
    pub keep_session: Option<&'a str>,
}

impl Try<'_> {
    /// Send the try, and read nothing yet, so that the caller can use the
    /// server's time to answer (sera forks its keeper then).
    pub fn send(&self, conn: &mut Conn, probe: Probe) -> Result<(), Error> {
        send(conn, &self.sql(conn, probe), self.keep_session)
    }

    /// Read the answer to `send`: what the try took, and what the server
    /// says of itself.
    pub fn answer(&self, conn: &mut Conn, probe: &mut Probe) -> Result<Tried, Error> {
        let names = slot_names(self.name, self.slots);
        loop {
            let seats = if *probe == Probe::Bare {
                &[]
            } else {
                self.seats
            };
            // keep_session goes again with every form: it is idempotent,
            // and so its refusal is seen whichever form the server takes.
            let (row, keep_session_refused) =
                match answer(conn, self.keep_session.is_some(), Duration::ZERO) {
                    Err(Error::Server { code, .. }) if probe.fewer(code).is_some() => {
                        *probe = probe.fewer(code).unwrap_or(Probe::Bare);
                        self.send(conn, *probe)?;
                        continue;
                    }
                    result => result?,
                };
            let mut values = row.unwrap_or_default().into_iter();
            let answer = values.next().flatten();
            let server = probe.read(conn.is_mariadb(), values);
            let (held, seat) = match (names.as_slice(), seats, answer.as_deref()) {
                ([only], [], Some("1")) => (Some(only.clone()), None),
                ([_], [], Some("0")) => (None, None),
                ([_], [], _) => {
                    return Err(Error::Protocol(
                        "GET_LOCK returned NULL (the wait was killed, or the server could \
                         not lock)"
                            .into(),
                    ))
                }
                (all, seats, answer) => match chosen(&[all, seats].concat(), answer)? {
                    Some(taken) if all.contains(&taken) => (Some(taken), None),
                    taken => (None, taken),
                },
            };
            return Ok(Tried {
                held,
                seat,
                keep_session_refused,
                server,
            });
        }
    }

    /// The statement, in the form `probe` names.
    fn sql(&self, conn: &Conn, probe: Probe) -> String {
        let names = slot_names(self.name, self.slots);
        // The bare form is a bare GET_LOCK, the one statement every proxy
        // lets through: no seats, and no alias.
        let seats = if probe == Probe::Bare {
            &[]
        } else {
            self.seats
        };
        let choice = match (names.as_slice(), seats) {
            ([only], []) => format!("GET_LOCK({}, 0)", sql_name(only)),
            // The alias keeps the server from echoing the whole CASE back
            // as the column's name.
            (all, seats) => format!("{} AS l", choice_sql(&[all, seats].concat())),
        };
        format!("SELECT {choice}{}", probe.columns(conn.is_mariadb()))
    }
}

/// Which server variables go with the first try of a session. They differ
/// between servers, and one that lacks a variable refuses the whole
/// statement (error 1193) before GET_LOCK runs: so the form steps down, at
/// the cost of a round trip on such servers only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// MariaDB: read_only and wsrep_on (it has no super_read_only);
    /// MySQL and the rest: read_only and super_read_only.
    Full,
    /// read_only alone: MariaDB built without Galera, or MySQL before 5.7.8.
    ReadOnly,
    /// Nothing but GET_LOCK: Vitess and proxies that refuse the columns.
    Bare,
}

impl Probe {
    fn columns(self, mariadb: bool) -> &'static str {
        match (self, mariadb) {
            (Probe::Full, true) => ", @@global.read_only, @@global.wsrep_on",
            (Probe::Full, false) => ", @@global.read_only, @@global.super_read_only",
            (Probe::ReadOnly, _) => ", @@global.read_only",
            (Probe::Bare, _) => "",
        }
    }

    /// The form to try after the server answered error `code` to this one.
    fn fewer(self, code: u16) -> Option<Probe> {
        match (self, code) {
            (Probe::Full, UNKNOWN_SYSTEM_VARIABLE) => Some(Probe::ReadOnly),
            // A proxy may refuse the columns with a code of its own.
            (Probe::Full | Probe::ReadOnly, _) => Some(Probe::Bare),
            (Probe::Bare, _) => None,
        }
    }

    /// The answers to `columns`, in their order.
    fn read(self, mariadb: bool, mut values: impl Iterator<Item = Option<String>>) -> Granter {
        let mut on = || {
            let value = values.next().flatten().unwrap_or_default();
            value == "1" || value.eq_ignore_ascii_case("ON")
        };
        let mut server = Granter::default();
        if self == Probe::Bare {
            return server;
        }
        if on() {
            server.read_only = Some("read_only");
        }
        match (self, mariadb) {
            (Probe::Full, true) => server.galera = on(),
            (Probe::Full, false) if on() => server.read_only = Some("super_read_only"),
            _ => {}
        }
        server
    }
}

/// What the server that answered the first try says of itself, as far as
/// the probe asked.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Granter {
    /// The variable that makes it read-only (`read_only` or
    /// `super_read_only`), if one is ON: a replica, most likely.
    pub read_only: Option<&'static str>,
    /// `wsrep_on` is ON: a Galera node, where a user lock is local to it.
    pub galera: bool,
}

/// Wait until `deadline` for the lock, or with slots for any slot, holding
/// the waiting-room `seat` meanwhile: Ok(the name now held, and the seat if
/// it is still held). The plain lock's wait gives the seat back in the
/// same statement; a semaphore's waits in several steps, and its seat is
/// the caller's to give back.
pub fn wait_take(
    conn: &mut Conn,
    name: &str,
    slots: u32,
    deadline: Instant,
    seat: Option<String>,
) -> Result<(String, Option<String>), Refused> {
    match slot_names(name, slots).as_slice() {
        [only] => acquire_then_release(conn, only, left(deadline), seat.as_deref())
            .map(|_| (only.clone(), None)),
        all => acquire_slot(conn, name, all, deadline).map(|held| (held, seat)),
    }
}

/// Take one of the semaphore's slots (`slot_names`, of the lock `name`),
/// waiting until `deadline`. A free slot is taken at once. Otherwise only
/// the first waiter in line, who holds the turnstile, waits on the server,
/// on one slot at a time; the others wait on the turnstile. So a full
/// semaphore costs the server one blocked query per waiter and the head's
/// ten short ones a second (`SLOT_BEAT`).
fn acquire_slot(
    conn: &mut Conn,
    name: &str,
    slot_names: &[String],
    deadline: Instant,
) -> Result<String, Refused> {
    let turnstile = turnstile(name);
    if let Some(slot) = try_each(conn, slot_names, None)
        .map_err(Refused::Failed)?
        .held
    {
        return Ok(slot);
    }
    acquire(conn, &turnstile, left(deadline))?;
    let taken = wait_in_line(conn, slot_names, deadline);
    // Let the next waiter up to the front, whatever happened here. (If
    // this fails, the session is gone, and the turnstile with it.)
    let _ = release(conn, &turnstile);
    taken
}

/// First in line: wait on one slot at a time, for a beat each, and look at
/// all of them again at the start of every beat, in the same statement.
fn wait_in_line(
    conn: &mut Conn,
    slot_names: &[String],
    deadline: Instant,
) -> Result<String, Refused> {
    // Each head starts on another slot (connection ids are consecutive):
    // were all to start on the first, a slot held long would have every
    // head in turn wait out a whole beat on it while the others free.
    let mut next = conn.connection_id() as usize;
    loop {
        // One statement a beat: every slot without waiting, and then this
        // beat's slot, waiting.
        let wait = left(deadline).min(SLOT_BEAT);
        let k = next % slot_names.len();
        let sql = format!(
            "SELECT CASE {} WHEN GET_LOCK({}, {}) = 1 THEN {k} END",
            whens(slot_names),
            sql_name(&slot_names[k]),
            wait_sql(conn, wait)
        );
        let (row, _) = ask(conn, &sql, None, wait).map_err(Refused::Failed)?;
        if let Some(slot) =
            chosen(slot_names, first_value(row).as_deref()).map_err(Refused::Failed)?
        {
            return Ok(slot);
        }
        if left(deadline).is_zero() {
            return Err(Refused::TimedOut);
        }
        next += 1;
    }
}

/// `RELEASE_LOCK(name)`.
pub fn release(conn: &mut Conn, name: &str) -> Result<(), Error> {
    let sql = format!("SELECT RELEASE_LOCK({})", sql_name(name));
    ask(conn, &sql, None, Duration::ZERO).map(drop)
}

/// Try each lock without waiting, in one statement: CASE stops at the first
/// GET_LOCK that answers 1, so at most one lock is taken. `keep_session` as
/// for a `Try`.
pub fn try_each(
    conn: &mut Conn,
    names: &[String],
    keep_session: Option<&str>,
) -> Result<Tried, Error> {
    let sql = format!("SELECT {}", choice_sql(names));
    let (row, keep_session_refused) = ask(conn, &sql, keep_session, Duration::ZERO)?;
    Ok(Tried {
        held: chosen(names, first_value(row).as_deref())?,
        seat: None,
        keep_session_refused,
        server: Granter::default(),
    })
}

/// `CASE WHEN GET_LOCK(a, 0) = 1 THEN 0 WHEN ... END`.
fn choice_sql(names: &[String]) -> String {
    format!("CASE {} END", whens(names))
}

/// `WHEN GET_LOCK(a, 0) = 1 THEN 0 WHEN ...`, for a CASE.
fn whens(names: &[String]) -> String {
    let cases: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, name)| format!("WHEN GET_LOCK({}, 0) = 1 THEN {i}", sql_name(name)))
        .collect();
    cases.join(" ")
}

/// The name that the CASE of `choice_sql` answered with, if any.
fn chosen(names: &[String], answer: Option<&str>) -> Result<Option<String>, Error> {
    let Some(answer) = answer else {
        return Ok(None);
    };
    match answer.parse::<usize>().ok().and_then(|i| names.get(i)) {
        Some(name) => Ok(Some(name.clone())),
        None => Err(Error::Protocol(format!(
            "the server answered {} to a choice of {} locks",
            crate::report::quoted(answer),
            names.len()
        ))),
    }
}

/// What a sera tells the server about itself at login, as connection
/// attributes, for `holder` to read back: its host, the command's program
/// (never its arguments, which may hold secrets), the lock, and when it
/// connected. Short values: servers keep only the first 512 bytes or so.
pub fn introduction(
    lock_name: &str,
    slots: u32,
    program: Option<&OsString>,
) -> Vec<(&'static str, String)> {
    let connected_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut about = vec![
        ("sera_host", host_name()),
        ("sera_lock", lock_name.to_string()),
        ("sera_connected_at", connected_at.to_string()),
    ];
    // For `sera status --all` to know which names a semaphore's sera may hold.
    if slots > 1 {
        about.push(("sera_slots", slots.to_string()));
    }
    if let Some(program) = program {
        let path = std::path::Path::new(program);
        let name = path.file_name().unwrap_or(program.as_os_str());
        let name: String = name.to_string_lossy().chars().take(64).collect();
        about.push(("sera_command", name));
    }
    about
}

pub(crate) fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is a live buffer of the length given.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match ok {
        true => String::from_utf8_lossy(&buf[..end]).into_owned(),
        false => String::new(),
    }
}

/// What one liveness check found.
#[derive(Debug)]
pub enum Check {
    /// Still ours: the lease is renewed from when the check was sent.
    Ours,
    /// No answer yet; the question stays open for the next check.
    Uncertain,
    /// Table mode: not renewed yet, and why; there is time to try again.
    Renewing(String),
    Lost(String),
}

/// Asks the server, every check interval, whether the lock is still ours.
/// A check that gets no answer before its deadline leaves the question
/// pending: the next check waits for that same answer instead of asking
/// again, so a late reply is never mistaken for a new one. How long the
/// server may stay silent is the lease's business (see watch.rs), not a
/// count of checks.
pub struct Watch {
    pub name: String,
    /// When the question now open was sent (`clock`).
    sent_at: Option<Duration>,
    /// When the last check that the server answered "ours" was sent: the
    /// server's idle clock restarted on receiving it, so the lease runs
    /// from there (`clock`).
    pub renewed_at: Duration,
}

impl Watch {
    /// `renewed_at`: when the grant itself last restarted the server's idle
    /// clock, as far as sera can tell.
    pub fn new(name: &str, renewed_at: Duration) -> Watch {
        Watch {
            name: name.to_string(),
            sent_at: None,
            renewed_at,
        }
    }

    /// Ask (or go on waiting for the answer to the question still open),
    /// waiting up to `deadline` for the answer.
    pub fn check(&mut self, conn: &mut Conn, deadline: Duration) -> Check {
        let sent_at = match self.sent_at {
            Some(sent_at) => sent_at,
            None => {
                let sql = format!(
                    "SELECT IS_USED_LOCK({}) = CONNECTION_ID()",
                    sql_name(&self.name)
                );
                let sent_at = clock();
                if let Err(e) = conn.send_query(&sql) {
                    return Check::Lost(format!("the connection failed: {e}"));
                }
                self.sent_at = Some(sent_at);
                sent_at
            }
        };
        match conn.read_row(deadline) {
            Err(Error::Timeout) => Check::Uncertain,
            Err(e) => Check::Lost(format!("the connection failed: {e}")),
            Ok(row) => {
                self.sent_at = None;
                match first_value(row).as_deref() {
                    Some("1") => {
                        self.renewed_at = sent_at;
                        Check::Ours
                    }
                    _ => Check::Lost("the server says this session no longer holds it".into()),
                }
            }
        }
    }
}

pub(crate) fn first_value(row: Option<Vec<Option<String>>>) -> Option<String> {
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
