//! The lock covers the command's whole process tree: shell scripts that do
//! not `exec`, Python jobs with `subprocess` workers, workers that `setsid`
//! into the background. Each job's worker holds a `flock` on a probe file
//! for as long as any process of it lives, so a second copy, or anything
//! left behind, cannot go unnoticed.

mod support;

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use support::sera::{
    alive, assert_held_for, child_of, is_used_lock_sql, until_exists, Outcome, Setup,
};
use support::{shared_dsn, wait_until, Server, LONG};

/// A job whose worker runs below the command, in one of the shapes users
/// write, with a mutual-exclusion probe.
struct Job {
    setup: Setup,
    /// The command line given to sera.
    command: Vec<String>,
}

impl Job {
    /// `shape` is the command with `WORKER` where the worker is started, and
    /// `UNTIL_DONE` where it waits as long as the worker does.
    fn new(setup: Setup, shape: &[&str]) -> Job {
        let dir = setup.dir.join("");
        let worker = dir.join("worker.sh");
        // Holds the probe while it runs; one that cannot take it records
        // an overlap. It runs until the file `done` exists. Its output goes
        // nowhere, so that the test's pipes close when sera exits even when
        // the worker is left running on purpose.
        std::fs::write(
            &worker,
            format!(
                "exec >/dev/null 2>&1
                 flock -n -E 99 {dir}/probe sh -c 'echo $$ >> {dir}/pids; {until_done}'
                 [ $? = 99 ] && echo overlap >> {dir}/log
                 exit 0\n",
                dir = dir.display(),
                until_done = until_exists(&dir.join("done"))
            ),
        )
        .unwrap();
        let until_done = until_exists(&dir.join("done"));
        let command = shape
            .iter()
            .map(|word| {
                word.replace("WORKER", &format!("sh {}", worker.display()))
                    .replace("UNTIL_DONE", &until_done)
            })
            .collect();
        Job { setup, command }
    }

    /// `<wait> <command...>`, for sera.
    fn args<'a>(&'a self, wait: &'a str) -> Vec<&'a str> {
        let mut args = vec![wait];
        args.extend(self.command.iter().map(String::as_str));
        args
    }

    fn path(&self, name: &str) -> PathBuf {
        self.setup.dir.join(name)
    }

    /// Start sera on the job and wait until the worker holds the probe.
    fn start(&self, options: &[&str]) -> Child {
        let args = [options, &self.args("5")].concat();
        let sera = self.setup.command(&args).spawn().unwrap();
        assert!(
            wait_until(LONG, || self.worker_pids().len() == 1),
            "the worker never started"
        );
        sera
    }

    fn worker_pids(&self) -> Vec<u32> {
        std::fs::read_to_string(self.path("pids"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.parse().ok())
            .collect()
    }

    /// Whether some process still holds the probe.
    fn probe_held(&self) -> bool {
        let status = Command::new("flock")
            .args(["-n", "-E", "99"])
            .arg(self.path("probe"))
            .arg("true")
            .status()
            .unwrap();
        status.code() == Some(99)
    }

    /// Processes of this job still alive: any whose command line names
    /// the job's folder.
    fn leftovers(&self) -> Vec<u32> {
        let dir = self.setup.dir.join("");
        let dir = dir.to_str().unwrap().trim_end_matches('/');
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(dir) && alive(pid) {
                found.push(pid);
            }
        }
        found
    }

    /// Nothing of the job is left, and a second sera of the same command,
    /// started right away, gets the lock and overlaps nothing.
    fn assert_nothing_left(&self) {
        assert_eq!(
            self.leftovers(),
            Vec::<u32>::new(),
            "processes outlived sera"
        );
        assert!(
            !self.probe_held(),
            "something of the job still holds the probe"
        );
        std::fs::write(self.path("done"), "").unwrap();
        let second = self.setup.run(&self.args("0"));
        assert_eq!(second.code, 0, "the second run: {}", second.stderr);
        let log = std::fs::read_to_string(self.path("log")).unwrap_or_default();
        assert_eq!(log, "", "two copies of the job overlapped");
    }

    /// Let the worker finish (for tests that leave it running).
    fn finish(&self) {
        std::fs::write(self.path("done"), "").unwrap();
        assert!(wait_until(LONG, || !self.probe_held()));
    }

    /// The lock stays held, checked every 200 ms, for `long`.
    fn assert_held_for(&self, server: &Server, long: Duration) {
        assert_held_for(server, &self.lock_holder_sql(), long);
    }

    fn lock_holder_sql(&self) -> String {
        is_used_lock_sql(&self.command.join(" "))
    }

    /// How many sessions wait in GET_LOCK for this job's lock (sera sends
    /// the name hex-encoded, and LIKE here ignores case).
    fn waiters_sql(&self) -> String {
        let line = support::sera::hex(&self.command.join(" "));
        format!(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
             WHERE STATE = 'User lock' AND INFO LIKE CONCAT('%', HEX(MD5(X'{line}')), '%')"
        )
    }
}

