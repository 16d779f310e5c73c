//! `--name`, the connection attributes a sera introduces itself with, and
//! `sera status`, against real MariaDB servers with and without
//! performance_schema.

mod support;

use std::process::Child;

use miniserde::json::{self, Value};
use sera::dsn::Dsn;
use sera::mysql::Conn;
use support::sera::{is_used_lock_sql, until_exists, Outcome, Setup};
use support::{wait_until, Server, LONG};

/// A secret in the holder's arguments: it must show nowhere.
const SECRET: &str = "pw=Hunter2-secret";

/// Start a sera that holds the lock (named, or its command's) until the
/// file `go` exists in its folder. Returns it once the lock is taken.
fn hold(server: &Server, setup: &Setup, name: Option<&str>) -> Child {
    let go = setup.dir.join("go");
    let script = until_exists(&go);
    let mut args = Vec::new();
    if let Some(name) = name {
        args.extend(["--name", name]);
    }
    args.extend(["5", "sh", "-c", &script, "job", SECRET]);
    let holder = setup.command(&args).spawn().unwrap();
    let held = match name {
        Some(name) => format!("SELECT IS_USED_LOCK('{name}')"),
        None => is_used_lock_sql(&format!("sh -c {script} job {SECRET}")),
    };
    assert!(
        wait_until(LONG, || server.sql(&held) != "NULL"),
        "the holder never took the lock"
    );
    holder
}

