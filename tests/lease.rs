//! The lease where no far host is needed: a SIGKILLed sera's tree stays
//! covered until it is gone, and settings that cannot fit in the lease are
//! refused.

mod support;

use std::time::{Duration, Instant};

use support::sera::{alive, Outcome, Setup};
use support::{wait_until, Server, TempDir};

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
    let worker_file = files.join("worker");
    assert!(
        wait_until(Duration::from_secs(20), || std::fs::read_to_string(
            &worker_file
        )
        .is_ok_and(|s| s.ends_with('\n'))),
        "the worker never started"
    );
    let worker: u32 = std::fs::read_to_string(&worker_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();

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
    let fits = s.run(&["--lease", "60s", "0", "true"]);
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
    let out = fits.run(&["0", "true"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let short = Setup::with_json(&format!("{{\"server\": \"{dsn}\", \"lease\": \"5s\"}}"));
    let out = short.run(&["0", "true"]);
    assert_eq!(out.code, 200, "{}", out.stderr);
    assert!(out.stderr.starts_with("sera: "), "{}", out.stderr);
    assert!(out.stderr.contains("lease"), "{}", out.stderr);
}
