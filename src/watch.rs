//! Supervision of the running command: signals forwarded, the lock checked
//! now and then, and the orphan policy for what the command leaves behind.
//! Everything between "the command has started" and "the lock may go",
//! including the minimum hold after the command is done.
//!
//! The checks are the lease's renewals. The server may free the lock one
//! lease after it received the last renewal, so sera counts from when that
//! renewal was sent (`renewed_at`), and the tree must be dead a margin
//! before the lease ends: `stop_by = renewed_at + lease - 1 s`. While the
//! server does not answer, sera starts stopping the tree at
//! `stop_by - kill_after`, whatever check_interval says. A keeper that wakes
//! past `stop_by` (its host was frozen or suspended) may find the lock
//! already someone else's: it SIGKILLs the tree at once.
//!
//! In table mode the renewals are UPDATEs of the lease row (table.rs), on
//! the same deadlines; a dropped connection there is a reconnect and a
//! renewal, tried again until the stopping must start.

use std::time::{Duration, Instant};

use crate::child::{self, Child, Wake};
use crate::duration::{seconds, tenths};
use crate::lock::{self, clock, Check};
use crate::mysql::Conn;
use crate::report::{exit, Failure, Reporter};
use crate::settings::{Lease, OnLost, Orphans, Settings, CHECK_DEADLINE, LEASE_MARGIN};
use crate::table;
use crate::tree;

/// What `watch` needs to know about the run.
pub struct Watching<'a> {
    pub lock_name: &'a str,
    pub settings: &'a Settings,
    pub reporter: &'a Reporter,
    pub started: Instant,
    pub lease: Lease,
    /// When the grant last restarted the server's idle clock (`lock::clock`).
    pub renewed_at: Duration,
}

/// A check's answer must come this long at least, however close the lease's
/// end: a zero wait would not even read an answer already there.
const SHORTEST_READ: Duration = Duration::from_millis(50);

/// In table mode, a renewal in trouble (the link dropped, the node left
/// its cluster, a write lost a race) is tried again this soon.
const RETRY_RENEWAL: Duration = Duration::from_millis(250);

/// How the watch ended.
pub enum Ending {
    /// The command exited with this wait status, and what it left behind
    /// was seen out by the orphan policy.
    Exited { status: libc::c_int },
    /// The lock was lost, and the tree was stopped because of it.
    LockLost,
}

/// What the checks renew: the session that holds the GET_LOCK, or in table
/// mode the lease row.
enum Renewal<'a> {
    Session(lock::Watch),
    Row(&'a mut table::Lease),
}

impl Renewal<'_> {
    /// When the last renewal the server confirmed was sent (`lock::clock`).
    fn renewed_at(&self) -> Duration {
        match self {
            Renewal::Session(watch) => watch.renewed_at,
            Renewal::Row(lease) => lease.renewed_at,
        }
    }

    fn check(&mut self, conn: &mut Conn, deadline: Duration) -> Check {
        match self {
            Renewal::Session(watch) => watch.check(conn, deadline),
            Renewal::Row(lease) => lease.renew(conn, deadline),
        }
    }

    /// Why the stopping starts, when no renewal has been confirmed lately.
    fn unanswered(&self, since: Duration, ends_in: Duration) -> String {
        match self {
            Renewal::Session(_) => format!(
                "the server has not answered since {} s ago; the lease ends in {} s",
                tenths(since),
                tenths(ends_in)
            ),
            Renewal::Row(lease) => format!(
                "could not renew the lease for {} s ({}); it ends in {} s",
                tenths(since),
                lease.trouble().unwrap_or("no answer from the server"),
                tenths(ends_in)
            ),
        }
    }
}