/// The shapes of job the issue names, each with a worker below the command.
fn shapes() -> [(&'static str, Vec<&'static str>); 3] {
    [
        (
            "a shell script without exec",
            vec!["sh", "-c", "WORKER; true"],
        ),
        (
            "a Python job with a subprocess worker",
            vec![
                "python3",
                "-c",
                "import subprocess, shlex; subprocess.run(shlex.split('WORKER'))",
            ],
        ),
        (
            "a worker gone to the background with setsid",
            vec!["sh", "-c", "setsid -f WORKER; UNTIL_DONE"],
        ),
    ]
}

#[test]
fn a_killed_lock_connection_stops_the_whole_tree() {
    let server = Server::shared();
    for (shape, command) in shapes() {
        let job = Job::new(Setup::new(&server.dsn()), &command);
        let sera = job.start(&["--check-interval", "1s", "--kill-after", "1s"]);
        let id = server.sql(&job.lock_holder_sql());
        assert_ne!(id, "NULL", "{shape}: the lock is not held");
        server.sql(&format!("KILL {id}"));
        let killed = Instant::now();
        let out = Outcome::from(sera.wait_with_output().unwrap());
        let took = killed.elapsed();
        assert_eq!(out.code, 206, "{shape}: {}", out.stderr);
        // check_interval + the check's deadline + kill_after, and slack.
        assert!(took < Duration::from_secs(4), "{shape}: took {took:?}");
        assert!(
            out.stderr.contains("sera: lost the lock: "),
            "{}",
            out.stderr
        );
        job.assert_nothing_left();
    }
}

#[test]
fn sigterm_to_sera_leaves_nothing_of_the_tree() {
    let s = shared_dsn();
    for (shape, command) in shapes() {
        let job = Job::new(Setup::new(&s), &command);
        let sera = job.start(&["--kill-after", "1s"]);
        // SAFETY: kill takes plain integers and touches no memory.
        unsafe { libc::kill(sera.id() as i32, libc::SIGTERM) };
        let out = Outcome::from(sera.wait_with_output().unwrap());
        // The command's own status: it died of the forwarded SIGTERM.
        assert_eq!(out.code, 143, "{shape}: {}", out.stderr);
        job.assert_nothing_left();
    }
}

/// A command that starts a background worker and exits 0 once it runs.
fn background_job() -> Job {
    let setup = Setup::new(&shared_dsn());
    let started = format!(
        "WORKER & while [ ! -s {} ]; do sleep 0.02; done; echo started",
        setup.dir.join("pids").display()
    );
    Job::new(setup, &["sh", "-c", &started])
}

#[test]
fn orphans_wait_keeps_the_lock_until_the_last_process_exits() {
    let server = Server::shared();
    let job = background_job();
    let mut sera = job.start(&[]);
    let worker = job.worker_pids()[0];
    // The command has exited; the lock stays, and sera says why at once.
    let line = read_line(sera.stderr.as_mut().unwrap());
    assert!(
        line.starts_with("sera: the command exited but left ") && line.contains("--orphans"),
        "{line}"
    );
    assert_ne!(server.sql(&job.lock_holder_sql()), "NULL");
    let refused = job.setup.run(&job.args("0"));
    assert_eq!(refused.code, 204, "{}", refused.stderr);
    assert!(alive(worker));

    job.finish();
    let out = Outcome::from(sera.wait_with_output().unwrap());
    assert_eq!((out.code, out.stdout.as_str()), (0, "started\n"));
    assert_eq!(server.sql(&job.lock_holder_sql()), "NULL");
}

#[test]
fn orphans_term_stops_what_the_command_left() {
    let job = background_job();
    let sera = job.start(&["--orphans", "term", "--kill-after", "1s"]);
    let out = Outcome::from(sera.wait_with_output().unwrap());
    assert_eq!(out.code, 0, "{}", out.stderr);
    job.assert_nothing_left();
}

#[test]
fn orphans_ignore_releases_at_once_and_leaves_them_running() {
    let server = Server::shared();
    let job = background_job();
    let sera = job.start(&["--orphans", "ignore"]);
    let out = Outcome::from(sera.wait_with_output().unwrap());
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(server.sql(&job.lock_holder_sql()), "NULL");
    assert!(job.probe_held(), "the worker was stopped");
    job.finish();
}

#[test]
fn a_short_server_wait_timeout_never_frees_a_running_commands_lock() {
    let server = Server::start_with(&["--wait-timeout=2"]);
    let job = Job::new(Setup::new(&server.dsn()), &["sh", "-c", "WORKER; true"]);
    let sera = job.start(&["--check-interval", "5s"]);
    job.assert_held_for(&server, Duration::from_secs(4));
    job.finish();
    let out = Outcome::from(sera.wait_with_output().unwrap());
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn a_wait_timeout_in_the_dsn_is_the_lease_and_refused_when_too_short() {
    // The server ends a silent session after the DSN's wait_timeout: that
    // is the lease, and 2 s cannot cover a check every 5 s and a 10 s kill.
    let server = Server::shared();
    let setup = Setup::new(&format!("{}?wait_timeout=2", server.dsn()));
    let out = setup.run(&["0", "true"]);
    assert_eq!(out.code, 200, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "the DSN's wait_timeout=2 (the lease the server keeps) is too short for \
             check_interval 5s and kill_after 10s: a lease must cover \
             check_interval + 1 s + kill_after + 1 s (17 s)"
        ),
        "{}",
        out.stderr
    );
    // A flag that shapes it makes it a bad argument.
    let out = setup.run(&["--check-interval", "5s", "0", "true"]);
    assert_eq!(out.code, 201, "{}", out.stderr);
    assert!(out.stderr.contains("--check-interval 5s"), "{}", out.stderr);
}

