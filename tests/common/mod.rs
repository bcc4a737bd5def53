//! Shared by the process test files: the /proc check that no child is left behind.
#![allow(dead_code)]

/// Children of this process that still exist (zombies included), from /proc.
pub fn live_children() -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        // fields[0] is the state, fields[1] the parent pid.
        if fields.get(1).and_then(|p| p.parse::<i32>().ok()) == Some(me) {
            out.push((pid, fields[0].to_string()));
        }
    }
    out
}

/// Asserts that no child of the test process is left, waiting briefly for processes that
/// are just now being reaped by another test's drop.
pub fn assert_no_children_left() {
    for _ in 0..200 {
        if live_children().is_empty() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("children left behind: {:?}", live_children());
}

/// Counts finished tests of one file (also when a test panics), so that the file's
/// `zz_no_children_left` test can wait for all the others before it looks at /proc.
pub struct Track(&'static std::sync::atomic::AtomicUsize);

impl Track {
    pub fn new(done: &'static std::sync::atomic::AtomicUsize) -> Track {
        Track(done)
    }
}

impl Drop for Track {
    fn drop(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Waits (at most two minutes) until `others` tests have finished, then checks /proc.
pub fn check_after(done: &std::sync::atomic::AtomicUsize, others: usize) {
    let start = std::time::Instant::now();
    while done.load(std::sync::atomic::Ordering::SeqCst) < others
        && start.elapsed() < std::time::Duration::from_secs(120)
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_no_children_left();
}
