//! Table mode (`--lock-table DB.TABLE`) on a plain private MariaDB: the
//! lease row taken, renewed and given back, the fencing token, the table
//! created when missing, the hint when it may not be, `sera status`, and a
//! dropped connection that is a reconnect, not a lost lock. The cluster
//! cases are in tests/galera.rs.

mod support;

use std::process::Child;
use std::time::Duration;

use support::sera::{Outcome, Setup};
use support::{wait_until, Server};

const LONG: Duration = Duration::from_secs(20);

/// Fast renewals, so that a test sees several; the lease fits them.
const FAST: [&str; 6] = [
    "--check-interval",
    "200ms",
    "--lease",
    "5s",
    "--kill-after",
    "1s",
];

/// `sera --lock-table sera_test.<table> <FAST> --name <name> <rest>`.
fn args<'a>(table: &'a str, name: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["--lock-table", table];
    all.extend(FAST);
    all.extend(["--name", name]);
    all.extend(rest);
    all
}

fn finish(child: Child) -> Outcome {
    Outcome::from(child.wait_with_output().unwrap())
}

/// The lease row of `name` as `holder|token|expires in the future`, or "".
fn row(server: &Server, table: &str, name: &str) -> String {
    server
        .try_sql(&format!(
            "SELECT CONCAT_WS('|', holder, token, expires > UTC_TIMESTAMP(6)) \
             FROM {table} WHERE name = '{name}'"
        ))
        .unwrap_or_default()
}

fn expires(server: &Server, table: &str, name: &str) -> String {
    server.sql(&format!(
        "SELECT expires FROM {table} WHERE name = '{name}'"
    ))
}

#[test]
fn the_table_is_created_and_each_grant_gets_a_greater_fencing_token() {
    let server = Server::shared();
    let s = Setup::new(&server.dsn());
    let table = "sera_test.grants";
    for expected in ["1", "2", "3"] {
        let out = s.run(&args(
            table,
            "job",
            &["0", "sh", "-c", "echo $SERA_FENCING_TOKEN"],
        ));
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(out.stdout, format!("{expected}\n"));
        // Given back at once: the row stays (the token must keep growing)
        // and its lease is over.
        let after = row(server, table, "job");
        assert!(after.ends_with(&format!("|{expected}|0")), "{after}");
    }
    let create = server.sql(&format!("SHOW CREATE TABLE {table}"));
    assert!(create.contains("PRIMARY KEY (`name`)"), "{create}");
    assert!(create.contains("ENGINE=InnoDB"), "{create}");
}

#[test]
fn a_held_lease_is_renewed_and_excludes_others_with_the_holder_named() {
    let server = Server::shared();
    let s = Setup::new(&server.dsn());
    let table = "sera_test.renewed";
    let holder = s
        .command(&args(table, "job", &["0", "sleep", "3"]))
        .spawn()
        .unwrap();
    assert!(wait_until(LONG, || row(server, table, "job").ends_with("|1|1")));
    let first = expires(server, table, "job");
    assert!(
        wait_until(LONG, || expires(server, table, "job") != first),
        "the lease was never renewed"
    );

    let other = s.run(&args(table, "job", &["0", "echo", "ran"]));
    assert_eq!(other.code, 204, "{}", other.stderr);
    assert_eq!(other.stdout, "");
    assert!(other.stderr.contains("held by "), "{}", other.stderr);
    assert!(other.stderr.contains("fencing token 1"), "{}", other.stderr);

    let status = s.run(&["--lock-table", table, "status", "--name", "job"]);
    assert_eq!(status.code, 1, "{}", status.stderr);
    assert!(status.stdout.contains("held by "), "{}", status.stdout);
    let json = s.run(&["--lock-table", table, "status", "--name", "job", "--json"]);
    assert!(
        json.stdout.starts_with("{\"lock\":\"job\",\"held\":true"),
        "{}",
        json.stdout
    );
    assert!(
        json.stdout.contains("\"fencing_token\":1"),
        "{}",
        json.stdout
    );

    let out = finish(holder);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let free = s.run(&["--lock-table", table, "status", "--name", "job"]);
    assert_eq!(free.code, 0, "{}", free.stdout);
    assert!(free.stdout.contains("free"), "{}", free.stdout);
}

