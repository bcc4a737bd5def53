//! `conclab::queue` with real producer and consumer threads.

use conclab::queue::*;
use conclab::threading::Thread;
use std::sync::Arc;
use std::time::Duration;

const GUARD: Duration = Duration::from_secs(30);

#[test]
fn fifo_lifo_priority_orders() {
    let fifo = Queue::new();
    let lifo = LifoQueue::new();
    let prio = PriorityQueue::new();
    for i in [3, 1, 2] {
        fifo.put(i).unwrap();
        lifo.put(i).unwrap();
        prio.put(i).unwrap();
    }
    let drain = |get: &dyn Fn() -> Result<i32, QueueError>| {
        (0..3).map(|_| get().unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(drain(&|| fifo.get_nowait()), vec![3, 1, 2]);
    assert_eq!(drain(&|| lifo.get_nowait()), vec![2, 1, 3]);
    assert_eq!(drain(&|| prio.get_nowait()), vec![1, 2, 3]);
}

#[test]
fn many_producers_many_consumers_lose_nothing() {
    let q = Arc::new(Queue::with_maxsize(8));
    let producers: Vec<_> = (0..4)
        .map(|p| {
            let q = Arc::clone(&q);
            Thread::new(move || {
                for i in 0..2_500u64 {
                    q.put(p * 10_000 + i).unwrap();
                }
            })
            .start()
            .unwrap()
        })
        .collect();
    let consumers: Vec<_> = (0..3)
        .map(|_| {
            let q = Arc::clone(&q);
            Thread::new(move || {
                let mut got = Vec::new();
                while let Ok(item) = q.get() {
                    got.push(item);
                    q.task_done().unwrap();
                }
                got
            })
            .start()
            .unwrap()
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    assert!(q.join_timeout(GUARD), "all items processed");
    q.shutdown(false);
    let mut all: Vec<u64> = consumers
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    all.sort();
    let mut expected: Vec<u64> = (0..4)
        .flat_map(|p| (0..2_500).map(move |i| p * 10_000 + i))
        .collect();
    expected.sort();
    assert_eq!(all, expected);
}

#[test]
fn bounded_put_blocks_until_room() {
    let q = Arc::new(Queue::with_maxsize(1));
    q.put(1).unwrap();
    let q2 = Arc::clone(&q);
    let putter = Thread::new(move || q2.put(2)).start().unwrap();
    assert!(!putter.join_timeout(Duration::from_millis(20)));
    assert_eq!(q.get(), Ok(1));
    putter.join().unwrap().unwrap();
    assert_eq!(q.get(), Ok(2));
}

#[test]
fn full_and_empty_errors_and_timeouts() {
    let q = Queue::with_maxsize(1);
    assert_eq!(q.get_nowait(), Err(QueueError::Empty));
    assert_eq!(
        q.get_timeout(Duration::from_millis(5)),
        Err(QueueError::Empty)
    );
    q.put("a").unwrap();
    assert!(q.full());
    assert_eq!(q.put_nowait("b"), Err(QueueError::Full("b")));
    assert_eq!(
        q.put_timeout("c", Duration::from_millis(5)),
        Err(QueueError::Full("c"))
    );
    assert_eq!(q.qsize(), 1);
}

#[test]
fn task_done_and_join() {
    let q = Arc::new(Queue::new());
    for i in 0..100 {
        q.put(i).unwrap();
    }
    let q2 = Arc::clone(&q);
    let worker = Thread::new(move || {
        while let Ok(_item) = q2.get_timeout(Duration::from_millis(50)) {
            q2.task_done().unwrap();
        }
    })
    .start()
    .unwrap();
    q.join();
    worker.join().unwrap();
    assert_eq!(q.task_done(), Err(QueueError::TaskDoneTooOften));
}

#[test]
fn shutdown_wakes_blocked_getters_and_putters() {
    let q: Arc<Queue<u8>> = Arc::new(Queue::with_maxsize(1));
    let getter = {
        let q = Arc::clone(&q);
        Thread::new(move || q.get()).start().unwrap()
    };
    std::thread::sleep(Duration::from_millis(10));
    q.shutdown(false);
    assert_eq!(getter.join().unwrap(), Err(QueueError::ShutDown(())));

    let q: Arc<Queue<u8>> = Arc::new(Queue::with_maxsize(1));
    q.put(1).unwrap();
    let putter = {
        let q = Arc::clone(&q);
        Thread::new(move || q.put(2)).start().unwrap()
    };
    std::thread::sleep(Duration::from_millis(10));
    q.shutdown(true);
    assert_eq!(putter.join().unwrap(), Err(QueueError::ShutDown(2)));
    assert!(q.empty());
    assert!(
        q.join_timeout(GUARD),
        "immediate shutdown counts dropped items as done"
    );
}
