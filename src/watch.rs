//! Supervision of the running command: signals forwarded, the lock checked
//! now and then, and the orphan policy for what the command leaves behind.
//! Everything between "the command has started" and "the lock may go".

use std::time::Instant;

use crate::child::{self, Child, Wake};
use crate::duration::{seconds, tenths};
use crate::lock::{self, Check};
use crate::mysql::Conn;
use crate::report::{exit, Failure, Reporter};
use crate::settings::{OnLost, Orphans, Settings, CHECK_DEADLINE};
use crate::table::Lease;
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
/// then that the lock is still ours: in table mode (`lease`), each check is a
/// renewal of the lease, and the lease's end comes first whatever the check
/// interval says.
pub fn watch(
    conn: &mut Conn,
    child: &mut Child,
    watching: &Watching,
    mut lease: Option<&mut Lease>,
) -> Ending {
    let settings = watching.settings;
    // Every check gets the full deadline for its answer, however short the
    // interval: a short stall of the server is not a lost lock.
    let mut lock_watch = lock::Watch::new(watching.lock_name, CHECK_DEADLINE);
    let mut check_every = settings.check_every();
    loop {
        let wait = match &lease {
            Some(lease) => lease.wait_for(check_every),
            None => check_every,
        };
        match child.wait(wait) {
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
        let check = match &mut lease {
            Some(lease) if check_every.is_some() => lease.renew(conn),
            Some(_) => continue,
            None => lock_watch.check(conn),
        };
        let why = match check {
            Check::Ours => continue,
            Check::Renewing(why) => {
                watching
                    .reporter
                    .progress(&format!("the lease is not renewed yet: {why}"));
                continue;
            }
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
