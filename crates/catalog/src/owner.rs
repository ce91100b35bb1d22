//! Which process owns a running run, so that a run left `running` by a process that died can be
//! told from one that is still going.
//!
//! An owner is `host/pid/start`, where `start` is the process's start time in clock ticks since
//! boot (Linux `/proc/<pid>/stat`, field 22), which tells a live process from a later one that
//! reused its pid.

/// The owner string of this process.
pub fn current() -> String {
    let pid = std::process::id();
    format!(
        "{}/{pid}/{}",
        hostname(),
        start_time(pid).map_or_else(|| "?".to_string(), |t| t.to_string())
    )
}

/// Whether `owner` is certainly dead: it ran on this host and no process with its pid and start
/// time exists now. Owners from other hosts, or that cannot be checked, are assumed alive.
pub fn is_dead(owner: &str) -> bool {
    let mut parts = owner.rsplitn(3, '/');
    let (Some(start), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    if host != hostname() || start == "?" {
        return false;
    }
    let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
        return false;
    };
    if !std::path::Path::new("/proc/self/stat").exists() {
        return false;
    }
    start_time(pid) != Some(start)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Start time of a process in clock ticks since boot (Linux only).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: skip past it.
    let rest = &stat[stat.rfind(')')? + 2..];
    // `rest` starts at field 3 (state); the start time is field 22.
    rest.split_whitespace().nth(22 - 3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_finished_one_is_dead() {
        let me = current();
        assert!(!is_dead(&me), "{me}");
        if start_time(std::process::id()).is_some() {
            let mut child = std::process::Command::new("true").spawn().unwrap();
            let pid = child.id();
            let start = start_time(pid);
            child.wait().unwrap();
            if let Some(start) = start {
                assert!(is_dead(&format!("{}/{pid}/{start}", hostname())));
            }
        }
        assert!(!is_dead("elsewhere/1/1"));
        assert!(!is_dead("garbage"));
    }
}
