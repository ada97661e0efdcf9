//! The durability model: what of a directory tree was made durable (fsync,
//! fdatasync, directory fsync, O_SYNC writes) and what a power cut would drop, kept
//! as undo data next to a write-through backing directory; [`lose_unsynced`] rolls
//! the backing directory back to exactly the durable state.
//!
//! Inodes are the backing filesystem's own numbers (`st_ino`). File data: for every
//! file changed since it was last synced, its durable size and the durable bytes of
//! the pages it overwrote (saved before the first overwrite). Directory entries: for
//! every directory changed since it was last synced, its durable entries (name →
//! inode), taken before the first change. An inode named by some durable entry is
//! never really deleted while it is unsynced: its last name is moved into a hidden
//! stash directory instead, so a rollback can put it back.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::unix::fs::{DirEntryExt, FileExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Name of the hidden directory in the backing root that keeps unlinked inodes a
/// durable entry still names (never shown through the mount, removed by a rollback).
pub const STASH: &str = ".rebound-unsynced";

/// A file in the stash while a rollback is under way: the stash then holds the
/// whole tree (entries named by inode number), which must never be deleted.
pub const ROLLING_BACK: &str = "ROLLING-BACK";

/// Granularity of saved durable bytes.
const PAGE: u64 = 4096;
/// Pages saved with one read at most (1 MiB: a truncate of a large durable file
/// is read in pieces, never into one buffer as large as the file).
const READ_PAGES: u64 = 256;

/// Which crash semantics the layer models (every finding is labelled with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Model {
    /// POSIX at its strictest: a file's data is durable only after its own fsync or
    /// fdatasync (or an O_SYNC/O_DSYNC write), a directory's entries (create,
    /// rename, unlink, link, mkdir, rmdir) only after that directory's fsync.
    PosixStrict,
    /// Like ext4 with `data=ordered,auto_da_alloc`: directory changes persist in the
    /// order they were made, all of them at any fsync (one journal); a
    /// replace-by-rename makes the renamed file's data durable first. File data is
    /// otherwise durable only after its own fsync.
    Ext4Like,
}

impl Model {
    /// The kebab-case name used in files and reports.
    pub fn name(self) -> &'static str {
        match self {
            Model::PosixStrict => "posix-strict",
            Model::Ext4Like => "ext4-like",
        }
    }

    /// Parses `posix-strict` or `ext4-like`.
    pub fn parse(text: &str) -> Option<Model> {
        match text {
            "posix-strict" => Some(Model::PosixStrict),
            "ext4-like" => Some(Model::Ext4Like),
            _ => None,
        }
    }
}

/// A file changed since it was last synced.
#[derive(Debug, Default)]
struct FileState {
    /// Its size at the last sync.
    durable_size: u64,
    /// Durable contents of the pages (index → bytes, cut at `durable_size`)
    /// overwritten since.
    saved: BTreeMap<u64, Vec<u8>>,
}

impl FileState {
    /// This (older) state with what `newer` saved since: the durable size and
    /// every page this one saved stay; a page only `newer` saved was unchanged
    /// since this state's sync, so its bytes (cut at this durable size) are
    /// durable ones.
    fn under(mut self, newer: FileState) -> FileState {
        for (page, mut bytes) in newer.saved {
            let start = page * PAGE;
            if start >= self.durable_size || self.saved.contains_key(&page) {
                continue;
            }
            bytes.truncate((self.durable_size - start).min(PAGE) as usize);
            self.saved.insert(page, bytes);
        }
        self
    }
}

/// The undo data of a tree under the layer.
#[derive(Debug)]
pub struct Tracker {
    model: Model,
    /// The backing root, as the daemon reaches it.
    base: PathBuf,
    files: HashMap<u64, FileState>,
    /// Durable entries of directories changed since their last sync.
    dirs: HashMap<u64, BTreeMap<OsString, u64>>,
    /// How many durable entries (of changed directories) name each inode.
    refs: HashMap<u64, u32>,
    /// Inodes whose last name is in the stash.
    stashed: HashSet<u64>,
    /// fsyncs under way (oldest first): the state each took out of `files` when
    /// it began. Until it ends, a power cut still drops those writes (an fsync is
    /// durable when it returns); a failed one puts them back.
    syncing: Vec<(SyncToken, u64, FileState)>,
    next_sync: u64,
}