fn release(setup: &Setup, holder: Child) {
    std::fs::write(setup.dir.join("go"), "").unwrap();
    let out = Outcome::from(holder.wait_with_output().unwrap());
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn two_commands_with_one_name_exclude_each_other_and_share_the_applications_lock() {
    let server = Server::shared();
    let s = Setup::new(&server.dsn());
    let holder = hold(server, &s, Some("nightly-backup"));
    // Exactly that name on the server, as an application would ask for it.
    assert_ne!(server.sql("SELECT IS_USED_LOCK('nightly-backup')"), "NULL");
    let other = s.run(&["--name", "nightly-backup", "0", "echo", "migration"]);
    assert_eq!(other.code, 204, "{}", other.stderr);
    assert_eq!(other.stdout, "");
    release(&s, holder);

    // The application holds it: sera waits for it like for another sera.
    let mut app = Conn::connect(&Dsn::parse(&server.dsn()).unwrap()).unwrap();
    let got = app
        .query_row("SELECT GET_LOCK('app-lock', 0)", LONG)
        .unwrap();
    assert_eq!(got, Some(vec![Some("1".to_string())]));
    let refused = s.run(&["--name", "app-lock", "0", "true"]);
    assert_eq!(refused.code, 204, "{}", refused.stderr);
    app.quit();
    // The goodbye is not waited for: the server frees the lock a moment later.
    assert!(wait_until(LONG, || server
        .sql("SELECT IS_FREE_LOCK('app-lock')")
        == "1"));
    let ran = s.run(&["--name", "app-lock", "0", "true"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
}

#[test]
fn names_that_do_not_fit_everywhere_are_201() {
    let s = Setup::new(&Server::shared().dsn());
    for name in [String::new(), "n".repeat(65)] {
        let out = s.run(&["--name", &name, "0", "true"]);
        assert_eq!(out.code, 201, "{name:?}: {}", out.stderr);
        assert!(out.stderr.contains("1 to 64 characters"), "{}", out.stderr);
    }
    let out = s.run(&["--name", &"n".repeat(64), "0", "true"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn status_of_a_free_and_a_held_lock_with_performance_schema() {
    let server = Server::start_with(&["--performance-schema=ON"]);
    let s = Setup::new(&server.dsn());
    let free = s.run(&["status", "--name", "reports"]);
    assert_eq!(
        (free.code, free.stdout.as_str()),
        (0, "lock reports: free\n"),
        "{}",
        free.stderr
    );

    let holder = hold(&server, &s, Some("reports"));
    // What the holder told the server: what `sera status` reads, no more.
    assert_eq!(
        server.sql(
            "SELECT GROUP_CONCAT(ATTR_NAME ORDER BY ATTR_NAME) \
             FROM performance_schema.session_connect_attrs \
             WHERE PROCESSLIST_ID = IS_USED_LOCK('reports')"
        ),
        "_pid,program_name,sera_command,sera_connected_at,sera_host,sera_lock"
    );
    let held = s.run(&["status", "--name", "reports"]);
    assert_eq!(held.code, 1, "{}", held.stderr);
    let host = hostname();
    let pid = holder.id().to_string();
    assert!(
        held.stdout.starts_with("lock reports: held by connection ")
            && held.stdout.contains("(sera@127.0.0.1:")
            && held
                .stdout
                .contains(&format!("host {host}, pid {pid}, running sh"))
            && held.stdout.contains("connected at "),
        "{}",
        held.stdout
    );

    let json = s.run(&["status", "--name", "reports", "--json"]);
    assert_eq!(json.code, 1);
    let Ok(Value::Object(top)) = json::from_str::<Value>(&json.stdout) else {
        panic!("not a JSON object: {}", json.stdout);
    };
    assert!(matches!(top.get("held"), Some(Value::Bool(true))));
    let Some(Value::Object(who)) = top.get("holder") else {
        panic!("no holder: {}", json.stdout);
    };
    assert!(matches!(who.get("host"), Some(Value::String(h)) if *h == host));
    assert!(
        matches!(who.get("pid"), Some(Value::Number(_))),
        "{}",
        json.stdout
    );
    assert!(matches!(who.get("connection_id"), Some(Value::Number(_))));

    // What the server keeps of the holder: its program, never its arguments.
    let attributes = server.sql(
        "SELECT GROUP_CONCAT(ATTR_NAME, '=', ATTR_VALUE) \
         FROM performance_schema.session_connect_attrs",
    );
    assert!(attributes.contains("sera_command=sh"), "{attributes}");
    assert!(attributes.contains("sera_lock=reports"), "{attributes}");
    let timed_out = s.run(&["--name", "reports", "0", "true"]);
    assert_eq!(timed_out.code, 204);
    assert!(
        timed_out.stderr.contains(&format!("pid {pid}")),
        "{}",
        timed_out.stderr
    );
    for shown in [&held.stdout, &json.stdout, &attributes, &timed_out.stderr] {
        assert!(!shown.contains(SECRET), "an argument leaked: {shown}");
    }
    release(&s, holder);
}

#[test]
fn status_without_performance_schema_names_the_connection_and_finds_the_commands_lock() {
    let server = Server::shared();
    let s = Setup::new(&server.dsn());
    let holder = hold(server, &s, None);
    let script = until_exists(&s.dir.join("go"));
    let held = s.run(&["status", "sh", "-c", &script, "job", SECRET]);
    assert_eq!(held.code, 1, "{}", held.stderr);
    let id = server.sql(&is_used_lock_sql(&format!("sh -c {script} job {SECRET}")));
    assert!(
        held.stdout
            .contains(&format!("held by connection {id} (sera@127.0.0.1:")),
        "{}",
        held.stdout
    );
    assert!(!held.stdout.contains("pid "), "{}", held.stdout);
    assert!(!held.stdout.contains(SECRET));

    // A second sera of the same command waits: status counts it.
    let waiter = s
        .command(&["30", "sh", "-c", &script, "job", SECRET])
        .spawn()
        .unwrap();
    assert!(
        wait_until(LONG, || s
            .run(&["status", "sh", "-c", &script, "job", SECRET])
            .stdout
            .ends_with("; 1 waiting\n")),
        "the waiter was not counted"
    );
    release(&s, holder);
    assert_eq!(waiter.wait_with_output().unwrap().status.code(), Some(0));
    let free = s.run(&["status", "sh", "-c", &script, "job", SECRET]);
    assert_eq!(free.code, 0, "{}", free.stderr);
}

#[test]
fn status_of_an_unreachable_server_is_202() {
    let s = Setup::new("sera:x@tcp(127.0.0.1:1)/?timeout=1s");
    let out = s.run(&["status", "--name", "x"]);
    assert_eq!(out.code, 202, "{}", out.stderr);
    assert_eq!(out.stdout, "");
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}
