//! The command: started, watched, and never left behind.
//!
//! The child must see what it would see without sera: the same stdin, stdout,
//! stderr, terminal, environment and signals. So there are no pipes; sera
//! forks and execs, and then waits the way tini does: every signal it can
//! forward is blocked and collected with `sigtimedwait`, SIGCHLD means reap,
//! anything else goes on to the child, and the timeout is the moment to check
//! the lock. The process that does this is sera's keeper (see keeper.rs): if
//! it dies, `PR_SET_PDEATHSIG` kills the child at once, and the front, which
//! still holds the lock connection, stops what is left before it lets go.
//!
//! What sera guards is the command's whole process tree, not one pid: sera
//! is a child subreaper, so whatever the command starts stays below sera
//! even when its parent exits, and sera knows the tree is empty when it has
//! no child left to wait for.
//!
//! No descriptor the command inherits is, or carries, the lock connection:
//! its socket is close-on-exec, and nothing is passed to the command.

use std::ffi::{CString, OsStr, OsString};
use std::io::{self, Read};
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::tree;

/// The started command and what is known of its tree.
pub struct Child {
    pub pid: libc::pid_t,
    /// The signals sera blocked to collect them in `wait` and forward them.
    forwarded: libc::sigset_t,
    /// The command's wait status, once it has exited.
    pub status: Option<libc::c_int>,
    /// Nothing of the tree is left: no child of sera's, the command included.
    pub tree_empty: bool,
    /// The stop signal sera received (SIGTERM, SIGINT, SIGHUP, SIGQUIT), if any.
    pub stop_signal: Option<libc::c_int>,
    /// As `Signals::as_init`.
    as_init: bool,
    /// This child is sera's keeper, and may tell, with `keeper::done`, how
    /// the run ends before it exits.
    pub is_keeper: bool,
}

/// The signals that ask sera (a process manager's stop, Ctrl-C, a hangup)
/// to end the run: the command gets them, and what it leaves is stopped.
const STOP_SIGNALS: [libc::c_int; 4] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT];

/// After SIGKILL, how long sera waits for the tree to go before it names
/// what is left and gives up. Only a process in uninterruptible sleep (a
/// hung NFS mount, a device that does not answer) or one sera may not
/// signal (set-user-ID) outlives SIGKILL; waiting for it could be forever.
pub const GIVE_UP_AFTER_KILL: Duration = Duration::from_secs(5);

/// Signals sera does not collect: those it cannot block, and the synchronous
/// faults, which must keep killing sera itself if they ever happen.
const NOT_FORWARDED: [libc::c_int; 9] = [
    libc::SIGKILL,
    libc::SIGSTOP,
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGFPE,
    libc::SIGILL,
    libc::SIGTRAP,
    libc::SIGABRT,
    libc::SIGSYS,
];

fn forwarded_signals() -> libc::sigset_t {
    // SAFETY: an all-zero sigset_t is a valid value, which sigfillset and
    // sigdelset then set; the signal numbers are valid.
    unsafe {
        let mut set = MaybeUninit::<libc::sigset_t>::zeroed().assume_init();
        libc::sigfillset(&mut set);
        for sig in NOT_FORWARDED {
            libc::sigdelset(&mut set, sig);
        }
        set
    }
}

/// As PID 1 of a PID namespace (a container's first process), sera would
/// never die of a signal left at its default: the kernel drops those. Until
/// the command starts, dying is right (the server cancels the lock wait and
/// frees the lock when the connection drops), so give the stop signals a
/// handler that does just that, with the shell's 128+N.
pub fn stop_on_signals_as_init() {
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } != 1 {
        return;
    }
    extern "C" fn exit_now(sig: libc::c_int) {
        // SAFETY: _exit is async-signal-safe and takes any status.
        unsafe { libc::_exit(killed_by(sig)) };
    }
    for sig in STOP_SIGNALS {
        let handler: extern "C" fn(libc::c_int) = exit_now;
        // SAFETY: exit_now only calls _exit, which is async-signal-safe, so it
        // is a sound handler.
        unsafe { libc::signal(sig, handler as libc::sighandler_t) };
    }
}

