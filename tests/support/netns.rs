//! A far host for partition tests: [`FarHost`], network namespaces joined by
//! a wire that a test can cut.
//!
//! Why this exists: a relay inside the test (relay.rs) can stall a link, but
//! the kernel of each end still sees a live peer, and nothing of a real
//! partition (a host that goes silent while its TCP sessions stay open on
//! the server) can be shown on loopback. So a test gets three namespaces of
//! its own: `sera-db-<pid>-<n>`, where a private MariaDB listens on
//! [`DB_ADDR`] (see `Server::start_in_netns`); `sera-far-<pid>-<n>`, the far
//! host at [`FAR_ADDR`], where a sera runs through [`FarHost::in_far`]; and
//! `sera-wire-<pid>-<n>`, a bridge with one veth pair to each, which is the
//! network between them. The server's unix socket in the temp dir stays
//! reachable from the test's own namespace (a pathname socket belongs to the
//! file system, not to a network namespace), so the test queries the server,
//! and runs a "near" sera, over it.
//!
//! Why the cut is the bridge going down: its ports stop forwarding and drop
//! every frame, so both directions go silent while neither host's own stack
//! changes at all (its interface, carrier, address and routes stay as they
//! were): no RST, no ICMP, no local error, as when a switch or a cable
//! between two hosts dies. A link set down at one end, a blackhole route or
//! an OUTPUT drop would tell that end's kernel, and `tc netem` and nft are
//! not available on every kernel and machine this runs on; `ip` is.
//!
//! The addresses exist only inside these namespaces, never in the test's
//! own, so the same /30 serves every far host at once. Namespaces are
//! deleted on drop; those of a test process that died are deleted by the
//! next one that makes a far host, recognised by the pid in their name.
//!
//! Needs root and `ip` (iproute2). Without them a test skips with one line
//! on stderr, unless `SERA_REQUIRE_NETNS=1` (CI), where it fails instead.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::tempdir::{owner_pid_after, unique_suffix};

/// The server's address, in the db namespace.
#[allow(dead_code)]
pub const DB_ADDR: &str = "10.213.0.1";
/// The far host's address, in the far namespace.
#[allow(dead_code)]
pub const FAR_ADDR: &str = "10.213.0.2";

const PREFIXES: [&str; 3] = ["sera-db-", "sera-far-", "sera-wire-"];

/// Three namespaces: the server's (`db`), the far host's (`far`), and the
/// wire between them. Deleted on drop.
#[allow(dead_code)]
pub struct FarHost {
    pub db: String,
    pub far: String,
    wire: String,
}

#[allow(dead_code)]
impl FarHost {
    /// Make the namespaces and the wire, up. None, after one "skipped: ..."
    /// line on stderr, when the machine cannot (not root, no `ip`, no
    /// namespaces); with `SERA_REQUIRE_NETNS=1` that panics instead.
    pub fn new() -> Option<FarHost> {
        match FarHost::try_new() {
            Ok(host) => Some(host),
            Err(why) if std::env::var("SERA_REQUIRE_NETNS").as_deref() == Ok("1") => {
                panic!("SERA_REQUIRE_NETNS=1, but no far host: {why}")
            }
            Err(why) => {
                eprintln!("skipped: this test needs a far host in a network namespace: {why}");
                None
            }
        }
    }