/// Wait for the command and for whatever it leaves behind, checking now and
/// then that the lock is still ours: in table mode (`lease_row`) each check
/// renews the lease row.
pub fn watch(
    conn: &mut Conn,
    child: &mut Child,
    watching: &Watching,
    lease_row: Option<&mut table::Lease>,
) -> Ending {
    let settings = watching.settings;
    let mut renewal = match lease_row {
        Some(row) => Renewal::Row(row),
        None => Renewal::Session(lock::Watch::new(watching.lock_name, watching.renewed_at)),
    };
    let mut check_every = settings.check_every();
    let mut lease = match watching.lease {
        Lease::Bounded(lease) if check_every.is_some() => Some(lease),
        _ => None,
    };
    let mut next_check = check_every.map(|every| clock() + every);
    loop {
        // When the tree must be dead, and when to start stopping it.
        let stop_by = lease.map(|lease| renewal.renewed_at() + lease - LEASE_MARGIN);
        let stop_from = stop_by.map(|by| by.saturating_sub(settings.kill_after()));
        let now = clock();
        let why = match (stop_by, stop_from) {
            (Some(by), _) if now >= by => {
                if frozen(child, watching, now - by) {
                    return Ending::LockLost;
                }
                (check_every, lease, next_check) = (None, None, None);
                continue;
            }
            (Some(by), Some(from)) if now >= from => {
                renewal.unanswered(now - renewal.renewed_at(), by + LEASE_MARGIN - now)
            }
            _ => {
                let until = [next_check, stop_from].into_iter().flatten().min();
                match child.wait(until.map(|t| t.saturating_sub(now))) {
                    Wake::Timeout | Wake::KeeperDone { .. } => {}
                    Wake::CommandExited { status } => {
                        watching.reporter.event(&format!(
                            "the command {} after {} s",
                            child::describe(status),
                            tenths(watching.started.elapsed())
                        ));
                        if child.tree_empty || leftovers(child, watching) {
                            return Ending::Exited { status };
                        }
                        continue;
                    }
                    Wake::TreeEmpty { status } => {
                        watching
                            .reporter
                            .progress("the last process the command left has exited");
                        return Ending::Exited { status };
                    }
                    Wake::StopAsked { signal, status } => {
                        watching.reporter.event(&format!(
                            "got signal {signal} while waiting for what the command left: \
                             stopping it ({})",
                            term_then_kill(settings)
                        ));
                        stop_tree(child, watching);
                        return Ending::Exited { status };
                    }
                }
                let now = clock();
                let (Some(due), Some(every)) = (next_check, check_every) else {
                    continue;
                };
                if now < due {
                    // Woken to start stopping: the top of the loop does it.
                    continue;
                }
                // The answer may take its full deadline, but no longer than
                // the time left before the stopping must start.
                let deadline = match stop_from {
                    Some(from) => CHECK_DEADLINE.min(from.saturating_sub(now)),
                    None => CHECK_DEADLINE,
                };
                let check = renewal.check(conn, deadline.max(SHORTEST_READ));
                next_check = Some(clock() + every);
                match check {
                    Check::Ours => continue,
                    Check::Renewing(why) => {
                        // Sooner than the interval: the lease runs on.
                        next_check = Some(clock() + every.min(RETRY_RENEWAL));
                        watching
                            .reporter
                            .progress(&format!("the lease is not renewed yet: {why}"));
                        continue;
                    }
                    Check::Uncertain => {
                        watching.reporter.progress(&format!(
                            "no answer to the lock check; the server last answered one \
                             sent {} s ago",
                            tenths(clock() - renewal.renewed_at())
                        ));
                        continue;
                    }
                    Check::Lost(why) => why,
                }
            }
        };
        let ran = tenths(watching.started.elapsed());
        match settings.on_lost() {
            OnLost::Term => {
                watching.reporter.fail(&Failure::new(
                    exit::LOCK_LOST,
                    "lost the lock",
                    format!(
                        "{why}; the command has run {ran} s: stopping it and every \
                         process it started ({})",
                        term_then_kill(settings)
                    ),
                ));
                stop_tree(child, watching);
                return Ending::LockLost;
            }
            OnLost::Ignore => {
                watching.reporter.warn(&format!(
                    "lost the lock after {ran} s: {why}; \
                     on_lost=ignore, so the command goes on unprotected"
                ));
                (check_every, lease, next_check) = (None, None, None);
            }
        }
    }
}

