//! Where the kernel's tests find things: the repository, the fixtures, free ports.
//! Shared (through `#[path]`) by the test files; each uses a part of it.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};

/// The repository, canonical: the kernel's `init.evcxr` names the crate by this path, so
/// a notebook that loads it by the same string costs no second build.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("kernel/ has a parent")
        .canonicalize()
        .expect("the repository exists")
}

/// `kernel/tests/fixtures/NAME`.
pub fn fixture(name: &str) -> PathBuf {
    fixtures().join(name)
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// `n` localhost ports free at the time of the call, all different (each listener is held
/// until all are taken).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free localhost port"))
        .collect();
    listeners
        .iter()
        .map(|listener| listener.local_addr().expect("a bound address").port())
        .collect()
}

pub fn free_port() -> u16 {
    free_ports(1)[0]
}
