//! Every bad input gets one clear line on stderr, the documented exit code,
//! nothing on stdout, never a password, and an answer in bounded time.

mod support;

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use sera::dsn::Dsn;
use sera::mysql::Conn;
use support::sera::{assert_failure, Outcome, Setup, SECRET};
use support::{shared_dsn, ClosedPort, Server};

#[test]
fn bad_config_files_are_200_naming_the_file_and_the_problem() {
    let junk: String = (0..3_000_000u32)
        .map(|i| (b'!' + (i.wrapping_mul(2654435761) >> 27) as u8) as char)
        .collect();
    let cases: Vec<(&str, String, &str)> = vec![
        ("empty", String::new(), "empty"),
        ("malformed", "{\"server\": ".into(), "not valid JSON"),
        ("not an object", "[\"server\"]".into(), "not a JSON object"),
        ("no server", "{\"syslog\": true}".into(), "no \"server\""),
        (
            "server not a string",
            "{\"server\": 5}".into(),
            "\"server\" must be a string",
        ),
        (
            "syslog not a boolean",
            format!("{{\"server\": \"{}\", \"syslog\": \"yes\"}}", shared_dsn()),
            "\"syslog\" must be true or false",
        ),
        (
            "bad on_lost",
            format!(
                "{{\"server\": \"{}\", \"on_lost\": \"explode\"}}",
                shared_dsn()
            ),
            "on_lost",
        ),
        (
            "bad check_interval",
            format!(
                "{{\"server\": \"{}\", \"check_interval\": \"often\"}}",
                shared_dsn()
            ),
            "check_interval",
        ),
        (
            "check_interval under 100ms",
            format!(
                "{{\"server\": \"{}\", \"check_interval\": \"50ms\"}}",
                shared_dsn()
            ),
            "\"check_interval\": 50ms is too short: the least is 100ms",
        ),
        (
            "bad orphans",
            format!(
                "{{\"server\": \"{}\", \"orphans\": \"keep\"}}",
                shared_dsn()
            ),
            "\"orphans\": \"keep\" is not one of wait, term, ignore",
        ),
        ("megabytes of junk", junk, "larger than"),
        ("binary", "\u{0}\u{1}{}".into(), "not valid JSON"),
    ];
    for (case, text, says) in cases {
        let s = Setup::with_json(&text);
        let out = s.run(&["1", "true"]);
        assert_failure(case, &out, 200, says);
        assert!(
            out.stderr.contains(s.config.to_str().unwrap()),
            "{case}: names the file"
        );
    }

    let s = Setup::with_json("{}");
    let missing = s.dir.join("missing.json");
    for (case, path, says) in [
        ("missing", missing.to_str().unwrap(), "no such file"),
        ("a directory", s.dir.path.to_str().unwrap(), "directory"),
    ] {
        let out = Outcome::from(
            std::process::Command::new(env!("CARGO_BIN_EXE_sera"))
                .args(["--config", path, "1", "true"])
                .output()
                .unwrap(),
        );
        assert_failure(case, &out, 200, says);
    }
}

#[test]
fn bad_dsns_are_200_and_never_show_the_password() {
    let cases = [
        (
            "no slash",
            format!("sera:{SECRET}@tcp(127.0.0.1:3306)"),
            "slash",
        ),
        (
            "unclosed address",
            format!("sera:{SECRET}@tcp(127.0.0.1:3306/"),
            "(",
        ),
        (
            "port out of range",
            format!("sera:{SECRET}@tcp(127.0.0.1:99999)/"),
            "port",
        ),
        (
            "unknown protocol",
            format!("sera:{SECRET}@udp(127.0.0.1:3306)/"),
            "udp",
        ),
        (
            "bad duration",
            format!("sera:{SECRET}@tcp(127.0.0.1)/?timeout=soon"),
            "timeout",
        ),
        (
            "bad boolean",
            format!("sera:{SECRET}@tcp(127.0.0.1)/?allowNativePasswords=maybe"),
            "allowNativePasswords",
        ),
    ];
    for (case, dsn, says) in cases {
        let out = Setup::new(&dsn).run(&["1", "true"]);
        assert_failure(case, &out, 200, says);
        assert!(out.stderr.contains("invalid DSN"), "{case}: {}", out.stderr);
    }
}

#[test]
fn bad_arguments_are_201() {
    let s = Setup::new(&shared_dsn());
    let cases: [(&str, &[&str], &str); 9] = [
        ("non-numeric wait", &["soon", "true"], "invalid wait time"),
        ("negative wait", &["-1", "true"], "0 or more seconds"),
        ("NaN wait", &["NaN", "true"], "invalid wait time"),
        ("missing wait", &[], "missing the wait time"),
        ("no command", &["5"], "missing the command"),
        (
            "unknown option",
            &["--frobnicate", "5", "true"],
            "frobnicate",
        ),
        (
            "bad kill-after",
            &["--kill-after", "10", "5", "true"],
            "kill-after",
        ),
        (
            "a check interval that would only load the server",
            &["--check-interval", "1ns", "5", "true"],
            "--check-interval: 1ns is too short",
        ),
        (
            "bad orphans",
            &["--orphans", "keep", "5", "true"],
            "--orphans",
        ),
    ];
    for (case, args, says) in cases {
        assert_failure(case, &s.run(args), 201, says);
    }
}

