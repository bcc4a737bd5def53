//! A box for untrusted notebook code: cgroup v1 `pids`, `memory` and `freezer` groups
//! that hold a kernel and everything it starts.
//!
//! A process group alone does not catch a child that calls `setsid()`, and root ignores
//! `RLIMIT_NPROC`, so a fork bomb is only stopped by `pids.max`. Killing goes freeze ->
//! SIGKILL every member -> thaw, so that nothing can fork while it is being killed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Limits for everything one kernel starts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Tasks (processes and threads) at once; rustc's own threads count too.
    pub max_tasks: u64,
    /// Memory in bytes, compiler included.
    pub memory_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_tasks: 512,
            memory_bytes: 4 << 30,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cgroup v1 controller `{0}` is not mounted at {CGROUP_ROOT}/{0}; grading needs it to contain submissions (run as root on a machine with cgroup v1, or in a container that grants it)")]
    NoController(&'static str),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One set of cgroups; dropping it kills every member and removes the groups.
#[derive(Debug)]
pub struct Sandbox {
    pids: PathBuf,
    memory: PathBuf,
    freezer: PathBuf,
}

fn write(path: &Path, value: &str) -> Result<(), SandboxError> {
    std::fs::write(path, value).map_err(|source| SandboxError::Io {
        path: path.to_owned(),
        source,
    })
}

impl Sandbox {
    /// Creates fresh groups named `conclab-<grader pid>-<random>` under each controller,
    /// after removing the groups of graders that died without cleaning up (a grader
    /// killed by SIGKILL runs no destructor).
    pub fn create(limits: Limits) -> Result<Sandbox, SandboxError> {
        for controller in CONTROLLERS {
            let root = Path::new(CGROUP_ROOT).join(controller);
            if !root.join("cgroup.procs").is_file() {
                return Err(SandboxError::NoController(controller));
            }
        }
        sweep_orphans();
        let name = format!(
            "conclab-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        );
        let [pids, memory, freezer] =
            CONTROLLERS.map(|controller| Path::new(CGROUP_ROOT).join(controller).join(&name));
        // Built before the directories exist, so that a failure half-way removes what
        // was already made.
        let sandbox = Sandbox {
            pids,
            memory,
            freezer,
        };
        for dir in sandbox.dirs() {
            std::fs::create_dir(dir).map_err(|source| SandboxError::Io {
                path: dir.clone(),
                source,
            })?;
        }
        write(
            &sandbox.pids.join("pids.max"),
            &limits.max_tasks.to_string(),
        )?;
        write(
            &sandbox.memory.join("memory.limit_in_bytes"),
            &limits.memory_bytes.to_string(),
        )?;
        // Without swap accounting this file is absent; the limit above still holds.
        let _ = std::fs::write(
            sandbox.memory.join("memory.memsw.limit_in_bytes"),
            limits.memory_bytes.to_string(),
        );
        Ok(sandbox)
    }

    fn dirs(&self) -> [&PathBuf; 3] {
        [&self.pids, &self.memory, &self.freezer]
    }

    /// The files a process writes `0` into to join the groups itself (before `exec`, so
    /// that nothing it forks escapes).
    fn join_files(&self) -> Vec<std::ffi::CString> {
        self.dirs()
            .iter()
            .map(|dir| {
                std::ffi::CString::new(
                    dir.join("cgroup.procs")
                        .into_os_string()
                        .into_encoded_bytes(),
                )
                .expect("cgroup paths have no NUL byte")
            })
            .collect()
    }

    /// Moves `pid` (and, from then on, all it forks) into the groups. Kernels join by
    /// themselves before `exec` ([`Sandbox::join_files`]); tests add plain commands.
    #[cfg(test)]
    pub fn add(&self, pid: u32) -> Result<(), SandboxError> {
        for dir in self.dirs() {
            write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// The processes in the box now.
    #[cfg(test)]
    pub fn members(&self) -> Vec<i32> {
        members_of(&self.pids)
    }

    /// Whether the memory limit was hit at some point.
    pub fn memory_limit_hit(&self) -> bool {
        std::fs::read_to_string(self.memory.join("memory.failcnt"))
            .ok()
            .and_then(|count| count.trim().parse::<u64>().ok())
            .is_some_and(|count| count > 0)
    }

    /// Whether a fork was refused for the task limit at some point.
    pub fn task_limit_hit(&self) -> bool {
        std::fs::read_to_string(self.pids.join("pids.events"))
            .ok()
            .and_then(|events| {
                events
                    .lines()
                    .find_map(|line| line.strip_prefix("max "))
                    .and_then(|count| count.trim().parse::<u64>().ok())
            })
            .is_some_and(|count| count > 0)
    }

    /// Kills every member, however many it forks meanwhile; returns how many it killed.
    pub fn kill_all(&self) -> usize {
        kill_members(&self.pids, &self.freezer)
    }
}

/// Starts `command` in a session of its own and, with a sandbox, inside its groups.
///
/// The child joins by itself between `fork` and `exec`: moved in from outside after it
/// started, it could fork first and leave a process outside the limits.
pub fn confine(command: &mut std::process::Command, sandbox: Option<&Sandbox>) {
    use std::os::unix::process::CommandExt;
    let join_files = sandbox.map(Sandbox::join_files).unwrap_or_default();
    // SAFETY: the hook runs in the forked child before exec and calls only
    // async-signal-safe functions (setsid, open, write, close) on paths built before the
    // fork; it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            for file in &join_files {
                let fd = libc::open(file.as_ptr(), libc::O_WRONLY);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
                if written != 1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

const CONTROLLERS: [&str; 3] = ["pids", "memory", "freezer"];

fn members_of(pids_group: &Path) -> Vec<i32> {
    std::fs::read_to_string(pids_group.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect()
}

fn kill_members(pids_group: &Path, freezer_group: &Path) -> usize {
    let state = freezer_group.join("freezer.state");
    let _ = std::fs::write(&state, "FROZEN");
    let mut killed = 0;
    let start = Instant::now();
    loop {
        let members = members_of(pids_group);
        if members.is_empty() || start.elapsed() > Duration::from_secs(10) {
            break;
        }
        for pid in members {
            // SAFETY: kill(2) only sends a signal; a pid that has gone is harmless.
            if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                killed += 1;
            }
        }
        // Frozen tasks only die once thawed.
        let _ = std::fs::write(&state, "THAWED");
        std::thread::sleep(Duration::from_millis(20));
        let _ = std::fs::write(&state, "FROZEN");
    }
    let _ = std::fs::write(&state, "THAWED");
    killed
}

/// Empties and removes one group under every controller. A task killed a moment ago
/// can take a while to leave (a busy machine, a task in uninterruptible I/O), so this
/// keeps killing and retrying for some seconds, then says what it could not remove.
fn remove_group(name: &str) {
    let [pids, memory, freezer] =
        CONTROLLERS.map(|controller| Path::new(CGROUP_ROOT).join(controller).join(name));
    let deadline = Instant::now() + Duration::from_secs(15);
    for dir in [&pids, &memory, &freezer] {
        loop {
            match std::fs::remove_dir(dir) {
                Ok(()) => break,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => break,
                Err(error) if Instant::now() > deadline => {
                    eprintln!(
                        "warning: could not remove {}: {error}; `rmdir` it once its tasks have exited",
                        dir.display()
                    );
                    break;
                }
                Err(_) => {
                    kill_members(&pids, &freezer);
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
}

/// Removes the groups of graders that are no longer running.
fn sweep_orphans() {
    let Ok(entries) = std::fs::read_dir(Path::new(CGROUP_ROOT).join("pids")) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(owner) = name
            .strip_prefix("conclab-")
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        // SAFETY: signal 0 only asks whether the process exists.
        let gone = unsafe { libc::kill(owner, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            remove_group(&name);
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.kill_all();
        if let Some(name) = self.pids.file_name() {
            remove_group(&name.to_string_lossy());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn members_are_counted_and_killed_even_after_setsid() {
        let Ok(sandbox) = Sandbox::create(Limits::default()) else {
            eprintln!("no cgroup v1 here; the grading tests cover the refusal message");
            return;
        };
        // A shell that starts a background child in a new session, then waits.
        let mut shell = Command::new("sh")
            .args(["-c", "sleep 0.3; setsid sleep 300 & sleep 300"])
            .spawn()
            .unwrap();
        sandbox.add(shell.id()).unwrap();
        let start = Instant::now();
        while sandbox.members().len() < 3 && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(sandbox.members().len() >= 3, "{:?}", sandbox.members());
        assert!(sandbox.kill_all() >= 3);
        assert!(sandbox.members().is_empty());
        let _ = shell.wait();
    }

    #[test]
    fn the_task_limit_stops_a_fork_bomb() {
        let Ok(sandbox) = Sandbox::create(Limits {
            max_tasks: 8,
            memory_bytes: 1 << 30,
        }) else {
            return;
        };
        let mut shell = Command::new("sh")
            .args([
                "-c",
                "sleep 0.3; for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 300 & done; wait",
            ])
            .spawn()
            .unwrap();
        sandbox.add(shell.id()).unwrap();
        std::thread::sleep(Duration::from_millis(900));
        assert!(sandbox.members().len() <= 8);
        assert!(sandbox.task_limit_hit());
        sandbox.kill_all();
        let _ = shell.wait();
    }

    #[test]
    fn groups_of_a_dead_grader_are_swept_and_own_groups_removed_on_drop() {
        let Ok(sandbox) = Sandbox::create(Limits::default()) else {
            return;
        };
        let own = sandbox.pids.clone();
        // A pid that surely ran and ended: a child we started and reaped.
        let mut child = Command::new("true").spawn().unwrap();
        let dead_pid = child.id();
        child.wait().unwrap();
        let orphan = format!("conclab-{dead_pid}-sweeptest");
        for controller in CONTROLLERS {
            std::fs::create_dir(Path::new(CGROUP_ROOT).join(controller).join(&orphan)).unwrap();
        }
        let second = Sandbox::create(Limits::default()).unwrap();
        for controller in CONTROLLERS {
            let path = Path::new(CGROUP_ROOT).join(controller).join(&orphan);
            assert!(!path.exists(), "{} was not swept", path.display());
        }
        // A live grader's groups (ours) are left alone by the sweep.
        assert!(own.exists());
        drop(sandbox);
        drop(second);
        assert!(!own.exists());
    }
}
