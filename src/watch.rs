//! Supervision of the running command: signals forwarded, the lock checked
//! now and then, and the orphan policy for what the command leaves behind.
//! Everything between "the command has started" and "the lock may go",
//! including the minimum hold after the command is done.

use std::time::Instant;

use crate::child::{self, Child, Wake};
use crate::duration::{seconds, tenths};
use crate::lock::{self, Check};
use crate::mysql::Conn;
use crate::report::{exit, Failure, Reporter};
use crate::settings::{OnLost, Orphans, Settings, CHECK_DEADLINE};
use crate::tree;

/// What `watch` needs to know about the run.
pub struct Watching<'a> {
    pub lock_name: &'a str,
    pub settings: &'a Settings,
    pub reporter: &'a Reporter,
    pub started: Instant,
}

/// How the watch ended.
pub enum Ending {
    /// The command exited with this wait status, and what it left behind
    /// was seen out by the orphan policy.
    Exited { status: libc::c_int },
    /// The lock was lost, and the tree was stopped because of it.
    LockLost,
}

/// Wait for the command and for whatever it leaves behind, checking now and
/// then that the lock is still ours.
pub fn watch(conn: &mut Conn, child: &mut Child, watching: &Watching) -> Ending {
    let settings = watching.settings;
    // Every check gets the full deadline for its answer, however short the
    // interval: a short stall of the server is not a lost lock.
    let mut lock_watch = lock::Watch::new(watching.lock_name, CHECK_DEADLINE);
    let mut check_every = settings.check_every();
    loop {
        match child.wait(check_every) {
            Wake::Timeout => {}
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
        let why = match lock_watch.check(conn) {
            Check::Ours => continue,
            Check::Uncertain => {
                watching.reporter.progress(&format!(
                    "no answer to lock check {} of {}",
                    lock_watch.unanswered,
                    lock::MAX_UNANSWERED
                ));
                continue;
            }
            Check::Lost(why) => why,
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
                check_every = None;
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
    let mut lock_watch = lock::Watch::new(watching.lock_name, CHECK_DEADLINE);
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
            Wake::Timeout => {}
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
        if let Check::Lost(why) = lock_watch.check(conn) {
            watching.reporter.warn(&format!(
                "lost the lock while holding it for min_hold: {why}; the command is done, \
                 so nothing is stopped, but a late host may run it again"
            ));
            return;
        }
    }
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
    let Some(survivors) = child.stop(watching.settings.kill_after()) else {
        return;
    };
    let who = match survivors.is_empty() {
        true => "processes of the command's tree (without a usable /proc sera cannot name them)"
            .to_string(),
        false => tree::list(&survivors),
    };
    watching.reporter.warn(&format!(
        "giving up on {who}: still there {} s after SIGKILL (stuck in the kernel, \
         or not sera's to signal)",
        seconds(child::GIVE_UP_AFTER_KILL)
    ));
}
