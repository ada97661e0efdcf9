//! The layer against an independent model of the durable state: random sequences
//! of file and directory operations through a real mount, then lose-unsynced, and
//! the backing directory must equal the model's durable tree (needs root and
//! /dev/fuse, as the layer itself does).

use std::collections::{BTreeMap, HashMap};
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::{mounts, Layer, Model, STASH};

/// Root (0) and two subdirectories (1, 2) that `Mkdir` may create.
const DIRS: u8 = 3;
const NAMES: u8 = 3;

#[derive(Debug, Clone)]
enum Op {
    Create(u8, u8),
    Write(u8, u8, u16, u16, u8),
    Truncate(u8, u8, u16),
    Fsync(u8, u8),
    Fdatasync(u8, u8),
    Rename((u8, u8), (u8, u8)),
    Unlink(u8, u8),
    Mkdir(u8),
    FsyncDir(u8),
}

fn op() -> impl Strategy<Value = Op> {
    let d = 0..DIRS;
    let n = 0..NAMES;
    prop_oneof![
        3 => (d.clone(), n.clone()).prop_map(|(d, n)| Op::Create(d, n)),
        4 => (d.clone(), n.clone(), 0u16..9000, 1u16..5000, any::<u8>())
            .prop_map(|(d, n, o, l, b)| Op::Write(d, n, o, l, b)),
        1 => (d.clone(), n.clone(), 0u16..9000).prop_map(|(d, n, s)| Op::Truncate(d, n, s)),
        2 => (d.clone(), n.clone()).prop_map(|(d, n)| Op::Fsync(d, n)),
        1 => (d.clone(), n.clone()).prop_map(|(d, n)| Op::Fdatasync(d, n)),
        2 => ((d.clone(), n.clone()), (d.clone(), n.clone())).prop_map(|(a, b)| Op::Rename(a, b)),
        1 => (d.clone(), n.clone()).prop_map(|(d, n)| Op::Unlink(d, n)),
        1 => (1..DIRS).prop_map(Op::Mkdir),
        2 => d.prop_map(Op::FsyncDir),
    ]
}

fn dir_name(d: u8) -> String {
    format!("d{d}")
}

fn file_name(n: u8) -> String {
    format!("f{n}")
}

/// A directory's entries: name → inode.
type Entries = BTreeMap<String, u64>;

/// The model: inodes with a current and a durable image, directories with current
/// and durable entries. Only files are renamed; directories live in the root.
#[derive(Default)]
struct ModelFs {
    ext4: bool,
    next: u64,
    files: HashMap<u64, (Vec<u8>, Vec<u8>)>,
    dirs: HashMap<u64, (Entries, Entries)>,
}

impl ModelFs {
    fn new(model: Model) -> Self {
        let mut m = ModelFs {
            ext4: model == Model::Ext4Like,
            next: 1,
            ..ModelFs::default()
        };
        m.dirs.insert(0, Default::default());
        m
    }

    fn dir(&self, d: u8) -> Option<u64> {
        if d == 0 {
            return Some(0);
        }
        let id = *self.dirs[&0].0.get(&dir_name(d))?;
        self.dirs.contains_key(&id).then_some(id)
    }

    fn file(&self, d: u8, n: u8) -> Option<u64> {
        let id = *self.dirs.get(&self.dir(d)?)?.0.get(&file_name(n))?;
        self.files.contains_key(&id).then_some(id)
    }

    fn commit_dirs(&mut self) {
        for (cur, dur) in self.dirs.values_mut() {
            *dur = cur.clone();
        }
    }