/// Block every signal sera forwards (and SIGCHLD), so none is lost between
/// fork and the wait loop: one that arrives early waits, pending, for it.
/// Until this is called the default dispositions stand, so sera interrupted
/// while it waits for the lock simply dies, and the server cancels the wait.
/// (A blocked signal is kept for sera even when it is PID 1.) Called once,
/// before the keeper is forked, so the keeper inherits the blocked set.
pub fn block_signals() -> Signals {
    // SAFETY: an all-zero sigset_t is valid; sigprocmask reads `set` and writes
    // `old`, both live locals; getpid has no preconditions.
    unsafe {
        let set = forwarded_signals();
        let mut old = MaybeUninit::<libc::sigset_t>::zeroed().assume_init();
        libc::sigprocmask(libc::SIG_BLOCK, &set, &mut old);
        Signals {
            forwarded: set,
            mask: old,
            as_init: libc::getpid() == 1,
        }
    }
}

/// The signals sera blocked to forward them, and the mask it had before,
/// which the command gets back.
#[derive(Clone, Copy)]
pub struct Signals {
    forwarded: libc::sigset_t,
    mask: libc::sigset_t,
    /// sera (the front) is PID 1 of a PID namespace: everything else in it
    /// but the keeper is the command's tree.
    as_init: bool,
}

impl Signals {
    /// Give the signals sera forwards their default effect again, as before
    /// `block_signals`: the keeper waits for the lock so, and one that came
    /// meanwhile, pending, takes effect now.
    pub fn unblock(&self) {
        // SAFETY: sigprocmask reads a valid signal set.
        unsafe { libc::sigprocmask(libc::SIG_SETMASK, &self.mask, std::ptr::null_mut()) };
    }

    /// Block them again, as `block_signals` did.
    pub fn block(&self) {
        // SAFETY: sigprocmask reads a valid signal set.
        unsafe { libc::sigprocmask(libc::SIG_BLOCK, &self.forwarded, std::ptr::null_mut()) };
    }
}

/// The signal of `keeper::done`: the first real-time signal the C library
/// leaves to programs.
pub fn done_signal() -> libc::c_int {
    libc::SIGRTMIN()
}

/// End this process as `sig` would have ended it, had it not been blocked:
/// the shell sees the same status. As PID 1 the kernel drops the signal,
/// so the exit code is the shell's 128+N then.
pub fn die_of(sig: libc::c_int) -> ! {
    // SAFETY: plain system calls on this process; an all-zero sigset_t is a
    // valid value for sigemptyset to fill.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        let mut set = MaybeUninit::<libc::sigset_t>::zeroed().assume_init();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(sig);
        libc::_exit(killed_by(sig))
    }
}

/// Why the command could not start.
pub struct SpawnError {
    pub errno: i32,
}

impl SpawnError {
    /// In the user's words, for `sera: cannot run <command>: <this>`.
    pub fn reason(&self, program: &OsString) -> String {
        let has_slash = program.as_bytes().contains(&b'/');
        match self.errno {
            // exec says ENOENT for a file that exists when what must run
            // it does not: a script's #! interpreter, or the loader of a
            // binary built for another system.
            libc::ENOENT => match find_program(program) {
                Ok(file) => match missing_interpreter(&file) {
                    // The kernel takes the \r of a CRLF line end as part
                    // of the name: a classic, worth naming.
                    Some(interpreter) if interpreter.ends_with("\\r") => format!(
                        "its interpreter {interpreter} (on its #! line) does not exist: \
                         the file has Windows line ends (CRLF)"
                    ),
                    Some(interpreter) => {
                        format!("its interpreter {interpreter} (on its #! line) does not exist")
                    }
                    None => "the file exists, but the program that runs it does not \
                             (the loader of a binary built for another system?)"
                        .into(),
                },
                Err(_) if has_slash => "no such file".into(),
                Err(_) => "command not found (not on PATH)".into(),
            },
            libc::EACCES if has_slash && std::path::Path::new(program).is_dir() => {
                "it is a directory".into()
            }
            libc::EACCES => "permission denied (is it executable?)".into(),
            libc::ENOEXEC => "not an executable format (a script without #! line?)".into(),
            e => io::Error::from_raw_os_error(e).to_string(),
        }
    }
}

