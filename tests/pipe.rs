//! Pipe: duplex messages between processes, poll, end of file.
mod common;

use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use conclab::multiprocessing::{MpError, Pipe, Process};
use serde::{Deserialize, Serialize};

static DONE: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Msg {
    Work { id: u32, payload: Vec<u8> },
    Stop,
}

#[test]
fn ping_pong_between_processes() {
    let _t = common::Track::new(&DONE);
    let (parent, child) = Pipe::new().unwrap();
    let p = Process::spawn(move || {
        let mut handled = 0u32;
        loop {
            match child.recv::<Msg>().unwrap() {
                Msg::Work { id, payload } => {
                    child.send(&(id, payload.len())).unwrap();
                    handled += 1;
                }
                Msg::Stop => return handled,
            }
        }
    })
    .unwrap();
    for id in 0..1000 {
        parent
            .send(&Msg::Work {
                id,
                payload: vec![0; id as usize],
            })
            .unwrap();
        assert_eq!(parent.recv::<(u32, usize)>().unwrap(), (id, id as usize));
    }
    parent.send(&Msg::Stop).unwrap();
    assert_eq!(p.join().unwrap(), 1000);
}

#[test]
fn big_messages_arrive_whole() {
    let _t = common::Track::new(&DONE);
    let (a, b) = Pipe::new().unwrap();
    let p = Process::spawn(move || {
        for i in 0..5u8 {
            b.send(&vec![i; 1 << 20]).unwrap();
        }
    })
    .unwrap();
    for i in 0..5u8 {
        let v: Vec<u8> = a.recv().unwrap();
        assert_eq!(v.len(), 1 << 20);
        assert!(v.iter().all(|&x| x == i));
    }
    p.join().unwrap();
}

#[test]
fn eof_when_the_other_process_is_gone() {
    let _t = common::Track::new(&DONE);
    let (a, b) = Pipe::new().unwrap();
    let p = Process::spawn(move || b.send(&"last words").unwrap()).unwrap();
    p.join().unwrap();
    // The child's copy of `b` closed at exit; the parent's copy went into the closure.
    assert_eq!(a.recv::<String>().unwrap(), "last words");
    assert_eq!(a.recv::<String>(), Err(MpError::Eof));
    assert_eq!(a.send(&1), Err(MpError::Eof));
}

#[test]
fn poll_and_timeouts() {
    let _t = common::Track::new(&DONE);
    let (a, b) = Pipe::new().unwrap();
    assert!(!a.poll(Some(Duration::from_millis(10))).unwrap());
    assert!(matches!(
        a.recv_timeout::<u8>(Duration::from_millis(10)),
        Err(MpError::Timeout(_))
    ));
    let p = Process::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        b.send(&9u8).unwrap();
    })
    .unwrap();
    assert!(a.poll(None).unwrap());
    assert_eq!(a.recv_timeout::<u8>(Duration::from_secs(30)).unwrap(), 9);
    p.join().unwrap();
}

#[test]
fn a_wrong_type_is_a_codec_error() {
    let _t = common::Track::new(&DONE);
    let (a, b) = Pipe::new().unwrap();
    a.send(&1u8).unwrap();
    assert!(matches!(b.recv::<String>(), Err(MpError::Codec(_))));
}

#[test]
fn zz_no_children_left() {
    common::check_after(&DONE, 5);
}
