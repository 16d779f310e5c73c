//! sera against a three-node MariaDB Galera cluster (tests/support/galera.rs).
//!
//! GET_LOCK is local to a node on Galera, so two seras on two nodes would
//! both run: GET_LOCK mode refuses a node with wsrep_on (issue 23). Table
//! mode (`--lock-table`) is the lock that works there: exclusion across
//! nodes, fencing tokens that grow, and a node that dies under a holder.
//!
//! One cluster serves every test of this file (a cluster costs about 10 s of
//! CPU to start): each test takes it for its whole run, and a test that
//! killed a node leaves it to the next one to start it again.

mod support;

use std::process::Child;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sera::dsn::Dsn;
use sera::mysql::Conn;
use support::sera::{Outcome, Setup};
use support::{wait_until, Cluster, Node, Relay};

const LONG: Duration = Duration::from_secs(30);
const TABLE: &str = "sera_test.locks";

/// The cluster, for this test alone until the guard drops; every node up.
fn cluster() -> MutexGuard<'static, Cluster> {
    static CLUSTER: OnceLock<Mutex<Cluster>> = OnceLock::new();
    let cluster = CLUSTER.get_or_init(|| {
        let cluster = Cluster::start();
        eprintln!("three-node cluster ready in {:.1?}", cluster.started_in);
        Mutex::new(cluster)
    });
    // A test that failed with the cluster in hand does not spoil it for
    // the others.
    let mut cluster = cluster.lock().unwrap_or_else(|e| e.into_inner());
    let restarting = Instant::now();
    cluster.restart_killed();
    if restarting.elapsed() > Duration::from_millis(100) {
        eprintln!("killed nodes rejoined in {:.1?}", restarting.elapsed());
    }
    cluster
}

fn holds_job(node: &Node) -> bool {
    node.sql("SELECT IS_USED_LOCK('job')") != "NULL"
}

fn finish(holder: Child) -> Outcome {
    Outcome::from(holder.wait_with_output().unwrap())
}

/// The lease row of `name`, read on `node`: `token|expires in the future`.
fn lease_row(node: &Node, name: &str) -> String {
    node.try_sql(&format!(
        "SELECT CONCAT_WS('|', token, expires > UTC_TIMESTAMP(6)) FROM {TABLE} \
         WHERE name = '{name}'"
    ))
    .unwrap_or_default()
}

fn held_on(node: &Node, name: &str) -> bool {
    lease_row(node, name).ends_with("|1")
}

/// Nanoseconds since the epoch, as `date +%s%N` writes them.
fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn read_ns(path: &std::path::Path) -> u128 {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{} was never written: {e}", path.display()));
    text.trim().parse().unwrap()
}

fn seconds_between(from: u128, to: u128) -> f64 {
    (to as f64 - from as f64) / 1e9
}

/// GET_LOCK mode refuses a Galera node: the lock would be local to it (a
/// job held through node 1 would run again through node 2). 202, one line
/// naming Galera and the table mode, and the command never runs, on any
/// node, whether the lock was free there or not.
#[test]
fn get_lock_mode_refuses_a_galera_node_and_runs_nothing() {
    let cluster = cluster();
    let (one, two) = (cluster.node(1), cluster.node(2));
    // An application holds `job` on node 1 only: Galera replicates rows,
    // not user locks.
    let mut app = Conn::connect(&Dsn::parse(&one.dsn()).unwrap()).unwrap();
    let got = app
        .query_row("SELECT GET_LOCK('job', 0)", Duration::from_secs(5))
        .unwrap();
    assert_eq!(got, Some(vec![Some("1".to_string())]));
    assert_eq!(two.sql("SELECT IS_USED_LOCK('job')"), "NULL");

    for node in [one, two] {
        let through = Setup::new(&node.dsn());
        let out = through.run(&["--name", "job", "0", "echo", "ran"]);
        assert_eq!(out.code, 202, "{}", out.stderr);
        assert_eq!(out.stdout, "", "the command did not run");
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 2, "{}", out.stderr);
        assert!(
            lines[0].starts_with("sera: cannot take the lock: the server ")
                && lines[0].contains("Galera")
                && lines[0].contains("wsrep_on=ON"),
            "{}",
            out.stderr
        );
        assert!(lines[1].contains("--lock-table"), "{}", out.stderr);
    }
    // The lock sera took on node 2 for a moment was given back.
    assert!(wait_until(Duration::from_secs(10), || !holds_job(two)));
    assert!(holds_job(one), "the application still holds it on node 1");
    app.quit();
}

