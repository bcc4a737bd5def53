//! Standby kernels (`kernel/src/kernel/standby.rs`) with real launches: a kernel that is
//! up leaves one, the next launch is served by it in the launcher's folder and
//! environment, and it ends with its launcher, whether that shuts down or is killed.
//!
//! Each test keys its standbys with a variable of its own (`CONCLAB_TEST_KEY`), so that it
//! never takes, or is taken by, a standby of another test or of the user.
//!
//! Needs `conclab-kernel setup` first (it writes the `init.evcxr` the kernel loads).

#[path = "support/test_kernel.rs"]
mod test_kernel;

use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use test_kernel::{repo, TestKernel};

/// Long enough for a standby's warm-up at the lowest priority on a loaded machine.
const READY_LIMIT: Duration = Duration::from_secs(420);

fn key() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// `conclab-kernel standby wait` with the test kernels' environment: the standby's pid.
fn ready_standby(key: &str, limit: Duration) -> Option<i32> {
    let output = Command::new(env!("CARGO_BIN_EXE_conclab-kernel"))
        .args(["standby", "wait", "--timeout"])
        .arg(limit.as_secs_f64().to_string())
        .env("CONCLAB_TEST_KEY", key)
        .env("EVCXR_CONFIG_DIR", repo().join("kernel/evcxr"))
        .output()
        .expect("conclab-kernel runs");
    let said = String::from_utf8_lossy(&output.stdout);
    output.status.success().then(|| {
        said.rsplit("pid ")
            .next()
            .and_then(|rest| rest.trim().trim_end_matches(')').parse().ok())
            .unwrap_or_else(|| panic!("no pid in {said:?}"))
    })
}

fn alive(pid: i32) -> bool {
    // A process that ended, a zombie too, has an empty command line.
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|line| !line.is_empty())
}

fn cwd_of(pid: i32) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default()
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn end_standby(pid: i32) {
    // A standby leads its own process group.
    // SAFETY: kill(2) of a process group; no memory is involved.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
}

fn scratch_folder(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("conclab-standby-{name}-{}", key()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.canonicalize().unwrap()
}

fn cell_value(kernel: &mut TestKernel, code: &str) -> String {
    let answer = kernel.execute(code);
    answer.assert_ok();
    answer.text("stdout").trim_end().to_owned()
}

#[test]
fn a_launch_is_served_by_the_standby_in_its_own_folder_and_environment_and_ends_with_it() {
    let key = key();
    let env = [("CONCLAB_TEST_KEY", key.as_str())];
    let first = TestKernel::start_in(&repo().join("notebooks"), &env);
    let standby = ready_standby(&key, READY_LIMIT).expect("the first kernel left a standby");
    assert!(alive(standby));
    drop(first);

    // evcxr reads an evcxr.toml only at start: a folder with one starts its kernel cold,
    // and the standby stays for the next launch.
    let configured = scratch_folder("configured");
    std::fs::write(configured.join("evcxr.toml"), "[evcxr]\n").unwrap();
    let mut cold = TestKernel::start_in(&configured, &env);
    assert_eq!(cell_value(&mut cold, "println!(\"{}\", 1 + 1);"), "2");
    assert!(alive(standby));
    assert_ne!(cwd_of(standby), configured);
    drop(cold);

    let folder = scratch_folder("launch");
    std::fs::write(folder.join("data.txt"), "from the launch's folder").unwrap();
    let served_env = [
        ("CONCLAB_TEST_KEY", key.as_str()),
        ("STANDBY_TEST_VALUE", "mine"),
    ];
    let mut kernel = TestKernel::start_in(&folder, &served_env);
    assert_eq!(
        cwd_of(standby),
        folder,
        "the standby took the launch and moved"
    );
    // The cell process was started again, in the launch's folder and environment.
    assert_eq!(
        cell_value(
            &mut kernel,
            "println!(\"{}\", std::fs::read_to_string(\"data.txt\").unwrap());"
        ),
        "from the launch's folder"
    );
    assert_eq!(
        cell_value(
            &mut kernel,
            "println!(\"{}\", std::env::var(\"STANDBY_TEST_VALUE\").unwrap());"
        ),
        "mine"
    );
    // The course crate is loaded, failures are errors, variables live on.
    kernel
        .execute("use conclab::prelude::*;\nlet kept = 41;")
        .assert_ok();
    let text = kernel
        .execute("assert_eq!(kept + 1, 43, \"off by one\");")
        .assert_error("Panic");
    assert!(
        text.contains("off by one") && text.contains("line 1 of this cell"),
        "{text}"
    );
    assert_eq!(cell_value(&mut kernel, "println!(\"{}\", kept + 1);"), "42");

    // Shutdown: the kernel answers, then the launcher Jupyter watches exits with 0.
    let id = kernel
        .session
        .send(
            &kernel.control,
            "shutdown_request",
            json!({"restart": false}),
        )
        .unwrap();
    kernel
        .collect(&id, Duration::from_secs(10), true)
        .expect("a shutdown_reply");
    let mut status = None;
    wait_until(
        "the launcher exits after shutdown",
        Duration::from_secs(10),
        || {
            status = kernel.child.try_wait().unwrap();
            status.is_some()
        },
    );
    assert!(status.unwrap().success(), "{status:?}");
    wait_until(
        "the standby ends with its kernel",
        Duration::from_secs(10),
        || !alive(standby),
    );

    // The served kernel left the next standby; a launcher killed outright takes it along.
    let next = ready_standby(&key, READY_LIMIT).expect("the served kernel left a standby");
    assert_ne!(next, standby);
    let mut kernel = TestKernel::start_in(&folder, &env);
    assert_eq!(cwd_of(next), folder);
    kernel.execute("let _forked = 1;").assert_ok();
    kernel.child.kill().unwrap();
    kernel.child.wait().unwrap();
    wait_until(
        "the standby ends with a killed launcher",
        Duration::from_secs(10),
        || !alive(next),
    );
    drop(kernel);

    if let Some(last) = ready_standby(&key, READY_LIMIT) {
        end_standby(last);
    }
    for dir in [&configured, &folder] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn with_standbys_off_a_kernel_neither_takes_nor_leaves_one() {
    let key = key();
    let env = [
        ("CONCLAB_TEST_KEY", key.as_str()),
        ("CONCLAB_STANDBY", "off"),
    ];
    let mut kernel = TestKernel::start_in(Path::new(&repo().join("notebooks")), &env);
    assert_eq!(cell_value(&mut kernel, "println!(\"{}\", 40 + 2);"), "42");
    assert_eq!(ready_standby(&key, Duration::from_secs(15)), None);
}