    /// Applies `op` if it is valid now; returns whether it was.
    fn apply(&mut self, op: &Op) -> bool {
        match *op {
            Op::Create(d, n) => {
                let Some(dir) = self.dir(d) else { return false };
                if self.dirs[&dir].0.contains_key(&file_name(n)) {
                    return false;
                }
                let id = self.next;
                self.next += 1;
                self.files.insert(id, Default::default());
                self.dirs.get_mut(&dir).unwrap().0.insert(file_name(n), id);
            }
            Op::Write(d, n, off, len, byte) => {
                let Some(f) = self.file(d, n) else {
                    return false;
                };
                let cur = &mut self.files.get_mut(&f).unwrap().0;
                let end = off as usize + len as usize;
                if cur.len() < end {
                    cur.resize(end, 0);
                }
                cur[off as usize..end].fill(byte);
            }
            Op::Truncate(d, n, size) => {
                let Some(f) = self.file(d, n) else {
                    return false;
                };
                self.files.get_mut(&f).unwrap().0.resize(size as usize, 0);
            }
            Op::Fsync(d, n) | Op::Fdatasync(d, n) => {
                let Some(f) = self.file(d, n) else {
                    return false;
                };
                let e = self.files.get_mut(&f).unwrap();
                e.1 = e.0.clone();
                if self.ext4 {
                    self.commit_dirs();
                }
            }
            Op::Rename((d, n), (d2, n2)) => {
                let (Some(f), Some(to_dir)) = (self.file(d, n), self.dir(d2)) else {
                    return false;
                };
                let from_dir = self.dir(d).unwrap();
                match self.dirs[&to_dir].0.get(&file_name(n2)).copied() {
                    Some(old) if !self.files.contains_key(&old) => return false, // a directory
                    Some(old) if old == f => return true,
                    Some(_) if self.ext4 => {
                        let e = self.files.get_mut(&f).unwrap();
                        e.1 = e.0.clone();
                    }
                    _ => {}
                }
                self.dirs
                    .get_mut(&from_dir)
                    .unwrap()
                    .0
                    .remove(&file_name(n));
                self.dirs
                    .get_mut(&to_dir)
                    .unwrap()
                    .0
                    .insert(file_name(n2), f);
            }
            Op::Unlink(d, n) => {
                if self.file(d, n).is_none() {
                    return false;
                }
                let dir = self.dir(d).unwrap();
                self.dirs.get_mut(&dir).unwrap().0.remove(&file_name(n));
            }
            Op::Mkdir(d) => {
                if self.dirs[&0].0.contains_key(&dir_name(d)) {
                    return false;
                }
                let id = self.next;
                self.next += 1;
                self.dirs.insert(id, Default::default());
                self.dirs.get_mut(&0).unwrap().0.insert(dir_name(d), id);
            }
            Op::FsyncDir(d) => {
                let Some(dir) = self.dir(d) else { return false };
                if self.ext4 {
                    self.commit_dirs();
                } else {
                    let e = self.dirs.get_mut(&dir).unwrap();
                    e.1 = e.0.clone();
                }
            }
        }
        true
    }

    /// The durable tree: path → file contents (None for a directory).
    fn durable(&self) -> BTreeMap<String, Option<Vec<u8>>> {
        let mut out = BTreeMap::new();
        let mut walk = vec![(String::new(), 0u64)];
        while let Some((prefix, dir)) = walk.pop() {
            for (name, id) in &self.dirs[&dir].1 {
                let path = format!("{prefix}/{name}");
                if self.dirs.contains_key(id) {
                    out.insert(path.clone(), None);
                    walk.push((path, *id));
                } else {
                    out.insert(path, Some(self.files[id].1.clone()));
                }
            }
        }
        out
    }
}