#[test]
fn a_sigkilled_seras_tree_is_stopped_before_its_lock_frees() {
    // sera itself SIGKILLed: its keeper, which holds the lock session,
    // stops the command's whole tree (the worker below it included) and
    // only then lets the lock go. At no moment is the lock free while the
    // worker runs, even on a server whose own wait_timeout is 2 s.
    let server = Server::start_with(&["--wait-timeout=2"]);
    let job = Job::new(Setup::new(&server.dsn()), &["sh", "-c", "WORKER; true"]);
    let mut sera = job.start(&["--kill-after", "1s"]);
    // SAFETY: kill takes plain integers and touches no memory.
    unsafe { libc::kill(sera.id() as i32, libc::SIGKILL) };
    sera.wait().unwrap();
    assert!(wait_until(LONG, || server.sql(&job.lock_holder_sql()) == "NULL"));
    assert!(!job.probe_held(), "the lock was free while the worker ran");
    job.assert_nothing_left();
}

#[test]
fn without_proc_what_cannot_be_stopped_is_said() {
    // With no /proc to find the tree in, sera cannot stop what the command
    // left; it must say so, not claim success.
    let job = background_job();
    let mut args = vec!["--orphans", "term", "--kill-after", "1s"];
    args.extend(job.args("5"));
    let script = format!(
        "umount /proc && exec {} --config {} \"$@\"",
        env!("CARGO_BIN_EXE_sera"),
        job.setup.config.display()
    );
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", &script, "sh"])
        .args(&args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let out = Outcome::from(out);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("sera: warning: giving up on processes of the command's tree"),
        "{}",
        out.stderr
    );
    assert!(
        job.probe_held(),
        "the worker was stopped after all: the test proves nothing"
    );
    job.finish();
}

/// sera as PID 1 of a new PID namespace, as in a container: returns the
/// `unshare` process and sera's pid as seen from here.
fn start_as_pid_1(setup: &Setup, args: &[&str]) -> (Child, u32) {
    let unshare = Command::new("unshare")
        .args(["--pid", "--fork", env!("CARGO_BIN_EXE_sera"), "--config"])
        .arg(&setup.config)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut sera = None;
    assert!(
        wait_until(LONG, || {
            sera = child_of(unshare.id());
            sera.is_some()
        }),
        "unshare never started sera"
    );
    (unshare, sera.unwrap())
}

#[test]
fn as_pid_1_sigterm_stops_sera_while_it_waits_for_the_lock() {
    let job = Job::new(Setup::new(&shared_dsn()), &["sh", "-c", "WORKER; true"]);
    let holder = job.start(&[]);
    let (waiter, sera) = start_as_pid_1(&job.setup, &job.args("30"));
    assert!(
        wait_until(LONG, || Server::shared().sql(&job.waiters_sql()) == "1"),
        "sera as PID 1 never waited in GET_LOCK"
    );
    // SAFETY: kill takes plain integers and touches no memory.
    unsafe { libc::kill(sera as i32, libc::SIGTERM) };
    let asked = Instant::now();
    let out = Outcome::from(waiter.wait_with_output().unwrap());
    assert_eq!(out.code, 143, "{}", out.stderr);
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "took {:?}",
        asked.elapsed()
    );
    assert_eq!(job.worker_pids().len(), 1, "the waiter ran the job");
    job.finish();
    assert_eq!(Outcome::from(holder.wait_with_output().unwrap()).code, 0);
}

#[test]
fn as_pid_1_sigterm_stops_the_command_and_reaps_its_whole_tree() {
    let job = Job::new(Setup::new(&shared_dsn()), &["sh", "-c", "WORKER; true"]);
    let args = [&["--kill-after", "1s"][..], &job.args("5")].concat();
    let (unshare, sera) = start_as_pid_1(&job.setup, &args);
    assert!(
        wait_until(LONG, || job.worker_pids().len() == 1),
        "the worker never started"
    );
    // SAFETY: kill takes plain integers and touches no memory.
    unsafe { libc::kill(sera as i32, libc::SIGTERM) };
    let asked = Instant::now();
    let out = Outcome::from(unshare.wait_with_output().unwrap());
    assert_eq!(out.code, 143, "{}", out.stderr);
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "took {:?}",
        asked.elapsed()
    );
    job.assert_nothing_left();
}

/// One line of sera's stderr, read byte by byte so nothing else is taken.
fn read_line(stream: &mut std::process::ChildStderr) -> String {
    use std::io::Read;
    let mut line = Vec::new();
    let mut byte = [0u8];
    while stream.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    String::from_utf8_lossy(&line).into_owned()
}