#[test]
fn wait_and_skip_and_detailed_exit_codes_work_in_table_mode() {
    let server = Server::shared();
    let s = Setup::new(&server.dsn());
    let table = "sera_test.skips";
    let holder = s
        .command(&args(table, "job", &["0", "sleep", "1"]))
        .spawn()
        .unwrap();
    assert!(wait_until(LONG, || row(server, table, "job").ends_with("|1|1")));
    let skip = [
        "--wait-and-skip",
        "--detailed-exit-codes",
        "10",
        "echo",
        "ran",
    ];
    let skipped = s.run(&args(table, "job", &skip));
    assert_eq!(skipped.code, 205, "{}", skipped.stderr);
    assert_eq!(skipped.stdout, "");
    assert_eq!(finish(holder).code, 0);
}

#[test]
fn a_lease_taken_over_by_another_run_stops_the_command() {
    let server = Server::shared();
    let s = Setup::new(&server.dsn());
    let table = "sera_test.stolen";
    let holder = s
        .command(&args(table, "job", &["0", "sleep", "30"]))
        .spawn()
        .unwrap();
    assert!(wait_until(LONG, || row(server, table, "job").ends_with("|1|1")));
    // What a take-over looks like to the holder: another holder, a new token.
    server.sql(&format!(
        "UPDATE {table} SET holder = 'someone else', token = token + 1 WHERE name = 'job'"
    ));
    let out = finish(holder);
    assert_eq!(out.code, 206, "{}", out.stderr);
    assert!(
        out.stderr.contains("took the lease row over"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_dropped_connection_is_a_reconnect_and_the_command_runs_on() {
    let server = Server::start();
    let s = Setup::new(&server.dsn());
    let table = "sera_test.locks";
    let holder = s
        .command(&args(table, "job", &["0", "sh", "-c", "sleep 2; exit 7"]))
        .spawn()
        .unwrap();
    assert!(wait_until(LONG, || row(&server, table, "job").ends_with("|1|1")));
    let sessions = "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = 'sera'";
    let first = server.sql(sessions);
    assert!(!first.is_empty());
    server.sql(&format!("KILL {first}"));
    assert!(
        wait_until(LONG, || {
            let now = server.sql(sessions);
            !now.is_empty() && now != first
        }),
        "sera did not reconnect"
    );
    let out = finish(holder);
    assert_eq!(
        out.code, 7,
        "the command ran on to its own end: {}",
        out.stderr
    );
}

#[test]
fn a_table_sera_may_not_create_is_202_with_the_create_table_in_the_hint() {
    let server = Server::shared();
    server.sql(
        "CREATE USER IF NOT EXISTS 'limited'@'%' IDENTIFIED BY 'limited-pass'; \
         GRANT SELECT, INSERT, UPDATE ON sera_test.* TO 'limited'@'%'",
    );
    let s = Setup::new(&format!(
        "limited:limited-pass@tcp(127.0.0.1:{})/",
        server.port()
    ));
    let out = s.run(&args("sera_test.nope", "job", &["0", "echo", "ran"]));
    assert_eq!(out.code, 202, "{}", out.stderr);
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr
            .contains("sera: cannot create the lock table sera_test.nope: "),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("CREATE TABLE IF NOT EXISTS `sera_test`.`nope` (name VARBINARY(255)"),
        "{}",
        out.stderr
    );
}

#[test]
fn settings_table_mode_cannot_keep_are_refused() {
    let s = Setup::new("sera:x@tcp(127.0.0.1:1)/");
    let slots = s.run(&["--lock-table", "db.t", "--slots", "2", "0", "true"]);
    assert_eq!(slots.code, 201, "{}", slots.stderr);
    assert!(slots
        .stderr
        .contains("--slots does not work with --lock-table"));
    let never = s.run(&["--lock-table", "db.t", "--check-interval", "0", "0", "true"]);
    assert_eq!(never.code, 201, "{}", never.stderr);
    let short = s.run(&["--lock-table", "db.t", "--lease", "5s", "0", "true"]);
    assert_eq!(short.code, 201, "{}", short.stderr);
    assert!(
        short.stderr.contains("a lease must cover"),
        "{}",
        short.stderr
    );
    let bad = s.run(&["--lock-table", "db.t`; DROP TABLE x", "0", "true"]);
    assert_eq!(bad.code, 201, "{}", bad.stderr);
    // The same from the config file alone: 200.
    let config = Setup::with_json(
        r#"{"server": "sera:x@tcp(127.0.0.1:1)/", "lock_table": "db.t", "slots": 2}"#,
    );
    assert_eq!(config.run(&["0", "true"]).code, 200);
}

#[test]
fn min_hold_is_kept_by_the_row_and_sera_exits_at_once() {
    let server = Server::shared();
    let s = Setup::new(&server.dsn());
    let table = "sera_test.held";
    let count = s.dir.join("count");
    let job = format!("echo ran >> {}; exit 3", count.display());
    let ran = || {
        std::fs::read_to_string(&count)
            .unwrap_or_default()
            .lines()
            .count()
    };

    // An hour's hold: sera is back with the command's status, and the row
    // still holds the lock without it.
    let first = s.run(&args(
        table,
        "hour",
        &["--min-hold", "1h", "0", "sh", "-c", &job],
    ));
    assert_eq!(first.code, 3, "{}", first.stderr);
    assert!(
        row(server, table, "hour").ends_with("|1"),
        "held after sera left"
    );
    let late = s.run(&args(table, "hour", &["0", "sh", "-c", &job]));
    assert_eq!(late.code, 204, "{}", late.stderr);
    assert_eq!(ran(), 1);

    // A short hold: a late host with --wait-and-skip waits it out and skips.
    let first = s.run(&args(
        table,
        "short",
        &["--min-hold", "2s", "0", "sh", "-c", &job],
    ));
    assert_eq!(first.code, 3, "{}", first.stderr);
    let late = s.run(&args(
        table,
        "short",
        &[
            "--wait-and-skip",
            "--detailed-exit-codes",
            "20",
            "sh",
            "-c",
            &job,
        ],
    ));
    assert_eq!(late.code, 205, "{}", late.stderr);
    assert_eq!(ran(), 2, "the late host did not run it again");
}

#[test]
fn a_lease_row_that_cannot_be_given_back_is_a_warning_and_the_commands_status_stands() {
    // The table is gone when the job ends (dropped by a careless migration):
    // the row cannot be given back. The run still ends with the command's
    // status, and says that the lock is free only when the lease runs out.
    let server = Server::shared();
    let s = Setup::new(&server.dsn());
    let table = "sera_test.dropped";
    let dir = support::TempDir::new();
    let gate = dir.join("gate");
    let job = format!("{}; exit 4", support::sera::until_exists(&gate));
    let sera = s
        .command(&args(table, "dropped", &["0", "sh", "-c", &job]))
        .spawn()
        .unwrap();
    assert!(
        wait_until(LONG, || row(server, table, "dropped").ends_with("|1")),
        "the lease was never taken"
    );
    server.sql(&format!("DROP TABLE {table}"));
    std::fs::write(&gate, "").unwrap();
    let out = finish(sera);
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("sera: warning: could not give the lease row back: ")
            && out
                .stderr
                .contains("; it is free again when its lease ends, within 5 s\n"),
        "{}",
        out.stderr
    );
}
