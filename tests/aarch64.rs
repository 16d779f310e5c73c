//! The release artefacts as a user gets them: what `--version` says, and the
//! aarch64 builds proven under qemu-user against a real MariaDB: connect,
//! lock, run a command, a race that gives 204, and an aarch64 holder that
//! excludes an x86_64 sera on the same lock (and the other way round).
//!
//! The aarch64 tests run `target/dist/sera-<version>-aarch64-linux-musl-small`
//! (and the full `...-aarch64-linux-musl` for TLS), as
//! `scripts/build-static.sh --target aarch64-unknown-linux-musl` leaves them,
//! under `qemu-aarch64-static` or `qemu-aarch64`. Without them they are
//! skipped with a line that says why, unless `SERA_REQUIRE_AARCH64=1` (as CI
//! sets it), which makes that a failure. They test what was built last:
//! rebuild the artefacts after changing the code.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use sera::dsn::Dsn;
use sera::mysql::Conn;
use support::sera::{is_used_lock_sql, until_exists, Outcome, Setup};
use support::{wait_until, Server, TempDir, LONG};

const VERSION: &str = env!("CARGO_PKG_VERSION");

#[test]
fn version_names_the_target_and_the_features() {
    let out = Outcome::from(
        Command::new(env!("CARGO_BIN_EXE_sera"))
            .arg("--version")
            .output()
            .unwrap(),
    );
    let libc = if cfg!(target_env = "musl") {
        "musl"
    } else {
        "gnu"
    };
    let tls = if cfg!(feature = "tls") { "" } else { "no " };
    let ed25519 = if cfg!(feature = "ed25519") { "" } else { "no " };
    let arch = std::env::consts::ARCH;
    let expected =
        format!("sera {VERSION} ({arch}-unknown-linux-{libc}; {tls}tls, {ed25519}ed25519)\n");
    assert_eq!((out.code, out.stdout, out.stderr), (0, expected, "".into()));
}

/// An aarch64 sera and how to run it here.
struct Aarch64 {
    /// qemu-user, or nothing on an aarch64 host.
    qemu: Option<PathBuf>,
    bin: PathBuf,
}

impl Aarch64 {
    /// The small build, or None (and a line on stderr) if the test is skipped.
    fn small() -> Option<Aarch64> {
        Aarch64::find("-small")
    }

    /// The full build (TLS and ed25519), likewise.
    fn full() -> Option<Aarch64> {
        Aarch64::find("")
    }

    fn find(flavour: &str) -> Option<Aarch64> {
        let name = format!("sera-{VERSION}-aarch64-linux-musl{flavour}");
        let bin = dist_dir().join(&name);
        let qemu = if std::env::consts::ARCH == "aarch64" {
            Ok(None)
        } else {
            ["qemu-aarch64-static", "qemu-aarch64"]
                .iter()
                .find_map(|q| on_path(q))
                .map(Some)
                .ok_or_else(|| {
                    "no qemu-aarch64-static or qemu-aarch64 on PATH \
                     (apt-get install qemu-user-static)"
                        .to_string()
                })
        };
        let found = if bin.exists() {
            qemu.map(|qemu| Aarch64 { qemu, bin })
        } else {
            let small = if flavour.is_empty() {
                ""
            } else {
                " --no-default-features"
            };
            Err(format!(
                "no aarch64 sera at {} (scripts/build-static.sh --target \
                 aarch64-unknown-linux-musl{small} makes it)",
                bin.display(),
            ))
        };
        match found {
            Ok(found) => Some(found),
            Err(why) if std::env::var("SERA_REQUIRE_AARCH64").as_deref() == Ok("1") => {
                panic!("SERA_REQUIRE_AARCH64=1, but {why}")
            }
            Err(why) => {
                // Straight to stderr: the test harness would swallow an
                // eprintln! of a test that passes, and a skip must be seen.
                let test = std::thread::current().name().unwrap_or("").to_string();
                let line = format!("{test}: skipped, the aarch64 sera cannot run: {why}\n");
                let _ = std::io::stderr().write_all(line.as_bytes());
                None
            }
        }
    }