    fn try_new() -> Result<FarHost, String> {
        // SAFETY: geteuid(2) cannot fail and touches no memory.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root".into());
        }
        if ip_program().is_none() {
            return Err("`ip` (iproute2) not found".into());
        }
        remove_stale_namespaces_once();
        let suffix = unique_suffix();
        let host = FarHost {
            db: format!("sera-db-{suffix}"),
            far: format!("sera-far-{suffix}"),
            wire: format!("sera-wire-{suffix}"),
        };
        // From here on, Drop deletes whatever of it was made.
        for ns in [&host.db, &host.far, &host.wire] {
            ip(&["netns", "add", ns])?;
        }
        let (db, far, wire) = (&host.db, &host.far, &host.wire);
        let db_cidr = format!("{DB_ADDR}/30");
        let far_cidr = format!("{FAR_ADDR}/30");
        let steps: [&[&str]; 12] = [
            &["-n", wire, "link", "add", "br0", "type", "bridge"],
            // Each host's end is eth0 in its own namespace; the wire's ends
            // are ports of the bridge.
            &[
                "-n", wire, "link", "add", "to-db", "type", "veth", "peer", "name", "eth0",
                "netns", db,
            ],
            &[
                "-n", wire, "link", "add", "to-far", "type", "veth", "peer", "name", "eth0",
                "netns", far,
            ],
            &["-n", wire, "link", "set", "to-db", "master", "br0", "up"],
            &["-n", wire, "link", "set", "to-far", "master", "br0", "up"],
            &["-n", wire, "link", "set", "br0", "up"],
            &["-n", db, "addr", "add", &db_cidr, "dev", "eth0"],
            &["-n", db, "link", "set", "eth0", "up"],
            &["-n", db, "link", "set", "lo", "up"],
            &["-n", far, "addr", "add", &far_cidr, "dev", "eth0"],
            &["-n", far, "link", "set", "eth0", "up"],
            &["-n", far, "link", "set", "lo", "up"],
        ];
        for step in steps {
            ip(step)?;
        }
        Ok(host)
    }

    /// Make `cmd` run in the far host's namespace (it enters it between fork
    /// and exec, so the child's pid is the program's own: it can be
    /// signalled, stopped and waited for like any child).
    pub fn in_far<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        enter(cmd, &self.far)
    }

    /// Make `cmd` run in the server's namespace (e.g. `ss` to read the
    /// server's sockets).
    pub fn in_db<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        enter(cmd, &self.db)
    }

    /// Cut the wire: from now on every frame between the hosts is dropped,
    /// silently, both ways.
    pub fn cut(&self) {
        ip(&["-n", &self.wire, "link", "set", "br0", "down"]).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Mend the wire: frames flow again at once (the bridge runs no STP).
    pub fn heal(&self) {
        ip(&["-n", &self.wire, "link", "set", "br0", "up"]).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Freeze the far host, as a paused VM or a host that lost power: SIGSTOP
    /// every process in its namespace, again until a pass finds none that
    /// runs (one may fork meanwhile). Returns their pids.
    pub fn freeze(&self) -> Vec<u32> {
        let mut frozen: Vec<u32> = Vec::new();
        loop {
            let new: Vec<u32> = self
                .far_processes()
                .into_iter()
                .filter(|pid| !frozen.contains(pid))
                .collect();
            if new.is_empty() {
                return frozen;
            }
            for pid in new {
                signal(pid, libc::SIGSTOP);
                frozen.push(pid);
            }
        }
    }

    /// SIGCONT every process in the far namespace.
    pub fn thaw(&self) {
        for pid in self.far_processes() {
            signal(pid, libc::SIGCONT);
        }
    }

    /// The processes in the far namespace, by their /proc/PID/ns/net.
    pub fn far_processes(&self) -> Vec<u32> {
        use std::os::unix::fs::MetadataExt;
        let Ok(ns) = fs::metadata(Path::new("/run/netns").join(&self.far)) else {
            return Vec::new();
        };
        let Ok(entries) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| {
                let pid = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
                let net = fs::metadata(entry.path().join("ns/net")).ok()?;
                (net.dev() == ns.dev() && net.ino() == ns.ino()).then_some(pid)
            })
            .collect()
    }
}

impl Drop for FarHost {
    fn drop(&mut self) {
        // Nothing of the far host outlives the test, even when it failed
        // with a sera frozen or still waiting there (SIGKILL ends stopped
        // processes too).
        for pid in self.far_processes() {
            signal(pid, libc::SIGKILL);
        }
        // Deleting a namespace deletes the veth ends in it, and so their
        // peers. One that still has processes (a server not yet stopped)
        // loses its name now and goes when they have exited.
        for ns in [&self.wire, &self.far, &self.db] {
            if Path::new("/run/netns").join(ns).exists() {
                if let Err(e) = ip(&["netns", "delete", ns]) {
                    eprintln!("{e}");
                }
            }
        }
    }
}

/// Make `cmd` enter the network namespace `name` (of `ip netns`) between fork
/// and exec. Panics if there is no such namespace.
pub(super) fn enter<'a>(cmd: &'a mut Command, name: &str) -> &'a mut Command {
    let path = Path::new("/run/netns").join(name);
    // Opened close-on-exec: the program itself does not inherit it.
    let ns: OwnedFd = fs::File::open(&path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()))
        .into();
    // SAFETY: the closure runs between fork and exec and only calls setns(2),
    // which is async-signal-safe; it allocates nothing on success.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Run `ip ARGS`; the error names the command and says what ip said.
fn ip(args: &[&str]) -> Result<(), String> {
    let program = ip_program().ok_or("`ip` (iproute2) not found")?;
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn ip_program() -> Option<&'static Path> {
    static PATH: OnceLock<Option<PathBuf>> = OnceLock::new();
    PATH.get_or_init(|| {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
            .map(|dir| dir.join("ip"))
            .find(|candidate| candidate.is_file())
    })
    .as_deref()
}

/// Delete the namespaces of test processes that no longer exist. Runs once
/// per process, before its first far host.
fn remove_stale_namespaces_once() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let Ok(entries) = fs::read_dir("/run/netns") else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = owner_pid_after(&PREFIXES, &name) else {
                continue;
            };
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = ip(&["netns", "delete", &name]);
            }
        }
    });
}