/// An fsync under way ([`Tracker::sync_begins`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncToken(u64);

impl Tracker {
    /// A tracker for the tree at `base`, everything in it durable.
    pub fn new(model: Model, base: PathBuf) -> Self {
        Tracker {
            model,
            base,
            files: HashMap::new(),
            dirs: HashMap::new(),
            refs: HashMap::new(),
            stashed: HashSet::new(),
            syncing: Vec::new(),
            next_sync: 0,
        }
    }

    /// The model.
    pub fn model(&self) -> Model {
        self.model
    }

    /// Where a stashed inode's last name is.
    pub fn stash_path(&self, ino: u64) -> PathBuf {
        self.base.join(STASH).join(ino.to_string())
    }

    /// Whether `ino`'s last name is in the stash.
    pub fn is_stashed(&self, ino: u64) -> bool {
        self.stashed.contains(&ino)
    }

    /// Whether nothing is unsynced.
    pub fn is_clean(&self) -> bool {
        self.files.is_empty()
            && self.dirs.is_empty()
            && self.stashed.is_empty()
            && self.syncing.is_empty()
    }

    /// Files and directories with unsynced changes.
    pub fn pending(&self) -> (usize, usize) {
        let syncing = self
            .syncing
            .iter()
            .filter(|(_, ino, _)| !self.files.contains_key(ino))
            .map(|(_, ino, _)| ino)
            .collect::<HashSet<_>>()
            .len();
        (self.files.len() + syncing, self.dirs.len())
    }

    fn file(&mut self, ino: u64, file: &File) -> io::Result<&mut FileState> {
        match self.files.entry(ino) {
            std::collections::hash_map::Entry::Occupied(e) => Ok(e.into_mut()),
            std::collections::hash_map::Entry::Vacant(e) => {
                let durable_size = file.metadata()?.len();
                Ok(e.insert(FileState {
                    durable_size,
                    saved: BTreeMap::new(),
                }))
            }
        }
    }

    /// Saves the durable bytes of `[from, to)` that are not saved yet.
    fn save(&mut self, ino: u64, file: &File, from: u64, to: u64) -> io::Result<()> {
        let state = self.file(ino, file)?;
        let to = to.min(state.durable_size);
        if from >= to {
            return Ok(());
        }
        // Each run of pages not saved yet is read with one call per READ_PAGES.
        let last = to.div_ceil(PAGE);
        let mut page = from / PAGE;
        while page < last {
            if state.saved.contains_key(&page) {
                page += 1;
                continue;
            }
            let mut end = page + 1;
            while end < last && end - page < READ_PAGES && !state.saved.contains_key(&end) {
                end += 1;
            }
            let start = page * PAGE;
            let mut bytes = vec![0u8; ((end * PAGE).min(state.durable_size) - start) as usize];
            let mut got = 0;
            while got < bytes.len() {
                match file.read_at(&mut bytes[got..], start + got as u64)? {
                    0 => break,
                    n => got += n,
                }
            }
            for (i, chunk) in bytes.chunks(PAGE as usize).enumerate() {
                state.saved.insert(page + i as u64, chunk.to_vec());
            }
            page = end;
        }
        Ok(())
    }

    /// Before `len` bytes are written at `offset` of `ino` (open as `file`, readable).
    pub fn before_write(&mut self, ino: u64, file: &File, offset: u64, len: u64) -> io::Result<()> {
        self.save(ino, file, offset, offset.saturating_add(len))
    }

    /// Before `ino` is truncated (or extended) to `size`.
    pub fn before_truncate(&mut self, ino: u64, file: &File, size: u64) -> io::Result<()> {
        self.save(ino, file, size, u64::MAX)
    }

    /// Before a byte range of `ino` changes without a write (a hole punched).
    pub fn before_change(&mut self, ino: u64, file: &File, from: u64, to: u64) -> io::Result<()> {
        self.save(ino, file, from, to)
    }

    /// `ino` was just created (a new file: nothing of it is durable yet).
    pub fn created_file(&mut self, ino: u64) {
        self.not_syncing(ino);
        self.files.insert(ino, FileState::default());
    }

