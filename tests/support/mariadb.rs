//! A private MariaDB server per need: `Server` and `shared_dsn`.
//!
//! Why this exists: sera's tests need a real server that they may stop, restart or
//! freeze (SIGSTOP) at will, and a link they may cut or stall, without disturbing
//! the machine's own MariaDB (which keeps running on 127.0.0.1:3306, untouched).
//! So every [`Server`] is a throwaway `mariadbd` with its own datadir, socket and
//! free port on 127.0.0.1, started with `--no-defaults` so no `my.cnf` leaks in,
//! and the options in `mariadb.cnf` (shared with `scripts/mariadb-throwaway.sh`).
//!
//! How it stays fast: `mariadb-install-db` runs once per machine (per MariaDB
//! version and uid) into a template directory under `std::env::temp_dir()`;
//! each server copies that template (about 20 MB, into /dev/shm when it is a roomy
//! tmpfs) and is ready in about 0.1 s.
//!
//! How it stays clean: every `mariadbd` is forked by one dedicated "spawner" thread
//! that lives as long as the test process, with `PR_SET_PDEATHSIG = SIGKILL`. The
//! parent-death signal fires when the *thread* that forked exits, so forking from a
//! test thread would kill a server when the test that started it ends (fatal for the
//! shared server). The spawner thread only ends with the process, so every server,
//! including the shared one (a static, never dropped), dies with the test process:
//! normal exit, panic or SIGKILL alike. On a normal exit an `atexit` hook also kills
//! the shared server and removes its directory; directories left behind by a test
//! process that died are removed by the next test process that starts a server.
//!
//! Set up at start (as root, over the socket), by `setup.sql` (shared with
//! `scripts/mariadb-throwaway.sh`): `sera`@`%` and `sera`@`localhost`, password
//! `sera-pass`, mysql_native_password, `GRANT ALL ON *.*` (so tests can KILL other
//! sessions and read `information_schema.PROCESSLIST`); database `sera_test`.
//!
//! `SERA_TEST_DSN`, when set, is returned by [`shared_dsn`] instead of the shared
//! server's DSN, to run the tests that use it against another server (e.g. MySQL 8).
//! It changes nothing else: [`Server::shared`] still starts a local server.
//!
//! Linux only (prctl, /proc). Stale directories are recognised by the pid in their
//! name (see `tempdir::unique_name`): test processes sharing /tmp across pid
//! namespaces would mistake each other's directories for stale ones.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use super::netns::enter as enter_netns;
use super::port::free_port;
use super::tempdir::{owner_pid, unique_name};
use super::wait::wait_until;

/// How long a server may take to become ready, and to shut down on SIGTERM.
const START_DEADLINE: Duration = Duration::from_secs(30);
const STOP_DEADLINE: Duration = Duration::from_secs(30);

/// Bump when the template's content or the options it must match change.
const TEMPLATE_REVISION: &str = "h2";

/// The options in `mariadb.cnf`, one `--name=value` argument per line, as
/// `scripts/mariadb-throwaway.sh` reads them too. They keep a server small and
/// quick to start; the InnoDB file sizes among them also go to
/// `mariadb-install-db`, so the template matches what the server expects.
pub(super) fn server_options() -> Vec<String> {
    include_str!("mariadb.cnf")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with(['#', '[']))
        .map(|line| format!("--{line}"))
        .collect()
}

/// The `sera` users and the `sera_test` database, as the script creates them.
pub(super) const SETUP_SQL: &str = include_str!("setup.sql");

// ---------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------

/// A private `mariadbd`, killed and its directory removed on drop.
#[allow(dead_code)]
pub struct Server {
    child: Option<Child>,
    /// Holds `data/`, `tmp/`, `mysqld.sock`, `mysqld.pid`, `err.log`, `mariadbd.out`.
    dir: PathBuf,
    port: u16,
    socket: PathBuf,
    /// Where it listens for TCP: 127.0.0.1, or an address in `netns`.
    bind_address: String,
    /// The network namespace it runs in (see netns.rs); None: the test's own.
    netns: Option<String>,
    extra_args: Vec<String>,
    frozen: AtomicBool,
}

