//! Grading on a real Slurm cluster of one node: a 2-task job array over 4 submissions (one
//! of each kind, two to a task), each task taking its part with `--shard auto`, then
//! `merge`, gives the same gradebook as one local run with `--jobs 2`.
//!
//! The test installs Debian's `slurm-wlm` and `munge` when they are missing (it runs as
//! root, as CI does), starts munged, and runs slurmctld and slurmd on this machine with a
//! configuration of its own on free ports, which it stops at the end. The kernel must be
//! registered first (`conclab-kernel setup`), as for the other grading tests.

#[path = "support/paths.rs"]
mod paths;

use paths::{fixtures, free_port, repo};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|out| out.status.success())
}

fn install_slurm() {
    if have("slurmctld") && have("munged") {
        return;
    }
    let status = Command::new("sh")
        .args([
            "-c",
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge",
        ])
        .status()
        .unwrap();
    assert!(status.success(), "apt-get install slurm-wlm munge failed");
}

fn start_munge() {
    let running = Command::new("pgrep").arg("-x").arg("munged").status();
    if running.is_ok_and(|status| status.success()) {
        return;
    }
    let _ = std::fs::create_dir_all("/run/munge");
    // --force: root starts it, and the log folder's owner does not matter for a test.
    let status = Command::new("munged").arg("--force").status().unwrap();
    assert!(status.success(), "munged did not start");
}

/// slurmctld and slurmd for this test; stopped when dropped, whatever happened.
struct Cluster {
    dir: PathBuf,
    conf: PathBuf,
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        for sub in ["state", "spool", "log"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let host = String::from_utf8(Command::new("hostname").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_owned();
        let d = dir.display();
        let conf = dir.join("slurm.conf");
        std::fs::write(
            &conf,
            format!(
                "ClusterName=conclab-test\nSlurmctldHost={host}\nSlurmUser=root\nSlurmdUser=root\n\
                 AuthType=auth/munge\nStateSaveLocation={d}/state\nSlurmdSpoolDir={d}/spool\n\
                 SlurmctldPidFile={d}/slurmctld.pid\nSlurmdPidFile={d}/slurmd.pid\n\
                 SlurmctldLogFile={d}/log/slurmctld.log\nSlurmdLogFile={d}/log/slurmd.log\n\
                 SlurmctldPort={}\nSlurmdPort={}\nProctrackType=proctrack/linuxproc\n\
                 TaskPlugin=task/none\nSwitchType=switch/none\nMpiDefault=none\nReturnToService=2\n\
                 SchedulerType=sched/builtin\nSelectType=select/cons_tres\nSelectTypeParameters=CR_Core\n\
                 JobCompType=jobcomp/none\nAccountingStorageType=accounting_storage/none\n\
                 NodeName={host} CPUs=2 RealMemory=16000 State=UNKNOWN\n\
                 PartitionName=grading Nodes={host} Default=YES MaxTime=INFINITE State=UP\n",
                free_port(),
                free_port()
            ),
        )
        .unwrap();
        let cluster = Cluster {
            dir: dir.to_owned(),
            conf,
        };
        for daemon in ["slurmctld", "slurmd"] {
            // -c: start clean, without the state of an earlier run.
            let status = Command::new(daemon)
                .arg("-c")
                .env("SLURM_CONF", &cluster.conf)
                .status()
                .unwrap();
            assert!(status.success(), "{daemon} did not start");
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = cluster
                .command("sinfo")
                .args(["-h", "-o", "%t"])
                .output()
                .unwrap();
            let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if state == "idle" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the node is `{state}`, not idle, after 60 s:\n{}",
                std::fs::read_to_string(dir.join("log/slurmctld.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        cluster
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.env("SLURM_CONF", &self.conf);
        command
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for pid_file in ["slurmd.pid", "slurmctld.pid"] {
            if let Ok(pid) = std::fs::read_to_string(self.dir.join(pid_file)) {
                let _ = Command::new("kill").arg(pid.trim()).status();
            }
        }
    }
}

/// The gradebook without its `seconds` column, which differs from run to run.
fn scores(gradebook: &Path) -> String {
    let text = std::fs::read_to_string(gradebook)
        .unwrap_or_else(|error| panic!("{}: {error}", gradebook.display()));
    text.lines()
        .map(|line| line.rsplit_once(',').map_or(line, |(scores, _)| scores))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_slurm_array_grades_like_one_local_run() {
    install_slurm();
    start_munge();
    let tag = format!("slurm-{}", std::process::id());
    let base = std::env::temp_dir().join(format!("conclab-{tag}"));
    let _ = std::fs::remove_dir_all(&base);
    let inbox = base.join("submissions");
    std::fs::create_dir_all(&inbox).unwrap();
    let kinds = ["full_marks", "wrong_answer", "panic", "exit_early"];
    for i in 0..4 {
        let kind = kinds[i % kinds.len()];
        std::fs::copy(
            fixtures().join(format!("submissions/{kind}.ipynb")),
            inbox.join(format!("student{i}-{kind}.ipynb")),
        )
        .unwrap();
    }
    let source = fixtures().join("assignment.ipynb");
    let kernel = env!("CARGO_BIN_EXE_conclab-kernel");

    let started = Instant::now();
    let local = base.join("local");
    let out = Command::new(kernel)
        .args(["grade", "--jobs", "2", "--timeout", "30", "--source"])
        .arg(&source)
        .arg("--output")
        .arg(&local)
        .arg(&inbox)
        .output()
        .unwrap();
    let local_time = started.elapsed();
    assert!(
        out.status.success(),
        "local grade failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let cluster = Cluster::start(&base.join("cluster"));
    let started = Instant::now();
    let array = base.join("array");
    let out = cluster
        .command("sbatch")
        .args([
            "--wait",
            "--array=0-1",
            "--cpus-per-task=1",
            "--mem=3G",
            "--time=20",
        ])
        .arg(format!("--output={}/task-%a.log", base.display()))
        .arg(repo().join("grading/slurm-grade.sbatch"))
        .arg(&source)
        .arg(&inbox)
        .arg(&array)
        .env("CONCLAB_KERNEL", kernel)
        .output()
        .unwrap();
    let logs: String = (0..2)
        .map(|i| std::fs::read_to_string(base.join(format!("task-{i}.log"))).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n----\n");
    assert!(
        out.status.success(),
        "sbatch --wait failed: {}\n{logs}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shards: Vec<PathBuf> = (0..2).map(|i| array.join(format!("shard-{i}"))).collect();
    let merged = array.join("gradebook.csv");
    let out = Command::new(kernel)
        .arg("merge")
        .args(&shards)
        .arg("-o")
        .arg(&merged)
        .output()
        .unwrap();
    let array_time = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(cluster);

    for (i, shard) in shards.iter().enumerate() {
        let graded = std::fs::read_dir(shard)
            .map(|entries| entries.flatten().filter(|e| e.path().is_dir()).count())
            .unwrap_or(0);
        assert_eq!(graded, 2, "task {i} grades 2 of the 4 submissions\n{logs}");
    }
    assert_eq!(
        scores(&merged),
        scores(&local.join("gradebook.csv")),
        "the array's merged gradebook differs from the local run's\n{logs}"
    );
    println!(
        "4 submissions: local --jobs 2 {:.1} s; Slurm array of 2 tasks + merge {:.1} s",
        local_time.as_secs_f64(),
        array_time.as_secs_f64()
    );
    std::fs::remove_dir_all(&base).unwrap();
}
