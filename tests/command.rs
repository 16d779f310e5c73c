//! The sera command against a real MariaDB, as a user runs it: exit codes,
//! what the child sees (stdin, arguments, terminal, signals), output that is
//! never lost, who holds the lock when, wait-and-skip, and syslog.

mod support;

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::sera::{is_used_lock_sql, until_exists, Outcome, Setup};
use support::{shared_dsn, wait_until, Server, TempDir, LONG};

fn setup() -> Setup {
    Setup::new(&shared_dsn())
}

#[test]
fn the_commands_exit_status_is_seras() {
    let s = setup();
    assert_eq!(s.run(&["5", "true"]).code, 0);
    assert_eq!(s.run(&["5", "sh", "-c", "exit 3"]).code, 3);
    assert_eq!(s.run(&["5", "sh", "-c", "exit 199"]).code, 199);
    // Killed by a signal: 128 + N, as a shell says it.
    assert_eq!(s.run(&["5", "sh", "-c", "kill -TERM $$"]).code, 143);
    assert_eq!(s.run(&["5", "sh", "-c", "kill -KILL $$"]).code, 137);
}

#[test]
fn a_command_that_cannot_start_is_203_with_the_reason() {
    let s = setup();
    let not_executable = s.dir.join("plain-file");
    std::fs::write(&not_executable, "echo hi\n").unwrap();
    let cases = [
        ("no-such-command-anywhere", "not found"),
        (not_executable.to_str().unwrap(), "permission denied"),
        (s.dir.path.to_str().unwrap(), "directory"),
    ];
    for (program, reason) in cases {
        let out = s.run(&["5", program]);
        assert_eq!(out.code, 203, "{program}: {}", out.stderr);
        assert!(
            out.stderr.starts_with("sera: cannot run "),
            "{}",
            out.stderr
        );
        assert!(out.stderr.contains(reason), "{program}: {}", out.stderr);
        assert_eq!(out.stdout, "");
    }
}

#[test]
fn stdin_reaches_the_command() {
    let s = setup();
    let mut child = s
        .command(&["5", "cat"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"line one\nline two\n").unwrap();
    drop(stdin);
    let out = Outcome::from(child.wait_with_output().unwrap());
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "line one\nline two\n");
}

#[test]
fn arguments_reach_the_command_intact() {
    let s = setup();
    let args = [
        "a b",
        "it's",
        "\"quoted\"",
        "ünïcødé ✓",
        "",
        "$HOME",
        "-la",
        "--",
    ];
    let mut cmd = vec!["5", "printf", "[%s]\\n"];
    cmd.extend(args);
    let out = s.run(&cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let want: String = args.iter().map(|a| format!("[{a}]\n")).collect();
    assert_eq!(out.stdout, want);
}

#[test]
fn no_output_is_lost_over_many_runs() {
    let s = setup();
    let want: String = (1..=20000).map(|n| format!("{n}\n")).collect();
    for run in 0..200 {
        let out = s.run(&["5", "seq", "1", "20000"]);
        assert_eq!(out.code, 0, "run {run}: {}", out.stderr);
        assert!(
            out.stdout == want,
            "run {run} lost output: {} bytes",
            out.stdout.len()
        );
    }
}

#[test]
fn stdout_is_the_commands_alone_even_when_verbose() {
    let s = Setup::with_json(&format!(
        "{{\"server\": \"{}\", \"verbose\": true}}",
        shared_dsn()
    ));
    let out = s.run(&["5", "echo", "only this"]);
    assert_eq!(out.code, 0);
    assert_eq!(out.stdout, "only this\n");
    assert!(
        out.stderr.contains("sera: acquired the lock"),
        "{}",
        out.stderr
    );
    // And a failure too says nothing on stdout.
    let out = s.run(&["5", "no-such-command-anywhere"]);
    assert_eq!((out.code, out.stdout.as_str()), (203, ""));
}

#[test]
fn the_command_sees_the_terminal() {
    let s = setup();
    let (mut master, slave) = open_pty();
    let script = "for fd in 0 1 2; do [ -t $fd ] && printf 'tty%s ' $fd; done; echo";
    let mut child = Command::new(env!("CARGO_BIN_EXE_sera"))
        .arg("--config")
        .arg(&s.config)
        .args(["5", "sh", "-c", script])
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave))
        .spawn()
        .unwrap();
    let status = child.wait().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    // The slave is closed everywhere now: read until EIO.
    while let Ok(n) = master.read(&mut buf) {
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
    }
    let seen = String::from_utf8_lossy(&seen);
    assert!(status.success(), "{seen}");
    assert!(seen.contains("tty0 tty1 tty2"), "{seen:?}");
}

fn open_pty() -> (std::fs::File, OwnedFd) {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: the four pointers are live locals or null, as openpty allows.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty failed");
    // SAFETY: openpty succeeded: both descriptors are open and ours alone.
    unsafe {
        (
            std::fs::File::from_raw_fd(master),
            OwnedFd::from_raw_fd(slave),
        )
    }
}

