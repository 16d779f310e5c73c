//! TLS and the remaining auth plugins against real MariaDB servers started
//! with TLS, with certificates made here by the `openssl` command line.
#![cfg(feature = "tls")]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sera::dsn::Dsn;
use sera::mysql::Conn;
use support::sera::Setup;
use support::{Server, TempDir};

/// A CA, a server certificate for 127.0.0.1 only, a client certificate, and
/// a second CA that signed nothing of ours.
struct Certs {
    dir: TempDir,
}

impl Certs {
    fn new() -> Certs {
        let dir = TempDir::new();
        let d = dir.path.clone();
        let sh = |script: &str| {
            let out = Command::new("sh")
                .arg("-ec")
                .arg(script)
                .current_dir(&d)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ca = |name: &str| {
            format!(
                "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN={name} \
                 -keyout {name}.key -out {name}.pem 2>/dev/null;"
            )
        };
        let signed = |name: &str, san: &str| {
            format!(
                "openssl req -newkey rsa:2048 -nodes -subj /CN={name} -keyout {name}.key \
                 -out {name}.csr 2>/dev/null; \
                 printf 'subjectAltName={san}\\n' > {name}.ext; \
                 openssl x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
                 -days 2 -extfile {name}.ext -out {name}.pem 2>/dev/null;"
            )
        };
        sh(&[
            ca("ca"),
            ca("other-ca"),
            signed("server", "IP:127.0.0.1"),
            signed("client", "DNS:client"),
        ]
        .concat());
        Certs { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn server_options(&self) -> Vec<String> {
        vec![
            format!("--ssl-ca={}", self.path("ca.pem").display()),
            format!("--ssl-cert={}", self.path("server.pem").display()),
            format!("--ssl-key={}", self.path("server.key").display()),
        ]
    }
}

fn start_tls_server(certs: &Certs, extra: &[&str]) -> Server {
    let mut options = certs.server_options();
    options.extend(extra.iter().map(|s| s.to_string()));
    let options: Vec<&str> = options.iter().map(String::as_str).collect();
    Server::start_with(&options)
}

/// A config file with the DSN and optional TLS keys.
fn setup(dsn: &str, tls: &[(&str, &Path)]) -> Setup {
    let mut json = format!("{{\"server\": \"{dsn}\"");
    for (key, path) in tls {
        json.push_str(&format!(", \"{key}\": \"{}\"", path.display()));
    }
    json.push('}');
    Setup::with_json(&json)
}

fn dsn(server: &Server, host: &str, tls: &str) -> String {
    format!("sera:sera-pass@tcp({host}:{})/?tls={tls}", server.port())
}

#[test]
fn tls_true_with_the_right_ca_connects_encrypted_and_locks() {
    let certs = Certs::new();
    let server = start_tls_server(&certs, &[]);
    let s = setup(
        &dsn(&server, "127.0.0.1", "true"),
        &[("tls_ca", &certs.path("ca.pem"))],
    );
    // The session the library opens, as sera's own, is encrypted and locks.
    let mut parsed = Dsn::parse(&dsn(&server, "127.0.0.1", "true")).unwrap();
    parsed.tls_ca = Some(certs.path("ca.pem"));
    let mut conn = Conn::connect(&parsed).unwrap();
    let value = |conn: &mut Conn, sql: &str| {
        let row = conn
            .query_row(sql, Duration::from_secs(5))
            .unwrap()
            .unwrap();
        row.into_iter().next().unwrap()
    };
    let cipher = value(
        &mut conn,
        "SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS \
         WHERE VARIABLE_NAME = 'Ssl_cipher'",
    );
    assert!(
        cipher.is_some_and(|c| !c.is_empty()),
        "the session is not encrypted"
    );
    let locked = value(&mut conn, "SELECT GET_LOCK('tls-test', 0)");
    assert_eq!(locked.as_deref(), Some("1"));

    // And sera itself runs a command under its lock over TLS.
    let out = s.run(&["5", "echo", "locked over TLS"]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "locked over TLS\n"),
        "{}",
        out.stderr
    );
}

#[test]
fn an_untrusted_certificate_or_a_wrong_host_is_202_saying_so() {
    let certs = Certs::new();
    let server = start_tls_server(&certs, &[]);
    let wrong_ca = setup(
        &dsn(&server, "127.0.0.1", "true"),
        &[("tls_ca", &certs.path("other-ca.pem"))],
    );
    let out = wrong_ca.run(&["5", "true"]);
    assert_eq!(out.code, 202, "{}", out.stderr);
    assert!(out.stderr.contains("not trusted"), "{}", out.stderr);
    // What to do about it is the hint, on a line of its own.
    assert!(
        out.stderr.contains("\nsera: hint: name its CA with tls_ca"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stdout, "");

    // The certificate names 127.0.0.1, not localhost.
    let wrong_host = setup(
        &dsn(&server, "localhost", "true"),
        &[("tls_ca", &certs.path("ca.pem"))],
    );
    let out = wrong_host.run(&["5", "true"]);
    assert_eq!(out.code, 202, "{}", out.stderr);
    assert!(
        out.stderr.contains("not valid for host \"localhost\""),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("\nsera: hint: connect by the name the certificate"),
        "{}",
        out.stderr
    );

    // skip-verify encrypts without checking, so both connect.
    for host in ["127.0.0.1", "localhost"] {
        let s = setup(
            &dsn(&server, host, "skip-verify"),
            &[("tls_ca", &certs.path("other-ca.pem"))],
        );
        let out = s.run(&["5", "true"]);
        assert_eq!(out.code, 0, "skip-verify to {host}: {}", out.stderr);
    }
}

#[test]
fn a_user_required_to_show_a_client_certificate_needs_it() {
    let certs = Certs::new();
    let server = start_tls_server(&certs, &[]);
    server.sql("CREATE USER 'x509'@'%' IDENTIFIED BY 'x509-pass' REQUIRE X509");
    let dsn = format!("x509:x509-pass@tcp(127.0.0.1:{})/?tls=true", server.port());
    let ca = certs.path("ca.pem");
    let without = setup(&dsn, &[("tls_ca", &ca)]).run(&["5", "true"]);
    assert_eq!(without.code, 202, "{}", without.stderr);
    assert!(without.stderr.contains("1045"), "{}", without.stderr);
    let with = setup(
        &dsn,
        &[
            ("tls_ca", &ca),
            ("tls_cert", &certs.path("client.pem")),
            ("tls_key", &certs.path("client.key")),
        ],
    )
    .run(&["5", "true"]);
    assert_eq!(with.code, 0, "{}", with.stderr);
}

#[test]
fn a_server_requiring_secure_transport_refuses_plain_tcp_clearly() {
    let certs = Certs::new();
    let server = start_tls_server(&certs, &["--require-secure-transport=ON"]);
    let out = setup(&dsn(&server, "127.0.0.1", "false"), &[]).run(&["5", "true"]);
    assert_eq!(out.code, 202, "{}", out.stderr);
    // MariaDB refuses with 1045; sera's hint names the likely cause.
    assert!(out.stderr.contains("1045"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("require_secure_transport=ON: then add tls=true"),
        "{}",
        out.stderr
    );
    // preferred upgrades when the server offers TLS.
    let out = setup(&dsn(&server, "127.0.0.1", "preferred"), &[]).run(&["5", "true"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn tls_preferred_against_a_server_without_tls_connects_in_clear() {
    let server = Server::shared();
    let out = setup(&dsn(server, "127.0.0.1", "preferred"), &[]).run(&["5", "echo", "clear"]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "clear\n"),
        "{}",
        out.stderr
    );
    // tls=true there is refused rather than sending the password in clear.
    let out = setup(&dsn(server, "127.0.0.1", "true"), &[]).run(&["5", "true"]);
    assert_eq!(out.code, 202, "{}", out.stderr);
    assert!(out.stderr.contains("does not offer"), "{}", out.stderr);
}

#[test]
#[cfg(feature = "ed25519")]
fn a_mariadb_ed25519_account_authenticates() {
    let server = Server::start();
    server.sql("INSTALL SONAME 'auth_ed25519'");
    server.sql(
        "CREATE USER 'ed'@'%' IDENTIFIED VIA ed25519 USING PASSWORD('ed-pass'); \
         CREATE USER 'ed'@'localhost' IDENTIFIED VIA ed25519 USING PASSWORD('ed-pass')",
    );
    for dsn in [
        format!("ed:ed-pass@tcp(127.0.0.1:{})/", server.port()),
        format!("ed:ed-pass@unix({})/", server.socket().display()),
    ] {
        let out = Setup::new(&dsn).run(&["5", "echo", "ed25519"]);
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (0, "ed25519\n"),
            "{dsn}: {}",
            out.stderr
        );
    }
    let wrong = format!("ed:not-it@tcp(127.0.0.1:{})/", server.port());
    let out = Setup::new(&wrong).run(&["5", "true"]);
    assert_eq!(out.code, 202, "{}", out.stderr);
    assert!(out.stderr.contains("1045"), "{}", out.stderr);
}
