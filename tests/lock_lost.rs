//! The command never outlives its lock. Fault injection with real processes
//! and a private MariaDB: sera killed, signals sent to sera, the server
//! restarted, frozen, the session killed, the link cut or stalled, a job that
//! outlasts `wait_timeout`, and racers killed at random under load.

mod support;

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::sera::{alive, assert_held_for, is_used_lock_sql, until_exists, Outcome, Setup};
use support::{shared_dsn, wait_until, Relay, Server, LONG};

/// A job that logs which signals reach it. It writes its pid when ready; on
/// SIGTERM it logs TERM and exits 0 (sera's 206 must still win).
fn job_script(setup: &Setup) -> String {
    format!(
        "trap 'echo TERM >> {log}; exit 0' TERM; echo $$ > {pid}; \
         while :; do sleep 0.05; done",
        log = setup.dir.join("log").display(),
        pid = setup.dir.join("pid").display(),
    )
}

/// Start sera on the job with fast liveness settings, and wait until the job
/// runs. Returns sera and the job's pid.
fn start_job(setup: &Setup, extra: &[&str]) -> (Child, u32) {
    let script = job_script(setup);
    let mut args = vec!["--check-interval", "1s", "--kill-after", "1s"];
    args.extend(extra);
    args.extend(["5", "sh", "-c", &script]);
    let sera = setup.command(&args).spawn().unwrap();
    let pid_file = setup.dir.join("pid");
    assert!(
        wait_until(LONG, || std::fs::read_to_string(&pid_file)
            .is_ok_and(|s| s.ends_with('\n'))),
        "the job never started"
    );
    let pid = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (sera, pid)
}

/// sera must exit 206 within `bound`, having stopped the job with SIGTERM.
fn assert_stopped_for_lost_lock(setup: &Setup, sera: Child, job: u32, bound: Duration) {
    let started = Instant::now();
    let out = Outcome::from(sera.wait_with_output().unwrap());
    let took = started.elapsed();
    eprintln!("sera stopped the job and exited 206 {took:?} after the fault");
    assert_eq!(out.code, 206, "{}", out.stderr);
    assert!(took < bound, "took {took:?}, bound {bound:?}");
    assert!(
        out.stderr.contains("sera: lost the lock: "),
        "{}",
        out.stderr
    );
    assert!(!alive(job), "the job outlived sera");
    let log = std::fs::read_to_string(setup.dir.join("log")).unwrap_or_default();
    assert_eq!(log, "TERM\n", "the job should have had SIGTERM once");
}

#[test]
fn sigkill_of_sera_kills_the_command_and_frees_the_lock() {
    let server = Server::shared();
    let s = Setup::new(&server.dsn());
    let (mut sera, job) = start_job(&s, &[]);
    let lock = is_used_lock_sql(&format!("sh -c {}", job_script(&s)));
    assert_ne!(server.sql(&lock), "NULL");

    // SAFETY: kill takes plain integers and touches no memory.
    unsafe { libc::kill(sera.id() as i32, libc::SIGKILL) };
    sera.wait().unwrap();
    let killed = Instant::now();
    assert!(
        wait_until(Duration::from_secs(1), || !alive(job)),
        "job survived sera"
    );
    assert!(killed.elapsed() < Duration::from_secs(1));
    assert!(wait_until(Duration::from_secs(2), || server.sql(&lock) == "NULL"));
}

#[test]
fn signals_to_sera_reach_the_command_which_keeps_the_lock_while_it_handles_them() {
    let s = Setup::new(&shared_dsn());
    for (signal, name) in [
        (libc::SIGTERM, "TERM"),
        (libc::SIGINT, "INT"),
        (libc::SIGHUP, "HUP"),
        (libc::SIGUSR1, "USR1"),
    ] {
        let log = s.dir.join(&format!("log-{name}"));
        let handled = s.dir.join(&format!("handled-{name}"));
        // The trap takes its time: the lock must still be held meanwhile.
        let script = format!(
            "trap 'echo {name} >> {log}; {handled}; exit 7' {name}; \
             echo ready >> {log}; while :; do sleep 0.02; done",
            log = log.display(),
            handled = until_exists(&handled)
        );
        let sera = s.command(&["5", "sh", "-c", &script]).spawn().unwrap();
        assert!(wait_until(LONG, || std::fs::read_to_string(&log)
            .is_ok_and(|l| l == "ready\n")));
        // SAFETY: kill takes plain integers and touches no memory.
        unsafe { libc::kill(sera.id() as i32, signal) };
        assert!(
            wait_until(LONG, || std::fs::read_to_string(&log)
                .unwrap()
                .contains(name)),
            "SIG{name} never reached the command"
        );
        let other = s.run(&["0", "sh", "-c", &script]);
        assert_eq!(other.code, 204, "SIG{name}: {}", other.stderr);
        std::fs::write(&handled, "").unwrap();
        let out = Outcome::from(sera.wait_with_output().unwrap());
        assert_eq!(out.code, 7, "SIG{name}: {}", out.stderr);
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            format!("ready\n{name}\n"),
            "SIG{name} delivered once"
        );
    }
}