#[test]
fn the_command_sees_the_signal_dispositions_it_would_see_without_sera() {
    // Rust ignores SIGPIPE in sera itself; the command must not inherit that.
    let s = setup();
    // grep reads the status of the very process sera exec'd. (Not a shell:
    // dash blocks every signal while it waits for its own children.)
    let check = ["grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"];
    let bare = Command::new(check[0]).args(&check[1..]).output().unwrap();
    let out = s.run(&[&["5"], &check[..]].concat());
    assert!(
        out.stdout.contains("SigBlk:\t0000000000000000"),
        "{}",
        out.stdout
    );
    assert_eq!(out.stdout, String::from_utf8_lossy(&bare.stdout));
}

#[test]
fn a_second_sera_waits_or_times_out_naming_the_holder() {
    let server = Server::shared();
    let s = setup();
    let order = s.dir.join("order");
    let release = s.dir.join("release");
    // One command line for all, so one lock; $WHO is not part of its name.
    let script = format!(
        "echo $WHO >> {}; {}",
        order.display(),
        until_exists(&release)
    );
    let command_line = format!("sh -c {script}");
    let mut holder = s
        .command(&["30", "sh", "-c", &script])
        .env("WHO", "holder")
        .spawn()
        .unwrap();
    assert!(wait_until(LONG, || order.exists()), "the holder never ran");

    // The lock is named as the Go sera names it, and held by a sera session.
    let holder_id = server.sql(&is_used_lock_sql(&command_line));
    let user = server.sql(&format!(
        "SELECT USER FROM information_schema.PROCESSLIST WHERE ID = {holder_id}"
    ));
    assert_eq!(user, "sera", "lock holder {holder_id}");

    // wait 0: 204 at once, naming the holder's connection.
    let out = s.run(&["0", "sh", "-c", &script]);
    assert_eq!(out.code, 204, "{}", out.stderr);
    assert!(out
        .stderr
        .starts_with("sera: timed out after 0 s waiting for the lock"));
    assert!(
        out.stderr.contains(&format!("connection {holder_id}")),
        "{}",
        out.stderr
    );
    // A decimal wait times out after about that long.
    let t = Instant::now();
    assert_eq!(s.run(&["0.5", "sh", "-c", &script]).code, 204);
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(450), "{took:?}");

    // A patient one waits in GET_LOCK, and runs once the holder has finished.
    let mut waiter = s
        .command(&["30", "sh", "-c", &script])
        .env("WHO", "waiter")
        .spawn()
        .unwrap();
    assert!(wait_until(LONG, || {
        server.sql(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
             WHERE STATE = 'User lock' AND USER = 'sera'",
        ) == "1"
    }));
    std::fs::write(&release, "").unwrap();
    assert!(holder.wait().unwrap().success());
    assert!(waiter.wait().unwrap().success());
    assert_eq!(std::fs::read_to_string(&order).unwrap(), "holder\nwaiter\n");
}

#[test]
fn wait_and_skip_runs_once_and_the_others_skip() {
    let s = setup();
    let ran = s.dir.join("ran");
    let gate = s.dir.join("gate");
    let script = format!("echo run >> {}; {}", ran.display(), until_exists(&gate));
    // Nobody holds it: the first runs the command.
    let mut first = s
        .command(&["--wait-and-skip", "30", "sh", "-c", &script])
        .spawn()
        .unwrap();
    assert!(wait_until(LONG, || ran.exists()));
    // Two others wait for it, and skip: one plain, one with detailed codes.
    let plain = s
        .command(&["--wait-and-skip", "30", "sh", "-c", &script])
        .spawn()
        .unwrap();
    let detailed = s
        .command(&[
            "--wait-and-skip",
            "--detailed-exit-codes",
            "--",
            "30",
            "sh",
            "-c",
            &script,
        ])
        .spawn()
        .unwrap();
    // Both are blocked in GET_LOCK on this command's lock before it ends.
    // (sera sends the name hex-encoded.)
    let name = sera::md5::hex_digest(format!("sh -c {script}").as_bytes());
    let name = support::sera::hex(&name);
    assert!(wait_until(LONG, || {
        Server::shared().sql(&format!(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
             WHERE STATE = 'User lock' AND INFO LIKE '%{name}%'"
        )) == "2"
    }));
    std::fs::write(&gate, "").unwrap();
    assert!(first.wait().unwrap().success());
    let plain = Outcome::from(plain.wait_with_output().unwrap());
    let detailed = Outcome::from(detailed.wait_with_output().unwrap());
    assert_eq!(plain.code, 0, "{}", plain.stderr);
    assert_eq!(detailed.code, 205, "{}", detailed.stderr);
    assert_eq!(std::fs::read_to_string(&ran).unwrap(), "run\n");

    // A holder that outlasts the wait: 204, as without --wait-and-skip.
    std::fs::remove_file(&gate).unwrap();
    let mut holder = s
        .command(&["--wait-and-skip", "30", "sh", "-c", &script])
        .spawn()
        .unwrap();
    assert!(wait_until(LONG, || std::fs::read_to_string(&ran)
        .unwrap()
        .lines()
        .count()
        == 2));
    let out = s.run(&["--wait-and-skip", "0.2", "sh", "-c", &script]);
    assert_eq!(out.code, 204, "{}", out.stderr);
    std::fs::write(&gate, "").unwrap();
    assert!(holder.wait().unwrap().success());
}