fn tree(root: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut walk = vec![(String::new(), root.to_path_buf())];
    while let Some((prefix, dir)) = walk.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let path = format!("{prefix}/{}", e.file_name().to_string_lossy());
            if e.file_type().unwrap().is_dir() {
                out.insert(path.clone(), None);
                walk.push((path, e.path()));
            } else {
                out.insert(path, Some(std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out
}

fn real_path(mnt: &Path, d: u8, n: Option<u8>) -> PathBuf {
    let mut p = mnt.to_path_buf();
    if d != 0 {
        p.push(dir_name(d));
    }
    if let Some(n) = n {
        p.push(file_name(n));
    }
    p
}

fn run_real(mnt: &Path, op: &Op) -> std::io::Result<()> {
    let f = |d, n| real_path(mnt, d, Some(n));
    match *op {
        Op::Create(d, n) => {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(f(d, n))?;
        }
        Op::Write(d, n, off, len, byte) => {
            let file = OpenOptions::new().write(true).open(f(d, n))?;
            file.write_all_at(&vec![byte; len as usize], off as u64)?;
        }
        Op::Truncate(d, n, size) => {
            OpenOptions::new()
                .write(true)
                .open(f(d, n))?
                .set_len(size as u64)?;
        }
        Op::Fsync(d, n) => std::fs::File::open(f(d, n))?.sync_all()?,
        Op::Fdatasync(d, n) => std::fs::File::open(f(d, n))?.sync_data()?,
        Op::Rename((d, n), (d2, n2)) => std::fs::rename(f(d, n), f(d2, n2))?,
        Op::Unlink(d, n) => std::fs::remove_file(f(d, n))?,
        Op::Mkdir(d) => std::fs::create_dir(real_path(mnt, d, None))?,
        Op::FsyncDir(d) => std::fs::File::open(real_path(mnt, d, None))?.sync_all()?,
    }
    Ok(())
}

fn check(model: Model, ops: &[Op]) -> Result<(), TestCaseError> {
    let backing = tempfile::tempdir().unwrap();
    let mnt = tempfile::tempdir().unwrap();
    let mut layer = Layer::mount(backing.path(), mnt.path(), model).unwrap();
    let mut m = ModelFs::new(model);
    for op in ops {
        if m.apply(op) {
            run_real(mnt.path(), op).map_err(|e| TestCaseError::fail(format!("{op:?}: {e}")))?;
        }
    }
    // What the mount shows is the current state, whatever is durable.
    let shown = tree(mnt.path());
    prop_assert!(
        !shown.contains_key(&format!("/{STASH}")),
        "the stash is shown"
    );
    let loss = layer.lose_unsynced().unwrap();
    prop_assert!(!mounts().contains(&mnt.path().canonicalize().unwrap()));
    prop_assert_eq!(
        tree(backing.path()),
        m.durable(),
        "{} after {:?}",
        loss.summary(),
        ops
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn posix_strict_keeps_exactly_the_durable_state(ops in prop::collection::vec(op(), 1..28)) {
        check(Model::PosixStrict, &ops)?;
    }

    #[test]
    fn ext4_like_keeps_exactly_the_durable_state(ops in prop::collection::vec(op(), 1..28)) {
        check(Model::Ext4Like, &ops)?;
    }
}

#[test]
fn a_rename_without_a_directory_fsync_is_lost_under_posix_strict_but_kept_by_a_later_fsync_under_ext4_like(
) {
    for (model, survives) in [(Model::PosixStrict, false), (Model::Ext4Like, true)] {
        let backing = tempfile::tempdir().unwrap();
        let mnt = tempfile::tempdir().unwrap();
        std::fs::write(backing.path().join("state"), b"old").unwrap();
        let mut layer = Layer::mount(backing.path(), mnt.path(), model).unwrap();
        let tmp = mnt.path().join("state.tmp");
        let f = std::fs::File::create(&tmp).unwrap();
        f.write_all_at(b"new", 0).unwrap();
        f.sync_all().unwrap();
        drop(f);
        std::fs::rename(&tmp, mnt.path().join("state")).unwrap();
        assert_eq!(std::fs::read(mnt.path().join("state")).unwrap(), b"new");
        // The service's next request fsyncs another file: ext4's journal commits
        // every earlier directory change with it; POSIX promises nothing.
        let next = std::fs::File::create(mnt.path().join("next.tmp")).unwrap();
        next.write_all_at(b"2", 0).unwrap();
        next.sync_all().unwrap();
        drop(next);
        let loss = layer.cut().unwrap();
        let after = std::fs::read(mnt.path().join("state")).unwrap();
        assert_eq!(after == b"new", survives, "{model:?}: {}", loss.summary());
        assert!(!mnt.path().join("state.tmp").exists());
        // With the directory fsync it survives under both.
        let f = std::fs::File::create(&tmp).unwrap();
        f.write_all_at(b"newer", 0).unwrap();
        f.sync_all().unwrap();
        std::fs::rename(&tmp, mnt.path().join("state")).unwrap();
        std::fs::File::open(mnt.path()).unwrap().sync_all().unwrap();
        drop(f);
        layer.cut().unwrap();
        assert_eq!(std::fs::read(mnt.path().join("state")).unwrap(), b"newer");
        layer.unmount().unwrap();
        assert!(mounts().is_empty() || !mounts().contains(&mnt.path().canonicalize().unwrap()));
    }
}

#[test]
fn the_layer_mounted_over_its_own_directory_rolls_it_back_and_unmounts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kept"), b"durable").unwrap();
    let mut layer = Layer::mount(dir.path(), dir.path(), Model::PosixStrict).unwrap();
    let canon = dir.path().canonicalize().unwrap();
    assert!(mounts().contains(&canon));
    // An unsynced overwrite, an unsynced append to a synced file, a new file.
    let kept = OpenOptions::new()
        .write(true)
        .open(dir.path().join("kept"))
        .unwrap();
    kept.write_all_at(b"DUR", 0).unwrap();
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    log.write_all_at(b"synced;", 0).unwrap();
    log.sync_all().unwrap();
    std::fs::File::open(dir.path()).unwrap().sync_all().unwrap();
    log.write_all_at(b"unsynced", 7).unwrap();
    std::fs::write(dir.path().join("new"), b"x").unwrap();
    assert_eq!(layer.pending(), (3, 1));
    // A write in flight through an open file when the cut comes fails, it does
    // not hang.
    let loss = layer.lose_unsynced().unwrap();
    assert!(kept.write_all_at(b"late", 0).is_err());
    drop((kept, log));
    assert!(!mounts().contains(&canon));
    assert_eq!(std::fs::read(dir.path().join("kept")).unwrap(), b"durable");
    assert_eq!(std::fs::read(dir.path().join("log")).unwrap(), b"synced;");
    assert!(!dir.path().join("new").exists());
    assert!(!dir.path().join(STASH).exists());
    assert_eq!(loss.paths_dropped, vec!["/new".to_string()]);
    assert_eq!(loss.files_rolled_back, 3);
    layer.remount().unwrap();
    assert_eq!(std::fs::read(dir.path().join("log")).unwrap(), b"synced;");
    drop(layer);
    assert!(!mounts().contains(&canon));
}

#[test]
fn o_dsync_writes_are_durable_when_answered() {
    use std::os::unix::fs::OpenOptionsExt;
    let backing = tempfile::tempdir().unwrap();
    let mnt = tempfile::tempdir().unwrap();
    std::fs::write(backing.path().join("wal"), b"").unwrap();
    let mut layer = Layer::mount(backing.path(), mnt.path(), Model::PosixStrict).unwrap();
    let f = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DSYNC)
        .open(mnt.path().join("wal"))
        .unwrap();
    f.write_all_at(b"commit 1", 0).unwrap();
    drop(f);
    let plain = OpenOptions::new()
        .write(true)
        .open(mnt.path().join("wal"))
        .unwrap();
    plain.write_all_at(b";commit 2", 8).unwrap();
    drop(plain);
    layer.lose_unsynced().unwrap();
    assert_eq!(
        std::fs::read(backing.path().join("wal")).unwrap(),
        b"commit 1"
    );
}

/// A rollback rebound died in: its stash holds the tree and heal keeps it.
#[test]
fn heal_keeps_a_stash_a_rollback_was_stopped_in_and_deletes_a_plain_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stash = dir.path().join(STASH);
    std::fs::create_dir(&stash).expect("stash");
    std::fs::write(stash.join("12345"), b"a file mid-rollback").expect("entry");
    std::fs::write(stash.join(super::ROLLING_BACK), b"").expect("marker");
    let (was, warning) = super::heal_mount(dir.path(), dir.path()).expect("heal");
    assert!(!was);
    assert!(warning.expect("a warning").contains("nothing was deleted"));
    assert_eq!(
        std::fs::read(stash.join("12345")).expect("kept"),
        b"a file mid-rollback"
    );
    std::fs::remove_file(stash.join(super::ROLLING_BACK)).expect("marker");
    let (_, warning) = super::heal_mount(dir.path(), dir.path()).expect("heal");
    assert!(warning.is_none());
    assert!(!stash.exists(), "a stash of unlinked inodes is removed");
}

#[test]
fn a_disk_fault_fails_its_operations_under_its_path_only_and_a_failed_fsync_makes_nothing_durable()
{
    use super::{IoError, IoFault, IoOp};
    use std::io::Write;
    use std::time::{Duration, Instant};

    let backing = tempfile::tempdir().unwrap();
    let mnt = tempfile::tempdir().unwrap();
    let mut layer = Layer::mount(backing.path(), mnt.path(), Model::PosixStrict).unwrap();
    let m = mnt.path();
    std::fs::create_dir(m.join("wal")).unwrap();
    for dir in [m, &m.join("wal")] {
        std::fs::File::open(dir).unwrap().sync_all().unwrap();
    }
    let open = |p: &Path| {
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .read(true)
            .open(p)
            .unwrap();
        f.write_all(b"acknowledged?").unwrap();
        f
    };
    let (wal, data) = (open(&m.join("wal/1")), open(&m.join("data")));
    for dir in [m, &m.join("wal")] {
        std::fs::File::open(dir).unwrap().sync_all().unwrap();
    }

    layer.set_io(Some(IoFault {
        ops: vec![IoOp::Fsync],
        path: Some("wal".into()),
        error: Some(IoError::Eio),
        delay: Duration::ZERO,
    }));
    let err = wal.sync_data().expect_err("an fsync under wal/ fails");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    data.sync_all().expect("an fsync elsewhere works");
    wal.write_all_at(b"more", 0)
        .expect("writes are not in the fault's ops");
    let hits = layer.set_io(None);
    assert_eq!(hits.count, 1, "{hits:?}");
    assert_eq!(hits.first, vec!["fsync wal/1".to_string()]);

    // The fsync that failed made nothing durable: a cut drops the WAL's data,
    // the other file's survives.
    drop((wal, data));
    layer.cut().unwrap();
    assert_eq!(std::fs::read(backing.path().join("wal/1")).unwrap(), b"");
    assert_eq!(
        std::fs::read(backing.path().join("data")).unwrap(),
        b"acknowledged?"
    );

    // ENOSPC on writes, EROFS on new names, every path.
    layer.set_io(Some(IoFault {
        ops: vec![IoOp::Write],
        path: None,
        error: Some(IoError::Enospc),
        delay: Duration::ZERO,
    }));
    let f = OpenOptions::new().write(true).open(m.join("data")).unwrap();
    let err = f.write_at(b"x", 0).expect_err("a write fails");
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    layer.set_io(Some(IoFault {
        ops: vec![IoOp::Namespace],
        path: None,
        error: Some(IoError::Erofs),
        delay: Duration::ZERO,
    }));
    f.write_at(b"x", 0).expect("writes work again");
    let err = std::fs::File::create(m.join("new")).expect_err("a create fails");
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    let err = std::fs::rename(m.join("data"), m.join("moved")).expect_err("a rename fails");
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    assert_eq!(layer.set_io(None).count, 2);
    std::fs::File::create(m.join("new")).expect("creates work again");

    // A delay: the operation waits at least that long, then succeeds.
    layer.set_io(Some(IoFault {
        ops: vec![IoOp::Fsync],
        path: None,
        error: None,
        delay: Duration::from_millis(300),
    }));
    let started = Instant::now();
    f.sync_all().expect("a slow fsync still succeeds");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(layer.set_io(None).count, 1);
    drop(f);
    layer.unmount().unwrap();
    assert!(mounts().is_empty() || !mounts().iter().any(|p| p == mnt.path()));
}

#[test]
fn an_fsync_a_disk_fault_delays_across_a_power_cut_is_never_done_and_paths_match_on_a_layer_over_its_own_directory(
) {
    use super::{IoFault, IoOp};
    use std::io::Write;
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    let mut layer = Layer::mount(dir.path(), dir.path(), Model::PosixStrict).unwrap();
    let m = dir.path();
    std::fs::create_dir(m.join("wal")).unwrap();
    let mut wal = std::fs::File::create(m.join("wal/1")).unwrap();
    for d in [m, &m.join("wal")] {
        std::fs::File::open(d).unwrap().sync_all().unwrap();
    }
    wal.write_all(b"not yet durable").unwrap();
    layer.set_io(Some(IoFault {
        ops: vec![IoOp::Fsync],
        path: Some("wal".into()),
        error: None,
        delay: Duration::from_millis(800),
    }));
    let fsync = std::thread::spawn(move || wal.sync_all());
    std::thread::sleep(Duration::from_millis(200));
    layer.cut().unwrap();
    let answered = fsync.join().unwrap();
    assert!(answered.is_err(), "the fsync cut short is not acknowledged");
    let hits = layer.set_io(None);
    assert_eq!(hits.first, vec!["fsync wal/1".to_string()], "{hits:?}");
    layer.unmount().unwrap();
    assert_eq!(
        std::fs::read(m.join("wal/1")).unwrap(),
        b"",
        "the delayed fsync did not make the data durable after the cut"
    );
}

#[test]
fn a_disk_fault_matches_a_rename_by_either_end_a_truncating_open_as_a_write_and_a_sync_write_as_an_fsync(
) {
    use super::{IoError, IoFault, IoOp};
    use std::os::unix::fs::OpenOptionsExt;
    use std::time::Duration;

    let backing = tempfile::tempdir().unwrap();
    let mnt = tempfile::tempdir().unwrap();
    let mut layer = Layer::mount(backing.path(), mnt.path(), Model::PosixStrict).unwrap();
    let m = mnt.path();
    std::fs::create_dir(m.join("wal")).unwrap();
    std::fs::write(m.join("tmp"), b"x").unwrap();
    std::fs::write(m.join("wal/old"), b"x").unwrap();
    let fault = |ops: Vec<IoOp>| IoFault {
        ops,
        path: Some("wal".into()),
        error: Some(IoError::Eio),
        delay: Duration::ZERO,
    };

    layer.set_io(Some(fault(vec![IoOp::Namespace])));
    let into = std::fs::rename(m.join("tmp"), m.join("wal/new")).expect_err("into wal/");
    assert_eq!(into.raw_os_error(), Some(libc::EIO), "{into}");
    let out = std::fs::rename(m.join("wal/old"), m.join("old")).expect_err("out of wal/");
    assert_eq!(out.raw_os_error(), Some(libc::EIO), "{out}");
    std::fs::rename(m.join("tmp"), m.join("tmp2")).expect("a rename elsewhere works");
    assert_eq!(layer.set_io(None).count, 2);

    layer.set_io(Some(fault(vec![IoOp::Write])));
    let trunc = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(m.join("wal/old"))
        .expect_err("a truncating open writes");
    assert_eq!(trunc.raw_os_error(), Some(libc::EIO), "{trunc}");
    OpenOptions::new()
        .write(true)
        .open(m.join("wal/old"))
        .expect("a plain open does not write");
    assert_eq!(std::fs::read(m.join("wal/old")).unwrap(), b"x");

    layer.set_io(Some(fault(vec![IoOp::Fsync])));
    let dsync = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DSYNC)
        .open(m.join("wal/old"))
        .unwrap();
    let err = dsync
        .write_at(b"y", 0)
        .expect_err("an O_DSYNC write is an fsync");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    let plain = OpenOptions::new()
        .write(true)
        .open(m.join("wal/old"))
        .unwrap();
    plain.write_at(b"z", 0).expect("a plain write is not");
    assert_eq!(layer.set_io(None).count, 1);
    drop((dsync, plain));
    layer.unmount().unwrap();
}