#[test]
fn a_server_restart_stops_the_command() {
    let mut server = Server::start();
    let s = Setup::new(&server.dsn());
    let (sera, job) = start_job(&s, &[]);
    server.stop();
    server.start_again();
    // A closed connection is noticed at the next check.
    assert_stopped_for_lost_lock(&s, sera, job, Duration::from_secs(5));
}

#[test]
fn a_frozen_server_stops_the_command_before_the_lease_ends() {
    // A lease of 5 s, renewed every second: the server may free the lock 5 s
    // after the last renewal it got, so the job must be dead a second before
    // that. It gets SIGTERM at renewal + 5 - 1 - kill_after (1 s).
    let server = Server::start();
    let s = Setup::new(&server.dsn());
    let (sera, job) = start_job(&s, &["--lease", "5s"]);
    server.freeze();
    let frozen = Instant::now();
    assert_stopped_for_lost_lock(&s, sera, job, Duration::from_secs(5));
    // Not at the first unanswered check: the lease had time left.
    assert!(
        frozen.elapsed() > Duration::from_millis(1500),
        "{:?}",
        frozen.elapsed()
    );
    server.thaw();
}

#[test]
fn killing_the_session_stops_the_command() {
    let server = Server::shared();
    let s = Setup::new(&server.dsn());
    let (sera, job) = start_job(&s, &[]);
    let id = server.sql(&is_used_lock_sql(&format!("sh -c {}", job_script(&s))));
    server.sql(&format!("KILL {id}"));
    assert_stopped_for_lost_lock(&s, sera, job, Duration::from_secs(5));
}

#[test]
fn a_cut_link_stops_the_command() {
    let server = Server::shared();
    let relay = Relay::start(server.port());
    let s = Setup::new(&format!("sera:sera-pass@tcp(127.0.0.1:{})/", relay.port()));
    let (sera, job) = start_job(&s, &[]);
    relay.cut();
    assert_stopped_for_lost_lock(&s, sera, job, Duration::from_secs(5));
}

#[test]
fn a_stalled_link_stops_the_command() {
    let server = Server::shared();
    let relay = Relay::start(server.port());
    let s = Setup::new(&format!("sera:sera-pass@tcp(127.0.0.1:{})/", relay.port()));
    let (sera, job) = start_job(&s, &["--lease", "5s"]);
    relay.stall();
    assert_stopped_for_lost_lock(&s, sera, job, Duration::from_secs(5));
}

#[test]
fn on_lost_ignore_lets_the_command_finish() {
    let server = Server::shared();
    let s = Setup::new(&server.dsn());
    let gate = s.dir.join("gate");
    let script = format!(
        "echo $$ > {pid}; {gate}; exit 5",
        pid = s.dir.join("pid").display(),
        gate = until_exists(&gate)
    );
    let mut sera = s
        .command(&[
            "--check-interval",
            "200ms",
            "--on-lost",
            "ignore",
            "5",
            "sh",
            "-c",
            &script,
        ])
        .spawn()
        .unwrap();
    assert!(wait_until(LONG, || s.dir.join("pid").exists()));
    let id = server.sql(&is_used_lock_sql(&format!("sh -c {script}")));
    server.sql(&format!("KILL {id}"));
    // sera says it lost the lock and lets the command go on: only then may
    // the command finish.
    let stderr = BufReader::new(sera.stderr.take().unwrap());
    let (lines, said) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let warning = said.recv_timeout(LONG).expect("sera said nothing");
    assert!(
        warning.starts_with("sera: warning: lost the lock"),
        "{warning}"
    );
    assert!(alive(sera.id()), "sera must wait for the command");
    std::fs::write(&gate, "").unwrap();
    assert_eq!(sera.wait().unwrap().code(), Some(5));
}

