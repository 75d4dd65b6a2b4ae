//! `workers.count: auto`: how many CPUs this process may really use.
//!
//! That is the CPUs in its scheduler affinity mask (`sched_getaffinity(2)`,
//! what `taskset` and systemd's `CPUAffinity=` set), capped by the CPU
//! bandwidth quota of its cgroup (`CPUQuota=` in systemd, `--cpus` in
//! containers): cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us` /
//! `cpu.cfs_period_us`, on the process's own cgroup and every ancestor. A
//! quota of 1.5 CPUs rounds up to 2 workers: the second one still gets
//! half a core. Never less than 1.

use std::path::{Path, PathBuf};

/// What `auto` resolves to, with its parts for `hawkey check` to explain.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Available {
    pub(crate) affinity: usize,
    pub(crate) quota: Option<f64>,
    pub(crate) count: usize,
}

/// Reads the affinity mask and the cgroup quota of this process.
pub(crate) fn available() -> Available {
    let affinity = affinity_cpus().unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let quota = cgroup_quota(Path::new("/proc/self/cgroup"), Path::new("/sys/fs/cgroup"));
    Available {
        affinity,
        quota,
        count: auto_count(affinity, quota),
    }
}

/// `min(affinity, ceil(quota))`, at least 1.
pub(crate) fn auto_count(affinity: usize, quota: Option<f64>) -> usize {
    let by_quota = quota
        .map(|q| q.ceil().max(1.0) as usize)
        .unwrap_or(usize::MAX);
    affinity.min(by_quota).max(1)
}

fn affinity_cpus() -> Option<usize> {
    let set = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).ok()?;
    let n = (0..nix::sched::CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .count();
    (n > 0).then_some(n)
}

/// cgroup v2 `cpu.max`: `"max 100000"` (no limit) or `"150000 100000"` (1.5 CPUs).
pub(crate) fn quota_from_cpu_max(text: &str) -> Option<f64> {
    let mut parts = text.split_whitespace();
    let quota = parts.next()?;
    let period: f64 = parts.next().unwrap_or("100000").parse().ok()?;
    if quota == "max" || period <= 0.0 {
        return None;
    }
    let quota: f64 = quota.parse().ok()?;
    (quota > 0.0).then_some(quota / period)
}

/// cgroup v1: `cpu.cfs_quota_us` is -1 when unlimited.
pub(crate) fn quota_from_cfs(quota_us: &str, period_us: &str) -> Option<f64> {
    let quota: i64 = quota_us.trim().parse().ok()?;
    let period: i64 = period_us.trim().parse().ok()?;
    (quota > 0 && period > 0).then_some(quota as f64 / period as f64)
}

/// The smallest quota on the cgroup path of this process, v2 or v1.
fn cgroup_quota(proc_cgroup: &Path, root: &Path) -> Option<f64> {
    let membership = std::fs::read_to_string(proc_cgroup).ok()?;
    let mut best: Option<f64> = None;
    let mut consider = |q: Option<f64>| {
        if let Some(q) = q {
            best = Some(best.map_or(q, |b| b.min(q)));
        }
    };
    for line in membership.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let path = path.trim_start_matches('/');
        if controllers.is_empty() {
            for dir in ancestors(&root.join(path), root) {
                consider(
                    std::fs::read_to_string(dir.join("cpu.max"))
                        .ok()
                        .and_then(|t| quota_from_cpu_max(&t)),
                );
            }
        } else if controllers.split(',').any(|c| c == "cpu") {
            for mount in ["cpu,cpuacct", "cpu", "cpuacct,cpu"] {
                let mount = root.join(mount);
                for dir in ancestors(&mount.join(path), &mount) {
                    let quota = std::fs::read_to_string(dir.join("cpu.cfs_quota_us"));
                    let period = std::fs::read_to_string(dir.join("cpu.cfs_period_us"));
                    if let (Ok(q), Ok(p)) = (quota, period) {
                        consider(quota_from_cfs(&q, &p));
                    }
                }
            }
        }
    }
    best
}

/// `dir` and its parents up to and including `root`.
fn ancestors(dir: &Path, root: &Path) -> Vec<PathBuf> {
    dir.ancestors()
        .take_while(|d| d.starts_with(root))
        .map(Path::to_path_buf)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_caps_affinity_rounding_up() {
        assert_eq!(auto_count(8, Some(1.5)), 2);
        assert_eq!(auto_count(2, Some(4.0)), 2);
        assert_eq!(auto_count(4, None), 4);
        assert_eq!(auto_count(4, Some(0.1)), 1);
        assert_eq!(auto_count(0, None), 1);
    }

    #[test]
    fn cpu_max_parses_limits_and_max() {
        assert_eq!(quota_from_cpu_max("max 100000\n"), None);
        assert_eq!(quota_from_cpu_max("150000 100000\n"), Some(1.5));
        assert_eq!(quota_from_cpu_max("garbage"), None);
        assert_eq!(quota_from_cfs("-1\n", "100000\n"), None);
        assert_eq!(quota_from_cfs("200000\n", "100000\n"), Some(2.0));
    }

    #[test]
    fn the_smallest_quota_on_the_cgroup_path_wins() {
        let root = std::env::temp_dir().join(format!("hawkey-cpu-{}", std::process::id()));
        let leaf = root.join("system.slice/hawkey.service");
        std::fs::create_dir_all(&leaf).unwrap();
        std::fs::write(root.join("system.slice/cpu.max"), "300000 100000\n").unwrap();
        std::fs::write(leaf.join("cpu.max"), "max 100000\n").unwrap();
        let proc_cgroup = root.join("cgroup");
        std::fs::write(&proc_cgroup, "0::/system.slice/hawkey.service\n").unwrap();
        assert_eq!(cgroup_quota(&proc_cgroup, &root), Some(3.0));
        std::fs::write(leaf.join("cpu.max"), "50000 100000\n").unwrap();
        assert_eq!(cgroup_quota(&proc_cgroup, &root), Some(0.5));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
