//! Directories of a test process: `TempDir`, and the names that let a later
//! process tell a dead one's directories from a live one's.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh directory under `std::env::temp_dir()` (sera-test-<pid>-<n>), removed on drop.
#[allow(dead_code)]
pub struct TempDir {
    pub path: PathBuf,
}

#[allow(dead_code)]
impl TempDir {
    pub fn new() -> TempDir {
        let path = std::env::temp_dir().join(unique_name("sera-test"));
        fs::create_dir(&path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.path.join(p)
    }
}

impl Default for TempDir {
    fn default() -> Self {
        TempDir::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Numbers directories uniquely within this process.
static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

/// "<prefix>-<pid>-<n>": unique among the directories of all live test
/// processes, and naming the process that owns it (see `owner_pid`).
pub(super) fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", unique_suffix())
}

/// "<pid>-<n>", for several names that belong together (see netns.rs).
pub(super) fn unique_suffix() -> String {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    format!("{}-{id}", std::process::id())
}

/// The pid in "sera-t-<pid>-<n>", "sera-test-<pid>-<n>" or "sera-template-tmp-<pid>-<n>".
pub(super) fn owner_pid(name: &str) -> Option<u32> {
    owner_pid_after(&["sera-t-", "sera-test-", "sera-template-tmp-"], name)
}

/// The pid in "<prefix><pid>-<n>", for one of `prefixes`.
pub(super) fn owner_pid_after(prefixes: &[&str], name: &str) -> Option<u32> {
    let rest = prefixes
        .iter()
        .find_map(|prefix| name.strip_prefix(prefix))?;
    let (pid, n) = rest.split_once('-')?;
    n.parse::<usize>().ok()?;
    pid.parse().ok()
}
