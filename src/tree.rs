//! The command's process tree, as `/proc` shows it.
//!
//! sera is a child subreaper, so everything the command starts (workers,
//! background jobs, daemons that double-fork or `setsid`) stays below sera:
//! a process whose parent dies is handed to sera, not to init. To stop such
//! a tree, or to say what a command left behind, sera must name its members,
//! and only `/proc` knows them. Reading it costs a few hundred microseconds,
//! so it is done only when something is left or must be stopped, never on
//! the common path of a command that exits alone.

use std::fs;

/// One process of the tree.
pub struct Process {
    pub pid: libc::pid_t,
    pub name: String,
    /// The state letter of `/proc/PID/stat`: R, S, D (uninterruptible), Z...
    pub state: char,
}

/// Every living process below sera, or None when `/proc` cannot tell: not
/// mounted, or mounted for another PID namespace (whose pids would be wrong
/// to signal).
pub fn below_sera() -> Option<Vec<Process>> {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    let seen_as = fs::read_link("/proc/self").ok()?;
    if seen_as.to_str()?.parse::<libc::pid_t>().ok()? != me {
        return None;
    }
    let mut all = Vec::new();
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        // A process may exit between the listing and the read: skip it.
        if let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) {
            if let Some(entry) = parse_stat(pid, &stat) {
                all.push(entry);
            }
        }
    }
    // Walk down from sera, generation by generation.
    let mut below = Vec::new();
    let mut parents = vec![me];
    while let Some(parent) = parents.pop() {
        let (children, rest): (Vec<_>, Vec<_>) =
            all.into_iter().partition(|(_, ppid)| *ppid == parent);
        all = rest;
        for (child, _) in children {
            parents.push(child.pid);
            below.push(child);
        }
    }
    below.retain(|p| p.state != 'Z');
    Some(below)
}

/// `PID (NAME) STATE PPID ...`; the name may hold spaces and parentheses,
/// so it ends at the last `)`.
fn parse_stat(pid: libc::pid_t, stat: &str) -> Option<(Process, libc::pid_t)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let mut rest = stat.get(close + 1..)?.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    let name = stat.get(open + 1..close)?.to_string();
    Some((Process { pid, name, state }, ppid))
}

/// `4242 (sleep), 4243 (python3)`, and how many more past the first five:
/// enough to find them with ps, short enough for one line of syslog.
pub fn list(processes: &[Process]) -> String {
    const SHOWN: usize = 5;
    let mut words: Vec<String> = processes
        .iter()
        .take(SHOWN)
        .map(|p| match p.state {
            'D' => format!("{} ({}, in uninterruptible sleep)", p.pid, p.name),
            _ => format!("{} ({})", p.pid, p.name),
        })
        .collect();
    if processes.len() > SHOWN {
        words.push(format!("and {} more", processes.len() - SHOWN));
    }
    words.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_spaces_and_parentheses() {
        let (p, ppid) = parse_stat(7, "7 (a (b) c) S 1 7 7 0 -1").unwrap();
        assert_eq!(
            (p.pid, p.name.as_str(), p.state, ppid),
            (7, "a (b) c", 'S', 1)
        );
        assert!(parse_stat(7, "7 (truncated").is_none());
    }

    #[test]
    fn long_lists_are_cut() {
        let many: Vec<Process> = (1..=7)
            .map(|pid| Process {
                pid,
                name: "w".into(),
                state: if pid == 1 { 'D' } else { 'S' },
            })
            .collect();
        assert_eq!(
            list(&many),
            "1 (w, in uninterruptible sleep), 2 (w), 3 (w), 4 (w), 5 (w), and 2 more"
        );
    }
}
