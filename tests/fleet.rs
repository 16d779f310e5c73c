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
use support::sera::{until_exists, Outcome, Setup};
use support::{wait_until, Server, LONG};

const HERD: usize = 300;

/// What the server saw of the herd at its busiest.
struct Busiest {
    /// sera's sessions, those that try and hang up included.
    connections: usize,
    /// sera's sessions blocked in a GET_LOCK that waits: only the waiting
    /// room's seats may do that, whatever the machine's load.
    blocked: usize,
}

/// Sample sera's sessions every 20 ms, until `done`.
fn sample_connections(server: &Server, done: Arc<AtomicBool>) -> std::thread::JoinHandle<Busiest> {
    let dsn = Dsn::parse(&server.dsn()).unwrap();
    std::thread::spawn(move || {
        // Connected before the herd starts, so it always gets in.
        let mut root = Conn::connect(&dsn).unwrap();
        let count = "SELECT COUNT(*), COALESCE(SUM(STATE = 'User lock'), 0) \
                     FROM information_schema.PROCESSLIST \
                     WHERE USER = 'sera' AND ID <> CONNECTION_ID()";
        let mut busiest = Busiest {
            connections: 0,
            blocked: 0,
        };
        while !done.load(Ordering::Relaxed) {
            let row = root
                .query_row(count, Duration::from_secs(5))
                .unwrap()
                .unwrap();
            let n = |i: usize| -> usize { row[i].as_deref().unwrap().parse().unwrap() };
            busiest.connections = busiest.connections.max(n(0));
            busiest.blocked = busiest.blocked.max(n(1));
            std::thread::sleep(Duration::from_millis(20));
        }
        busiest
    })
}

/// Run the herd, each sera on `args` (after the config); returns the exit
/// codes and what the server saw at the busiest.
fn herd(server: &Server, setup: &Setup, args: &[&str]) -> (Vec<i32>, Busiest) {
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
    // 16 seats; without the room (checked by mutation) 39 waited
    // connected here: all that max_connections let in.
    assert!(
        most.blocked <= 16,
        "{} seras waited connected",
        most.blocked
    );
    eprintln!(
        "{HERD} seras: {took:?}, at most {} connections, {} of them waiting",
        most.connections, most.blocked
    );
}

#[test]
fn three_hundred_seras_waiting_to_skip_cost_few_connections_and_skip() {
    let server = Server::start_with(&["--max-connections=40"]);
    let s = Setup::new(&server.dsn());
    let ran = s.dir.join("ran");
    // The run-once recipe: a short job, held long enough that the last of
    // the herd (some wait out "too many connections" first) still finds it
    // held and skips, rather than finding it free and running it again.
    let job = format!("echo x >> {}", ran.display());
    let args = [
        "--wait-and-skip",
        "--min-hold",
        "15s",
        "600",
        "sh",
        "-c",
        &job,
    ];
    let (codes, most) = herd(&server, &s, &args);
    assert!(codes.iter().all(|c| *c == 0), "exit codes: {codes:?}");
    let runs = std::fs::read_to_string(&ran).unwrap().lines().count();
    assert_eq!(runs, 1, "one ran, the others skipped");
    assert!(
        most.blocked <= 16,
        "{} seras waited connected",
        most.blocked
    );
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

/// The connection ids holding seats of the waiting room of `name`.
fn seated(server: &Server, name: &str) -> Vec<String> {
    let seats: Vec<String> = (1..=16)
        .map(|i| format!("IS_USED_LOCK('{name}#room{i}')"))
        .collect();
    let row = server.sql(&format!("SELECT CONCAT_WS(' ', {})", seats.join(", ")));
    row.split_whitespace().map(str::to_string).collect()
}

/// The SELECT statements connection `id` has finished.
fn selects_done(server: &Server, id: &str) -> String {
    server.sql(&format!(
        "SELECT COALESCE(SUM(s.COUNT_STAR), 0) \
         FROM performance_schema.events_statements_summary_by_thread_by_event_name s \
         JOIN performance_schema.threads t USING (THREAD_ID) \
         WHERE t.PROCESSLIST_ID = {id} AND s.EVENT_NAME = 'statement/sql/select'"
    ))
}

#[test]
fn a_waiter_takes_its_seat_with_its_first_try_and_gives_it_back_with_its_wait() {
    let server = Server::start_with(&["--performance-schema=ON"]);
    // No liveness check while the test looks: each would be a SELECT too
    // (and a lease that such a check interval fits).
    let s = Setup::with_json(&format!(
        "{{\"server\": \"{}\", \"check_interval\": \"60s\", \"lease\": \"120s\"}}",
        server.dsn()
    ));
    let go = |n: &str| s.dir.join(format!("go-{n}").as_str());
    let holder = s
        .command(&[
            "--name",
            "seats",
            "30",
            "sh",
            "-c",
            &until_exists(&go("holder")),
        ])
        .spawn()
        .unwrap();
    assert!(wait_until(LONG, || server
        .sql("SELECT IS_USED_LOCK('seats')")
        != "NULL"));
    let started = s.dir.join("started");
    let job = format!(
        "touch {}; {}",
        started.display(),
        until_exists(&go("waiter"))
    );
    let waiter = s
        .command(&["--name", "seats", "30", "sh", "-c", &job])
        .spawn()
        .unwrap();
    // Blocked in the room: one seat, and it took one statement to get there
    // (the first try; a seat query of its own would be a second).
    assert!(wait_until(LONG, || {
        server.sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE STATE = 'User lock'")
            == "1"
    }));
    let seats = seated(&server, "seats");
    assert_eq!(seats.len(), 1, "one seat taken: {seats:?}");
    assert_eq!(
        selects_done(&server, &seats[0]),
        "1",
        "statements before the wait"
    );

    // Its turn: the seat is free by the time the command starts, and it
    // took no statement beyond the wait.
    std::fs::write(go("holder"), "").unwrap();
    assert!(
        wait_until(LONG, || started.exists()),
        "the waiter never ran"
    );
    assert_eq!(
        seated(&server, "seats"),
        Vec::<String>::new(),
        "the seat is free"
    );
    assert_eq!(
        server.sql("SELECT IS_USED_LOCK('seats')"),
        seats[0],
        "the waiter holds the lock on the connection it waited on"
    );
    assert_eq!(
        selects_done(&server, &seats[0]),
        "2",
        "the first try and the wait"
    );
    std::fs::write(go("waiter"), "").unwrap();
    for sera in [holder, waiter] {
        let out = Outcome::from(sera.wait_with_output().unwrap());
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
}
