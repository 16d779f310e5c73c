//! The keeper: the process that holds the lock for the command.
//!
//! Two promises pull against each other. A SIGKILLed sera (the OOM killer,
//! `kill -9`) must not let the lock go while anything of the command's tree
//! still runs; yet no descriptor the command inherits may be, or carry, the
//! lock connection, or the command could talk to the server as sera's user.
//! So sera (the front, the process the user started) forks once, while the
//! server answers its first try for the lock, a moment when the fork costs
//! no time. The fork, the keeper, does the rest of the run: it reads the
//! answer, waits for the lock if it must, starts the command as its child,
//! forwards signals, renews the lease, stops the tree when the lock is
//! lost, releases, and exits with sera's exit code. The front keeps its
//! copy of the lock socket, never uses it, and waits for the keeper,
//! forwarding every signal to it.
//!
//! - The front dies (SIGKILL): the keeper gets SIGTERM (PR_SET_PDEATHSIG).
//!   Waiting for the lock, it dies of it; with the command running, it
//!   treats it as a stop: the command gets SIGTERM, what is left gets
//!   SIGKILL after kill_after, and the keeper, which still holds the
//!   connection and renews the lease meanwhile, lets go only once the tree
//!   is empty.
//! - The keeper dies (SIGKILL): the command dies of its PR_SET_PDEATHSIG,
//!   and what it started comes to the front (a child subreaper). The front
//!   still holds the socket, so the lock stays held while it stops them;
//!   then it exits 206, and the socket closes, freeing the lock, after the
//!   tree is gone. A keeper that had to reconnect while it waited holds a
//!   session the front has no copy of, so it forks a keeper of its own
//!   before the command starts, and is its front.
//! - A signal that stops sera while the keeper waits for the lock (SIGTERM,
//!   Ctrl-C) goes to the keeper, which dies of it as sera always did then,
//!   and the front ends the same way.
//!
//! The cost on the fast path is the fork, and the keeper's word to the
//! front (`done`) when the run is over: the front exits then, without
//! waiting for the keeper's own exit.

use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use crate::child::{self, Child, Signals, SpawnError, Wake};
use crate::duration::seconds;
use crate::mysql::Conn;
use crate::report::{exit, Failure, Reporter};
use crate::tree;

/// Which of the two processes returns from `fork`.
pub enum Role {
    /// The keeper: go on with the run.
    Keeper,
    /// The front: wait for the keeper with `front`.
    Front(Child),
}

/// Fork the keeper. `signals` are already blocked, so none is lost: what
/// arrives early waits, pending, for the process it was sent to.
pub fn fork(signals: &Signals) -> Result<Role, SpawnError> {
    // SAFETY: plain system calls; sera never starts a thread, so the
    // forked copy is whole.
    unsafe {
        let front = libc::getpid();
        // What the command leaves when the keeper dies comes to the front.
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1);
        let pid = libc::fork();
        if pid < 0 {
            return Err(SpawnError {
                errno: std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
            });
        }
        if pid > 0 {
            let mut keeper = Child::adopt(pid, signals);
            keeper.is_keeper = true;
            return Ok(Role::Front(keeper));
        }
        FRONT.store(front, Ordering::Relaxed);
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
        // The front may have died before prctl took effect: the same stop.
        if libc::getppid() != front {
            libc::raise(libc::SIGTERM);
        }
    }
    Ok(Role::Keeper)
}

/// The front's part: wait for the keeper, forwarding every signal to it,
/// and exit as it did. `_conn` is held, unused, until the front exits: if
/// the keeper was killed, the lock stays held while the tree it leaves is
/// stopped.
pub fn front(mut keeper: Child, _conn: &Conn, kill_after: Duration, reporter: &Reporter) -> i32 {
    loop {
        match keeper.wait(None) {
            Wake::KeeperDone { code } => return code,
            Wake::CommandExited { .. } => break,
            _ => {}
        }
    }
    let status = keeper.status.unwrap_or(0);
    if !libc::WIFSIGNALED(status) {
        // The keeper has released the lock and said all there was to say.
        return libc::WEXITSTATUS(status);
    }
    let signal = libc::WTERMSIG(status);
    if keeper.forwards(signal) {
        // Only a keeper still waiting for the lock lets such a signal kill
        // it (it blocks them before the command starts): sera was stopped
        // while it waited, and ends as it always did then.
        child::die_of(signal);
    }
    let survivors = match keeper.tree_empty {
        true => None,
        false => keeper.stop(kill_after),
    };
    let left = match survivors {
        None => {
            "stopped what the command left (SIGTERM, then SIGKILL after ".to_string()
                + &seconds(kill_after)
                + " s)"
        }
        Some(list) if list.is_empty() => "could not stop all the command left \
                                          (without a usable /proc sera cannot name it)"
            .to_string(),
        Some(list) => format!(
            "could not stop {} (still there {} s after SIGKILL)",
            tree::list(&list),
            seconds(child::GIVE_UP_AFTER_KILL)
        ),
    };
    reporter.fail(&Failure::new(
        exit::LOCK_LOST,
        "lost the keeper",
        format!(
            "sera's keeper (pid {}) was killed by signal {}; {left}",
            keeper.pid, signal
        ),
    ));
    exit::LOCK_LOST
}

/// The pid of the front, in the keeper (0 in the front).
static FRONT: AtomicI32 = AtomicI32::new(0);

/// The keeper's last word, once the lock is released and the tree is gone:
/// tell the front the exit code, so that it exits now rather than after the
/// keeper's own exit. Only to the front, and only while it is this
/// process's parent: a keeper whose front was killed has another parent
/// now (init, or a process manager), and a real-time signal means
/// something else to it (to systemd, a change of mode).
pub fn done(code: i32) -> i32 {
    let front = FRONT.load(Ordering::Relaxed);
    // SAFETY: plain system calls; the value sent is an integer, not a
    // pointer anyone dereferences.
    unsafe {
        if front != 0 && libc::getppid() == front {
            let value = libc::sigval {
                sival_ptr: code as usize as *mut libc::c_void,
            };
            libc::sigqueue(front, child::done_signal(), value);
        }
    }
    code
}