#[test]
fn a_job_longer_than_the_dsns_wait_timeout_keeps_its_lock_while_checked() {
    // sera sets the session's wait_timeout to its lease, unless the DSN
    // sets one: that is then the lease, and the checks renew it.
    let server = Server::shared();
    let s = Setup::new(&format!("{}?wait_timeout=2", server.dsn()));
    let lock_of = |script: &str| is_used_lock_sql(&format!("sh -c {script}"));

    // Control: without checks the idle session is closed and the lock lost,
    // long before the job ends; sera warned of both.
    let unchecked = "sleep 5; echo unchecked";
    let mut sera = s
        .command(&["--check-interval", "0", "5", "sh", "-c", unchecked])
        .spawn()
        .unwrap();
    assert!(wait_until(LONG, || server.sql(&lock_of(unchecked)) != "NULL"));
    assert!(
        wait_until(Duration::from_secs(4), || server.sql(&lock_of(unchecked))
            == "NULL"),
        "wait_timeout did not close the idle session: the test proves nothing"
    );
    sera.kill().unwrap();
    let out = Outcome::from(sera.wait_with_output().unwrap());
    assert!(
        out.stderr
            .contains("check_interval is 0: sera never checks the lock"),
        "{}",
        out.stderr
    );

    // A lease of 4 s renewed every second: the lock stays for the whole 5 s job.
    let s = Setup::new(&format!("{}?wait_timeout=4", server.dsn()));
    let checked = "sleep 5; echo checked";
    let sera = s
        .command(&[
            "--check-interval",
            "1s",
            "--kill-after",
            "1s",
            "5",
            "sh",
            "-c",
            checked,
        ])
        .spawn()
        .unwrap();
    assert!(wait_until(LONG, || server.sql(&lock_of(checked)) != "NULL"));
    assert_held_for(server, &lock_of(checked), Duration::from_millis(4500));
    let out = Outcome::from(sera.wait_with_output().unwrap());
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "checked\n"),
        "{}",
        out.stderr
    );
}

#[test]
fn mutual_exclusion_holds_while_seras_are_killed_at_random() {
    // Each run takes a non-blocking flock on a probe file and fails with 99
    // if anyone else holds it: an overlap of two runs can not go unnoticed.
    let s = Arc::new(Setup::new(&shared_dsn()));
    let probe = s.dir.join("probe");
    let command = [
        "flock",
        "-n",
        "-E",
        "99",
        probe.to_str().unwrap(),
        "sleep",
        "0.01",
    ]
    .map(String::from);
    let completed = Arc::new(AtomicUsize::new(0));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicUsize::new(0));
    let running: Arc<Mutex<Vec<u32>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(90);

    let racers: Vec<_> = (0..5)
        .map(|_| {
            let (s, command, completed, overlaps, running, done) = (
                s.clone(),
                command.clone(),
                completed.clone(),
                overlaps.clone(),
                running.clone(),
                done.clone(),
            );
            std::thread::spawn(move || {
                while !done.load(Ordering::SeqCst) {
                    let mut args = vec!["30"];
                    args.extend(command.iter().map(String::as_str));
                    let child = s.command(&args).spawn().unwrap();
                    let pid = child.id();
                    running.lock().unwrap().push(pid);
                    let out = Outcome::from(child.wait_with_output().unwrap());
                    running.lock().unwrap().retain(|p| *p != pid);
                    match out.code {
                        0 => completed.fetch_add(1, Ordering::SeqCst),
                        99 => overlaps.fetch_add(1, Ordering::SeqCst),
                        137 => 0, // killed by the test
                        other => panic!("unexpected exit {other}: {}", out.stderr),
                    };
                }
            })
        })
        .collect();

    let mut seed = 0x2545_f491_u32;
    while completed.load(Ordering::SeqCst) < 150 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(40));
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let victim = {
            let running = running.lock().unwrap();
            (!running.is_empty()).then(|| running[seed as usize % running.len()])
        };
        if let Some(pid) = victim.filter(|_| seed.is_multiple_of(3)) {
            // SAFETY: kill takes plain integers and touches no memory.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            killed.fetch_add(1, Ordering::SeqCst);
        }
    }
    done.store(true, Ordering::SeqCst);
    for racer in racers {
        racer.join().unwrap();
    }
    let (completed, overlaps, killed) = (
        completed.load(Ordering::SeqCst),
        overlaps.load(Ordering::SeqCst),
        killed.load(Ordering::SeqCst),
    );
    eprintln!("{completed} runs completed, {killed} seras killed, {overlaps} overlaps");
    assert!(completed >= 150, "only {completed} runs in time");
    assert!(killed > 10, "only {killed} kills: the test proved little");
    assert_eq!(overlaps, 0, "two runs overlapped");
}