/// The file that runs as `program`, found as execvp finds it, if it can be
/// started. main checks this before it connects: a command that cannot start
/// must be 203 at once, not after a wait for a lock it could not use (with
/// the lock held elsewhere, that would be 204 after the whole wait). exec
/// may still fail later (the file can change meanwhile), and `spawn`, which
/// runs the file found here, reports that too.
pub fn check_program(program: &OsString) -> Result<PathBuf, SpawnError> {
    let file = find_program(program)?;
    match missing_interpreter(&file) {
        Some(_) => Err(SpawnError {
            errno: libc::ENOENT,
        }),
        None => Ok(file),
    }
}

/// The file execvp would run for `program`: itself if it holds a `/`,
/// else the first fit in PATH. The error is the errno exec would give: a
/// file found but not executable (or a directory) is EACCES, which, as for
/// execvp, wins over not found elsewhere on PATH.
fn find_program(program: &OsString) -> Result<PathBuf, SpawnError> {
    let fail = |errno| Err(SpawnError { errno });
    let name = program.as_bytes();
    if name.is_empty() {
        return fail(libc::ENOENT);
    }
    if name.contains(&b'/') {
        let file = PathBuf::from(program);
        return executable(&file).map_or(Ok(file), fail);
    }
    // Without PATH, musl's execvp (that of the static build) searches this.
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/bin:/usr/bin".into());
    let mut denied = false;
    for dir in path.as_bytes().split(|&b| b == b':') {
        // An empty entry is the current directory, as for execvp.
        let dir = if dir.is_empty() { b"." } else { dir };
        let file = Path::new(OsStr::from_bytes(dir)).join(program);
        match executable(&file) {
            None => return Ok(file),
            Some(libc::EACCES) => denied = true,
            Some(_) => {}
        }
    }
    fail(if denied { libc::EACCES } else { libc::ENOENT })
}

/// None if exec could run `file`, else the errno it would fail with.
fn executable(file: &Path) -> Option<i32> {
    let meta = match std::fs::metadata(file) {
        Ok(meta) => meta,
        Err(e) => return Some(e.raw_os_error().unwrap_or(libc::ENOENT)),
    };
    if !meta.is_file() {
        return Some(libc::EACCES);
    }
    let Ok(c_file) = CString::new(file.as_os_str().as_bytes()) else {
        return Some(libc::EINVAL);
    };
    // AT_EACCESS: exec goes by the effective ids, and so does this check.
    // SAFETY: c_file is a NUL-terminated string that outlives the call.
    let ok = unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            c_file.as_ptr(),
            libc::X_OK,
            libc::AT_EACCESS,
        )
    };
    (ok != 0).then(last_errno)
}

/// The interpreter named on the `#!` line of `file`, if it has one and it
/// does not exist, escaped for one line of text. (The kernel reads at most
/// 256 bytes of that line.)
fn missing_interpreter(file: &Path) -> Option<String> {
    let mut head = [0u8; 256];
    let n = std::fs::File::open(file).ok()?.read(&mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = line.split(|&b| b == b'\n').next()?;
    let interpreter = line
        .split(|&b| b == b' ' || b == b'\t')
        .find(|word| !word.is_empty())?;
    let interpreter = Path::new(OsStr::from_bytes(interpreter));
    match std::fs::metadata(interpreter) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let quoted = crate::report::quoted(&interpreter.to_string_lossy());
            Some(quoted[1..quoted.len() - 1].to_string())
        }
        _ => None,
    }
}