#[allow(dead_code)]
impl Server {
    /// Start a private mariadbd for this test's exclusive use: fresh datadir, free port
    /// on 127.0.0.1, socket in a short temp dir, `--no-defaults`, `--user=root` when
    /// running as root, `--skip-name-resolve`, small buffers. Creates the `sera` users
    /// and the `sera_test` database. Panics with a clear message if mariadbd is missing.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Same, with extra mariadbd options (e.g. "--wait-timeout=2", "--max-connections=3"),
    /// which come last and so override the defaults. They are kept for `start_again`.
    pub fn start_with(extra_args: &[&str]) -> Server {
        Server::start_where(None, "127.0.0.1", extra_args)
    }

    /// Same as `start`, but in the network namespace `netns` (a `FarHost`'s
    /// `db`), listening on `bind_address` there. The socket, in the temp dir,
    /// stays reachable from the test's own namespace.
    pub fn start_in_netns(netns: &str, bind_address: &str) -> Server {
        Server::start_where(Some(netns), bind_address, &[])
    }

    fn start_where(netns: Option<&str>, bind_address: &str, extra_args: &[&str]) -> Server {
        let template = template_dir();
        remove_stale_dirs_once();
        let dir = server_dir();
        fs::create_dir_all(dir.join("tmp"))
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let mut server = Server {
            child: None,
            socket: dir.join("mysqld.sock"),
            dir,
            port: 0,
            bind_address: bind_address.to_string(),
            netns: netns.map(str::to_string),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            frozen: AtomicBool::new(false),
        };
        // A free port may be taken by someone else between our probe and mariadbd's
        // bind: then mariadbd exits, and we try again on another port and a fresh copy.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let data = server.dir.join("data");
            if data.exists() {
                fs::remove_dir_all(&data).expect("remove datadir of failed attempt");
            }
            copy_dir(template, &data).unwrap_or_else(|e| {
                panic!(
                    "cannot copy {} to {}: {e}",
                    template.display(),
                    data.display()
                )
            });
            server.port = free_port();
            match server.launch() {
                Ok(()) => break,
                Err(Failure::PortTaken) if attempts < 5 => continue,
                Err(failure) => server.fail(failure),
            }
        }
        let out = server.try_sql(SETUP_SQL);
        if let Err(e) = out {
            panic!("creating the sera users failed: {e}");
        }
        server
    }

    /// A server shared by all tests of one test binary, started once, lazily, for
    /// tests that never stop, restart or freeze it. It is never dropped: an `atexit`
    /// hook kills it and removes its directory when the test process exits normally;
    /// otherwise it dies by the parent-death signal and the next run removes the directory.
    /// `SERA_TEST_DSN` does not affect it; it only overrides [`shared_dsn`].
    pub fn shared() -> &'static Server {
        SHARED.get_or_init(|| {
            let server = Server::start();
            // SAFETY: registering a plain extern "C" function has no
            // preconditions.
            unsafe {
                libc::atexit(kill_shared_server_at_exit);
            }
            server
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The pid of the running mariadbd (e.g. to SIGKILL it to simulate a crash).
    /// Panics if the server is stopped.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server is stopped").id()
    }

    /// DSN (go-sql-driver syntax) for user `sera` over TCP: "sera:sera-pass@tcp(127.0.0.1:PORT)/"
    /// (with the bind address of `start_in_netns` instead of 127.0.0.1).
    pub fn dsn(&self) -> String {
        format!("sera:sera-pass@tcp({}:{})/", self.bind_address, self.port)
    }

    /// DSN for user `sera` over the unix socket: "sera:sera-pass@unix(/tmp/.../mysqld.sock)/".
    pub fn unix_dsn(&self) -> String {
        format!("sera:sera-pass@unix({})/", self.socket.display())
    }

    /// Run SQL as root through the `mariadb` client over the socket (`-N -B -e`) and
    /// return its trimmed stdout. Panics with the client's stderr on failure.
    pub fn sql(&self, query: &str) -> String {
        self.try_sql(query)
            .unwrap_or_else(|e| panic!("SQL failed: {query}\n{e}"))
    }

    /// Stop the server (SIGTERM, wait up to 30 s for it to exit, then SIGKILL) and keep
    /// its datadir. A frozen server is thawed first. Does nothing if already stopped.
    pub fn stop(&mut self) {
        if self.child.is_none() {
            return;
        }
        self.thaw();
        let mut child = self.child.take().expect("checked above");
        signal(child.id(), libc::SIGTERM);
        let started = Instant::now();
        while started.elapsed() < STOP_DEADLINE {
            if child.try_wait().expect("waitpid mariadbd").is_some() {
                return;
            }
            thread::sleep(Duration::from_millis(5));
        }
        eprintln!("mariadbd did not stop within {STOP_DEADLINE:?} of SIGTERM; sending SIGKILL");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Start the server again on the SAME port and socket with the same datadir and
    /// extra options. Stops it first if it is running.
    pub fn start_again(&mut self) {
        self.stop();
        // The port may be briefly held by someone else; we cannot move, so retry.
        let started = Instant::now();
        loop {
            match self.launch() {
                Ok(()) => return,
                Err(Failure::PortTaken) if started.elapsed() < START_DEADLINE => {
                    thread::sleep(Duration::from_millis(100));
                }
                Err(failure) => self.fail(failure),
            }
        }
    }

    /// SIGSTOP the server, and wait until every one of its threads is stopped.
    pub fn freeze(&self) {
        let pid = self.pid();
        self.frozen.store(true, Ordering::SeqCst);
        signal(pid, libc::SIGSTOP);
        let stopped = wait_until(Duration::from_secs(10), || all_threads_stopped(pid));
        assert!(stopped, "mariadbd {pid} did not stop after SIGSTOP");
    }

    /// SIGCONT the server (harmless if it is not frozen).
    pub fn thaw(&self) {
        if let Some(child) = &self.child {
            signal(child.id(), libc::SIGCONT);
        }
        self.frozen.store(false, Ordering::SeqCst);
    }
}

impl Server {
    pub fn try_sql(&self, query: &str) -> Result<String, String> {
        let output = Command::new(mariadb_client())
            .arg("--no-defaults")
            .arg("--user=root")
            .arg(format!("--socket={}", self.socket.display()))
            .args(["-N", "-B", "-e", query])
            .output()
            .map_err(|e| format!("cannot run the mariadb client: {e}"))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
        } else {
            Err(format!(
                "mariadb client {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }

    /// Spawn mariadbd on `self.port` and wait until it is ready for connections.
    fn launch(&mut self) -> Result<(), Failure> {
        assert!(self.child.is_none(), "server already running");
        let mut cmd = Command::new(mariadbd());
        cmd.arg("--no-defaults");
        if is_root() {
            cmd.arg("--user=root");
        }
        let dir = &self.dir;
        cmd.arg(format!("--datadir={}", dir.join("data").display()))
            .arg(format!("--tmpdir={}", dir.join("tmp").display()))
            .arg(format!("--socket={}", self.socket.display()))
            .arg(format!("--pid-file={}", dir.join("mysqld.pid").display()))
            .arg(format!("--log-error={}", dir.join("err.log").display()))
            .arg(format!("--bind-address={}", self.bind_address))
            .arg(format!("--port={}", self.port))
            .args(server_options())
            .args(&self.extra_args);
        if let Some(netns) = &self.netns {
            enter_netns(&mut cmd, netns);
        }
        // Anything mariadbd prints before it opens err.log (e.g. a bad option) lands here.
        let out = fs::File::create(dir.join("mariadbd.out")).expect("create mariadbd.out");
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup mariadbd.out"))
            .stderr(out);
        let log_len = fs::metadata(dir.join("err.log"))
            .map(|m| m.len())
            .unwrap_or(0);
        let mut child = spawn_tied_to_process(cmd)
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", mariadbd().display()));

        // err.log of this run only (it is appended to by every start).
        let this_run = || {
            let log = fs::read(dir.join("err.log")).unwrap_or_default();
            let new = log.get(log_len as usize..).unwrap_or(&log);
            String::from_utf8_lossy(new).into_owned()
        };
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("waitpid mariadbd") {
                if this_run().contains("Address already in use") {
                    return Err(Failure::PortTaken);
                }
                return Err(Failure::Exited(format!("mariadbd exited with {status}")));
            }
            // Logged once both listeners are up, just before the accept loop starts.
            // Probing with a connection instead would leave an "Aborted connection"
            // warning in err.log and count in Aborted_connects, which tests may check.
            if this_run().contains("ready for connections") {
                self.child = Some(child);
                return Ok(());
            }
            if started.elapsed() > START_DEADLINE {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Failure::Exited(format!(
                    "mariadbd not ready within {START_DEADLINE:?}"
                )));
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn fail(&self, failure: Failure) -> ! {
        let why = match failure {
            Failure::PortTaken => format!("port {} stayed in use", self.port),
            Failure::Exited(why) => why,
        };
        panic!(
            "cannot start mariadbd in {} on port {}: {why}\n--- mariadbd.out ---\n{}\n--- err.log (tail) ---\n{}",
            self.dir.display(),
            self.port,
            tail(&self.dir.join("mariadbd.out"), 20),
            tail(&self.dir.join("err.log"), 40),
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.frozen.load(Ordering::SeqCst) {
                signal(child.id(), libc::SIGCONT);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

static SHARED: OnceLock<Server> = OnceLock::new();

/// On a normal exit of the test process, kill the shared server and remove its
/// directory (statics are never dropped). After a crash the parent-death signal
/// kills it instead, and the next test process removes the directory.
extern "C" fn kill_shared_server_at_exit() {
    let Some(server) = SHARED.get() else { return };
    if let Some(child) = &server.child {
        let pid = child.id() as libc::pid_t;
        // SAFETY: plain system calls on our own child; a null status pointer is
        // allowed.
        unsafe {
            libc::kill(pid, libc::SIGCONT);
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
    let _ = fs::remove_dir_all(&server.dir);
}

enum Failure {
    PortTaken,
    Exited(String),
}

/// The shared server's DSN, or `SERA_TEST_DSN` if set (e.g. to test against MySQL 8).
#[allow(dead_code)]
pub fn shared_dsn() -> String {
    match std::env::var("SERA_TEST_DSN") {
        Ok(dsn) if !dsn.is_empty() => dsn,
        _ => Server::shared().dsn(),
    }
}

pub(super) fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

pub(super) fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// Every thread of `pid` is in state T (stopped), or the process is gone.
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return true;
    };
    tasks.flatten().all(|task| {
        let stat = fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // "tid (comm) S ...": the state follows the last ')'.
        let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
        matches!(state.and_then(|s| s.chars().next()), Some('T' | 't') | None)
    })
}

pub(super) fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| format!("({}: {e})", path.display()));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------------------
// Spawning servers that die with the test process
// ---------------------------------------------------------------------------

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawn `cmd` from the long-lived spawner thread with PR_SET_PDEATHSIG = SIGKILL,
/// so the child is killed when the test process ends, however it ends.
pub(super) fn spawn_tied_to_process(cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        // Never joined: the sender lives in a static, so this thread ends with the process.
        thread::Builder::new()
            .name("sera-test-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(spawn_with_death_signal(&mut cmd));
                }
            })
            .expect("start the spawner thread");
        tx
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner
        .send((cmd, reply_tx))
        .expect("spawner thread is gone");
    reply_rx.recv().expect("spawner thread is gone")
}

fn spawn_with_death_signal(cmd: &mut Command) -> io::Result<Child> {
    let parent = std::process::id();
    // SAFETY: the closure runs between fork and exec and only makes async-
    // signal-safe
    // system calls (prctl, getppid); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl: then nobody would signal us.
            if libc::getppid() as u32 != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    cmd.spawn()
}

// ---------------------------------------------------------------------------
// Programs, template and directories
// ---------------------------------------------------------------------------

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = [
        "/usr/sbin",
        "/usr/local/sbin",
        "/sbin",
        "/usr/local/mysql/bin",
    ];
    std::env::split_paths(&path)
        .chain(extra.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| {
            fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

pub(super) fn mariadbd() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        find_program("mariadbd")
            .expect("mariadbd not found: install it with `apt-get install mariadb-server`")
    })
}

pub(super) fn mariadb_client() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        find_program("mariadb").expect(
            "mariadb (the client) not found: install it with `apt-get install mariadb-client`",
        )
    })
}

/// The datadir template, created by `mariadb-install-db` once per machine, MariaDB
/// version and uid. Concurrent test processes each install into a private directory
/// and rename it into place; the loser of that race discards its copy.
pub(super) fn template_dir() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let base = std::env::temp_dir();
        // SAFETY: geteuid(2) cannot fail and touches no memory.
        let uid = unsafe { libc::geteuid() };
        let name = format!(
            "sera-test-template-{uid}-{}-{TEMPLATE_REVISION}",
            mariadbd_version()
        );
        let template = base.join(name);
        if template.join("mysql").is_dir() {
            return template;
        }
        let scratch = base.join(unique_name("sera-template-tmp"));
        install_db(&scratch);
        let renamed = fs::rename(scratch.join("data"), &template);
        let _ = fs::remove_dir_all(&scratch);
        // If another process won the race, use its template.
        assert!(
            template.join("mysql").is_dir(),
            "cannot move {} to {}: {renamed:?}",
            scratch.join("data").display(),
            template.display()
        );
        template
    })
}