    /// `ino` was just created as a directory (no entry of it is durable yet).
    pub fn created_dir(&mut self, ino: u64) {
        self.not_syncing(ino);
        self.drop_snapshot(ino);
        self.dirs.insert(ino, BTreeMap::new());
        self.files.remove(&ino);
    }

    /// `ino`'s data (and size) were made durable.
    pub fn synced_data(&mut self, ino: u64) {
        self.files.remove(&ino);
        self.not_syncing(ino);
    }

    /// Forgets the fsyncs of `ino` under way (its data is durable, or it is gone).
    fn not_syncing(&mut self, ino: u64) {
        self.syncing.retain(|(_, i, _)| *i != ino);
    }

    /// An fsync or fdatasync of `ino` begins (the daemon then syncs without
    /// holding the state's lock): what was written so far is what it makes
    /// durable once it ends well ([`Tracker::sync_done`]); what is written
    /// meanwhile is tracked afresh.
    pub fn sync_begins(&mut self, ino: u64) -> SyncToken {
        let token = SyncToken(self.next_sync);
        self.next_sync += 1;
        if let Some(state) = self.files.remove(&ino) {
            self.syncing.push((token, ino, state));
        }
        token
    }

    /// The fsync `token` ended: when `ok`, its writes are durable (and under
    /// ext4-like every directory change made so far: the journal commits);
    /// otherwise they are unsynced again.
    pub fn sync_done(&mut self, token: SyncToken, ok: bool) {
        if let Some(pos) = self.syncing.iter().position(|(t, ..)| *t == token) {
            let (_, ino, state) = self.syncing.remove(pos);
            if !ok {
                self.put_back(ino, state);
            }
        }
        if ok && self.model == Model::Ext4Like {
            self.commit_all();
        }
    }

    /// Puts an older state of `ino` back under the one tracked since.
    fn put_back(&mut self, ino: u64, older: FileState) {
        let merged = match self.files.remove(&ino) {
            None => older,
            Some(newer) => older.under(newer),
        };
        self.files.insert(ino, merged);
    }

    /// Every fsync under way counts as not done (a power cut came first).
    fn fold_syncing(&mut self) {
        while let Some((_, ino, state)) = self.syncing.pop() {
            self.put_back(ino, state);
        }
    }

    /// An fsync or fdatasync of `ino`: its data is durable; under ext4-like every
    /// directory change made so far is too (the journal commits).
    pub fn synced_file(&mut self, ino: u64) {
        self.files.remove(&ino);
        self.not_syncing(ino);
        if self.model == Model::Ext4Like {
            self.commit_all();
        }
    }

    /// A directory fsync of `ino`: its entries are durable (ext4-like: every
    /// directory's).
    pub fn synced_dir(&mut self, ino: u64) {
        match self.model {
            Model::PosixStrict => self.drop_snapshot(ino),
            Model::Ext4Like => self.commit_all(),
        }
    }

    fn commit_all(&mut self) {
        let dirs: Vec<u64> = self.dirs.keys().copied().collect();
        for d in dirs {
            self.drop_snapshot(d);
        }
    }