/// Fork and exec `command`, its arguments, with `program` (the file
/// `check_program` found for `command[0]`) as the file to run, in sera's
/// process group, with everything inherited. From here on sera keeps every
/// signal it forwards blocked, for `Child::wait`. An exec failure comes back
/// through a close-on-exec pipe as the real errno, not as a made-up exit
/// status. `signals`: from `block_signals`, which has already been called.
///
/// # Safety
///
/// The process must have one thread: this wipes and changes the
/// environment, which another thread could be reading, and between fork
/// and exec the child may only make async-signal-safe calls, which holds
/// only for a child of a single-threaded process. sera never starts a
/// thread.
pub unsafe fn spawn(
    program: &Path,
    command: &[OsString],
    signals: &Signals,
) -> Result<Child, SpawnError> {
    // The password is sera's, not the command's: nothing the command starts
    // may find it in its environment, nor in /proc/<sera>/environ, which
    // shows the memory the environment started in. So its bytes are wiped
    // there first, then it is taken out of the environment the command
    // inherits.
    // SAFETY: getenv's pointer is to the live environment, NUL-terminated;
    // the caller promises no other thread reads or changes it meanwhile.
    unsafe {
        let value = libc::getenv(c"SERA_PASSWORD".as_ptr());
        if !value.is_null() {
            std::ptr::write_bytes(value, 0, libc::strlen(value));
        }
    }
    std::env::remove_var("SERA_PASSWORD");
    let mask = signals.mask;
    // Everything the child needs is made before fork: it may not allocate.
    let path = CString::new(program.as_os_str().as_bytes()).map_err(|_| SpawnError {
        errno: libc::EINVAL,
    })?;
    let argv: Vec<CString> = command
        .iter()
        .map(|a| {
            CString::new(a.as_bytes()).map_err(|_| SpawnError {
                errno: libc::EINVAL,
            })
        })
        .collect::<Result<_, _>>()?;
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());

    let mut exec = Exec {
        path: path.as_ptr(),
        argv: argv_ptrs.as_ptr(),
        mask,
        // SAFETY: getpid has no preconditions.
        parent: unsafe { libc::getpid() },
        errno: 0,
    };
    // Whatever the command leaves when it exits comes to sera, not to init.
    // SAFETY: PR_SET_CHILD_SUBREAPER takes a plain integer and touches no
    // memory.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) };

    // The command's process runs in sera's memory until it execs, on a
    // stack of its own, with sera suspended meanwhile (what posix_spawn
    // does): no page tables to copy, no copy-on-write faults after, and an
    // exec failure comes back in `exec.errno`, no pipe needed.
    let mut stack: Vec<u8> = Vec::with_capacity(CHILD_STACK);
    // SAFETY: the stack grows down from the end of the allocation, which
    // lives until clone returns: with CLONE_VFORK that is after the child
    // has exec'd or exited. `exec` lives as long. The caller promises a
    // single thread, and exec_command makes only async-signal-safe calls.
    let pid = unsafe {
        let top = stack.as_mut_ptr().add(CHILD_STACK) as usize & !15;
        libc::clone(
            exec_command,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&mut exec as *mut Exec).cast(),
        )
    };
    if pid < 0 {
        return Err(SpawnError {
            errno: last_errno(),
        });
    }
    if exec.errno != 0 {
        // The child has exited; reap it so it leaves no zombie.
        // SAFETY: pid is our child, which has exited; a null status is
        // allowed.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        return Err(SpawnError { errno: exec.errno });
    }
    Ok(Child::adopt(pid, signals))
}

/// The stack of the command's process between clone and exec: a handful of
/// system calls need far less.
const CHILD_STACK: usize = 32 * 1024;

/// What the command's process needs between clone and exec, all made
/// before: it may not allocate.
struct Exec {
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    /// The signal mask the command gets.
    mask: libc::sigset_t,
    /// sera's pid, to tell whether sera died before PR_SET_PDEATHSIG.
    parent: libc::pid_t,
    /// Why exec failed (0: it did not), written by the child.
    errno: i32,
}

/// The command's process, from clone to exec.
extern "C" fn exec_command(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: arg is the Exec of `spawn`, alive and otherwise untouched
    // while sera is suspended in clone; each call is async-signal-safe, and
    // signal dispositions and the mask are this process's own (no
    // CLONE_SIGHAND), not sera's.
    unsafe {
        let exec = &mut *arg.cast::<Exec>();
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        // sera may have died before prctl took effect.
        if libc::getppid() != exec.parent {
            libc::_exit(127);
        }
        // Rust ignores SIGPIPE for its own sake; the command must not.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::sigprocmask(libc::SIG_SETMASK, &exec.mask, std::ptr::null_mut());
        libc::execv(exec.path, exec.argv);
        exec.errno = *libc::__errno_location();
        libc::_exit(127)
    }
}

