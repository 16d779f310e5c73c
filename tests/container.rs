//! sera in a root that holds only the static sera, its config and a static
//! busybox, run with chroot: what a `FROM scratch` image with a job in it
//! has. No /dev/log, no /etc/hosts, no resolver, no /proc; TCP to
//! 127.0.0.1 still reaches a private MariaDB.
//!
//! It runs the small static artefact for this machine,
//! `target/dist/sera-<version>-<arch>-linux-musl-small`, as
//! `scripts/build-static.sh --no-default-features` leaves it, and a static
//! busybox (`busybox-static`, which scripts/test.sh installs). Without them
//! the tests are skipped with a line that names the command that makes them
//! run, unless `SERA_REQUIRE_SMALL=1` (as CI sets it), which makes that a
//! failure. They test what was built last: rebuild the artefact after
//! changing the code.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::sera::Outcome;
use support::{wait_until, Server, TempDir};

const LONG: Duration = Duration::from_secs(20);

/// A root with `/sera`, `/sera.json` and `/bin/busybox`, or None (and a
/// line on stderr) if the test is skipped.
struct Root {
    dir: TempDir,
}

impl Root {
    fn new(config: &str) -> Option<Root> {
        let sera = dist_dir().join(format!(
            "sera-{}-{}-linux-musl-small",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::ARCH
        ));
        let busybox = on_path("busybox");
        let missing = match (&busybox, sera.exists()) {
            (_, false) => Some(format!(
                "no small static sera at {} (to run it: scripts/build-static.sh \
                 --no-default-features)",
                sera.display()
            )),
            (None, true) => Some(
                "no busybox on PATH (to run it: apt-get install busybox-static, \
                 or scripts/test.sh)"
                    .to_string(),
            ),
            _ => None,
        };
        if let Some(why) = missing {
            if std::env::var("SERA_REQUIRE_SMALL").as_deref() == Ok("1") {
                panic!("SERA_REQUIRE_SMALL=1, but {why}");
            }
            // Straight to stderr: the test harness would swallow an
            // eprintln! of a test that passes, and a skip must be seen.
            let test = std::thread::current().name().unwrap_or("").to_string();
            let line = format!("{test}: skipped, {why}\n");
            let _ = std::io::stderr().write_all(line.as_bytes());
            return None;
        }
        let dir = TempDir::new();
        std::fs::create_dir(dir.join("bin")).unwrap();
        std::fs::copy(&sera, dir.join("sera")).unwrap();
        std::fs::copy(busybox.unwrap(), dir.join("bin/busybox")).unwrap();
        std::fs::write(dir.join("sera.json"), config).unwrap();
        // As an operator should keep it: sera warns about a readable password.
        let private = std::os::unix::fs::PermissionsExt::from_mode(0o600);
        std::fs::set_permissions(dir.join("sera.json"), private).unwrap();
        Some(Root { dir })
    }

    /// `chroot <root> /sera --config /sera.json <args>`, output captured.
    fn sera(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("chroot");
        cmd.arg(&self.dir.path)
            .args(["/sera", "--config", "/sera.json"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
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

#[test]
fn a_static_sera_in_a_bare_root_takes_the_lock_and_runs_a_busybox_job() {
    let server = Server::shared();
    // Syslog asked for, and no /dev/log in the root.
    let config = format!("{{\"server\": \"{}\", \"syslog\": true}}", server.dsn());
    let Some(root) = Root::new(&config) else {
        return;
    };
    // The job says it runs, and waits for the test to let it finish.
    let job = "echo ran; : > /started; while [ ! -e /go ]; do sleep 0.05; done; exit 3";
    let child = root
        .sera(&["--name", "chrooted", "10", "/bin/busybox", "sh", "-c", job])
        .spawn()
        .unwrap();
    assert!(wait_until(LONG, || root.dir.join("started").exists()));
    let holder = server.sql("SELECT IS_USED_LOCK('chrooted')");
    assert_ne!(holder, "NULL", "the job ran without the lock");
    std::fs::write(root.dir.join("go"), "").unwrap();
    let out = Outcome::from(child.wait_with_output().unwrap());

    assert_eq!(
        (out.code, out.stdout.as_str()),
        (3, "ran\n"),
        "{}",
        out.stderr
    );
    assert_eq!(server.sql("SELECT IS_USED_LOCK('chrooted')"), "NULL");
    // Said once, and the lines syslog would have had are on stderr.
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(
        lines[0],
        "sera: warning: syslog is unavailable (/dev/log: No such file or directory \
         (os error 2)): its lines go to stderr instead",
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.matches("syslog").count(), 1, "{}", out.stderr);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("sera: acquired the lock chrooted after ")),
        "{}",
        out.stderr
    );
    assert_eq!(
        lines
            .last()
            .map(|l| l.starts_with("sera: the command exited with status 3 after ")),
        Some(true),
        "{}",
        out.stderr
    );
}

#[test]
fn a_host_name_in_a_bare_root_fails_with_a_hint_for_the_address() {
    let server = Server::shared();
    let config = format!(
        "{{\"server\": \"sera:sera-pass@tcp(localhost:{})/\"}}",
        server.port()
    );
    let Some(root) = Root::new(&config) else {
        return;
    };
    let out = Outcome::from(root.sera(&["5", "/bin/busybox", "true"]).output().unwrap());
    assert_eq!((out.code, out.stdout.as_str()), (202, ""), "{}", out.stderr);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stderr);
    let connect = format!(
        "sera: cannot connect to localhost:{}: failed to lookup address information",
        server.port()
    );
    assert!(lines[0].starts_with(&connect), "{}", lines[0]);
    assert_eq!(
        lines[1],
        "sera: hint: there is no /etc/hosts and no resolver (/etc/resolv.conf) here \
         to look localhost up: write 127.0.0.1 in the DSN instead"
    );
}
