//! A holder or a waiter on a far host that goes silent: a sera in another
//! network namespace, reaching a private MariaDB over a wire that the test
//! cuts (support/netns.rs). A "near" sera on the server's unix socket is the
//! run elsewhere. Which job ran when is told by a flock probe on a file in
//! the temp dir, which both hosts see: a job's tree holds it while it runs.
//!
//! The lease (issue 21): without it the server kept a silent session's lock
//! until TCP gave up (hours for a holder, about 15 min for a waiter).

mod support;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use support::netns::FAR_ADDR;
use support::sera::{alive, Outcome, Setup};
use support::{wait_until, FarHost, Server, TempDir};

const LOCK: &str = "far-host-job";
/// The default lease, and how long past it a run elsewhere may wait.
const LEASE: Duration = Duration::from_secs(30);
const GRACE: Duration = Duration::from_secs(5);

/// Fields drop in order: the server before the namespace it runs in.
struct Rig {
    server: Server,
    far: FarHost,
    /// Config over TCP to the server's address in its namespace.
    far_setup: Setup,
    /// Config over the unix socket, from the test's own namespace.
    near: Setup,
    files: TempDir,
}

fn rig() -> Option<Rig> {
    let far = FarHost::new()?;
    let server = Server::start_in_netns(&far.db, support::netns::DB_ADDR);
    Some(Rig {
        far_setup: Setup::new(&server.dsn()),
        near: Setup::new(&server.unix_dsn()),
        server,
        far,
        files: TempDir::new(),
    })
}

impl Rig {
    /// The job, `sh -c SCRIPT ROLE`: it takes the flock probe without
    /// waiting and logs "ROLE ran", or "ROLE overlapped" if a tree of
    /// another run still holds it. Then "far" runs until stopped (SIGTERM:
    /// exit 0, so only sera's own code can say 206), "holder" until the
    /// file `release` exists, and anything else exits.
    fn job(&self, role: &str) -> Vec<String> {
        let f = |name: &str| self.files.join(name).display().to_string();
        let script = format!(
            "exec 9>>{probe}; \
             if flock -n 9; then echo \"$0 ran\" >> {log}; else echo \"$0 overlapped\" >> {log}; fi; \
             case $0 in \
               far) echo $$ > {pid}; trap 'exit 0' TERM; while :; do sleep 0.2; done;; \
               holder) while [ ! -e {release} ]; do sleep 0.1; done;; \
             esac",
            probe = f("probe"),
            log = f("log"),
            pid = f("pid"),
            release = f("release"),
        );
        ["sh", "-c", &script, role].map(String::from).to_vec()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.files.join("log")).unwrap_or_default()
    }

    /// `sera --name LOCK <args: options, then the wait> <job far>` on the far host.
    fn far_sera(&self, args: &[&str]) -> Child {
        let mut all: Vec<String> = vec!["--name".into(), LOCK.into()];
        all.extend(args.iter().map(|a| a.to_string()));
        all.extend(self.job("far"));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let mut cmd = self.far_setup.command(&all);
        self.far.in_far(&mut cmd).spawn().unwrap()
    }

    /// Start the far holder with `args` and wait until its job runs.
    fn far_holder(&self, args: &[&str]) -> Child {
        let mut sera = self.far_sera(args);
        let pid = self.files.join("pid");
        let started = wait_until(Duration::from_secs(20), || {
            std::fs::read_to_string(&pid).is_ok_and(|s| s.ends_with('\n'))
        });
        if !started {
            let _ = sera.kill();
            let out = Outcome::from(sera.wait_with_output().unwrap());
            panic!("the far job never started: {} {}", out.code, out.stderr);
        }
        sera
    }

    fn far_job_pid(&self) -> u32 {
        let text = std::fs::read_to_string(self.files.join("pid")).unwrap();
        text.trim().parse().unwrap()
    }

    /// `sera --name LOCK <wait> <job role>` here, over the unix socket.
    fn near_command(&self, wait: &str, role: &str) -> Command {
        let mut all: Vec<String> = vec!["--name".into(), LOCK.into(), wait.into()];
        all.extend(self.job(role));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        self.near.command(&all)
    }

    /// The client host of the session that holds LOCK, without the port;
    /// "NULL" when it is free.
    fn holder_host(&self) -> String {
        self.server.sql(&format!(
            "SELECT IFNULL((SELECT SUBSTRING_INDEX(HOST, ':', 1) FROM information_schema.PROCESSLIST \
             WHERE ID = IS_USED_LOCK('{LOCK}')), 'NULL')"
        ))
    }

    /// Whether no process still holds the probe (every job's tree is gone).
    fn probe_free(&self) -> bool {
        Command::new("flock")
            .arg("-n")
            .arg(self.files.join("probe"))
            .arg("true")
            .status()
            .unwrap()
            .success()
    }
}

/// Wait up to `deadline` for `child` to exit; kill it and panic if it does not.
fn exit_within(mut child: Child, deadline: Duration, what: &str) -> Outcome {
    if !wait_until(deadline, || child.try_wait().unwrap().is_some()) {
        let _ = child.kill();
        let out = Outcome::from(child.wait_with_output().unwrap());
        panic!(
            "{what} did not exit within {deadline:?}; stderr: {}",
            out.stderr
        );
    }
    Outcome::from(child.wait_with_output().unwrap())
}

