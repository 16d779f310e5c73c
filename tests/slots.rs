//! `--slots N`: at most N commands holding one lock name at once, across
//! hosts, against a real MariaDB.

mod support;

use std::process::Child;
use std::time::{Duration, Instant};

use support::sera::{alive, until_exists, Outcome, Setup};
use support::{wait_until, Server, LONG};

/// A job that logs `+ <ns>` when it starts and `- <ns>` when it ends.
fn logged_job(setup: &Setup, seconds: &str) -> String {
    let log = setup.dir.join("log");
    format!(
        "echo \"+ $(date +%s%N)\" >> {log}; sleep {seconds}; echo \"- $(date +%s%N)\" >> {log}",
        log = log.display()
    )
}

/// The most jobs that ran at once, and how many ran, from the log.
fn concurrency(setup: &Setup) -> (usize, usize) {
    let log = std::fs::read_to_string(setup.dir.join("log")).unwrap_or_default();
    let mut events: Vec<(u128, i32)> = log
        .lines()
        .map(|line| {
            let (sign, ns) = line.split_once(' ').unwrap();
            (ns.parse().unwrap(), if sign == "+" { 1 } else { -1 })
        })
        .collect();
    // At the same nanosecond an end comes before a start.
    events.sort();
    let (mut now, mut most) = (0, 0);
    for (_, step) in &events {
        now += step;
        most = most.max(now);
    }
    (
        most as usize,
        events.iter().filter(|(_, s)| *s == 1).count(),
    )
}