    /// Forgets the durable entries of directory `ino` (they became its current
    /// ones), and removes stashed inodes no durable entry names any more.
    fn drop_snapshot(&mut self, ino: u64) {
        let Some(entries) = self.dirs.remove(&ino) else {
            return;
        };
        for child in entries.values() {
            let gone = match self.refs.get_mut(child) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                _ => true,
            };
            if gone {
                self.refs.remove(child);
                if self.stashed.remove(child) {
                    let p = self.stash_path(*child);
                    let _ = std::fs::remove_file(&p).or_else(|_| std::fs::remove_dir(&p));
                    // A stashed directory is empty, but its own durable entries
                    // may keep others.
                    self.drop_snapshot(*child);
                }
            }
        }
    }

    /// Before an entry of directory `ino` (reached at `path`) changes: keeps its
    /// durable entries, unless they are kept already.
    pub fn before_dir_change(&mut self, ino: u64, path: &Path) -> io::Result<()> {
        if self.dirs.contains_key(&ino) {
            return Ok(());
        }
        let mut entries = BTreeMap::new();
        for e in std::fs::read_dir(path)? {
            let e = e?;
            if ino_is_root(&self.base, path) && e.file_name() == STASH {
                continue;
            }
            entries.insert(e.file_name(), e.ino());
        }
        for child in entries.values() {
            *self.refs.entry(*child).or_default() += 1;
        }
        self.dirs.insert(ino, entries);
        Ok(())
    }

    /// Whether a durable entry names `ino`, so that its last name must go to the
    /// stash rather than away.
    pub fn keeps(&self, ino: u64) -> bool {
        self.refs.get(&ino).is_some_and(|n| *n > 0)
    }

    /// Moves `path` (the last name of `ino`) into the stash.
    pub fn stash(&mut self, ino: u64, path: &Path) -> io::Result<()> {
        let dir = self.base.join(STASH);
        match std::fs::create_dir(&dir) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        std::fs::rename(path, self.stash_path(ino))?;
        self.stashed.insert(ino);
        Ok(())
    }

    /// `ino` is gone for good (its last name removed, no durable entry names it).
    pub fn forget(&mut self, ino: u64) {
        self.files.remove(&ino);
        self.not_syncing(ino);
        self.drop_snapshot(ino);
    }

    /// Makes everything durable now (a checkpoint: e.g. after a stack's setup).
    pub fn checkpoint(&mut self) {
        self.files.clear();
        self.syncing.clear();
        self.dirs.clear();
        self.refs.clear();
        self.stashed.clear();
        let _ = std::fs::remove_dir_all(self.base.join(STASH));
    }
}

fn ino_is_root(base: &Path, path: &Path) -> bool {
    base == path
}

/// What a rollback dropped.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Loss {
    /// The model it was made under.
    pub model: Option<Model>,
    /// Files whose unsynced data was rolled back.
    pub files_rolled_back: usize,
    /// Unsynced bytes dropped (written past the durable size, or overwritten).
    pub bytes_dropped: u64,
    /// Paths that existed before the rollback and do not after.
    pub paths_dropped: Vec<String>,
    /// Paths brought back (their removal or rename had not been made durable).
    pub paths_restored: Vec<String>,
}

