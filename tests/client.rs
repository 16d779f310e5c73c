//! The wire client against a real MariaDB: connect, auth errors, timeouts,
//! GET_LOCK contention, the liveness check and session variables from the DSN.

mod support;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use sera::dsn::Dsn;
use sera::lock::{Check, Watch};
use sera::mysql::{Conn, Error};
use support::{shared_dsn, ClosedPort, Server};

fn connect(dsn: &str) -> Result<Conn, Error> {
    Conn::connect(&Dsn::parse(dsn).unwrap())
}

fn value(conn: &mut Conn, sql: &str) -> Option<String> {
    let row = conn.query_row(sql, Duration::from_secs(5)).unwrap();
    row.unwrap().into_iter().next().unwrap()
}

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn connects_over_tcp_and_the_unix_socket() {
    let server = Server::shared();
    for dsn in [server.dsn(), server.unix_dsn()] {
        let mut conn = connect(&dsn).unwrap_or_else(|e| panic!("{dsn}: {e}"));
        let id = conn.connection_id().to_string();
        assert_eq!(value(&mut conn, "SELECT CONNECTION_ID()"), Some(id));
        assert_eq!(value(&mut conn, "SELECT CURRENT_USER()").unwrap(), {
            if dsn.contains("unix(") {
                "sera@localhost"
            } else {
                "sera@%"
            }
        });
        assert!(conn.is_mariadb(), "{}", conn.server_version());
    }
}

#[test]
fn null_zero_and_one_are_told_apart() {
    let mut conn = connect(&shared_dsn()).unwrap();
    assert_eq!(value(&mut conn, "SELECT NULL"), None);
    assert_eq!(value(&mut conn, "SELECT 0").as_deref(), Some("0"));
    assert_eq!(value(&mut conn, "SELECT 1").as_deref(), Some("1"));
    let row = conn
        .query_row("SELECT 1 FROM DUAL WHERE 1 = 0", SECOND)
        .unwrap();
    assert!(row.is_none(), "an empty result is no row");
}

#[test]
fn wrong_password_is_server_error_1045() {
    let server = Server::shared();
    let dsn = server.dsn().replace("sera-pass", "not-the-password");
    match connect(&dsn) {
        Err(Error::Server { code, state, .. }) => {
            assert_eq!((code, state.as_str()), (1045, "28000"))
        }
        other => panic!("expected 1045, got {:?}", other.err()),
    }
}

#[test]
fn unknown_database_is_server_error_1049() {
    let dsn = format!("{}no_such_db", Server::shared().dsn());
    match connect(&dsn) {
        Err(Error::Server { code: 1049, .. }) => {}
        other => panic!("expected 1049, got {:?}", other.err()),
    }
    // And a database that exists is accepted.
    let dsn = format!("{}sera_test", Server::shared().dsn());
    let mut conn = connect(&dsn).unwrap();
    assert_eq!(
        value(&mut conn, "SELECT DATABASE()").as_deref(),
        Some("sera_test")
    );
}

#[test]
fn a_closed_port_fails_fast() {
    let closed = ClosedPort::new();
    let port = closed.port;
    let started = Instant::now();
    let err = connect(&format!("u:p@tcp(127.0.0.1:{port})/"))
        .err()
        .unwrap();
    assert!(
        matches!(&err, Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
        "{err:?}"
    );
    assert!(started.elapsed() < SECOND, "{:?}", started.elapsed());
}

#[test]
fn a_silent_listener_fails_within_the_timeout() {
    // The kernel completes the TCP handshake; nobody ever speaks.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let started = Instant::now();
    let err = connect(&format!("u:p@tcp(127.0.0.1:{port})/?timeout=500ms"))
        .err()
        .unwrap();
    let took = started.elapsed();
    assert!(err.to_string().contains("no greeting"), "{err}");
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    drop(listener);
}

#[test]
fn get_lock_is_exclusive_until_the_holder_disconnects() {
    let dsn = shared_dsn();
    let name = "client-test-contention";
    let mut first = connect(&dsn).unwrap();
    let mut second = connect(&dsn).unwrap();
    let get = format!("SELECT GET_LOCK('{name}', 0)");
    assert_eq!(value(&mut first, &get).as_deref(), Some("1"));
    assert_eq!(value(&mut second, &get).as_deref(), Some("0"));
    let holder = value(&mut second, &format!("SELECT IS_USED_LOCK('{name}')"));
    assert_eq!(holder, Some(first.connection_id().to_string()));
    // Closing without RELEASE_LOCK frees it.
    first.quit();
    let deadline = format!("SELECT GET_LOCK('{name}', 5)");
    assert_eq!(value(&mut second, &deadline).as_deref(), Some("1"));
}

#[test]
fn the_liveness_check_answers_until_the_lock_is_gone() {
    let mut conn = connect(&shared_dsn()).unwrap();
    let name = "client-test-liveness";
    let get = format!("SELECT GET_LOCK('{name}', 0)");
    assert_eq!(value(&mut conn, &get).as_deref(), Some("1"));
    let granted = sera::lock::clock();
    let mut watch = Watch::new(name, granted);
    let deadline = Duration::from_secs(5);
    assert!(matches!(watch.check(&mut conn, deadline), Check::Ours));
    // Each answer renews the lease from when its question was sent.
    let first = watch.renewed_at;
    assert!(first > granted);
    assert!(matches!(watch.check(&mut conn, deadline), Check::Ours));
    assert!(watch.renewed_at > first);
    let release = format!("SELECT RELEASE_LOCK('{name}')");
    assert_eq!(value(&mut conn, &release).as_deref(), Some("1"));
    assert!(matches!(watch.check(&mut conn, deadline), Check::Lost(_)));
}

#[test]
fn session_variables_from_the_dsn_are_set() {
    let dsn = format!(
        "{}?wait_timeout=123&sql_mode=%27ANSI_QUOTES,NO_ZERO_DATE%27&time_zone=%27%2B02:00%27",
        Server::shared().dsn()
    );
    let mut conn = connect(&dsn).unwrap();
    assert_eq!(
        value(&mut conn, "SELECT @@session.wait_timeout").as_deref(),
        Some("123")
    );
    assert_eq!(
        value(&mut conn, "SELECT @@session.sql_mode").as_deref(),
        Some("ANSI_QUOTES,NO_ZERO_DATE")
    );
    assert_eq!(
        value(&mut conn, "SELECT @@session.time_zone").as_deref(),
        Some("+02:00")
    );
}

#[test]
fn a_bad_session_variable_is_the_servers_error() {
    let dsn = format!("{}?no_such_variable=1", Server::shared().dsn());
    match connect(&dsn) {
        Err(Error::Server {
            code: 1193,
            message,
            ..
        }) => {
            assert!(message.contains("no_such_variable"), "{message}")
        }
        other => panic!("expected 1193, got {:?}", other.err()),
    }
}

#[test]
fn a_timed_out_reply_is_still_read_in_order() {
    // The liveness check relies on this: a reply that arrives after its
    // deadline is read by the next call, never mistaken for a later one.
    let mut conn = connect(&shared_dsn()).unwrap();
    conn.send_query("SELECT SLEEP(0.3), 'late'").unwrap();
    assert!(matches!(
        conn.read_row(Duration::from_millis(50)),
        Err(Error::Timeout)
    ));
    let row = conn.read_row(Duration::from_secs(5)).unwrap().unwrap();
    assert_eq!(row[1].as_deref(), Some("late"));
    assert_eq!(value(&mut conn, "SELECT 'next'").as_deref(), Some("next"));
}
