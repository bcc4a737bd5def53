//! Manager: shared list and dict used from forked children.
mod common;

use std::sync::atomic::AtomicUsize;

use conclab::multiprocessing::{Lock, Manager, MpError, Process};

static DONE: AtomicUsize = AtomicUsize::new(0);

#[test]
fn append_from_child_processes() {
    let _t = common::Track::new(&DONE);
    let manager = Manager::new().unwrap();
    let list = manager.list::<(u32, u32)>().unwrap();
    let kids: Vec<_> = (0..4)
        .map(|k| {
            Process::spawn(|| {
                for i in 0..250 {
                    list.append((k, i)).unwrap();
                }
            })
            .unwrap()
        })
        .collect();
    for c in kids {
        c.join().unwrap();
    }
    let mut all = list.to_vec().unwrap();
    assert_eq!(all.len(), 1000);
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 1000);
    assert_eq!(
        format!("{:?}", manager.list::<u8>().unwrap()),
        "ListProxy([])"
    );
}

#[test]
fn dict_counts_with_a_lock_are_exact() {
    let _t = common::Track::new(&DONE);
    let manager = Manager::new().unwrap();
    let d = manager.dict::<String, u32>().unwrap();
    let lock = Lock::new().unwrap();
    let kids: Vec<_> = (0..3)
        .map(|_| {
            Process::spawn(|| {
                for i in 0..100 {
                    let key = format!("k{}", i % 5);
                    let _g = lock.lock();
                    let n = d.get(&key).unwrap().unwrap_or(0);
                    d.insert(key, n + 1).unwrap();
                }
            })
            .unwrap()
        })
        .collect();
    for c in kids {
        c.join().unwrap();
    }
    let items = d.items().unwrap();
    assert_eq!(items.len(), 5);
    assert!(items.iter().all(|(_, n)| *n == 60));
    assert_eq!(d.remove(&"k0".to_string()).unwrap(), Some(60));
    assert!(!d.contains_key(&"k0".to_string()).unwrap());
}

#[test]
fn list_operations() {
    let _t = common::Track::new(&DONE);
    let manager = Manager::new().unwrap();
    let l = manager.list::<String>().unwrap();
    l.extend(["a", "b", "c"].map(String::from)).unwrap();
    assert_eq!(l.get(1).unwrap().as_deref(), Some("b"));
    l.set(1, "B".into()).unwrap();
    assert_eq!(l.pop().unwrap().as_deref(), Some("c"));
    assert_eq!(l.to_vec().unwrap(), vec!["a", "B"]);
    assert!(matches!(l.set(9, "x".into()), Err(MpError::Manager(_))));
    l.clear().unwrap();
    assert!(l.is_empty().unwrap());
}

#[test]
fn proxies_fail_cleanly_after_shutdown() {
    let _t = common::Track::new(&DONE);
    let manager = Manager::new().unwrap();
    let l = manager.list::<u8>().unwrap();
    l.append(1).unwrap();
    manager.shutdown().unwrap();
    assert_eq!(l.append(2), Err(MpError::Eof));
}

#[test]
fn zz_no_children_left() {
    common::check_after(&DONE, 4);
}
