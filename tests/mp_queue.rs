//! Queue across processes: exactly-once delivery under contention, timeouts, bounded
//! queues, joining producers before the queue is drained, JoinableQueue.
mod common;

use std::collections::HashSet;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use conclab::multiprocessing::{JoinableQueue, MpError, Process, Queue};

static DONE: AtomicUsize = AtomicUsize::new(0);

const PRODUCERS: u32 = 4;
const CONSUMERS: u32 = 4;
const PER_PRODUCER: u32 = 10_000;

#[test]
fn four_by_four_by_ten_thousand_exactly_once() {
    let _t = common::Track::new(&DONE);
    let q: Queue<Option<(u32, u32, String)>> = Queue::new().unwrap();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            Process::spawn(|| {
                for i in 0..PER_PRODUCER {
                    // A payload whose content is checkable, so a torn message shows.
                    q.put(Some((
                        p,
                        i,
                        format!("{p}:{i}:{}", "x".repeat((i % 50) as usize)),
                    )))
                    .unwrap();
                }
            })
            .unwrap()
        })
        .collect();
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|_| {
            Process::spawn(|| {
                let mut got = Vec::new();
                while let Some((p, i, text)) = q.get().unwrap() {
                    assert_eq!(text, format!("{p}:{i}:{}", "x".repeat((i % 50) as usize)));
                    got.push((p, i));
                }
                got
            })
            .unwrap()
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    for _ in 0..CONSUMERS {
        q.put(None).unwrap();
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    for c in consumers {
        let got = c.join().unwrap();
        // Each producer's messages reach one consumer in the order they were put.
        let mut last = vec![None; PRODUCERS as usize];
        for &(p, i) in &got {
            assert!(last[p as usize] < Some(i), "out of order from producer {p}");
            last[p as usize] = Some(i);
        }
        total += got.len();
        seen.extend(got);
    }
    assert_eq!(
        total,
        (PRODUCERS * PER_PRODUCER) as usize,
        "duplicates or losses"
    );
    assert_eq!(seen.len(), (PRODUCERS * PER_PRODUCER) as usize);
    assert!(q.empty());
}

#[test]
fn a_producer_can_be_joined_before_the_queue_is_drained() {
    let _t = common::Track::new(&DONE);
    let q = Queue::new().unwrap();
    // 16 MiB of items: far beyond any pipe buffer, where CPython's join would hang.
    let p = Process::spawn(|| {
        for i in 0..256u32 {
            q.put(vec![i as u8; 64 * 1024]).unwrap();
        }
    })
    .unwrap();
    p.join().unwrap();
    assert_eq!(q.qsize(), 256);
    for i in 0..256u32 {
        let v: Vec<u8> = q.get().unwrap();
        assert_eq!(v.len(), 64 * 1024);
        assert_eq!(v[0], i as u8);
    }
    assert!(q.empty());
}

#[test]
fn bounded_queue_blocks_and_times_out() {
    let _t = common::Track::new(&DONE);
    let q = Queue::with_maxsize(2).unwrap();
    q.put(1).unwrap();
    q.put(2).unwrap();
    assert!(q.full());
    assert_eq!(q.put_nowait(3), Err(MpError::Full));
    assert_eq!(
        q.put_timeout(3, Duration::from_millis(20)),
        Err(MpError::Full)
    );
    let consumer = Process::spawn(|| {
        std::thread::sleep(Duration::from_millis(50));
        (q.get().unwrap(), q.get().unwrap(), q.get().unwrap())
    })
    .unwrap();
    q.put(3).unwrap(); // blocks until the child takes one
    assert_eq!(consumer.join().unwrap(), (1, 2, 3));
    assert_eq!(
        q.get_timeout(Duration::from_millis(10)),
        Err(MpError::Empty)
    );
    assert_eq!(q.get_nowait(), Err(MpError::Empty));
}

#[test]
fn get_waits_for_a_later_put() {
    let _t = common::Track::new(&DONE);
    let q = Queue::new().unwrap();
    let p = Process::spawn(|| {
        std::thread::sleep(Duration::from_millis(50));
        q.put("late".to_string()).unwrap();
    })
    .unwrap();
    assert_eq!(q.get_timeout(Duration::from_secs(30)).unwrap(), "late");
    p.join().unwrap();
}

#[test]
fn a_consumer_killed_while_waiting_does_not_break_the_queue() {
    let _t = common::Track::new(&DONE);
    let q: Queue<u32> = Queue::new().unwrap();
    let victim = Process::spawn(|| q.get().unwrap()).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    victim.kill().unwrap();
    assert!(victim.join().is_err());
    let survivor = Process::spawn(|| q.get().unwrap()).unwrap();
    q.put(5).unwrap();
    assert_eq!(survivor.join().unwrap(), 5);
}

#[test]
fn joinable_queue_counts_tasks() {
    let _t = common::Track::new(&DONE);
    let jobs = JoinableQueue::new().unwrap();
    let done = Queue::new().unwrap();
    let workers: Vec<_> = (0..2)
        .map(|_| {
            Process::spawn(|| {
                while let Some(n) = jobs.get().unwrap() {
                    let n: u64 = n;
                    done.put(n * n).unwrap();
                    jobs.task_done().unwrap();
                }
                jobs.task_done().unwrap();
            })
            .unwrap()
        })
        .collect();
    for n in 1..=100u64 {
        jobs.put(Some(n)).unwrap();
    }
    jobs.join();
    assert_eq!(done.qsize(), 100);
    for _ in 0..2 {
        jobs.put(None).unwrap();
    }
    jobs.join();
    for w in workers {
        w.join().unwrap();
    }
    let total: u64 = (0..100).map(|_| done.get().unwrap()).sum();
    assert_eq!(total, (1..=100u64).map(|n| n * n).sum());
    assert_eq!(jobs.task_done(), Err(MpError::TaskDoneTooOften));
}

#[test]
fn zz_no_children_left() {
    common::check_after(&DONE, 6);
}
