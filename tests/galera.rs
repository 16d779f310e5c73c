//! sera against a three-node MariaDB Galera cluster (tests/support/galera.rs).
//!
//! GET_LOCK is local to a node on Galera, so two seras on two nodes would
//! both run: GET_LOCK mode refuses a node with wsrep_on (issue 23), and the
//! table mode is the lock that works there.

mod support;

use std::time::Duration;

use sera::dsn::Dsn;
use sera::mysql::Conn;
use support::sera::Setup;
use support::{wait_until, Cluster, Node, Relay};

fn holds_job(node: &Node) -> bool {
    node.sql("SELECT IS_USED_LOCK('job')") != "NULL"
}

/// GET_LOCK mode refuses a Galera node: the lock would be local to it (a
/// job held through node 1 would run again through node 2). 202, one line
/// naming Galera and the table mode, and the command never runs, on any
/// node, whether the lock was free there or not.
#[test]
fn get_lock_mode_refuses_a_galera_node_and_runs_nothing() {
    let cluster = Cluster::start();
    eprintln!("three-node cluster ready in {:.1?}", cluster.started_in);
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
/// where the lock is: an application holds `job` on node 2 only. (Through
/// a client session: sera itself refuses Galera nodes in GET_LOCK mode.)
#[test]
fn behind_a_failover_relay_connections_go_to_the_next_node_when_one_dies() {
    let mut cluster = Cluster::start();
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