/// Install into `scratch/data`, with a private `scratch/tmp`: concurrent installs
/// sharing one tmpdir collide on temporary table names and fail.
fn install_db(scratch: &Path) {
    let install = find_program("mariadb-install-db")
        .expect("mariadb-install-db not found: install it with `apt-get install mariadb-server`");
    let datadir = scratch.join("data");
    let tmpdir = scratch.join("tmp");
    fs::create_dir_all(&tmpdir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", tmpdir.display()));
    let mut cmd = Command::new(install);
    cmd.arg("--no-defaults");
    if is_root() {
        cmd.arg("--user=root");
    }
    cmd.arg(format!("--datadir={}", datadir.display()))
        .arg(format!("--tmpdir={}", tmpdir.display()))
        // Root without password (any OS user may connect as root over the socket), and
        // no accounts named after this host: the template is machine-independent.
        .arg("--auth-root-authentication-method=normal")
        .arg("--cross-bootstrap")
        .arg("--skip-test-db")
        .args(server_options());
    let output = cmd.output().expect("run mariadb-install-db");
    if !output.status.success() {
        let _ = fs::remove_dir_all(scratch);
        panic!(
            "mariadb-install-db failed ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// "10.11.19-MariaDB-0+deb12u1", from `mariadbd --version`, made safe for a file name.
fn mariadbd_version() -> String {
    let output = Command::new(mariadbd())
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", mariadbd().display()));
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text
        .split_whitespace()
        .skip_while(|word| *word != "Ver")
        .nth(1)
        .unwrap_or("unknown");
    version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Recursive copy preserving permissions (std::fs::copy uses copy_file_range).
pub(super) fn copy_dir(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir(to)?;
    fs::set_permissions(to, fs::metadata(from)?.permissions())?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// A new, not yet created, directory for one server. It goes to /dev/shm when that
/// is a roomy tmpfs: copying the template there and starting on it is about twice as
/// fast as on a disk. The path stays short: a unix socket path must fit in 107 bytes.
pub(super) fn server_dir() -> PathBuf {
    let name = unique_name("sera-t");
    let preferred = servers_base().join(&name);
    if preferred.join("mysqld.sock").as_os_str().len() <= 100 {
        preferred
    } else {
        PathBuf::from("/tmp").join(name)
    }
}

/// /dev/shm if it is a writable tmpfs with at least 1 GiB free (Docker's default of
/// 64 MB is not enough for a dozen servers), else `std::env::temp_dir()`.
fn servers_base() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let shm = c"/dev/shm";
        // SAFETY: statvfs(3) writes into the zeroed struct we own; access(2)
        // only reads the path.
        let roomy = unsafe {
            let mut stat: libc::statvfs = std::mem::zeroed();
            libc::statvfs(shm.as_ptr(), &mut stat) == 0
                && (stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64) >= 1 << 30
                && libc::access(shm.as_ptr(), libc::W_OK | libc::X_OK) == 0
        };
        if roomy {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        }
    })
}

/// Remove directories of test processes that no longer exist (their servers died
/// with them, see the module docs). Runs once per process, before its first server.
pub(super) fn remove_stale_dirs_once() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let mut bases = vec![
            std::env::temp_dir(),
            PathBuf::from("/tmp"),
            servers_base().to_path_buf(),
        ];
        bases.sort();
        bases.dedup();
        for base in bases {
            let Ok(entries) = fs::read_dir(&base) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(pid) = owner_pid(&name) else {
                    continue;
                };
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
    });
}