/// The tracker alone (the layer syncs without its lock): an fsync makes durable
/// what was written before it began, and only once it returned well.
#[test]
fn an_fsync_counts_once_it_returned_and_a_cut_or_an_error_before_that_keeps_its_writes_unsynced() {
    use super::Tracker;
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let write = |t: &mut Tracker, at: u64, bytes: &[u8]| {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let ino = f.metadata().unwrap().ino();
        t.before_write(ino, &f, at, bytes.len() as u64).unwrap();
        f.write_all_at(bytes, at).unwrap();
        ino
    };
    let fresh = |t: &mut Option<Tracker>| {
        std::fs::write(&path, b"durable").unwrap();
        *t = Some(Tracker::new(Model::PosixStrict, dir.path().to_path_buf()));
    };
    let mut t = None;

    // A cut while the sync is under way: it was never done.
    fresh(&mut t);
    let tr = t.as_mut().unwrap();
    let ino = write(tr, 0, b"AAAA");
    let _syncing = tr.sync_begins(ino);
    assert_eq!(tr.pending(), (1, 0));
    super::lose_unsynced(tr).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"durable");

    // Done well: its writes stay, the ones after it do not.
    fresh(&mut t);
    let tr = t.as_mut().unwrap();
    let ino = write(tr, 0, b"AAAA");
    let token = tr.sync_begins(ino);
    tr.sync_done(token, true);
    write(tr, 0, b"BB");
    super::lose_unsynced(tr).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"AAAAble");

    // Failed, with writes (an overwrite and an append) made while it ran: the
    // state before the first write is still the durable one.
    fresh(&mut t);
    let tr = t.as_mut().unwrap();
    let ino = write(tr, 0, b"AAAA");
    write(tr, 7, b"XYZ");
    let token = tr.sync_begins(ino);
    write(tr, 2, b"CC");
    write(tr, 10, b"Q");
    tr.sync_done(token, false);
    assert!(!tr.is_clean());
    super::lose_unsynced(tr).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"durable");
    assert!(tr.is_clean());
}

