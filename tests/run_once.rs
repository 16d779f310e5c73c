//! Running a job once per schedule across a fleet, against real MariaDB
//! servers: `--min-hold` (a late host finds the lock still held), the name
//! of the lock in the command's environment, the refusal of a read-only
//! lock server, and `sera status --all`.

mod support;

use std::process::Child;
use std::time::Duration;

use miniserde::json::{self, Value};
use sera::dsn::Dsn;
use sera::mysql::Conn;
use support::sera::{Outcome, Setup};
use support::{wait_until, Server};

const LONG: Duration = Duration::from_secs(20);

/// The lines the job wrote to `count`: how often it ran.
fn runs(setup: &Setup) -> usize {
    std::fs::read_to_string(setup.dir.join("count")).map_or(0, |text| text.lines().count())
}

/// The job: one line in `count`, then exit `code`.
fn job(setup: &Setup, code: i32) -> String {
    format!(
        "echo ran >> {}; exit {code}",
        setup.dir.join("count").display()
    )
}

/// Whether sera (by pid) is in its hold: its keeper is there, and the
/// command, the keeper's child, is done.
fn command_done(sera: &Child) -> bool {
    // sera's one child is its keeper; the command is the keeper's child.
    let children = |pid: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default()
    };
    let keepers = children(&sera.id().to_string());
    let mut keepers = keepers.split_whitespace().peekable();
    keepers.peek().is_some() && keepers.all(|keeper| children(keeper).trim().is_empty())
}

fn held(server: &Server, name: &str) -> bool {
    server.sql(&format!("SELECT IS_USED_LOCK('{name}')")) != "NULL"
}

fn finish(sera: Child) -> Outcome {
    Outcome::from(sera.wait_with_output().unwrap())
}

#[test]
fn a_short_job_with_min_hold_runs_once_and_late_hosts_skip_or_time_out() {
    let server = Server::shared();
    let s = Setup::new(&server.dsn());
    let script = job(&s, 3);
    let first = s
        .command(&[
            "--min-hold",
            "6s",
            "--name",
            "cron",
            "0",
            "sh",
            "-c",
            &script,
        ])
        .spawn()
        .unwrap();
    assert!(
        wait_until(LONG, || runs(&s) == 1 && command_done(&first)),
        "the job never ran"
    );
    // The job is done and its lock still held: a host whose clock is a
    // little behind gets 204 with `sera 0`...
    let zero = s.run(&["--name", "cron", "0", "sh", "-c", &script]);
    assert_eq!(zero.code, 204, "{}", zero.stderr);
    // ...and with --wait-and-skip waits for the hold to end, then skips.
    let late = s.run(&[
        "--wait-and-skip",
        "--detailed-exit-codes",
        "--name",
        "cron",
        "30",
        "sh",
        "-c",
        &script,
    ]);
    assert_eq!(late.code, 205, "{}", late.stderr);
    let done = finish(first);
    assert_eq!(done.code, 3, "the command's own status: {}", done.stderr);
    assert_eq!(done.stderr, "");
    assert_eq!(runs(&s), 1, "the job ran exactly once");
    assert!(!held(server, "cron"));
}

