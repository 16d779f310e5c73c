//! A private three-node MariaDB Galera cluster on loopback: [`Cluster`].
//!
//! Why this exists: GET_LOCK is local to a node on Galera, and the lock that
//! works there (a lease row, certified at commit) must be shown against a real
//! cluster: exclusion across nodes, and a node that dies under a holder. So a
//! test starts its own cluster of three `mariadbd`s with the galera-4 provider,
//! each with its own datadir and free ports on 127.0.0.1 (client, group
//! communication, IST, SST), never touching the machine's own server.
//!
//! How it starts (about 10 s on an idle machine, see `Cluster::start`): node 1
//! bootstraps a new cluster (`--wsrep-new-cluster`) on a copy of the datadir
//! template that `mariadb.rs` makes, and gets the `sera` users and `sera_test`
//! from `setup.sql`; nodes 2 and 3 join together and receive node 1's datadir
//! by rsync state transfer (one after the other: a donor serves one joiner at
//! a time), users included. The cluster is ready when every node reports
//! `wsrep_cluster_size` 3 and `Synced`.
//!
//! As root the nodes run as the `mysql` user, as a packaged server does: the
//! state transfer scripts that mariadbd starts must write the joiner's datadir.
//! The uid is set before exec (not with `--user`, whose setuid would clear the
//! parent-death signal), so the nodes die with the test process like every
//! other server of `mariadb.rs`, through its spawner thread.
//!
//! Small on purpose: the options of `mariadb.cnf` (8 MB buffer pool) plus a
//! 32 MB gcache per node.

use std::ffi::CString;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::mariadb::{
    copy_dir, is_root, mariadb_client, mariadbd, remove_stale_dirs_once, server_dir,
    server_options, signal, spawn_tied_to_process, tail, template_dir, SETUP_SQL,
};
use super::port::free_port;

const PROVIDER: &str = "/usr/lib/galera/libgalera_smm.so";

/// How long the whole cluster may take to be ready (measured: about 10 s).
const START_DEADLINE: Duration = Duration::from_secs(90);

/// A three-node Galera cluster on 127.0.0.1; each node is killed and its
/// directory removed on drop.
#[allow(dead_code)]
pub struct Cluster {
    nodes: Vec<Node>,
    /// The cluster's name and gcomm:// address, for a node that rejoins.
    name: String,
    address: String,
    /// How long `start` took, for the record.
    pub started_in: Duration,
}

/// One node of a [`Cluster`].
#[allow(dead_code)]
pub struct Node {
    child: Option<Child>,
    /// Holds `data/`, `tmp/`, `mysqld.sock`, `err.log`, `mariadbd.out`.
    dir: PathBuf,
    port: u16,
    galera_port: u16,
    ist_port: u16,
    sst_port: u16,
}

#[allow(dead_code)]
impl Cluster {
    /// Start three nodes and wait until all are synced members of one cluster.
    /// Panics with the failing node's err.log if that does not happen in time.
    pub fn start() -> Cluster {
        assert!(
            Path::new(PROVIDER).exists(),
            "{PROVIDER} not found: install it with `apt-get install galera-4` \
             (scripts/test.sh does)"
        );
        remove_stale_dirs_once();
        // A free port may be taken by someone else before a node binds it; then
        // start over on fresh ports.
        let mut attempt = 1;
        loop {
            match Cluster::try_start() {
                Ok(cluster) => return cluster,
                Err(why) if why.contains("Address already in use") && attempt < 3 => {
                    attempt += 1;
                }
                Err(why) => panic!("cannot start a Galera cluster: {why}"),
            }
        }
    }

    /// Node `i`, counted from 1 as people count them ("node 1").
    pub fn node(&self, i: usize) -> &Node {
        assert!((1..=3).contains(&i), "nodes are 1, 2 and 3, not {i}");
        &self.nodes[i - 1]
    }