#[test]
fn syslog_gets_the_outcomes() {
    // A datagram socket of our own, seen by sera as /dev/log inside a private
    // mount namespace, so the test reads exactly what sera logs.
    let dev = TempDir::new();
    let log = UnixDatagram::bind(dev.join("log")).unwrap();
    log.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let s = syslog_setup();
    let out = sera_with_dev(&dev, &s, "5 sh -c 'exit 4'");
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = read_datagrams(&log, 2);
    // user.notice for outcomes, with sera's pid.
    assert!(
        lines[0].starts_with("<13>sera[") && lines[0].contains("acquired the lock"),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("<13>") && lines[1].contains("exited with status 4"),
        "{lines:?}"
    );
    for line in &lines {
        // Each line names the lock and the command.
        assert!(line.contains("sh -c exit 4"), "{line}");
        let name = sera::md5::hex_digest(b"sh -c exit 4");
        assert!(line.contains(&format!("lock {name}")), "{line}");
    }

    // A failure goes to user.err, as it said on stderr. (This one is found
    // before sera connects, so it is the only line.)
    let out = sera_with_dev(&dev, &s, "5 no-such-command-anywhere");
    assert_eq!(out.status.code(), Some(203));
    let lines = read_datagrams(&log, 1);
    assert!(
        lines[0].starts_with("<11>") && lines[0].contains("cannot run no-such-command-anywhere"),
        "{lines:?}"
    );
}

#[test]
fn syslog_without_dev_log_breaks_nothing() {
    // This machine may have no /dev/log; make sure of it in a namespace.
    let dev = TempDir::new();
    let out = sera_with_dev(&dev, &syslog_setup(), "5 echo fine");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "fine\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

fn syslog_setup() -> Setup {
    Setup::with_json(&format!(
        "{{\"server\": \"{}\", \"syslog\": true}}",
        shared_dsn()
    ))
}

/// Run sera (with `args`, a shell fragment) in a private mount namespace
/// where `dev` is mounted over /dev: sera finds `dev/log` as /dev/log.
fn sera_with_dev(dev: &TempDir, setup: &Setup, args: &str) -> std::process::Output {
    let script = format!(
        "mount --bind {} /dev && exec {} --config {} {args}",
        dev.path.display(),
        env!("CARGO_BIN_EXE_sera"),
        setup.config.display()
    );
    Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .output()
        .unwrap()
}

fn read_datagrams(socket: &UnixDatagram, count: usize) -> Vec<String> {
    let mut buf = [0u8; 2048];
    (0..count)
        .map(|_| {
            let n = socket.recv(&mut buf).expect("no syslog line from sera");
            String::from_utf8_lossy(&buf[..n]).into_owned()
        })
        .collect()
}

#[test]
fn ctrl_z_stops_sera_with_the_command_and_fg_resumes_both() {
    // sera leads a new session on our pty, as a shell's foreground job would:
    // the terminal's SIGTSTP stops the command, and sera must stop too, or
    // the shell would never get the terminal back.
    use std::os::unix::process::CommandExt;
    let s = setup();
    let log = s.dir.join("log");
    let script = format!(
        "echo ready > {log}; {wait}",
        log = log.display(),
        wait = until_exists(&log.with_extension("go"))
    );
    let (mut master, slave) = open_pty();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sera"));
    cmd.arg("--config")
        .arg(&s.config)
        .args(["5", "sh", "-c", &script])
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave));
    // SAFETY: the closure makes only async-signal-safe calls (setsid, ioctl).
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            libc::ioctl(0, libc::TIOCSCTTY, 0);
            Ok(())
        });
    }
    let mut sera = cmd.spawn().unwrap();
    let pid = sera.id();
    assert!(wait_until(LONG, || log.exists()));
    master.write_all(b"\x1a").unwrap();
    let state = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit(')').next().map(|r| r.trim_start().chars().next()))
            .flatten()
    };
    assert!(
        wait_until(Duration::from_secs(5), || state(pid) == Some('T')),
        "sera did not stop with the command: state {:?}",
        state(pid)
    );
    // `fg`: SIGCONT to the whole process group, then the job may finish.
    // SAFETY: kill takes plain integers and touches no memory.
    unsafe { libc::kill(-(pid as i32), libc::SIGCONT) };
    std::fs::write(format!("{}.go", log.display()), "").unwrap();
    let status = sera.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