impl Loss {
    /// One line: what was dropped under which model.
    pub fn summary(&self) -> String {
        format!(
            "{}: {} file(s) rolled back ({} unsynced bytes), {} path(s) dropped, {} restored",
            self.model.map_or("-", Model::name),
            self.files_rolled_back,
            self.bytes_dropped,
            self.paths_dropped.len(),
            self.paths_restored.len()
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    Other,
}

/// The backing tree as it is: each directory's entries, each inode's kind.
#[derive(Default)]
struct Current {
    entries: HashMap<u64, BTreeMap<OsString, u64>>,
    kinds: HashMap<u64, Kind>,
    paths: BTreeSet<String>,
}

fn scan(base: &Path, dir: &Path, ino: u64, rel: &str, cur: &mut Current) -> io::Result<()> {
    let mut entries = BTreeMap::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        if dir == base && name == STASH {
            continue;
        }
        let kind = if e.file_type()?.is_dir() {
            Kind::Dir
        } else {
            Kind::Other
        };
        let child_rel = format!("{rel}/{}", name.to_string_lossy());
        cur.paths.insert(child_rel.clone());
        cur.kinds.insert(e.ino(), kind);
        if kind == Kind::Dir {
            scan(base, &e.path(), e.ino(), &child_rel, cur)?;
        }
        entries.insert(name, e.ino());
    }
    cur.entries.insert(ino, entries);
    Ok(())
}

fn paths_of(base: &Path) -> io::Result<BTreeSet<String>> {
    let mut cur = Current::default();
    let root = std::fs::metadata(base)?.ino();
    scan(base, base, root, "", &mut cur)?;
    Ok(cur.paths)
}

/// Rolls the backing tree at `tracker`'s base back to its durable state: unsynced
/// data dropped, unsynced directory changes undone, the stash removed. Nothing may
/// be using the tree (the mount is gone). The tracker is clean afterwards.
pub fn lose_unsynced(tracker: &mut Tracker) -> io::Result<Loss> {
    tracker.fold_syncing();
    let base = tracker.base.clone();
    let stash = base.join(STASH);
    let root = std::fs::metadata(&base)?.ino();
    let mut cur = Current::default();
    scan(&base, &base, root, "", &mut cur)?;
    let before = cur.paths.clone();
    if let Ok(rd) = std::fs::read_dir(&stash) {
        for e in rd {
            let e = e?;
            let kind = if e.file_type()?.is_dir() {
                Kind::Dir
            } else {
                Kind::Other
            };
            cur.kinds.insert(e.ino(), kind);
            if kind == Kind::Dir {
                cur.entries.entry(e.ino()).or_default();
            }
        }
    }

    // The durable tree: a changed directory's kept entries, another's current ones.
    let durable_entries = |ino: u64| -> BTreeMap<OsString, u64> {
        tracker
            .dirs
            .get(&ino)
            .or_else(|| cur.entries.get(&ino))
            .cloned()
            .unwrap_or_default()
    };

    // 1. Detach every inode into the stash, flat, by inode number.
    match std::fs::create_dir(&stash) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    {
        let mut marker = std::fs::File::create(stash.join(ROLLING_BACK))?;
        std::io::Write::write_all(
            &mut marker,
            b"rebound was rolling this directory back to its durable state when it stopped;\n\
              the entries here are the directory's files and directories, named by inode number.\n",
        )?;
        marker.sync_all()?;
    }
    let at = |ino: u64| stash.join(ino.to_string());
    fn detach(dir: &Path, ino: u64, cur: &Current, at: &dyn Fn(u64) -> PathBuf) -> io::Result<()> {
        let Some(entries) = cur.entries.get(&ino) else {
            return Ok(());
        };
        for (name, child) in entries {
            let from = dir.join(name);
            let to = at(*child);
            if cur.kinds.get(child) == Some(&Kind::Dir) {
                std::fs::rename(&from, &to)?;
                detach(&to, *child, cur, at)?;
            } else if to.symlink_metadata().is_ok() {
                std::fs::remove_file(&from)?;
            } else {
                std::fs::rename(&from, &to)?;
            }
        }
        Ok(())
    }
    detach(&base, root, &cur, &at)?;

    // 2. Data: durable size, then the durable bytes of overwritten pages.
    let mut loss = Loss {
        model: Some(tracker.model),
        ..Loss::default()
    };
    for (ino, state) in &tracker.files {
        let path = at(*ino);
        if cur.kinds.get(ino) != Some(&Kind::Other) {
            continue;
        }
        let Ok(meta) = path.symlink_metadata() else {
            continue;
        };
        if !meta.file_type().is_file() {
            continue;
        }
        let file = std::fs::OpenOptions::new().write(true).open(&path)?;
        loss.files_rolled_back += 1;
        loss.bytes_dropped += meta.len().saturating_sub(state.durable_size)
            + state.saved.values().map(|b| b.len() as u64).sum::<u64>();
        file.set_len(state.durable_size)?;
        for (page, bytes) in &state.saved {
            file.write_all_at(bytes, page * PAGE)?;
        }
        file.sync_all()?;
    }

    // 3. Attach the durable tree (a directory at most once: the first durable entry
    // found breadth-first, by name, keeps it).
    let mut placed: HashSet<u64> = HashSet::from([root]);
    let mut queue = std::collections::VecDeque::from([(base.clone(), root)]);
    while let Some((dir, ino)) = queue.pop_front() {
        for (name, child) in durable_entries(ino) {
            let from = at(child);
            let to = dir.join(&name);
            match cur.kinds.get(&child) {
                Some(Kind::Dir) if placed.insert(child) && from.exists() => {
                    std::fs::rename(&from, &to)?;
                    queue.push_back((to, child));
                }
                Some(Kind::Other) if from.symlink_metadata().is_ok() => {
                    std::fs::hard_link(&from, &to)?;
                }
                _ => {}
            }
        }
    }
    std::fs::remove_dir_all(&stash)?;
    File::open(&base)?.sync_all()?;

    let after = paths_of(&base)?;
    loss.paths_dropped = before.difference(&after).cloned().collect();
    loss.paths_restored = after.difference(&before).cloned().collect();
    tracker.files.clear();
    tracker.dirs.clear();
    tracker.refs.clear();
    tracker.stashed.clear();
    Ok(loss)
}

/// The name `name` is the stash in the backing root (hidden from the mount).
pub fn is_stash(parent_is_root: bool, name: &OsStr) -> bool {
    parent_is_root && name == STASH
}