    /// SIGKILL node `i` (a crash, a power loss) and reap it. The others keep
    /// running, but every write on them stalls until they have evicted it:
    /// `evs.suspect_timeout` (5 s) and a view change, 6.2 to 6.5 s measured.
    pub fn kill(&mut self, i: usize) {
        self.node(i);
        let node = &mut self.nodes[i - 1];
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start again every node that was killed, and wait until all three are
    /// synced again. A node killed mid-write rejoins by a state transfer
    /// from a survivor (rsync), which takes a few seconds.
    pub fn restart_killed(&mut self) {
        let started = Instant::now();
        let (name, address) = (self.name.clone(), self.address.clone());
        for (i, node) in self.nodes.iter_mut().enumerate() {
            if node.child.is_none() {
                let _ = fs::remove_file(node.socket());
                node.launch(&name, &address, i + 1, false)
                    .unwrap_or_else(|e| panic!("cannot restart node {}: {e}", i + 1));
            }
        }
        for node in &mut self.nodes {
            node.wait_until_synced(started)
                .unwrap_or_else(|e| panic!("a restarted node did not rejoin: {e}"));
        }
    }

    /// The client ports of all nodes, node 1 first (e.g. for a failover relay).
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|node| node.port).collect()
    }

    fn try_start() -> Result<Cluster, String> {
        let started = Instant::now();
        let mut nodes: Vec<Node> = (0..3).map(|_| Node::new()).collect();
        let members: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.galera_port))
            .collect();
        let address = format!("gcomm://{}", members.join(","));
        // Unique per cluster: two clusters that found each other's ports would
        // still refuse to merge.
        let name = nodes[0]
            .dir
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let first = &mut nodes[0];
        first.launch(&name, &address, 1, true)?;
        first.wait_for_log("ready for connections", started)?;
        first.try_sql(SETUP_SQL)?;
        for (i, node) in nodes.iter_mut().enumerate().skip(1) {
            node.launch(&name, &address, i + 1, false)?;
        }
        for node in &mut nodes {
            node.wait_until_synced(started)?;
        }
        Ok(Cluster {
            nodes,
            name,
            address,
            started_in: started.elapsed(),
        })
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[allow(dead_code)]
impl Node {
    /// DSN (go-sql-driver syntax) for user `sera` over TCP.
    pub fn dsn(&self) -> String {
        format!("sera:sera-pass@tcp(127.0.0.1:{})/", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The pid of the node's mariadbd. Panics if it was killed.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("node was killed").id()
    }

    /// Run SQL as root through the `mariadb` client over the node's socket
    /// (`-N -B -e`) and return its trimmed stdout. Panics on failure.
    pub fn sql(&self, query: &str) -> String {
        self.try_sql(query)
            .unwrap_or_else(|e| panic!("SQL failed: {query}\n{e}"))
    }

    /// The same, returning the client's error (e.g. `ERROR 1047 ...`) instead.
    pub fn try_sql(&self, query: &str) -> Result<String, String> {
        let output = Command::new(mariadb_client())
            .arg("--no-defaults")
            .arg("--user=root")
            .arg(format!("--socket={}", self.socket().display()))
            .args(["-N", "-B", "-e", query])
            .output()
            .map_err(|e| format!("cannot run the mariadb client: {e}"))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
        }
    }
}

