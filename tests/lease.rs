//! The lease where no far host is needed: a SIGKILLed sera's tree stays
//! covered until it is gone, and settings that cannot fit in the lease are
//! refused.

mod support;

use std::time::{Duration, Instant};

use support::sera::{alive, hex, Outcome, Setup};
use support::{wait_until, Server, TempDir, LONG};

/// `sh -c SCRIPT ROLE`: takes the flock probe without waiting and logs
/// "ROLE ran", or "ROLE overlapped" if a tree of another run still holds
/// it; "first" then leaves a worker of 12 s, which inherits the probe, and
/// ignores SIGTERM with it: only SIGKILL, kill_after later, stops them.
fn job(files: &TempDir, role: &str) -> Vec<String> {
    let f = |name: &str| files.join(name).display().to_string();
    let script = format!(
        "exec 9>>{probe}; \
         if flock -n 9; then echo \"$0 ran\" >> {log}; else echo \"$0 overlapped\" >> {log}; fi; \
         if [ $0 = first ]; then trap '' TERM; sleep 12 & echo $! > {worker}; wait; fi",
        probe = f("probe"),
        log = f("log"),
        worker = f("worker"),
    );
    ["sh", "-c", &script, role].map(String::from).to_vec()
}

/// The pid of the worker that the job "first" leaves, once it has started.
fn started_worker(files: &TempDir) -> u32 {
    let worker_file = files.join("worker");
    assert!(
        wait_until(Duration::from_secs(20), || std::fs::read_to_string(
            &worker_file
        )
        .is_ok_and(|s| s.ends_with('\n'))),
        "the worker never started"
    );
    std::fs::read_to_string(&worker_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn args<'a>(front: &[&'a str], job: &'a [String]) -> Vec<&'a str> {
    front
        .iter()
        .copied()
        .chain(job.iter().map(String::as_str))
        .collect()
}

#[test]
fn a_worker_outliving_a_sigkilled_sera_and_its_lease_is_not_overlapped() {
    let server = Server::shared();
    let s = Setup::new(&server.dsn());
    let files = TempDir::new();
    let first = job(&files, "first");
    // A 10 s lease fits a check every second and a 5 s kill_after.
    let fast = [
        "--lease",
        "10s",
        "--check-interval",
        "1s",
        "--kill-after",
        "5s",
    ];
    let mut sera = s
        .command(&args(
            &[&fast[..], &["--name", "lease-worker", "0"]].concat(),
            &first,
        ))
        .spawn()
        .unwrap();
    let worker = started_worker(&files);

    unsafe { libc::kill(sera.id() as i32, libc::SIGKILL) };
    sera.wait().unwrap();
    let next = job(&files, "next");
    let killed = Instant::now();
    let next = s
        .command(&args(
            &[&fast[..], &["--name", "lease-worker", "60"]].concat(),
            &next,
        ))
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || !alive(worker)),
        "the worker never exited"
    );
    let gone = Instant::now();
    eprintln!(
        "the worker was stopped {:?} after sera's SIGKILL",
        gone - killed
    );
    let next = Outcome::from(next.wait_with_output().unwrap());
    let took = gone.elapsed();
    eprintln!("the next run ended {took:?} after the worker exited");
    assert_eq!(next.code, 0, "{}", next.stderr);
    let log = std::fs::read_to_string(files.join("log")).unwrap_or_default();
    assert!(log.contains("next ran"), "{log}");
    assert!(!log.contains("overlapped"), "the runs overlapped: {log}");
    assert!(took <= Duration::from_secs(10 + 2), "took {took:?}");
}

#[test]
fn a_lease_flag_shorter_than_the_settings_need_is_refused_201() {
    let s = Setup::new(&Server::shared().dsn());
    // A lock of its own: the other tests of this file run `true` too.
    let fits = s.run(&["--lease", "60s", "--name", "lease-flag", "0", "true"]);
    assert_eq!(fits.code, 0, "{}", fits.stderr);
    // Default check_interval 5 s and kill_after 10 s cannot fit in 5 s.
    let short = s.run(&["--lease", "5s", "0", "true"]);
    assert_eq!(short.code, 201, "{}", short.stderr);
    assert!(short.stderr.starts_with("sera: "), "{}", short.stderr);
    assert!(short.stderr.contains("lease"), "{}", short.stderr);
}

