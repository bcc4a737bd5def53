//! Puts a digest of this crate's sources on rustc's command line.
//!
//! evcxr's build cache (`:cache`) keys a compiled crate by rustc's arguments alone. For a
//! crate loaded by `path`, those arguments do not change when a source file does, so a
//! cached copy would outlive an edit. Passing `--cfg conclab_source="<digest>"` makes every
//! edit of `src/`, `Cargo.toml` or this file a new cache key, while an unchanged tree keeps
//! hitting the cache (kernel/evcxr/README.md explains the whole arrangement).

use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;
use std::path::{Path, PathBuf};

fn main() {
    let root = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let mut files = vec![root.join("Cargo.toml"), root.join("build.rs")];
    collect(&root.join("src"), &mut files);
    files.sort();

    // SipHash with fixed keys: the same tree gives the same digest in every build.
    let mut hasher = DefaultHasher::new();
    for file in &files {
        let relative = file.strip_prefix(&root).unwrap_or(file);
        hasher.write(relative.to_string_lossy().as_bytes());
        hasher.write_u8(0);
        match std::fs::read(file) {
            Ok(bytes) => hasher.write(&bytes),
            Err(error) => panic!("cannot read {}: {error}", file.display()),
        }
    }
    println!("cargo::rustc-check-cfg=cfg(conclab_source, values(any()))");
    println!(
        "cargo::rustc-cfg=conclab_source=\"{:016x}\"",
        hasher.finish()
    );
    println!("cargo::rerun-if-changed=src");
    println!("cargo::rerun-if-changed=Cargo.toml");
    println!("cargo::rerun-if-changed=build.rs");
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else {
            out.push(path);
        }
    }
}