impl Node {
    /// A directory with a copy of the template as its datadir, and free ports.
    fn new() -> Node {
        let dir = server_dir();
        fs::create_dir_all(dir.join("tmp"))
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let data = dir.join("data");
        copy_dir(template_dir(), &data)
            .unwrap_or_else(|e| panic!("cannot copy the template to {}: {e}", data.display()));
        if is_root() {
            let (uid, gid) = mysql_user();
            chown_tree(&dir, uid, gid);
        }
        Node {
            child: None,
            dir,
            port: free_port(),
            galera_port: free_port(),
            ist_port: free_port(),
            sst_port: free_port(),
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("mysqld.sock")
    }

    fn launch(
        &mut self,
        cluster: &str,
        address: &str,
        number: usize,
        bootstrap: bool,
    ) -> Result<(), String> {
        let dir = &self.dir;
        let provider_options = format!(
            "gmcast.listen_addr=tcp://127.0.0.1:{galera};ist.recv_addr=127.0.0.1:{ist};\
             gcache.size=32M",
            galera = self.galera_port,
            ist = self.ist_port,
        );
        let mut cmd = Command::new(mariadbd());
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .arg(format!("--tmpdir={}", dir.join("tmp").display()))
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!("--pid-file={}", dir.join("mysqld.pid").display()))
            .arg(format!("--log-error={}", dir.join("err.log").display()))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--port={}", self.port))
            .args(server_options())
            .arg("--wsrep-on=ON")
            .arg(format!("--wsrep-provider={PROVIDER}"))
            .arg(format!("--wsrep-cluster-name={cluster}"))
            .arg(format!("--wsrep-node-name=node{number}"))
            .arg(format!("--wsrep-cluster-address={address}"))
            .arg(format!(
                "--wsrep-node-address=127.0.0.1:{}",
                self.galera_port
            ))
            .arg(format!("--wsrep-provider-options={provider_options}"))
            .arg("--wsrep-sst-method=rsync")
            .arg(format!(
                "--wsrep-sst-receive-address=127.0.0.1:{}",
                self.sst_port
            ))
            // What Galera requires of every node.
            .arg("--binlog-format=ROW")
            .arg("--innodb-autoinc-lock-mode=2")
            .arg("--default-storage-engine=InnoDB");
        if bootstrap {
            cmd.arg("--wsrep-new-cluster");
        }
        if is_root() {
            let (uid, gid) = mysql_user();
            cmd.uid(uid).gid(gid);
        }
        let out = fs::File::create(dir.join("mariadbd.out")).expect("create mariadbd.out");
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup mariadbd.out"))
            .stderr(out);
        let child = spawn_tied_to_process(cmd)
            .map_err(|e| format!("cannot run {}: {e}", mariadbd().display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Wait until err.log contains `text`, or fail with the log if the node
    /// exits or the cluster's deadline passes.
    fn wait_for_log(&mut self, text: &str, started: Instant) -> Result<(), String> {
        loop {
            let log = fs::read_to_string(self.dir.join("err.log")).unwrap_or_default();
            if log.contains(text) {
                return Ok(());
            }
            self.check_running(started)?;
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait until this node counts three members and is `Synced`.
    fn wait_until_synced(&mut self, started: Instant) -> Result<(), String> {
        let query = "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS \
                     WHERE VARIABLE_NAME IN ('WSREP_CLUSTER_SIZE', 'WSREP_LOCAL_STATE_COMMENT') \
                     ORDER BY VARIABLE_NAME";
        loop {
            // A joiner opens its socket only once its state transfer is done.
            if self.socket().exists() && self.try_sql(query).as_deref() == Ok("3\nSynced") {
                return Ok(());
            }
            self.check_running(started)?;
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn check_running(&mut self, started: Instant) -> Result<(), String> {
        let child = self.child.as_mut().expect("node launched");
        let exited = child.try_wait().expect("waitpid mariadbd");
        let late = started.elapsed() > START_DEADLINE;
        if exited.is_none() && !late {
            return Ok(());
        }
        let why = match exited {
            Some(status) => format!("mariadbd exited with {status}"),
            None => {
                signal(child.id(), libc::SIGKILL);
                let _ = child.wait();
                format!("not synced within {START_DEADLINE:?}")
            }
        };
        self.child = None;
        Err(format!(
            "node in {}: {why}\n--- mariadbd.out ---\n{}\n--- err.log (tail) ---\n{}",
            self.dir.display(),
            tail(&self.dir.join("mariadbd.out"), 20),
            tail(&self.dir.join("err.log"), 60),
        ))
    }
}

/// The uid and gid of the `mysql` user, which the mariadb-server package creates.
fn mysql_user() -> (u32, u32) {
    let name = CString::new("mysql").unwrap();
    // SAFETY: getpwnam(3) returns NULL or a pointer to a static entry that we
    // read at once, before any other call that could overwrite it.
    unsafe {
        let entry = libc::getpwnam(name.as_ptr());
        assert!(
            !entry.is_null(),
            "no user `mysql`: the Galera nodes run as it (apt-get install mariadb-server creates it)"
        );
        ((*entry).pw_uid, (*entry).pw_gid)
    }
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("cannot chown {}: {e}", path.display()));
    if path.is_dir() && !path.is_symlink() {
        for entry in fs::read_dir(path).expect("read_dir") {
            chown_tree(&entry.expect("dir entry").path(), uid, gid);
        }
    }
}