/// `min_hold`: once the command's tree is done, keep the lock until `until`
/// (when it was taken, plus min_hold), so that a host whose cron fired a
/// little later finds it still held. Only stop signals and the lock checks
/// wake the wait. A stop signal, or the lock lost meanwhile, ends the hold
/// at once; neither changes how the run ends, since the command is done.
pub fn min_hold(conn: &mut Conn, child: &mut Child, watching: &Watching, until: Instant) {
    let left = until.saturating_duration_since(Instant::now());
    // A run asked to stop stops now.
    if left.is_zero() || child.stop_signal.is_some() {
        return;
    }
    watching.reporter.progress(&format!(
        "holding the lock {} s more (min_hold)",
        tenths(left)
    ));
    let mut lock_watch = lock::Watch::new(watching.lock_name, watching.renewed_at);
    let every = watching.settings.check_every();
    let mut next_check = every.map(|every| Instant::now() + every);
    loop {
        let now = Instant::now();
        if now >= until {
            return;
        }
        let wake_at = next_check.map_or(until, |check| check.min(until));
        match child.wait(Some(wake_at - now)) {
            Wake::StopAsked { signal, .. } => {
                watching.reporter.event(&format!(
                    "got signal {signal} while holding the lock for min_hold: releasing it now"
                ));
                return;
            }
            Wake::Timeout | Wake::KeeperDone { .. } => {}
            // Something the command left was reaped.
            Wake::CommandExited { .. } | Wake::TreeEmpty { .. } => continue,
        }
        let (Some(check), Some(every)) = (next_check, every) else {
            continue;
        };
        if Instant::now() < check {
            continue;
        }
        next_check = Some(Instant::now() + every);
        if let Check::Lost(why) = lock_watch.check(conn, CHECK_DEADLINE) {
            watching.reporter.warn(&format!(
                "lost the lock while holding it for min_hold: {why}; the command is done, \
                 so nothing is stopped, but a late host may run it again"
            ));
            return;
        }
    }
}

/// The keeper woke `late` past the moment the tree had to be dead: its host
/// was frozen or suspended, and the lock may be someone else's already. No
/// grace: SIGKILL, at once. Returns true when the tree was stopped (false:
/// on_lost=ignore).
fn frozen(child: &mut Child, watching: &Watching, late: Duration) -> bool {
    let why = format!(
        "the lease ran out while sera was not running (a frozen or suspended host): \
         the server may have freed the lock {} s ago",
        tenths(late.saturating_sub(LEASE_MARGIN))
    );
    if watching.settings.on_lost() == OnLost::Ignore {
        watching.reporter.warn(&format!(
            "lost the lock: {why}; on_lost=ignore, so the command goes on unprotected"
        ));
        return false;
    }
    let woke = clock();
    if let Some(survivors) = child.kill() {
        give_up_on(&survivors, watching);
    }
    watching.reporter.fail(&Failure::new(
        exit::LOCK_LOST,
        "lost the lock",
        format!(
            "{why}; killed the command and every process it started (SIGKILL, no grace) \
             in {} ms",
            (clock() - woke).as_millis() as u64
        ),
    ));
    true
}

/// The command has exited and left processes running: apply the orphan
/// policy (a stop signal sera got turns `wait` into `term`). Returns true
/// when the run is over.
fn leftovers(child: &mut Child, watching: &Watching) -> bool {
    let left = match tree::list(&tree::below_sera().unwrap_or_default()) {
        list if list.is_empty() => "processes".to_string(),
        list => list,
    };
    let policy = match watching.settings.orphans() {
        Orphans::Wait if child.stop_signal.is_some() => Orphans::Term,
        policy => policy,
    };
    match policy {
        Orphans::Wait => {
            watching.reporter.notice(&format!(
                "the command exited but left {left} running: keeping the lock until \
                 they exit (--orphans term stops them, --orphans ignore releases the lock now)"
            ));
            false
        }
        Orphans::Term => {
            watching.reporter.event(&format!(
                "the command left {left} running: stopping them ({})",
                term_then_kill(watching.settings)
            ));
            stop_tree(child, watching);
            true
        }
        Orphans::Ignore => {
            watching.reporter.event(&format!(
                "the command left {left} running: releasing the lock anyway (orphans=ignore)"
            ));
            true
        }
    }
}

/// How `stop_tree` stops, for the message that announces it.
fn term_then_kill(settings: &Settings) -> String {
    format!(
        "SIGTERM, then SIGKILL after {} s",
        seconds(settings.kill_after())
    )
}

/// Stop the command's whole tree, and say so if part of it would not die.
fn stop_tree(child: &mut Child, watching: &Watching) {
    if let Some(survivors) = child.stop(watching.settings.kill_after()) {
        give_up_on(&survivors, watching);
    }
}

/// Say what outlived SIGKILL, which sera gives up on.
fn give_up_on(survivors: &[tree::Process], watching: &Watching) {
    let who = match survivors.is_empty() {
        true => "processes of the command's tree (without a usable /proc sera cannot name them)"
            .to_string(),
        false => tree::list(survivors),
    };
    watching.reporter.warn(&format!(
        "giving up on {who}: still there {} s after SIGKILL (stuck in the kernel, \
         or not sera's to signal)",
        seconds(child::GIVE_UP_AFTER_KILL)
    ));
}