fn xattr(path: &Path, name: &str) -> Result<Vec<u8>, i32> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid strings; the buffer is as long as given.
    let got =
        unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if got < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    buf.truncate(got as usize);
    Ok(buf)
}

fn set_xattr(path: &Path, name: &str, value: Option<&[u8]>) {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid strings and value buffer.
    let rc = unsafe {
        match value {
            Some(v) => libc::lsetxattr(p.as_ptr(), n.as_ptr(), v.as_ptr().cast(), v.len(), 0),
            None => libc::lremovexattr(p.as_ptr(), n.as_ptr()),
        }
    };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
}

/// The layer answers a missing attribute from memory after the first miss: one
/// set or removed through the mount is seen at once.
#[test]
fn xattrs_read_set_and_removed_through_the_layer_are_seen_at_once_after_a_miss() {
    let dir = tempfile::tempdir().unwrap();
    let _layer = Layer::mount(dir.path(), dir.path(), Model::PosixStrict).unwrap();
    let f = dir.path().join("f");
    std::fs::write(&f, b"x").unwrap();
    for _ in 0..2 {
        assert_eq!(xattr(&f, "user.note"), Err(libc::ENODATA));
        set_xattr(&f, "user.note", Some(b"one"));
        assert_eq!(xattr(&f, "user.note").as_deref(), Ok(&b"one"[..]));
        set_xattr(&f, "user.note", None);
        assert_eq!(xattr(&f, "user.note"), Err(libc::ENODATA));
    }
}