#[test]
fn a_command_longer_than_min_hold_is_not_held_longer() {
    let server = Server::shared();
    let s = Setup::new(&server.dsn());
    let out = s.run(&[
        "-v",
        "--min-hold",
        "100ms",
        "--name",
        "long",
        "0",
        "sh",
        "-c",
        "sleep 0.5",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("released the lock") && !out.stderr.contains("min_hold"),
        "no hold after a command longer than min_hold: {}",
        out.stderr
    );
    assert!(!held(server, "long"));
}

#[test]
fn sigterm_during_the_hold_releases_at_once_with_the_commands_status() {
    let server = Server::shared();
    let s = Setup::new(&server.dsn());
    let script = job(&s, 7);
    let sera = s
        .command(&[
            "--min-hold",
            "1h",
            "--name",
            "held-term",
            "0",
            "sh",
            "-c",
            &script,
        ])
        .spawn()
        .unwrap();
    assert!(wait_until(LONG, || runs(&s) == 1 && command_done(&sera)));
    assert!(held(server, "held-term"), "held after the command is done");
    unsafe { libc::kill(sera.id() as i32, libc::SIGTERM) };
    // An hour's hold, ended by the signal: the lock is free again soon.
    assert!(
        wait_until(LONG, || !held(server, "held-term")),
        "SIGTERM did not end the hold"
    );
    let out = finish(sera);
    assert_eq!(out.code, 7, "{}", out.stderr);
}

#[test]
fn a_lock_lost_during_the_hold_is_said_and_stops_nothing() {
    let server = Server::shared();
    let s = Setup::new(&server.dsn());
    let script = job(&s, 0);
    let sera = s
        .command(&[
            "--min-hold",
            "1h",
            "--check-interval",
            "200ms",
            "--name",
            "held-lost",
            "0",
            "sh",
            "-c",
            &script,
        ])
        .spawn()
        .unwrap();
    assert!(wait_until(LONG, || runs(&s) == 1 && command_done(&sera)));
    let holder = server.sql("SELECT IS_USED_LOCK('held-lost')");
    server.sql(&format!("KILL {holder}"));
    let out = finish(sera);
    assert_eq!(out.code, 0, "the command's status, not 206: {}", out.stderr);
    assert!(
        out.stderr
            .contains("lost the lock while holding it for min_hold"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_bad_min_hold_is_201_as_a_flag_and_200_as_a_key() {
    let server = Server::shared();
    let s = Setup::new(&server.dsn());
    let flag = s.run(&["--min-hold", "soon", "0", "true"]);
    assert_eq!(flag.code, 201, "{}", flag.stderr);
    assert!(flag.stderr.starts_with("sera: bad arguments: --min-hold: "));
    let key = Setup::with_json(&format!(
        r#"{{"server": "{}", "min_hold": "-1s"}}"#,
        server.dsn()
    ));
    let out = key.run(&["0", "true"]);
    assert_eq!(out.code, 200, "{}", out.stderr);
    assert!(out.stderr.contains("\"min_hold\": "), "{}", out.stderr);
}

#[test]
fn the_command_knows_the_name_of_its_lock() {
    let server = Server::shared();
    let s = Setup::new(&server.dsn());
    let print = "echo $SERA_LOCK_NAME";
    let plain = s.run(&["0", "sh", "-c", print]);
    assert_eq!(plain.code, 0, "{}", plain.stderr);
    let md5 = server.sql(&format!("SELECT MD5('sh -c {print}')"));
    assert_eq!(plain.stdout, format!("{md5}\n"));

    let named = s.run(&["--name", "nightly", "0", "sh", "-c", print]);
    assert_eq!(named.stdout, "nightly\n");

    // An application holds the first slot: the command gets the second.
    let mut app = Conn::connect(&Dsn::parse(&server.dsn()).unwrap()).unwrap();
    let got = app.query_row("SELECT GET_LOCK('pool#1', 0)", LONG).unwrap();
    assert_eq!(got, Some(vec![Some("1".to_string())]));
    let slot = s.run(&["--slots", "2", "--name", "pool", "0", "sh", "-c", print]);
    assert_eq!(slot.code, 0, "{}", slot.stderr);
    assert_eq!(slot.stdout, "pool#2\n");
    app.quit();
}

#[test]
fn a_read_only_server_is_refused_unless_allowed() {
    let server = Server::start_with(&["--read-only"]);
    let s = Setup::new(&server.dsn());
    let marker = s.dir.join("ran");
    let touch = format!("touch {}", marker.display());
    let out = s.run(&["--name", "ro", "0", "sh", "-c", &touch]);
    assert_eq!(out.code, 202, "{}", out.stderr);
    assert_eq!(out.stdout, "");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stderr);
    assert!(
        lines[0].starts_with(&format!(
            "sera: cannot take the lock: the server 127.0.0.1:{} is read-only (read_only=ON)",
            server.port()
        )),
        "{}",
        out.stderr
    );
    assert!(
        lines[1].contains("proxy") && lines[1].contains("allow_read_only"),
        "{}",
        out.stderr
    );
    assert!(!marker.exists(), "the command ran");
    // The lock was given back.
    assert!(wait_until(LONG, || !held(&server, "ro")));

    // Busy or free, it is the wrong server: not 204.
    let mut app = Conn::connect(&Dsn::parse(&server.dsn()).unwrap()).unwrap();
    app.query_row("SELECT GET_LOCK('ro', 0)", LONG).unwrap();
    let busy = s.run(&["--name", "ro", "0", "sh", "-c", &touch]);
    assert_eq!(busy.code, 202, "{}", busy.stderr);
    app.quit();

    let allowed = Setup::with_json(&format!(
        r#"{{"server": "{}", "allow_read_only": true}}"#,
        server.dsn()
    ));
    let ran = allowed.run(&["--name", "ro", "5", "sh", "-c", &touch]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(marker.exists(), "allow_read_only lets it run");
}

/// A sera that holds its lock until the file `go` exists in `setup`'s folder.
fn hold_until_go(setup: &Setup, args: &[&str]) -> Child {
    let go = setup.dir.join("go");
    let script = format!("while [ ! -e {} ]; do sleep 0.02; done", go.display());
    let mut all = args.to_vec();
    all.extend(["5", "sh", "-c", &script]);
    setup.command(&all).spawn().unwrap()
}

fn go(setup: &Setup, seras: Vec<Child>) {
    std::fs::write(setup.dir.join("go"), "").unwrap();
    for sera in seras {
        let out = finish(sera);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
}

#[test]
fn status_all_lists_every_lock_a_sera_holds_with_performance_schema() {
    let server = Server::start_with(&["--performance-schema=ON"]);
    let s = Setup::new(&server.dsn());
    let none = s.run(&["status", "--all"]);
    assert_eq!(
        (none.code, none.stdout.as_str()),
        (0, "no lock is held by a sera\n"),
        "{}",
        none.stderr
    );
    // An application's lock is not a sera's; it also takes pool#1, so the
    // semaphore's sera gets pool#2.
    let mut app = Conn::connect(&Dsn::parse(&server.dsn()).unwrap()).unwrap();
    app.query_row(
        "SELECT GET_LOCK('app-lock', 0), GET_LOCK('pool#1', 0)",
        LONG,
    )
    .unwrap();
    let reports = hold_until_go(&s, &["--name", "reports"]);
    let pool = hold_until_go(&s, &["--slots", "3", "--name", "pool"]);
    assert!(wait_until(LONG, || held(&server, "reports")
        && server.sql("SELECT IS_USED_LOCK('pool#2')") != "NULL"));

    let all = s.run(&["status", "--all"]);
    assert_eq!(all.code, 0, "{}", all.stderr);
    let lines: Vec<&str> = all.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", all.stdout);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let host = host.trim();
    for (line, name, sera) in [(lines[0], "pool#2", &pool), (lines[1], "reports", &reports)] {
        assert!(
            line.starts_with(&format!("lock {name}: held by connection "))
                && line.contains(&format!("host {host}, pid {}, running sh", sera.id()))
                && line.contains("connected at "),
            "{line}"
        );
    }

    let json = s.run(&["status", "--all", "--json"]);
    assert_eq!(json.code, 0, "{}", json.stderr);
    let Ok(Value::Object(top)) = json::from_str::<Value>(&json.stdout) else {
        panic!("not one JSON object: {}", json.stdout);
    };
    let Some(Value::Array(locks)) = top.get("locks") else {
        panic!("no locks: {}", json.stdout);
    };
    let names: Vec<&str> = locks
        .iter()
        .filter_map(|lock| match lock {
            Value::Object(lock) => match lock.get("lock") {
                Some(Value::String(name)) => Some(name.as_str()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(names, ["pool#2", "reports"], "{}", json.stdout);
    go(&s, vec![reports, pool]);
    app.quit();
}

#[test]
fn status_all_without_performance_schema_names_what_to_enable_or_uses_the_plugin() {
    let server = Server::start();
    let s = Setup::new(&server.dsn());
    let out = s.run(&["status", "--all"]);
    assert_eq!(out.code, 202, "{}", out.stderr);
    assert_eq!(out.stdout, "");
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.starts_with("sera: cannot list the locks: ")
            && out.stderr.contains("performance_schema=ON")
            && out.stderr.contains("metadata_lock_info"),
        "{}",
        out.stderr
    );

    // MariaDB's plugin lists the server's user locks, without attributes.
    server.sql("INSTALL SONAME 'metadata_lock_info'");
    let holder = hold_until_go(&s, &["--name", "nightly"]);
    assert!(wait_until(LONG, || held(&server, "nightly")));
    let id = server.sql("SELECT IS_USED_LOCK('nightly')");
    let listed = s.run(&["status", "--all"]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert!(
        listed.stdout.starts_with(&format!(
            "lock nightly: held by connection {id} (sera@127.0.0.1:"
        )),
        "{}",
        listed.stdout
    );
    go(&s, vec![holder]);
}