#[test]
fn a_lease_key_shorter_than_the_settings_need_is_refused_200() {
    let dsn = Server::shared().dsn();
    let fits = Setup::with_json(&format!("{{\"server\": \"{dsn}\", \"lease\": \"60s\"}}"));
    let out = fits.run(&["--name", "lease-key", "0", "true"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let short = Setup::with_json(&format!("{{\"server\": \"{dsn}\", \"lease\": \"5s\"}}"));
    let out = short.run(&["0", "true"]);
    assert_eq!(out.code, 200, "{}", out.stderr);
    assert!(out.stderr.starts_with("sera: "), "{}", out.stderr);
    assert!(out.stderr.contains("lease"), "{}", out.stderr);
}

/// The children of `pid`, as the kernel lists them.
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[test]
fn a_sigkilled_keeper_leaves_a_tree_that_sera_stops_before_the_lock_frees() {
    // sera's keeper (the fork that runs the command and renews the lease)
    // killed by the OOM killer or kill -9: the command dies of its
    // PDEATHSIG, its worker comes to sera, which still holds the lock
    // connection, stops the worker, and only then lets the lock go: 206.
    let server = Server::shared();
    let s = Setup::new(&server.dsn());
    let files = TempDir::new();
    let first = job(&files, "first");
    let sera = s
        .command(&args(
            &["--kill-after", "1s", "--name", "lease-keeper", "0"],
            &first,
        ))
        .spawn()
        .unwrap();
    let worker = started_worker(&files);
    let keeper = children(sera.id());
    assert_eq!(keeper.len(), 1, "sera should have one child, its keeper");
    let held = "SELECT IS_USED_LOCK('lease-keeper') IS NOT NULL";
    assert_eq!(server.sql(held), "1");

    // SAFETY: kill takes plain integers and touches no memory.
    unsafe { libc::kill(keeper[0] as i32, libc::SIGKILL) };
    let killed = Instant::now();
    // Until the lock is free, the worker may live; once it is, never.
    assert!(
        wait_until(Duration::from_secs(20), || server.sql(held) == "0"),
        "the lock was never freed"
    );
    let freed = killed.elapsed();
    assert!(!alive(worker), "the lock was free while the worker ran");
    let out = Outcome::from(sera.wait_with_output().unwrap());
    eprintln!("the lock was free {freed:?} after the keeper's SIGKILL");
    assert_eq!(out.code, 206, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "sera: lost the keeper: sera's keeper (pid {}) was killed by signal 9; \
             stopped what the command left",
            keeper[0]
        )),
        "{}",
        out.stderr
    );
    // The worker ignored SIGTERM: it took the SIGKILL kill_after later.
    assert!(freed >= Duration::from_secs(1), "{freed:?}");
    let next = s.run(&args(
        &["--name", "lease-keeper", "0"],
        &job(&files, "next"),
    ));
    assert_eq!(next.code, 0, "{}", next.stderr);
    let log = std::fs::read_to_string(files.join("log")).unwrap_or_default();
    assert!(!log.contains("overlapped"), "the runs overlapped: {log}");
}

/// The pid of the process that runs the worker's shell: the keeper that
/// started the command.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[test]
fn a_keeper_that_waited_outside_the_room_leaves_its_tree_covered_too() {
    // A waiter that found the waiting room full hung up and came back on a
    // new connection, so its lock is on a session the front has no copy of.
    // Its keeper forks once more and holds that session for the keeper that
    // runs the command: when that one is SIGKILLed, the lock still stays
    // held until the tree it leaves is stopped.
    let server = Server::shared();
    let dsn = server.dsn();
    let s = Setup::with_json(&format!("{{\"server\": \"{dsn}\", \"waiting_room\": 1}}"));
    let files = TempDir::new();
    let gate = files.join("gate");
    let hold = format!("until [ -e {} ]; do sleep 0.05; done", gate.display());
    let name = ["--name", "lease-outside"];
    let mut holder = s
        .command(&[&name[..], &["0", "sh", "-c", &hold]].concat())
        .spawn()
        .unwrap();
    let held = "SELECT IS_USED_LOCK('lease-outside') IS NOT NULL";
    assert!(wait_until(LONG, || server.sql(held) == "1"), "no holder");
    let mut seated = s
        .command(&[&name[..], &["30", "true"]].concat())
        .spawn()
        .unwrap();
    let seat = "SELECT IS_USED_LOCK('lease-outside#room1') IS NOT NULL";
    assert!(
        wait_until(LONG, || server.sql(seat) == "1"),
        "no one seated"
    );
    let stderr = files.join("stderr");
    let first = job(&files, "first");
    let sera = s
        .command(&args(
            &["-v", "--kill-after", "1s", "--name", "lease-outside", "30"],
            &first,
        ))
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    assert!(
        wait_until(LONG, || std::fs::read_to_string(&stderr)
            .unwrap_or_default()
            .contains("the waiting room is full")),
        "the third sera never waited outside"
    );
    std::fs::write(&gate, "").unwrap();
    assert!(holder.wait().unwrap().success());
    assert!(seated.wait().unwrap().success());

    let worker = started_worker(&files);
    let shell = parent_of(worker).expect("the worker's shell");
    let keeper = parent_of(shell).expect("the keeper that runs the command");
    let first_keeper = children(sera.id());
    let second_keeper = first_keeper
        .iter()
        .flat_map(|&k| children(k))
        .collect::<Vec<_>>();
    assert_eq!(server.sql(held), "1");

    // SAFETY: kill takes plain integers and touches no memory.
    unsafe { libc::kill(keeper as i32, libc::SIGKILL) };
    assert!(
        wait_until(Duration::from_secs(20), || server.sql(held) == "0"),
        "the lock was never freed"
    );
    assert!(!alive(worker), "the lock was free while the worker ran");
    let out = Outcome::from(sera.wait_with_output().unwrap());
    let said = std::fs::read_to_string(&stderr).unwrap();
    assert_eq!(out.code, 206, "{said}");
    assert!(
        said.contains(&format!(
            "sera: lost the keeper: sera's keeper (pid {keeper}) was killed by signal 9; \
             stopped what the command left"
        )),
        "{said}"
    );
    assert_eq!(
        second_keeper,
        [keeper],
        "sera's keeper ({first_keeper:?}) should have forked the one that runs the command"
    );
}