/// The failover relay stands in for a load balancer: new connections go to
/// node 1 while it lives, and to node 2 once node 1 is SIGKILLed. Seen by
/// The failover relay stands in for a load balancer: new connections go to
/// node 1 while it lives, and to node 2 once node 1 is SIGKILLed. Seen by
/// where the lock is: an application holds `job` on node 2 only. (Through
/// a client session: sera itself refuses Galera nodes in GET_LOCK mode.)
#[test]
fn behind_a_failover_relay_connections_go_to_the_next_node_when_one_dies() {
    let mut cluster = cluster();
    let relay = Relay::start_failover(&cluster.ports());
    let relay_dsn =
        Dsn::parse(&format!("sera:sera-pass@tcp(127.0.0.1:{})/", relay.port())).unwrap();
    let mut app = Conn::connect(&Dsn::parse(&cluster.node(2).dsn()).unwrap()).unwrap();
    let got = app
        .query_row("SELECT GET_LOCK('job', 0)", Duration::from_secs(5))
        .unwrap();
    assert_eq!(got, Some(vec![Some("1".to_string())]));
    let job_free = || {
        let mut through = Conn::connect(&relay_dsn).unwrap();
        let row = through
            .query_row("SELECT IS_USED_LOCK('job') IS NULL", Duration::from_secs(5))
            .unwrap();
        through.quit();
        row == Some(vec![Some("1".to_string())])
    };
    assert!(job_free(), "node 1 does not see node 2's lock");
    cluster.kill(1);
    assert!(!job_free(), "node 2 holds the lock");
}

#[test]
fn table_mode_excludes_across_nodes() {
    let cluster = cluster();
    let (one, two, three) = (cluster.node(1), cluster.node(2), cluster.node(3));
    let through_one = Setup::new(&one.dsn());
    let go = through_one.dir.join("go");
    let job = support::sera::until_exists(&go);
    let mut holder = through_one
        .command(&[
            "--lock-table",
            TABLE,
            "--name",
            "across",
            "0",
            "sh",
            "-c",
            &job,
        ])
        .spawn()
        .unwrap();
    let held = wait_until(LONG, || {
        held_on(one, "across") || holder.try_wait().unwrap().is_some()
    });
    if !(held && held_on(one, "across")) {
        let _ = holder.kill();
        let out = finish(holder);
        panic!(
            "never held through node 1: exit {}: {}",
            out.code, out.stderr
        );
    }

    let through_two = Setup::new(&two.dsn());
    let second = through_two.run(&[
        "--lock-table",
        TABLE,
        "--name",
        "across",
        "0",
        "echo",
        "ran",
    ]);
    assert_eq!(second.code, 204, "{}", second.stderr);
    assert_eq!(second.stdout, "");
    assert!(second.stderr.contains("fencing token"), "{}", second.stderr);

    let status =
        Setup::new(&three.dsn()).run(&["--lock-table", TABLE, "status", "--name", "across"]);
    assert_eq!(status.code, 1, "node 3 sees it held: {}", status.stdout);

    std::fs::write(&go, "").unwrap();
    assert_eq!(finish(holder).code, 0);
    let after = through_two.run(&[
        "--lock-table",
        TABLE,
        "--name",
        "across",
        "0",
        "echo",
        "ran",
    ]);
    assert_eq!(after.code, 0, "{}", after.stderr);
    assert_eq!(after.stdout, "ran\n");
}

#[test]
fn nine_racers_on_three_nodes_run_one_at_a_time_with_growing_tokens() {
    let cluster = cluster();
    let setups: Vec<Setup> = (1..=3)
        .map(|i| Setup::new(&cluster.node(i).dsn()))
        .collect();
    let dir = &setups[0].dir;
    let (probe, tokens) = (dir.join("probe"), dir.join("tokens"));
    // flock -n fails (99) if another racer's job still holds the probe.
    let job = format!(
        "flock -n -E 99 {probe} sh -c 'echo $SERA_FENCING_TOKEN >> {tokens}; sleep 0.2'",
        probe = probe.display(),
        tokens = tokens.display()
    );
    let started = Instant::now();
    let racers: Vec<Child> = (0..9)
        .map(|i| {
            setups[i % 3]
                .command(&[
                    "--lock-table",
                    TABLE,
                    "--name",
                    "race",
                    "60",
                    "sh",
                    "-c",
                    &job,
                ])
                .spawn()
                .unwrap()
        })
        .collect();
    for racer in racers {
        let out = finish(racer);
        assert_eq!(out.code, 0, "99 is an overlap: {}", out.stderr);
    }
    eprintln!("nine racers done in {:.1?}", started.elapsed());
    let tokens: Vec<u64> = std::fs::read_to_string(&tokens)
        .unwrap()
        .lines()
        .map(|line| line.parse().unwrap())
        .collect();
    assert_eq!(tokens.len(), 9, "{tokens:?}");
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");
}