/// What ended a wait.
pub enum Wake {
    /// The time given has passed: time to check the lock.
    Timeout,
    /// The command exited, with this wait status; `tree_empty` says
    /// whether it left anything behind.
    CommandExited { status: libc::c_int },
    /// The last process of the tree (after the command) has exited.
    TreeEmpty { status: libc::c_int },
    /// A stop signal arrived after the command had exited: there is no one
    /// to forward it to, and what is left must be stopped.
    StopAsked {
        signal: libc::c_int,
        status: libc::c_int,
    },
    /// The keeper told the front, with `keeper::done`, that the run is over
    /// and how it ends.
    KeeperDone { code: i32 },
}

impl Child {
    /// A child of this process, forked with `signals` blocked.
    pub fn adopt(pid: libc::pid_t, signals: &Signals) -> Child {
        Child {
            pid,
            forwarded: signals.forwarded,
            status: None,
            tree_empty: false,
            stop_signal: None,
            as_init: signals.as_init,
            is_keeper: false,
        }
    }

    /// The exit code the keeper sent with `keeper::done`, if `sig` is that.
    fn keeper_done(&self, sig: libc::c_int, info: &libc::siginfo_t) -> Option<i32> {
        // SAFETY: si_pid and si_value are set for a signal sent by sigqueue
        // (SI_QUEUE), and read only then.
        unsafe {
            (self.is_keeper
                && sig == done_signal()
                && info.si_code == libc::SI_QUEUE
                && info.si_pid() == self.pid)
                .then(|| info.si_value().sival_ptr as usize as i32)
        }
    }

    /// Whether `sig` is one `wait` forwards.
    pub fn forwards(&self, sig: libc::c_int) -> bool {
        // SAFETY: sigismember reads a valid signal set.
        unsafe { libc::sigismember(&self.forwarded, sig) == 1 }
    }

