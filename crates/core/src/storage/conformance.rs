#![allow(clippy::unwrap_used)]
//! The behaviour every storage backend must show. Each backend's tests call
//! [`run`]; remote backends will run the same suite against real servers.

use super::{ObjectKind, Storage};
use crate::error::ErrorKind;

pub fn run(s: &dyn Storage) {
    s.create().unwrap();
    s.create().unwrap(); // idempotent

    for kind in ObjectKind::ALL {
        assert!(
            s.list(kind).unwrap().is_empty(),
            "{kind:?} not empty at start"
        );
    }

    // Objects are named by 64 hex digits (the config by `config`).
    let name = &"00ff1234".repeat(8);
    let streamed = &format!("aa00{}", "5".repeat(60));
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    s.write(ObjectKind::Pack, name, &data).unwrap();
    assert_eq!(s.read(ObjectKind::Pack, name).unwrap(), data);
    assert_eq!(
        s.read_range(ObjectKind::Pack, name, 100, 50).unwrap(),
        &data[100..150]
    );
    assert_eq!(
        s.read_range(ObjectKind::Pack, name, 0, 0).unwrap(),
        Vec::<u8>::new()
    );
    let err = s.read_range(ObjectKind::Pack, name, 9_990, 20).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupted);

    let listed = s.list(ObjectKind::Pack).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(&listed[0].name, name);
    assert_eq!(listed[0].size, data.len() as u64);
    // kinds are separate namespaces
    assert!(s.list(ObjectKind::Index).unwrap().is_empty());
    assert_eq!(
        s.read(ObjectKind::Index, name).unwrap_err().kind(),
        ErrorKind::Missing
    );

    // rewriting the same name with the same bytes is allowed
    s.write(ObjectKind::Pack, name, &data).unwrap();

    s.write(ObjectKind::Config, "config", b"cfg").unwrap();
    assert_eq!(s.list(ObjectKind::Config).unwrap().len(), 1);
    assert_eq!(s.read(ObjectKind::Config, "config").unwrap(), b"cfg");

    let lock = &"11".repeat(32);
    s.write(ObjectKind::Lock, lock, b"").unwrap();
    assert_eq!(s.read(ObjectKind::Lock, lock).unwrap(), b"");

    // streamed writes: invisible until finished, discarded if dropped
    let mut w = s.create_writer(ObjectKind::Pack).unwrap();
    w.write_all(b"part one, ").unwrap();
    w.write_all(b"part two").unwrap();
    assert_eq!(
        s.list(ObjectKind::Pack).unwrap().len(),
        1,
        "unfinished object is listed"
    );
    w.finish(streamed).unwrap();
    assert_eq!(
        s.read(ObjectKind::Pack, streamed).unwrap(),
        b"part one, part two"
    );
    let mut dropped = s.create_writer(ObjectKind::Pack).unwrap();
    dropped.write_all(b"never finished").unwrap();
    drop(dropped);
    assert_eq!(s.list(ObjectKind::Pack).unwrap().len(), 2);
    s.remove(ObjectKind::Pack, streamed).unwrap();

    s.remove(ObjectKind::Pack, name).unwrap();
    s.remove(ObjectKind::Pack, name).unwrap(); // idempotent
    assert_eq!(
        s.read(ObjectKind::Pack, name).unwrap_err().kind(),
        ErrorKind::Missing
    );
    assert!(s.list(ObjectKind::Pack).unwrap().is_empty());
}