#[test]
fn twelve_racers_on_three_slots_run_three_at_a_time_and_each_once() {
    let s = Setup::new(&Server::shared().dsn());
    let job = logged_job(&s, "0.5");
    let started = Instant::now();
    let racers: Vec<Child> = (0..12)
        .map(|_| {
            s.command(&["--slots", "3", "--name", "reports", "30", "sh", "-c", &job])
                .spawn()
                .unwrap()
        })
        .collect();
    for racer in racers {
        let out = Outcome::from(racer.wait_with_output().unwrap());
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    let took = started.elapsed();
    let (most, ran) = concurrency(&s);
    assert_eq!((most, ran), (3, 12), "at most 3 at once, each racer once");
    // One at a time would take 6 s; three at a time about 2 s.
    assert!(
        took < Duration::from_secs(4),
        "the slots were not used: {took:?}"
    );
}

/// CPU time of a process in nanoseconds, from the scheduler.
fn cpu_ns(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).unwrap();
    stat.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn waiters_on_a_full_semaphore_use_no_cpu_and_a_lost_slot_stops_only_its_command() {
    let server = Server::start();
    let s = Setup::new(&server.dsn());
    let go = s.dir.join("go");
    let job = until_exists(&go);
    let holders: Vec<Child> = (0..2)
        .map(|_| {
            s.command(&[
                "--slots",
                "2",
                "--name",
                "full",
                "--check-interval",
                "1s",
                "5",
                "sh",
                "-c",
                &job,
            ])
            .spawn()
            .unwrap()
        })
        .collect();
    let held = |slot: u32| server.sql(&format!("SELECT IS_USED_LOCK('full#{slot}')"));
    assert!(wait_until(LONG, || held(1) != "NULL" && held(2) != "NULL"));

    // The first in line waits on a slot, the second on the turnstile.
    let waiters: Vec<Child> = (0..2)
        .map(|_| {
            s.command(&["--slots", "2", "--name", "full", "30", "true"])
                .spawn()
                .unwrap()
        })
        .collect();
    let waiting = "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE STATE = 'User lock'";
    assert!(wait_until(LONG, || server.sql(waiting) == "2"));
    let before: Vec<u64> = waiters.iter().map(|w| cpu_ns(w.id())).collect();
    std::thread::sleep(Duration::from_secs(2));
    let used: Vec<u64> = waiters
        .iter()
        .zip(&before)
        .map(|(w, before)| cpu_ns(w.id()) - before)
        .collect();
    // One waiter idles in the server; the first in line asks again ten
    // times a second: well under a millisecond of CPU each.
    assert!(
        used.iter().all(|ns| *ns < 5_000_000),
        "CPU used over 2 s: {used:?} ns"
    );

    // `sera status` counts both waiters once, for the semaphore as a
    // whole, and under no slot (the one in front waits on some slot, the
    // other on the turnstile, and either may get either slot).
    let status = s.run(&["status", "--slots", "2", "--name", "full"]);
    assert_eq!(status.code, 1, "{}", status.stderr);
    let lines: Vec<&str> = status.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", status.stdout);
    for (slot, line) in lines[..2].iter().enumerate() {
        let held_by = format!(
            "lock full#{}: held by connection {}",
            slot + 1,
            held(slot as u32 + 1)
        );
        assert!(line.starts_with(&held_by), "{line}");
        assert!(!line.contains("waiting"), "{line}");
    }
    assert_eq!(lines[2], "lock full: 2 of 2 slots held; 2 waiting");
    let json = s.run(&["status", "--slots", "2", "--name", "full", "--json"]);
    assert!(
        json.stdout.ends_with("],\"waiting\":2}\n"),
        "{}",
        json.stdout
    );
    assert!(!json.stdout.contains("\"waiting\":0"), "{}", json.stdout);

    // Slot 1's session is killed: its command stops, slot 2's runs on, and
    // a waiter takes the freed slot.
    server.sql(&format!("KILL {}", held(1)));
    let mut holders = holders;
    assert!(wait_until(LONG, || holders.iter().any(|h| !alive(h.id()))));
    let stopped = holders.iter().position(|h| !alive(h.id())).unwrap();
    let lost = holders.remove(stopped);
    let kept = holders.remove(0);
    let lost = Outcome::from(lost.wait_with_output().unwrap());
    assert_eq!(lost.code, 206, "{}", lost.stderr);
    assert!(alive(kept.id()), "the other slot's command was stopped");
    std::fs::write(&go, "").unwrap();
    assert_eq!(Outcome::from(kept.wait_with_output().unwrap()).code, 0);
    for waiter in waiters {
        assert_eq!(Outcome::from(waiter.wait_with_output().unwrap()).code, 0);
    }
}

#[test]
fn one_slot_is_the_plain_lock() {
    let s = Setup::new(&Server::shared().dsn());
    let go = s.dir.join("go");
    let job = until_exists(&go);
    let plain = s.command(&["5", "sh", "-c", &job]).spawn().unwrap();
    let lock = support::sera::is_used_lock_sql(&format!("sh -c {job}"));
    assert!(wait_until(LONG, || Server::shared().sql(&lock) != "NULL"));
    let one_slot = s.run(&["--slots", "1", "0", "sh", "-c", &job]);
    assert_eq!(one_slot.code, 204, "{}", one_slot.stderr);
    std::fs::write(&go, "").unwrap();
    assert_eq!(Outcome::from(plain.wait_with_output().unwrap()).code, 0);
}

#[test]
fn slot_counts_that_make_no_sense_are_refused() {
    let dsn = Server::shared().dsn();
    let s = Setup::new(&dsn);
    for bad in ["0", "three", "-1", "1001"] {
        let out = s.run(&["--slots", bad, "0", "true"]);
        assert_eq!(out.code, 201, "--slots {bad}: {}", out.stderr);
        assert!(
            out.stderr.starts_with("sera: bad arguments: --slots: "),
            "{}",
            out.stderr
        );
    }
    // Like every other 201: the reason, then the usage.
    let skip = s.run(&["--slots", "2", "--wait-and-skip", "0", "true"]);
    assert_eq!(skip.code, 201, "{}", skip.stderr);
    let lines: Vec<&str> = skip.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{}", skip.stderr);
    assert!(
        lines[0].starts_with("sera: bad arguments: --wait-and-skip runs a command once"),
        "{}",
        lines[0]
    );
    assert_eq!(
        lines[1],
        "sera: hint: usage: sera [options] [--] <wait-seconds> <command> [args...]; \
         see sera --help"
    );
    let config = Setup::with_json(&format!("{{\"server\": \"{dsn}\", \"slots\": 0}}"));
    assert_eq!(config.run(&["0", "true"]).code, 200);
    let three = Setup::with_json(&format!("{{\"server\": \"{dsn}\", \"slots\": 3}}"));
    let status = three.run(&["status", "--name", "cfg"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert_eq!(
        status.stdout,
        "lock cfg#1: free\nlock cfg#2: free\nlock cfg#3: free\n\
         lock cfg: 0 of 3 slots held; 0 waiting\n"
    );
}

#[test]
fn a_slot_freed_while_the_first_in_line_waits_on_another_is_taken() {
    let server = Server::shared();
    let s = Setup::new(&server.dsn());
    let held = |slot: u32| server.sql(&format!("SELECT IS_USED_LOCK('elsewhere#{slot}')"));
    // One after the other, so the first holds slot 1 and the second slot 2.
    let holders: Vec<(Child, std::path::PathBuf)> = (1..=2)
        .map(|slot| {
            let go = s.dir.join(format!("go{slot}").as_str());
            let job = until_exists(&go);
            let args = [
                "--slots",
                "2",
                "--name",
                "elsewhere",
                "30",
                "sh",
                "-c",
                &job,
            ];
            let holder = s.command(&args).spawn().unwrap();
            assert!(wait_until(LONG, || held(slot) != "NULL"));
            (holder, go)
        })
        .collect();
    let first_holder = held(1);
    let ran = s.dir.join("ran");
    let job = format!("touch {}", ran.display());
    let args = [
        "--slots",
        "2",
        "--name",
        "elsewhere",
        "30",
        "sh",
        "-c",
        &job,
    ];
    let waiter = s.command(&args).spawn().unwrap();
    let waiting = "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
                   WHERE STATE = 'User lock' AND INFO LIKE '%GET_LOCK%'";
    assert!(wait_until(LONG, || server.sql(waiting) == "1"));
    // Slot 2 is freed, whichever slot the first in line waits on.
    std::fs::write(&holders[1].1, "").unwrap();
    assert!(wait_until(LONG, || ran.exists()), "the waiter never ran");
    assert_eq!(held(1), first_holder, "slot 1 was never free");
    let out = Outcome::from(waiter.wait_with_output().unwrap());
    assert_eq!(out.code, 0, "{}", out.stderr);
    for (holder, go) in holders {
        std::fs::write(&go, "").unwrap();
        let out = Outcome::from(holder.wait_with_output().unwrap());
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
}