/// With `FUSE_HANDLE_KILLPRIV_V2` the layer clears set-id bits itself: a user
/// other than root who writes or truncates a set-id file leaves it with the mode
/// the plain directory gives it.
#[test]
fn a_user_who_writes_or_truncates_a_set_id_file_clears_its_bits_as_on_the_plain_directory() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::os::unix::process::CommandExt;
    let run = |dir: &Path| -> Vec<u32> {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let cases = [
            (0o4777, "printf x >> \"$1\""),
            (0o2777, "printf x >> \"$1\""),
            (0o2767, "printf x >> \"$1\""),
            (0o6777, ": > \"$1\""),
            (0o4777, "truncate -s 1 \"$1\""),
        ];
        cases
            .iter()
            .enumerate()
            .map(|(i, (mode, script))| {
                let path = dir.join(format!("f{i}"));
                std::fs::write(&path, b"data").unwrap();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode)).unwrap();
                let status = std::process::Command::new("sh")
                    .args(["-c", script, "sh"])
                    .arg(&path)
                    .uid(65534)
                    .gid(65534)
                    .status()
                    .unwrap();
                assert!(status.success(), "{script} on {}", path.display());
                std::fs::metadata(&path).unwrap().mode() & 0o7777
            })
            .collect()
    };
    let plain = tempfile::tempdir().unwrap();
    let layered = tempfile::tempdir().unwrap();
    let layer = Layer::mount(layered.path(), layered.path(), Model::PosixStrict).unwrap();
    let through = run(layered.path());
    drop(layer);
    let expected = run(plain.path());
    assert!(expected.iter().all(|m| m & 0o4000 == 0), "{expected:?}");
    assert_eq!(
        through, expected,
        "modes through the layer vs the plain directory"
    );
}
