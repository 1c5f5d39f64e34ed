use bytes::Bytes;

use super::*;

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A batch whose body is `{"seq":S,"events":[0,1,…]}` padded to about `len` bytes.
fn batch(seq: u64, events: usize, len: usize) -> Encoded {
    let mut body = format!(
        "{{\"seq\":{seq},\"events\":[{}],\"pad\":\"",
        (0..events)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    while body.len() + 2 < len {
        body.push('x');
    }
    body.push_str("\"}");
    Encoded {
        seq,
        events,
        body: Bytes::from(body),
    }
}

#[test]
fn keeps_order_across_reopen_and_enforces_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), 250).unwrap();
    assert!(s.is_empty());
    assert_eq!(s.push(&batch(7, 2, 100)).unwrap(), Pushed::Written);
    assert_eq!(s.push(&batch(9, 3, 100)).unwrap(), Pushed::Written);
    assert_eq!(s.push(&batch(12, 1, 100)).unwrap(), Pushed::Full);
    assert_eq!((s.bytes(), s.events(), s.next_seq()), (200, 5, 12));
    drop(s);

    let mut s = Spool::open(dir.path(), 250).unwrap();
    assert_eq!((s.bytes(), s.events(), s.next_seq()), (200, 5, 12));
    assert_eq!(s.batches(), [(7, 2), (9, 3)]);
    assert_eq!(s.read(7).unwrap(), batch(7, 2, 100).body);
    s.remove(7).unwrap();
    assert_eq!(
        s.push(&batch(12, 1, 100)).unwrap(),
        Pushed::Written,
        "room again after a delivery"
    );
    s.remove(9).unwrap();
    s.remove(12).unwrap();
    assert!(s.is_empty());
    assert_eq!(listing(dir.path()), [LOCK]);
}

#[test]
fn ignores_foreign_files_and_removes_our_half_written_ones() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "00000000000000000003-1.tmp",
        "5.json",
        "notes.txt",
        "12-x.json",
    ] {
        fs::write(dir.path().join(name), b"x").unwrap();
    }
    let s = Spool::open(dir.path(), 100).unwrap();
    assert!(s.is_empty());
    assert_eq!(
        listing(dir.path()),
        [LOCK, "12-x.json", "5.json", "notes.txt"]
    );
}

#[test]
fn a_second_spool_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Spool::open(dir.path(), 100).unwrap();
    let err = Spool::open(dir.path(), 100).err().unwrap().to_string();
    assert!(
        err.contains("in use by another mapscope") && err.contains("--spool-dir"),
        "{err}"
    );
}

#[test]
fn unreadable_or_cut_short_batches_fail_to_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), 1000).unwrap();
    s.push(&batch(1, 1, 50)).unwrap();
    s.push(&batch(2, 1, 50)).unwrap();
    let one = dir.path().join("00000000000000000001-1.json");
    fs::remove_file(&one).unwrap();
    fs::create_dir(&one).unwrap();
    assert!(s.read(1).is_err(), "a directory is unreadable");
    // What a power loss can leave of a renamed file that was never fsynced: nothing.
    fs::write(dir.path().join("00000000000000000002-1.json"), b"").unwrap();
    let err = s.read(2).unwrap_err().to_string();
    assert!(err.contains("cut short"), "{err}");
}

#[test]
fn set_aside_files_share_a_quarter_of_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join(REJECTED_DIR)).unwrap();
    // 150 bytes rejected by an earlier run count from the start.
    fs::write(dir.path().join(REJECTED_DIR).join("old"), [b'x'; 150]).unwrap();
    let mut s = Spool::open(dir.path(), 1000).unwrap();
    assert_eq!((s.bytes(), s.aside_cap()), (150, 250));
    s.push(&batch(1, 1, 100)).unwrap();
    s.push(&batch(2, 1, 100)).unwrap();
    s.push(&batch(3, 1, 100)).unwrap();
    let kept = s
        .reject(&batch(1, 1, 100))
        .unwrap()
        .expect("fits under the cap");
    assert_eq!(fs::read(kept).unwrap(), batch(1, 1, 100).body);
    assert_eq!(s.reject(&batch(2, 1, 100)).unwrap(), None, "over the cap");
    assert!(matches!(s.quarantine(3), SetAside::Removed), "over the cap");
    assert!(s.is_empty());
    assert_eq!(s.bytes(), 250);
    // The queue may use what is left of the limit, not more.
    for seq in 10..17 {
        assert_eq!(s.push(&batch(seq, 1, 100)).unwrap(), Pushed::Written);
    }
    assert_eq!(s.push(&batch(17, 1, 100)).unwrap(), Pushed::Full);
    drop(s);
    let s = Spool::open(dir.path(), 1000).unwrap();
    assert_eq!(
        s.bytes(),
        950,
        "set-aside bytes are found again after a restart"
    );
}

#[test]
fn quarantined_batch_is_kept_as_bad_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), 1000).unwrap();
    s.push(&batch(4, 2, 100)).unwrap();
    let SetAside::Kept(bad) = s.quarantine(4) else {
        panic!("room to keep it")
    };
    assert!(bad.ends_with("00000000000000000004-2.bad"));
    assert_eq!(s.bytes(), 100);
    drop(s);
    assert_eq!(Spool::open(dir.path(), 1000).unwrap().bytes(), 100);
}

#[test]
fn split_replaces_the_whole_and_a_crash_mid_split_keeps_the_half() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), 10_000).unwrap();
    s.push(&batch(100, 4, 200)).unwrap();
    let halves = [batch(100, 2, 120), batch(102, 2, 120)];
    assert_eq!(s.split(100, &halves).unwrap(), Pushed::Written);
    assert_eq!(s.batches(), [(100, 2), (102, 2)]);
    assert_eq!(s.bytes(), 240);
    assert_eq!(
        listing(dir.path()),
        [
            LOCK,
            "00000000000000000100-2.json",
            "00000000000000000102-2.json"
        ]
    );
    // A crash after the halves were written but before the whole was removed.
    fs::write(
        dir.path().join("00000000000000000100-4.json"),
        batch(100, 4, 200).body,
    )
    .unwrap();
    drop(s);
    let s = Spool::open(dir.path(), 10_000).unwrap();
    assert_eq!(s.batches(), [(100, 2), (102, 2)]);
    assert!(!dir.path().join("00000000000000000100-4.json").exists());
}

#[test]
fn a_failed_write_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(dir.path(), 10_000).unwrap();
    // The final name is taken by a directory: the rename fails after the temporary was written.
    fs::create_dir(dir.path().join("00000000000000000005-1.json")).unwrap();
    assert!(s.push(&batch(5, 1, 50)).is_err());
    assert_eq!(
        listing(dir.path()),
        [LOCK, "00000000000000000005-1.json"],
        "the temporary file was left behind"
    );
}

#[test]
fn unusable_directory_names_the_fix() {
    let err = Spool::open(Path::new("/proc/mapscope-spool"), 100)
        .err()
        .unwrap();
    assert!(err.to_string().contains("--spool-dir"), "{err}");
}