#[test]
fn network_failures_are_202_within_the_timeout() {
    let closed = ClosedPort::new();
    let closed_port = closed.port;
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let cases = [
        (
            "connection refused",
            format!("sera:{SECRET}@tcp(127.0.0.1:{closed_port})/?timeout=1s"),
            "refused",
        ),
        (
            "host does not resolve",
            format!("sera:{SECRET}@tcp(no-such-host.invalid:3306)/?timeout=1s"),
            "cannot connect to no-such-host.invalid:3306",
        ),
        (
            "silent listener",
            format!("sera:{SECRET}@tcp(127.0.0.1:{silent_port})/?timeout=1s"),
            "no greeting",
        ),
        (
            "no such socket",
            format!("sera:{SECRET}@unix(/nonexistent/mysqld.sock)/"),
            "/nonexistent/mysqld.sock",
        ),
    ];
    for (case, dsn, says) in cases {
        let started = Instant::now();
        let out = Setup::new(&dsn).run(&["1", "true"]);
        assert_failure(case, &out, 202, says);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{case}: {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn auth_and_server_errors_are_202_with_the_servers_words() {
    let server = Server::shared();
    let wrong = server.dsn().replace("sera-pass", SECRET);
    let unknown_user = format!("nobody:{SECRET}@tcp(127.0.0.1:{})/", server.port());
    let unknown_db = format!("{}no_such_db", server.dsn());
    for (case, dsn, says) in [
        ("wrong password", wrong, "1045"),
        ("unknown user", unknown_user, "1045"),
        ("unknown database", unknown_db, "1049"),
    ] {
        let out = Setup::new(&dsn).run(&["1", "true"]);
        assert_failure(case, &out, 202, says);
        assert!(out.stderr.contains("hint"), "{case}: a hint helps here");
    }
}

#[test]
fn max_connections_reached_is_202_error_1040() {
    // MariaDB keeps one extra connection for SUPER, so fill the slots with an
    // ordinary account and try as that account.
    let server = Server::start_with(&["--max-connections=10"]);
    server.sql("CREATE USER 'plain'@'%' IDENTIFIED BY 'plain-pass'");
    let dsn = format!("plain:plain-pass@tcp(127.0.0.1:{})/", server.port());
    let parsed = Dsn::parse(&dsn).unwrap();
    let mut held = Vec::new();
    while let Ok(conn) = Conn::connect(&parsed) {
        held.push(conn);
        assert!(held.len() <= 10, "max_connections not enforced");
    }
    let out = Setup::new(&dsn).run(&["1", "true"]);
    assert_failure("max_connections", &out, 202, "1040");
    assert!(out.stderr.contains("max_connections"), "{}", out.stderr);
}

#[test]
fn an_unknown_config_key_is_a_warning_and_the_run_goes_on() {
    let s = Setup::with_json(&format!(
        "{{\"server\": \"{}\", \"sever\": \"typo\"}}",
        shared_dsn()
    ));
    let out = s.run(&["1", "echo", "ran"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "ran\n");
    assert!(
        out.stderr.starts_with("sera: warning: config ") && out.stderr.contains("\"sever\""),
        "{}",
        out.stderr
    );
}

#[test]
fn a_password_in_a_readable_config_is_warned_about_once() {
    let s = Setup::new(&shared_dsn());
    std::fs::set_permissions(&s.config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = s.run(&["1", "true"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out
        .stderr
        .contains(&format!("chmod 600 {}", s.config.display())));
    assert!(!out.stderr.contains("sera-pass"));
}

#[test]
fn sera_password_from_the_environment_replaces_the_files() {
    let server = Server::shared();
    // The file has no password (and so earns no warning even at 0644).
    let s = Setup::new(&format!("sera@tcp(127.0.0.1:{})/", server.port()));
    std::fs::set_permissions(&s.config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let without = s.run(&["1", "true"]);
    assert_eq!(without.code, 202, "no password: {}", without.stderr);
    let with = Outcome::from(
        s.command(&["1", "echo", "ok"])
            .env("SERA_PASSWORD", "sera-pass")
            .output()
            .unwrap(),
    );
    assert_eq!(
        (with.code, with.stdout.as_str()),
        (0, "ok\n"),
        "{}",
        with.stderr
    );
    assert_eq!(with.stderr, "");
}