#[test]
fn a_far_sera_holds_the_lock_over_the_wire_and_a_near_run_times_out_204() {
    let Some(rig) = rig() else { return };
    let mut far = rig.far_holder(&["10"]);
    assert_eq!(
        rig.holder_host(),
        FAR_ADDR,
        "the far host should hold the lock"
    );

    let near = Outcome::from(rig.near_command("1", "near").output().unwrap());
    assert_eq!(near.code, 204, "{}", near.stderr);
    assert!(!rig.log().contains("near"), "{}", rig.log());

    unsafe { libc::kill(far.id() as i32, libc::SIGTERM) };
    far.wait().unwrap();
}

#[test]
fn a_far_sera_cut_off_stops_its_job_with_206_by_default() {
    let Some(rig) = rig() else { return };
    let far = rig.far_holder(&["10"]);
    let job = rig.far_job_pid();

    rig.far.cut();
    let cut = Instant::now();
    // Default settings: the lease is 30 s from the last renewal sent, the
    // job must be dead 1 s before it ends, and SIGTERM comes kill_after
    // (10 s) before that: at most 19 s after the cut, plus scheduling on a
    // busy machine.
    let out = exit_within(far, Duration::from_secs(40), "the cut-off sera");
    let took = cut.elapsed();
    eprintln!("the cut-off sera stopped its job {took:?} after the cut");
    assert_eq!(out.code, 206, "{}", out.stderr);
    assert!(
        out.stderr.contains("sera: lost the lock: "),
        "{}",
        out.stderr
    );
    assert!(took < Duration::from_secs(24), "took {took:?}");
    assert!(!alive(job), "the job outlived sera");
    assert!(
        rig.probe_free(),
        "something of the far job's tree still runs"
    );
}

#[test]
fn a_cut_under_a_holder_frees_the_lock_within_35_s_after_its_job_stopped() {
    let Some(rig) = rig() else { return };
    let far = rig.far_holder(&["10"]);

    rig.far.cut();
    let cut = Instant::now();
    let near = rig.near_command("60", "near").spawn().unwrap();
    let near = exit_within(near, Duration::from_secs(70), "the near run");
    let took = cut.elapsed();
    eprintln!("the near run ended {took:?} after the cut");
    assert_eq!(near.code, 0, "{}", near.stderr);
    assert!(took <= LEASE + GRACE, "took {took:?}");
    let log = rig.log();
    assert!(log.contains("near ran"), "{log}");
    assert!(!log.contains("overlapped"), "the far job still ran: {log}");

    let far = exit_within(far, Duration::from_secs(10), "the cut-off sera");
    assert_eq!(far.code, 206, "{}", far.stderr);
}

#[test]
fn a_powered_off_holder_gives_the_lock_back_within_the_lease() {
    let Some(rig) = rig() else { return };
    let far = rig.far_holder(&["10"]);
    let job = rig.far_job_pid();

    // Power off: sera and its whole tree stop at once, then the wire goes.
    let frozen = rig.far.freeze();
    assert!(
        frozen.contains(&far.id()) && frozen.contains(&job),
        "{frozen:?}"
    );
    rig.far.cut();
    let cut = Instant::now();
    let near = rig.near_command("60", "near").spawn().unwrap();
    let near = exit_within(near, Duration::from_secs(70), "the near run");
    let took = cut.elapsed();
    eprintln!("the near run ended {took:?} after the holder froze");
    assert_eq!(near.code, 0, "{}", near.stderr);
    assert!(took <= LEASE + GRACE, "took {took:?}");
    // The frozen job still holds the probe: no lease can stop a paused
    // process (the fencing argument); what sera owes is the next point.
    assert!(rig.log().contains("near "), "{}", rig.log());

    // Resumed after its lease ran out, the far sera stops its job at once.
    rig.far.thaw();
    let thawed = Instant::now();
    let far = exit_within(far, Duration::from_secs(20), "the resumed sera");
    eprintln!(
        "the resumed sera stopped its job {:?} after SIGCONT",
        thawed.elapsed()
    );
    assert_eq!(far.code, 206, "{}", far.stderr);
    assert!(
        thawed.elapsed() < Duration::from_secs(3),
        "{:?}",
        thawed.elapsed()
    );
    assert!(!alive(job), "the job outlived sera");
}

#[test]
fn a_waiter_cut_off_in_get_lock_gives_the_granted_lock_back_within_the_lease() {
    let Some(rig) = rig() else { return };
    let holder = rig.near_command("0", "holder").spawn().unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || rig.log().contains("holder ran")),
        "the near holder never ran"
    );
    let mut far = rig.far_sera(&["600"]);
    let waiting = format!(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
         WHERE HOST LIKE '{FAR_ADDR}:%' AND STATE = 'User lock'"
    );
    assert!(
        wait_until(Duration::from_secs(20), || rig.server.sql(&waiting) == "1"),
        "the far sera never waited in GET_LOCK"
    );

    rig.far.cut();
    std::fs::write(rig.files.join("release"), "").unwrap();
    let holder = exit_within(holder, Duration::from_secs(10), "the near holder");
    assert_eq!(holder.code, 0, "{}", holder.stderr);
    let released = Instant::now();
    // The server grants the lock to the silent waiter, which never hears of it.
    assert!(
        wait_until(Duration::from_secs(5), || rig.holder_host() == FAR_ADDR),
        "the far waiter was not granted the lock"
    );
    let near = rig.near_command("60", "near").spawn().unwrap();
    let near = exit_within(near, Duration::from_secs(70), "the near run");
    let took = released.elapsed();
    eprintln!("the near run ended {took:?} after the holder let go");
    assert_eq!(near.code, 0, "{}", near.stderr);
    assert!(took <= LEASE + GRACE, "took {took:?}");
    let log = rig.log();
    assert!(log.contains("near ran") && !log.contains("far"), "{log}");

    far.kill().unwrap();
    far.wait().unwrap();
}