#[test]
fn a_sera_stopped_while_it_waits_ends_as_the_signal_ends_it_and_leaves_the_server() {
    // While sera waits for the lock its keeper waits, with the signals at
    // their defaults: SIGTERM to sera reaches it, it dies of it, and sera
    // dies the same way, as it did before there was a keeper. The command
    // never runs, and the server has no session of it left.
    let server = Server::shared();
    let s = Setup::new(&server.dsn());
    let files = TempDir::new();
    let gate = files.join("gate");
    let hold = format!("until [ -e {} ]; do sleep 0.05; done", gate.display());
    let mut holder = s
        .command(&["--name", "lease-stopped", "0", "sh", "-c", &hold])
        .spawn()
        .unwrap();
    let held = "SELECT IS_USED_LOCK('lease-stopped') IS NOT NULL";
    assert!(wait_until(LONG, || server.sql(held) == "1"), "no holder");
    let ran = files.join("ran");
    let touch = format!("touch {}", ran.display());
    // The sessions blocked in GET_LOCK on this lock (sera sends the name
    // hex-encoded; hex digits are the same in either case to LIKE).
    let sessions = format!(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
         WHERE STATE = 'User lock' AND INFO LIKE '%{}%'",
        hex("lease-stopped")
    );
    let sessions = sessions.as_str();
    let before = server.sql(sessions);
    assert_eq!(before, "0");
    let waiter = s
        .command(&["--name", "lease-stopped", "30", "sh", "-c", &touch])
        .spawn()
        .unwrap();
    assert!(
        wait_until(LONG, || server.sql(sessions) == "1"),
        "the waiter never blocked in GET_LOCK"
    );
    // SAFETY: kill takes plain integers and touches no memory.
    unsafe { libc::kill(waiter.id() as i32, libc::SIGTERM) };
    let out = Outcome::from(waiter.wait_with_output().unwrap());
    assert_eq!(out.code, 128 + libc::SIGTERM, "{}", out.stderr);
    assert_eq!(out.stderr, "", "sera dies of the signal, as it always did");
    assert!(
        wait_until(LONG, || server.sql(sessions) == "0"),
        "the waiter's session stayed on the server"
    );
    std::fs::write(&gate, "").unwrap();
    assert!(holder.wait().unwrap().success());
    assert!(!ran.exists(), "the command ran after sera was stopped");
}

#[test]
fn a_keeper_whose_sera_was_killed_signals_no_one_else_at_the_end() {
    // The keeper tells its front, with a real-time signal, that the run is
    // over. With the front SIGKILLed the keeper has a new parent, the
    // nearest subreaper (here an outer sera's keeper; on a host, init or
    // systemd, to which such a signal means a change of mode), and must not
    // signal it: the outer sera would pass it on to its command, and the
    // command would die of it.
    let s = Setup::new(&Server::shared().dsn());
    let files = TempDir::new();
    let f = |name: &str| files.join(name).display().to_string();
    // The outer command goes on until the test has seen the inner keeper
    // exit: a signal the keeper sent at its end reaches it while it runs.
    let gate = files.join("gate");
    let inner = format!(
        "{sera} --config {config} --name lease-inner 5 sh -c 'touch {running}; sleep 3' & \
         echo $! > {front}; {until}; echo outer-done",
        sera = env!("CARGO_BIN_EXE_sera"),
        config = s.config.display(),
        running = f("running"),
        front = f("front"),
        until = support::sera::until_exists(&gate),
    );
    let outer = s
        .command(&["--name", "lease-outer", "5", "sh", "-c", &inner])
        .spawn()
        .unwrap();
    let running = files.join("running");
    assert!(
        wait_until(LONG, || running.exists()),
        "the inner command never ran"
    );
    let front: u32 = std::fs::read_to_string(files.join("front"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let keeper = children(front);
    assert_eq!(keeper.len(), 1, "the inner sera should have its keeper");
    // SAFETY: kill takes plain integers and touches no memory.
    unsafe { libc::kill(front as i32, libc::SIGKILL) };
    assert!(
        wait_until(LONG, || !alive(keeper[0])),
        "the inner keeper never finished"
    );
    std::fs::write(&gate, "").unwrap();
    let out = Outcome::from(outer.wait_with_output().unwrap());
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "outer-done\n"),
        "{}",
        out.stderr
    );
}