    /// Wait until something happens to the tree or `timeout` passes (None:
    /// no timeout), forwarding every signal that arrives meanwhile to the
    /// command.
    pub fn wait(&mut self, timeout: Option<Duration>) -> Wake {
        let set = self.forwarded;
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let mut info = MaybeUninit::<libc::siginfo_t>::zeroed();
            let sig = match deadline {
                // SAFETY: set is a valid signal set, and info has room for the
                // siginfo_t written.
                None => unsafe { libc::sigwaitinfo(&set, info.as_mut_ptr()) },
                Some(deadline) => {
                    let left = crate::duration::left(deadline);
                    if left.is_zero() {
                        return Wake::Timeout;
                    }
                    // Zeroed then filled: libc's `time_t` alias is deprecated on musl.
                    // SAFETY: an all-zero timespec is a valid value.
                    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
                    ts.tv_sec = left.as_secs().min(i32::MAX as u64) as _;
                    ts.tv_nsec = left.subsec_nanos() as _;
                    // SAFETY: set and ts are valid, and info has room for the
                    // siginfo_t written.
                    unsafe { libc::sigtimedwait(&set, info.as_mut_ptr(), &ts) }
                }
            };
            if sig < 0 {
                match last_errno() {
                    libc::EAGAIN => return Wake::Timeout,
                    _ => continue,
                }
            }
            if sig == libc::SIGCHLD {
                let was_running = self.status.is_none();
                self.reap();
                // The tree is empty only once the command, sera's child, is
                // reaped: then its status is known.
                match self.status {
                    Some(status) if was_running => return Wake::CommandExited { status },
                    Some(status) if self.tree_empty => return Wake::TreeEmpty { status },
                    _ => continue,
                }
            }
            if STOP_SIGNALS.contains(&sig) {
                self.stop_signal = Some(sig);
                if let Some(status) = self.status {
                    return Wake::StopAsked {
                        signal: sig,
                        status,
                    };
                }
            }
            // SAFETY: sig >= 0, so sigwaitinfo or sigtimedwait filled info.
            let info = unsafe { info.assume_init() };
            if let Some(code) = self.keeper_done(sig, &info) {
                return Wake::KeeperDone { code };
            }
            if self.status.is_none() {
                forward(self.pid, sig, &info);
            }
        }
    }

    /// Collect every exited child: the command, and the orphans of its tree
    /// that the kernel hands to sera (as subreaper, or as PID 1).
    fn reap(&mut self) {
        loop {
            let mut status = 0;
            // SAFETY: status is a live c_int for waitpid to write.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid == self.pid {
                self.status = Some(status);
            }
            if pid <= 0 {
                // 0: children left, none exited; ECHILD: none left at all.
                self.tree_empty = pid < 0 && last_errno() == libc::ECHILD;
                return;
            }
        }
    }

    /// Stop the whole tree: SIGTERM to every process of it, SIGKILL to
    /// whatever is left `kill_after` later, until nothing is. Returns None
    /// when the tree is gone; else what outlived SIGKILL for
    /// GIVE_UP_AFTER_KILL, as far as /proc can name it (maybe nothing).
    pub fn stop(&mut self, kill_after: Duration) -> Option<Vec<tree::Process>> {
        self.signal_tree(libc::SIGTERM);
        if self.wait_for_empty(kill_after) {
            return None;
        }
        self.kill()
    }

    /// SIGKILL the whole tree, with no grace, until nothing is left or
    /// GIVE_UP_AFTER_KILL has passed; returns as `stop` does.
    pub fn kill(&mut self) -> Option<Vec<tree::Process>> {
        let give_up = Instant::now() + GIVE_UP_AFTER_KILL;
        loop {
            // Again and again: a process may have forked since the last round.
            self.signal_tree(libc::SIGKILL);
            if self.wait_for_empty(Duration::from_millis(100)) {
                return None;
            }
            if Instant::now() >= give_up {
                return Some(tree::below_sera().unwrap_or_default());
            }
        }
    }

    fn wait_for_empty(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.tree_empty {
            let left = crate::duration::left(deadline);
            if left.is_zero() {
                return false;
            }
            self.wait(Some(left));
        }
        true
    }

    /// Send `sig` to every process of the tree. With sera as PID 1 that is
    /// everyone else in the namespace (the keeper spares itself), which
    /// `kill(-1)` reaches without /proc. Without a usable /proc only the
    /// command itself can be named.
    fn signal_tree(&self, sig: libc::c_int) {
        if self.as_init {
            // SAFETY: kill takes plain integers and touches no memory.
            unsafe { libc::kill(-1, sig) };
            return;
        }
        match tree::below_sera() {
            Some(processes) => {
                for process in processes {
                    // SAFETY: kill takes plain integers and touches no memory.
                    unsafe { libc::kill(process.pid, sig) };
                }
            }
            // SAFETY: kill takes plain integers and touches no memory.
            None if self.status.is_none() => unsafe {
                libc::kill(self.pid, sig);
            },
            None => {}
        }
    }
}

/// Pass a signal on. One the kernel sent on behalf of the terminal (Ctrl-C,
/// Ctrl-\, Ctrl-Z, a resize, a hangup) already reached the whole foreground
/// process group, the child included, so sending it again would double it.
fn forward(pid: libc::pid_t, sig: libc::c_int, info: &libc::siginfo_t) {
    if info.si_code == libc::SI_KERNEL {
        if sig == libc::SIGTSTP || sig == libc::SIGTTIN || sig == libc::SIGTTOU {
            // The child stopped; stop too, so the shell gets the terminal
            // back. `fg` sends SIGCONT to both.
            // SAFETY: raise takes a plain integer and touches no memory.
            unsafe { libc::raise(libc::SIGSTOP) };
        }
        return;
    }
    // SAFETY: kill takes plain integers and touches no memory.
    unsafe { libc::kill(pid, sig) };
}

/// A wait status in words, for logs.
pub fn describe(status: libc::c_int) -> String {
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        format!(
            "was killed by signal {sig} (exit status {})",
            killed_by(sig)
        )
    } else {
        format!("exited with status {}", libc::WEXITSTATUS(status))
    }
}

/// The shell convention: the exit status, or 128 + N for death by signal N.
pub fn exit_code(status: libc::c_int) -> i32 {
    if libc::WIFSIGNALED(status) {
        killed_by(libc::WTERMSIG(status))
    } else {
        libc::WEXITSTATUS(status)
    }
}

/// The shell's exit status for death by signal `sig`: 128 + N.
const fn killed_by(sig: libc::c_int) -> i32 {
    128 + sig
}

fn last_errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}