#[test]
fn a_holder_whose_only_node_dies_stops_before_its_lease_ends_and_the_lock_moves_on() {
    let mut cluster = cluster();
    let lease = [
        "--lease",
        "10s",
        "--check-interval",
        "1s",
        "--kill-after",
        "2s",
    ];
    let on_three = Setup::new(&cluster.node(3).dsn());
    let mut args = vec!["--lock-table", TABLE, "--name", "orphaned"];
    args.extend(lease);
    args.extend(["0", "sleep", "60"]);
    let holder = on_three.command(&args).spawn().unwrap();
    assert!(wait_until(LONG, || held_on(cluster.node(3), "orphaned")));
    // Its renewals come every second: after one, the lease ends 10 s after
    // the kill at the latest.
    std::thread::sleep(Duration::from_millis(1200));
    let killed = now_ns();
    cluster.kill(3);

    let on_two = Setup::new(&cluster.node(2).dsn());
    let granted = on_two.dir.join("granted");
    let job = format!("date +%s%N > {}", granted.display());
    let mut args = vec!["--lock-table", TABLE, "--name", "orphaned"];
    args.extend(lease);
    args.extend(["60", "sh", "-c", &job]);
    let waiter = on_two.command(&args).spawn().unwrap();

    let out = finish(holder);
    let stopped = now_ns();
    assert_eq!(out.code, 206, "{}", out.stderr);
    assert!(
        out.stderr.contains("could not renew the lease"),
        "{}",
        out.stderr
    );
    let to_206 = seconds_between(killed, stopped);
    assert!(
        to_206 < 10.0,
        "206 after {to_206:.1} s: the lease had ended"
    );

    let waited = finish(waiter);
    assert_eq!(waited.code, 0, "{}", waited.stderr);
    let granted = read_ns(&granted);
    assert!(granted > stopped, "granted before the holder had stopped");
    let to_grant = seconds_between(killed, granted);
    eprintln!("node killed: 206 after {to_206:.1} s, granted on node 2 after {to_grant:.1} s");
    assert!(to_grant < 15.0, "granted {to_grant:.1} s after the kill");
}

#[test]
fn a_holder_behind_the_failover_relay_outlives_its_node() {
    let mut cluster = cluster();
    let relay = Relay::start_failover(&cluster.ports());
    let through_relay = Setup::new(&format!("sera:sera-pass@tcp(127.0.0.1:{})/", relay.port()));
    let done = through_relay.dir.join("done");
    let job = format!("sleep 16; date +%s%N > {}; exit 7", done.display());
    let lease = [
        "--lease",
        "15s",
        "--check-interval",
        "1s",
        "--kill-after",
        "2s",
    ];
    let mut args = vec!["--lock-table", TABLE, "--name", "failover"];
    args.extend(lease);
    args.extend(["0", "sh", "-c", &job]);
    let holder = through_relay.command(&args).spawn().unwrap();
    assert!(wait_until(LONG, || held_on(cluster.node(1), "failover")));
    std::thread::sleep(Duration::from_secs(2));
    cluster.kill(1);

    // Another run, through node 3, waits for the lock all the while.
    let on_three = Setup::new(&cluster.node(3).dsn());
    let granted = on_three.dir.join("granted");
    let second = format!("date +%s%N > {}", granted.display());
    let waiter = on_three
        .command(&[
            "--lock-table",
            TABLE,
            "--name",
            "failover",
            "60",
            "sh",
            "-c",
            &second,
        ])
        .spawn()
        .unwrap();

    let out = finish(holder);
    assert_eq!(out.code, 7, "the job ran to its own end: {}", out.stderr);
    assert_eq!(finish(waiter).code, 0);
    assert!(
        read_ns(&granted) > read_ns(&done),
        "the other run got the lock while the job still ran"
    );
}