    /// The aarch64 `sera --config <setup's> <args>`, stdin closed, output captured.
    fn command(&self, setup: &Setup, args: &[&str]) -> Command {
        let mut cmd = match &self.qemu {
            Some(qemu) => {
                let mut cmd = Command::new(qemu);
                cmd.arg(&self.bin);
                cmd
            }
            None => Command::new(&self.bin),
        };
        cmd.arg("--config").arg(&setup.config).args(args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn run(&self, setup: &Setup, args: &[&str]) -> Outcome {
        Outcome::from(self.command(setup, args).output().unwrap())
    }

    fn spawn(&self, setup: &Setup, args: &[&str]) -> Running {
        Running::new(self.command(setup, args))
    }
}

/// A sera in the background, killed if the test fails before it ends.
struct Running(Option<Child>);

impl Running {
    fn new(mut cmd: Command) -> Running {
        Running(Some(cmd.spawn().unwrap()))
    }

    fn finish(mut self) -> Outcome {
        let child = self.0.take().expect("finished once");
        Outcome::from(child.wait_with_output().unwrap())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// target/dist, beside the folder of the sera under test (target/debug).
fn dist_dir() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_sera"));
    bin.parent().and_then(Path::parent).unwrap().join("dist")
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// A command that holds its lock until `release` exists, after saying it
/// runs by creating `started`; the same text, and so the same lock, for
/// every sera that is given it.
struct Hold {
    dir: TempDir,
    script: String,
}

impl Hold {
    fn new() -> Hold {
        let dir = TempDir::new();
        let script = format!(
            "touch {}; {}",
            dir.join("started").display(),
            until_exists(&dir.join("release"))
        );
        Hold { dir, script }
    }

    fn args<'a>(&'a self, wait: &'a str) -> [&'a str; 4] {
        [wait, "sh", "-c", &self.script]
    }

    fn command_line(&self) -> String {
        format!("sh -c {}", self.script)
    }

    fn started(&self) -> bool {
        self.dir.join("started").exists()
    }

    fn release(&self) {
        std::fs::write(self.dir.join("release"), "").unwrap();
    }
}

/// The id of the session holding `hold`'s lock, once its command runs, and
/// the user of that session.
fn holder(server: &Server, hold: &Hold) -> (String, String) {
    assert!(wait_until(LONG, || hold.started()), "the holder never ran");
    let id = server.sql(&is_used_lock_sql(&hold.command_line()));
    let user = server.sql(&format!(
        "SELECT USER FROM information_schema.PROCESSLIST WHERE ID = {id}"
    ));
    (id, user)
}

fn assert_timed_out(out: &Outcome, holder_id: &str) {
    assert_eq!(out.code, 204, "{}", out.stderr);
    assert!(
        out.stderr
            .starts_with("sera: timed out after 0 s waiting for the lock"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!("connection {holder_id}")),
        "{}",
        out.stderr
    );
}

#[test]
fn aarch64_sera_connects_locks_and_passes_the_exit_status_through() {
    let Some(arm) = Aarch64::small() else { return };
    let version = arm.run(&Setup::new("unused"), &["--version"]);
    assert_eq!(
        version.stdout,
        format!("sera {VERSION} (aarch64-unknown-linux-musl; no tls, no ed25519)\n"),
        "{}",
        version.stderr
    );

    let server = Server::start();
    for dsn in [server.dsn(), server.unix_dsn()] {
        let s = Setup::new(&dsn);
        // The command (an x86_64 sh, exec'd by the aarch64 sera) runs while
        // sera's session holds the lock named after it.
        let script = "echo ran; exit 3";
        let query = is_used_lock_sql(&format!("sh -c {script}"));
        let out = arm.run(&s, &["5", "sh", "-c", script]);
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (3, "ran\n"),
            "{dsn}: {}",
            out.stderr
        );
        assert_eq!(out.stderr, "", "{dsn}");
        // Released once sera has ended its session.
        assert!(wait_until(LONG, || server.sql(&query) == "NULL"), "{dsn}");

        let hold = Hold::new();
        let running = arm.spawn(&s, &hold.args("5"));
        let (_, user) = holder(&server, &hold);
        assert_eq!(user, "sera", "{dsn}");
        hold.release();
        let out = running.finish();
        assert_eq!(out.code, 0, "{dsn}: {}", out.stderr);
    }
}

#[test]
fn aarch64_sera_gets_204_while_a_plain_session_or_another_sera_holds_the_lock() {
    let Some(arm) = Aarch64::small() else { return };
    let server = Server::start();
    let s = Setup::new(&server.dsn());

    // A plain SQL session holds the lock of `true`.
    let mut conn = Conn::connect(&Dsn::parse(&server.dsn()).unwrap()).unwrap();
    let name = sera::md5::hex_digest(b"true");
    let got = conn
        .query_row(&format!("SELECT GET_LOCK('{name}', 0)"), LONG)
        .unwrap()
        .unwrap();
    assert_eq!(got, vec![Some("1".to_string())]);
    let out = arm.run(&s, &["0", "true"]);
    assert_timed_out(&out, &conn.connection_id().to_string());
    // Once that session ends, the lock is free to take.
    conn.quit();
    let out = arm.run(&s, &["5", "true"]);
    assert_eq!(out.code, 0, "{}", out.stderr);

    // Another aarch64 sera holds it.
    let hold = Hold::new();
    let running = arm.spawn(&s, &hold.args("5"));
    let (holder_id, _) = holder(&server, &hold);
    assert_timed_out(&arm.run(&s, &hold.args("0")), &holder_id);
    hold.release();
    assert_eq!(running.finish().code, 0);
}

#[test]
fn an_aarch64_holder_excludes_an_x86_64_sera_and_the_other_way_round() {
    let Some(arm) = Aarch64::small() else { return };
    let server = Server::start();
    let s = Setup::new(&server.dsn());

    let hold = Hold::new();
    let running = arm.spawn(&s, &hold.args("5"));
    let (holder_id, _) = holder(&server, &hold);
    // The test's own sera, built for this host.
    assert_timed_out(&s.run(&hold.args("0")), &holder_id);
    hold.release();
    assert_eq!(running.finish().code, 0);

    let hold = Hold::new();
    let running = Running::new(s.command(&hold.args("5")));
    let (holder_id, _) = holder(&server, &hold);
    assert_timed_out(&arm.run(&s, &hold.args("0")), &holder_id);
    hold.release();
    assert_eq!(running.finish().code, 0);
}

#[test]
fn the_full_aarch64_sera_locks_over_verified_tls() {
    let Some(arm) = Aarch64::full() else { return };
    let version = arm.run(&Setup::new("unused"), &["--version"]);
    assert_eq!(
        version.stdout,
        format!("sera {VERSION} (aarch64-unknown-linux-musl; tls, ed25519)\n"),
        "{}",
        version.stderr
    );
    // A CA and a server certificate for 127.0.0.1, and a server that refuses
    // TCP without TLS: ring's aarch64 code does the handshake and checks the
    // chain.
    let certs = TempDir::new();
    let made = Command::new("sh")
        .arg("-ec")
        .arg(
            "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=ca \
               -keyout ca.key -out ca.pem 2>/dev/null
             openssl req -newkey rsa:2048 -nodes -subj /CN=server \
               -keyout server.key -out server.csr 2>/dev/null
             printf 'subjectAltName=IP:127.0.0.1\\n' > server.ext
             openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
               -days 2 -extfile server.ext -out server.pem 2>/dev/null",
        )
        .current_dir(&certs.path)
        .status()
        .unwrap();
    assert!(made.success(), "openssl failed");
    let option = |name: &str, file: &str| format!("--{name}={}", certs.join(file).display());
    let server = Server::start_with(&[
        &option("ssl-ca", "ca.pem"),
        &option("ssl-cert", "server.pem"),
        &option("ssl-key", "server.key"),
        "--require-secure-transport=ON",
    ]);
    let s = Setup::with_json(&format!(
        "{{\"server\": \"sera:sera-pass@tcp(127.0.0.1:{})/?tls=true\", \"tls_ca\": \"{}\"}}",
        server.port(),
        certs.join("ca.pem").display()
    ));
    let out = arm.run(&s, &["5", "sh", "-c", "echo over TLS"]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "over TLS\n"),
        "{}",
        out.stderr
    );

    // And it holds the lock there as the small one does.
    let hold = Hold::new();
    let running = arm.spawn(&s, &hold.args("5"));
    let (holder_id, user) = holder(&server, &hold);
    assert_eq!(user, "sera");
    assert_timed_out(&arm.run(&s, &hold.args("0")), &holder_id);
    hold.release();
    assert_eq!(running.finish().code, 0);
}
