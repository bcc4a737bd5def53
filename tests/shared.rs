//! Value, Array and Lock in shared memory: exact results under contention.
mod common;

use std::sync::atomic::AtomicUsize;

use conclab::multiprocessing::{Array, Lock, Process, Value};

static DONE: AtomicUsize = AtomicUsize::new(0);

#[test]
fn locked_increments_are_exact() {
    let _t = common::Track::new(&DONE);
    let counter = Value::new(0u64).unwrap();
    let kids: Vec<_> = (0..4)
        .map(|_| {
            Process::spawn(|| {
                for _ in 0..20_000 {
                    *counter.get_lock() += 1;
                }
            })
            .unwrap()
        })
        .collect();
    for k in kids {
        k.join().unwrap();
    }
    assert_eq!(counter.get(), 80_000);
}

#[test]
fn the_documents_example_gives_2_and_doubled_array() {
    let _t = common::Track::new(&DONE);
    let n = Value::new(1i32).unwrap();
    let arr = Array::new(&[1i32, 2, 3, 4]).unwrap();
    Process::spawn(|| {
        *n.get_lock() += 1;
        for x in arr.get_lock().iter_mut() {
            *x *= 2;
        }
    })
    .unwrap()
    .join()
    .unwrap();
    assert_eq!(n.get(), 2);
    assert_eq!(arr.to_vec(), vec![2, 4, 6, 8]);
}

#[test]
fn array_updates_from_many_processes() {
    let _t = common::Track::new(&DONE);
    let arr = Array::filled(0u32, 8).unwrap();
    let kids: Vec<_> = (0..4)
        .map(|_| {
            Process::spawn(|| {
                for round in 0..5_000usize {
                    let mut g = arr.get_lock();
                    g[round % 8] += 1;
                }
            })
            .unwrap()
        })
        .collect();
    for k in kids {
        k.join().unwrap();
    }
    assert_eq!(arr.to_vec().iter().sum::<u32>(), 20_000);
    assert_eq!(arr.get(0), Some(2_500));
    assert!(arr.set(8, 1).is_err());
}

#[test]
fn lock_survives_a_holder_that_dies() {
    let _t = common::Track::new(&DONE);
    let lock = Lock::new().unwrap();
    let holder = Process::<()>::spawn(|| {
        let _g = lock.lock();
        std::process::exit(0) // dies holding the lock
    })
    .unwrap();
    let _ = holder.join();
    let _g = lock.lock(); // a robust mutex: we get it back instead of hanging
}

#[test]
fn lock_serialises_a_read_modify_write_on_a_value() {
    let _t = common::Track::new(&DONE);
    let lock = Lock::new().unwrap();
    let v = Value::new(0i64).unwrap();
    let kids: Vec<_> = (0..3)
        .map(|_| {
            Process::spawn(|| {
                for _ in 0..5_000 {
                    let _g = lock.lock();
                    let x = v.get();
                    v.set(x + 1);
                }
            })
            .unwrap()
        })
        .collect();
    for k in kids {
        k.join().unwrap();
    }
    assert_eq!(v.get(), 15_000);
}

#[test]
fn zz_no_children_left() {
    common::check_after(&DONE, 5);
}
