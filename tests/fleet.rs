//! A herd on one lock against a private MariaDB with few connections: the
//! waiting room keeps sera's connections bounded, nobody gets 202, nothing
//! overlaps, and a full server is waited out.

mod support;

use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sera::dsn::Dsn;
use sera::mysql::Conn;
use support::sera::{Outcome, Setup};
use support::{wait_until, Server, LONG};

const HERD: usize = 300;

/// Sample how many of sera's connections the server holds, every 20 ms,
/// until `done`; returns the most seen.
fn sample_connections(server: &Server, done: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    let dsn = Dsn::parse(&server.dsn()).unwrap();
    std::thread::spawn(move || {
        // Connected before the herd starts, so it always gets in.
        let mut root = Conn::connect(&dsn).unwrap();
        let count = "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
                     WHERE USER = 'sera' AND ID <> CONNECTION_ID()";
        let mut most = 0;
        while !done.load(Ordering::Relaxed) {
            let row = root.query_row(count, Duration::from_secs(5)).unwrap();
            let n: usize = row.unwrap()[0].as_deref().unwrap().parse().unwrap();
            most = most.max(n);
            std::thread::sleep(Duration::from_millis(20));
        }
        most
    })
}

/// Run the herd, each sera on `args` (after the config); returns the exit
/// codes and the most sera connections the server saw at once.
fn herd(server: &Server, setup: &Setup, args: &[&str]) -> (Vec<i32>, usize) {
    let done = Arc::new(AtomicBool::new(false));
    let sampler = sample_connections(server, done.clone());
    let seras: Vec<Child> = (0..HERD)
        .map(|_| setup.command(args).spawn().unwrap())
        .collect();
    let codes = seras
        .into_iter()
        .map(|sera| Outcome::from(sera.wait_with_output().unwrap()))
        .map(|out| {
            if out.code != 0 {
                eprintln!("{}", out.stderr);
            }
            out.code
        })
        .collect();
    done.store(true, Ordering::Relaxed);
    (codes, sampler.join().unwrap())
}

#[test]
fn three_hundred_seras_on_forty_connections_all_run_one_at_a_time() {
    let server = Server::start_with(&["--max-connections=40"]);
    let s = Setup::new(&server.dsn());
    let probe = s.dir.join("probe");
    let ran = s.dir.join("ran");
    // Each run takes a non-blocking flock: 99 if another run still holds it.
    let job = format!(
        "flock -n -E 99 {} sh -c 'echo x >> {}; sleep 0.005'",
        probe.display(),
        ran.display()
    );
    let started = Instant::now();
    let (codes, most) = herd(&server, &s, &["600", "sh", "-c", &job]);
    let took = started.elapsed();
    let failed: Vec<&i32> = codes.iter().filter(|c| **c != 0).collect();
    assert!(failed.is_empty(), "exit codes other than 0: {failed:?}");
    let runs = std::fs::read_to_string(&ran).unwrap().lines().count();
    assert_eq!(runs, HERD, "every sera ran its command once");
    assert!(most <= 32, "the server saw {most} sera connections at once");
    eprintln!("{HERD} seras: {took:?}, at most {most} connections");
}

#[test]
fn three_hundred_seras_waiting_to_skip_cost_few_connections_and_skip() {
    let server = Server::start_with(&["--max-connections=40"]);
    let s = Setup::new(&server.dsn());
    let ran = s.dir.join("ran");
    let job = format!("echo x >> {}; sleep 2", ran.display());
    let (codes, most) = herd(&server, &s, &["--wait-and-skip", "600", "sh", "-c", &job]);
    assert!(codes.iter().all(|c| *c == 0), "exit codes: {codes:?}");
    let runs = std::fs::read_to_string(&ran).unwrap().lines().count();
    assert_eq!(runs, 1, "one ran, the others skipped");
    assert!(most <= 32, "the server saw {most} sera connections at once");
}

#[test]
fn a_full_server_is_202_at_once_without_a_wait_and_waited_out_with_one() {
    let server = Server::start_with(&["--max-connections=10"]);
    let s = Setup::new(&server.dsn());
    // Fill it: sera's user may take the extra connection kept for admins too.
    let dsn = Dsn::parse(&server.dsn()).unwrap();
    let mut others = Vec::new();
    loop {
        match Conn::connect(&dsn) {
            Ok(conn) => others.push(conn),
            Err(sera::mysql::Error::Server { code: 1040, .. }) => break,
            Err(e) => panic!("filling the server: {e}"),
        }
        assert!(others.len() < 20, "max_connections did not hold");
    }
    let asked = Instant::now();
    let at_once = s.run(&["0", "true"]);
    assert_eq!(at_once.code, 202, "{}", at_once.stderr);
    assert!(at_once.stderr.contains("1040"), "{}", at_once.stderr);
    assert!(asked.elapsed() < Duration::from_secs(2));

    // Connections the server refused for max_connections, so far.
    let refused = |conn: &mut Conn| -> u64 {
        let sql = "SHOW GLOBAL STATUS LIKE 'Connection_errors_max_connections'";
        let row = conn.query_row(sql, LONG).unwrap().unwrap();
        row[1].as_deref().unwrap().parse().unwrap()
    };
    let before = refused(&mut others[0]);
    let mut waiting = s.command(&["10", "echo", "ran"]).spawn().unwrap();
    // The server stays full until sera was refused again after a pause:
    // it must wait that out, not fail.
    assert!(wait_until(LONG, || refused(&mut others[0]) >= before + 2));
    assert!(waiting.try_wait().unwrap().is_none(), "sera did not wait");
    for mut conn in others.drain(..) {
        conn.quit();
    }
    let out = Outcome::from(waiting.wait_with_output().unwrap());
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "ran\n"),
        "{}",
        out.stderr
    );
}
