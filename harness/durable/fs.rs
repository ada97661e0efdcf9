//! The FUSE side of the durability layer: a path passthrough over the backing
//! directory that tells the [`Tracker`] about every change before it is made.
//!
//! Choices the kernel imposes (see `research/power-loss.md`): fsync and fsyncdir
//! are always answered (an ENOSYS would make the kernel stop forwarding them and
//! tracking would silently end); no writeback cache, no `direct_io`, no
//! fd-passthrough, so every write(2) reaches this daemon in order and shared mmap
//! still works (its dirty pages arrive here as writes on msync or writeback).
//! fallocate, copy_file_range and lseek are left to the kernel's fallbacks
//! (plain writes, which are tracked). File attributes other than the size (mode,
//! owner, times, xattrs) pass straight through: they are not modelled. With
//! `FUSE_HANDLE_KILLPRIV_V2` the layer clears set-id bits itself when a caller
//! without privileges writes or truncates (the kernel then stops asking for
//! `security.capability` before every write).

use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use super::inject::{IoFault, IoHits, IoOp};
use super::tracker::{is_stash, Tracker};

/// How long the kernel may cache attributes and entries (this daemon is the only
/// writer of the tree).
const TTL: Duration = Duration::from_secs(1);

/// State shared by the FUSE threads and the [`super::Layer`] that owns the mount.
#[derive(Debug)]
pub struct Shared {
    /// The undo data.
    pub tracker: Tracker,
    /// Known names of each inode (parent inode, name), backing numbers.
    links: HashMap<u64, Vec<(u64, OsString)>>,
    handles: HashMap<u64, Handle>,
    next_fh: u64,
    /// Directory listings, taken at opendir.
    listings: HashMap<u64, Vec<(u64, FileType, OsString)>>,
    /// The disk fault in force, if any, and what it matched so far.
    pub io: Option<IoFault>,
    /// What the disk fault in force matched.
    pub io_hits: IoHits,
    /// Bumped when the connection is aborted or the layer unmounted: an
    /// operation a disk fault delayed across it is not done.
    pub epoch: u64,
    /// Extended attributes each inode is known not to have. The kernel asks for
    /// `security.capability` before a write to a file whose attributes it has
    /// just refreshed (FUSE then clears S_NOSEC), so without this each such
    /// write costs a path lookup in the backing tree too. An attribute only appears through
    /// [`Filesystem::setxattr`] here, or on a new inode: both forget the inode.
    no_xattr: HashMap<u64, std::collections::HashSet<OsString>>,
}

/// Inodes [`Shared`]'s negative xattr cache holds at most (then it starts over).
const NO_XATTR_MAX: usize = 65_536;

#[derive(Debug)]
struct Handle {
    ino: u64,
    file: Arc<File>,
    /// Opened O_SYNC or O_DSYNC: every write is durable once answered.
    sync: bool,
}

impl Shared {
    /// A fresh state around `tracker`.
    pub fn new(tracker: Tracker) -> Self {
        Shared {
            tracker,
            links: HashMap::new(),
            handles: HashMap::new(),
            next_fh: 1,
            listings: HashMap::new(),
            io: None,
            io_hits: IoHits::default(),
            epoch: 0,
            no_xattr: HashMap::new(),
        }
    }

    /// Forgets names and handles (after the mount is gone).
    pub fn reset_mount_state(&mut self) {
        self.links.clear();
        self.handles.clear();
        self.listings.clear();
        self.no_xattr.clear();
    }
}

/// The filesystem served by fuser.
pub struct DurableFs {
    shared: Arc<Mutex<Shared>>,
    base: PathBuf,
    root: u64,
}

impl DurableFs {
    /// Serves the tree at `base` (whose inode is `root`), tracking into `shared`.
    pub fn new(shared: Arc<Mutex<Shared>>, base: PathBuf, root: u64) -> Self {
        DurableFs { shared, base, root }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Backing inode of a FUSE inode (the root is 1 to the kernel).
    fn back(&self, ino: INodeNo) -> u64 {
        swap(ino.0, self.root)
    }

    fn front(&self, ino: u64) -> INodeNo {
        INodeNo(swap(ino, self.root))
    }

    /// The disk fault's gate, passed before an operation of one of `ops` that
    /// touches the places `at` (an inode, or a name in the directory inode): when
    /// a fault in force matches one of them, the operation is recorded, waits the
    /// fault's delay (without the lock) and fails with its error. An operation
    /// whose wait outlasted a power cut (or an unmount) fails with EIO: it never
    /// reaches the backing directory of the next mount.
    fn gate(&self, ops: &[IoOp], at: &[(INodeNo, Option<&OsStr>)]) -> Result<(), Errno> {
        self.gate_by(|_| ops, at)
    }

    /// [`DurableFs::gate`] with the classes chosen from the state, only when a
    /// fault is in force (no extra lookup on the way of every operation).
    fn gate_by<'o>(
        &self,
        ops: impl FnOnce(&Shared) -> &'o [IoOp],
        at: &[(INodeNo, Option<&OsStr>)],
    ) -> Result<(), Errno> {
        let (delay, error, epoch) = {
            let mut s = self.lock();
            let Some(fault) = s.io.clone() else {
                return Ok(());
            };
            let ops = ops(&s);
            let Some(op) = ops.iter().find(|o| fault.ops.contains(o)).copied() else {
                return Ok(());
            };
            let rels: Vec<Option<PathBuf>> = at
                .iter()
                .map(|(ino, name)| {
                    self.path(&s, self.back(*ino)).ok().map(|p| {
                        let full = match name {
                            Some(n) => p.join(n),
                            None => p,
                        };
                        full.strip_prefix(&self.base)
                            .map(Path::to_path_buf)
                            .unwrap_or(full)
                    })
                })
                .collect();
            let Some(rel) = rels.iter().find(|rel| fault.matches(ops, rel.as_deref())) else {
                return Ok(());
            };
            s.io_hits.hit(op, rel.as_deref());
            (fault.delay, fault.error, s.epoch)
        };
        if !delay.is_zero() {
            std::thread::sleep(delay);
            if self.lock().epoch != epoch {
                return Err(Errno::EIO);
            }
        }
        error.map_or(Ok(()), |e| Err(e.errno()))
    }

    fn path(&self, s: &Shared, ino: u64) -> Result<PathBuf, Errno> {
        let mut parts = Vec::new();
        let mut at = ino;
        for _ in 0..4096 {
            if at == self.root {
                let mut p = self.base.clone();
                p.extend(parts.iter().rev());
                return Ok(p);
            }
            match s.links.get(&at).and_then(|l| l.first()) {
                Some((parent, name)) => {
                    parts.push(name.clone());
                    at = *parent;
                }
                None if parts.is_empty() && s.tracker.is_stashed(at) => {
                    return Ok(s.tracker.stash_path(at))
                }
                None => return Err(Errno::ENOENT),
            }
        }
        Err(Errno::ELOOP)
    }

    fn attr(&self, meta: &std::fs::Metadata) -> FileAttr {
        let time = |s: i64, ns: i64| {
            if s >= 0 {
                UNIX_EPOCH + Duration::new(s as u64, ns as u32)
            } else {
                UNIX_EPOCH
            }
        };
        FileAttr {
            ino: self.front(meta.ino()),
            size: meta.len(),
            blocks: meta.blocks(),
            atime: time(meta.atime(), meta.atime_nsec()),
            mtime: time(meta.mtime(), meta.mtime_nsec()),
            ctime: time(meta.ctime(), meta.ctime_nsec()),
            crtime: UNIX_EPOCH,
            kind: kind_of(meta.file_type()),
            perm: (meta.mode() & 0o7777) as u16,
            nlink: meta.nlink() as u32,
            uid: meta.uid(),
            gid: meta.gid(),
            rdev: meta.rdev() as u32,
            blksize: meta.blksize() as u32,
            flags: 0,
        }
    }

    fn add_link(s: &mut Shared, ino: u64, parent: u64, name: &OsStr) {
        let links = s.links.entry(ino).or_default();
        if !links.iter().any(|(p, n)| *p == parent && n == name) {
            links.push((parent, name.to_os_string()));
        }
    }

    fn remove_link(s: &mut Shared, ino: u64, parent: u64, name: &OsStr) {
        if let Some(links) = s.links.get_mut(&ino) {
            links.retain(|(p, n)| !(*p == parent && n == name));
        }
    }

    /// The backing path of `name` in `parent`, refusing the stash.
    fn child(&self, s: &Shared, parent: u64, name: &OsStr) -> Result<PathBuf, Errno> {
        if is_stash(parent == self.root, name) {
            return Err(Errno::ENOENT);
        }
        Ok(self.path(s, parent)?.join(name))
    }

    fn new_handle(s: &mut Shared, ino: u64, file: File, sync: bool) -> FileHandle {
        let fh = s.next_fh;
        s.next_fh += 1;
        s.handles.insert(
            fh,
            Handle {
                ino,
                file: Arc::new(file),
                sync,
            },
        );
        FileHandle(fh)
    }

    /// A readable and writable file for `ino` (the open handle's, else the path's).
    fn file_for(&self, s: &Shared, ino: u64, fh: Option<FileHandle>) -> Result<Arc<File>, Errno> {
        if let Some(h) = fh.and_then(|fh| s.handles.get(&fh.0)) {
            return Ok(h.file.clone());
        }
        let path = self.path(s, ino)?;
        Ok(Arc::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(errno)?,
        ))
    }

    /// Removes the last or one name of `ino` at `path`: into the stash when a
    /// durable entry still names it, for good otherwise.
    fn remove_name(
        &self,
        s: &mut Shared,
        ino: u64,
        path: &Path,
        meta: &std::fs::Metadata,
    ) -> Result<(), Errno> {
        let dir = meta.is_dir();
        let last = dir || meta.nlink() <= 1;
        if last && s.tracker.keeps(ino) {
            s.tracker.stash(ino, path).map_err(errno)?;
        } else {
            if dir {
                std::fs::remove_dir(path).map_err(errno)?;
            } else {
                std::fs::remove_file(path).map_err(errno)?;
            }
            if last {
                s.tracker.forget(ino);
            }
        }
        Ok(())
    }

    fn owned(req: &Request, path: &Path) -> Result<(), Errno> {
        let c = cstring(path)?;
        // SAFETY: `c` is a valid NUL-terminated path for the call's duration.
        let rc = unsafe { libc::lchown(c.as_ptr(), req.uid(), req.gid()) };
        if rc != 0 {
            return Err(errno(io::Error::last_os_error()));
        }
        Ok(())
    }
}

/// Clears a file's set-user-ID bit, and its set-group-ID bit when group execute
/// is set too or the caller (primary group `gid`) is not in the file's group, as
/// the kernel does when someone without `CAP_FSETID` changes a file (with
/// `FUSE_HANDLE_KILLPRIV_V2` the server does it). The caller's supplementary
/// groups are not known here: a member through one of them loses the bit too.
fn kill_suidgid(file: &File, gid: u32) -> io::Result<()> {
    let meta = file.metadata()?;
    let mode = meta.mode();
    let mut kill = mode & libc::S_ISUID;
    if mode & libc::S_ISGID != 0 && (mode & libc::S_IXGRP != 0 || meta.gid() != gid) {
        kill |= libc::S_ISGID;
    }
    if kill != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777 & !kill))?;
    }
    Ok(())
}

/// The kernel's root inode is 1; the backing root's number is given to whatever
/// backing inode is numbered 1 (so the mapping is its own inverse).
fn swap(ino: u64, root: u64) -> u64 {
    if ino == root {
        1
    } else if ino == 1 {
        root
    } else {
        ino
    }
}

fn kind_of(t: std::fs::FileType) -> FileType {
    FileType::from_std(t).unwrap_or(FileType::RegularFile)
}

fn errno(e: io::Error) -> Errno {
    Errno::from(e)
}

fn cstring(path: &Path) -> Result<CString, Errno> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)
}

fn xattr_reply(reply: ReplyXattr, size: u32, bytes: Result<Vec<u8>, Errno>) {
    match bytes {
        Err(e) => reply.error(e),
        Ok(b) if size == 0 => reply.size(b.len() as u32),
        Ok(b) if b.len() > size as usize => reply.error(Errno::ERANGE),
        Ok(b) => reply.data(&b),
    }
}

/// Calls a sizing xattr function twice (size, then data).
fn xattr_bytes(call: impl Fn(*mut libc::c_void, usize) -> isize) -> Result<Vec<u8>, Errno> {
    let n = call(std::ptr::null_mut(), 0);
    if n < 0 {
        return Err(errno(io::Error::last_os_error()));
    }
    let mut buf = vec![0u8; n as usize];
    let got = call(buf.as_mut_ptr().cast(), buf.len());
    if got < 0 {
        return Err(errno(io::Error::last_os_error()));
    }
    buf.truncate(got as usize);
    Ok(buf)
}

impl Filesystem for DurableFs {
    fn init(&mut self, _req: &Request, config: &mut fuser::KernelConfig) -> io::Result<()> {
        // The server clears set-id bits itself (see `kill_suidgid`), so the
        // kernel may mark inodes free of privileges (SB_NOSEC) instead of asking
        // for `security.capability` before every write; the backing filesystem
        // drops that attribute on our own writes, truncates and chowns.
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_HANDLE_KILLPRIV_V2);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut s = self.lock();
        let parent = self.back(parent);
        let path = match self.child(&s, parent, name) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        match path.symlink_metadata() {
            Ok(meta) => {
                Self::add_link(&mut s, meta.ino(), parent, name);
                reply.entry(&TTL, &self.attr(&meta), Generation(0));
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let s = self.lock();
        let ino = self.back(ino);
        if let Some(h) = fh.and_then(|fh| s.handles.get(&fh.0)) {
            return match h.file.metadata() {
                Ok(m) => reply.attr(&TTL, &self.attr(&m)),
                Err(e) => reply.error(errno(e)),
            };
        }
        match self
            .path(&s, ino)
            .and_then(|p| p.symlink_metadata().map_err(errno))
        {
            Ok(m) => reply.attr(&TTL, &self.attr(&m)),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        if size.is_some() {
            if let Err(e) = self.gate(&[IoOp::Write], &[(ino, None)]) {
                return reply.error(e);
            }
        }
        let mut s = self.lock();
        let ino = self.back(ino);
        let result = (|| -> Result<std::fs::Metadata, Errno> {
            let path = self.path(&s, ino)?;
            if let Some(size) = size {
                let file = self.file_for(&s, ino, fh)?;
                s.tracker.before_truncate(ino, &file, size).map_err(errno)?;
                file.set_len(size).map_err(errno)?;
                // FATTR_KILL_SUIDGID (a truncate without CAP_FSETID) does not
                // reach this trait: a caller other than root stands for it.
                if req.uid() != 0 && mode.is_none() {
                    kill_suidgid(&file, req.gid()).map_err(errno)?;
                }
            }
            if let Some(mode) = mode {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                    .map_err(errno)?;
            }
            if uid.is_some() || gid.is_some() {
                let c = cstring(&path)?;
                let u = uid.unwrap_or(u32::MAX);
                let g = gid.unwrap_or(u32::MAX);
                // SAFETY: a valid path; -1 (u32::MAX) leaves an id unchanged.
                if unsafe { libc::lchown(c.as_ptr(), u, g) } != 0 {
                    return Err(errno(io::Error::last_os_error()));
                }
            }
            if atime.is_some() || mtime.is_some() {
                let ts = |t: Option<TimeOrNow>| match t {
                    None => libc::timespec {
                        tv_sec: 0,
                        tv_nsec: libc::UTIME_OMIT,
                    },
                    Some(TimeOrNow::Now) => libc::timespec {
                        tv_sec: 0,
                        tv_nsec: libc::UTIME_NOW,
                    },
                    Some(TimeOrNow::SpecificTime(t)) => {
                        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
                        libc::timespec {
                            tv_sec: d.as_secs() as libc::time_t,
                            tv_nsec: d.subsec_nanos() as libc::c_long,
                        }
                    }
                };
                let times = [ts(atime), ts(mtime)];
                let c = cstring(&path)?;
                // SAFETY: a valid path and two timespecs.
                let rc = unsafe {
                    libc::utimensat(
                        libc::AT_FDCWD,
                        c.as_ptr(),
                        times.as_ptr(),
                        libc::AT_SYMLINK_NOFOLLOW,
                    )
                };
                if rc != 0 {
                    return Err(errno(io::Error::last_os_error()));
                }
            }
            match fh.and_then(|fh| s.handles.get(&fh.0)) {
                Some(h) => h.file.metadata().map_err(errno),
                None => path.symlink_metadata().map_err(errno),
            }
        })();
        match result {
            Ok(m) => reply.attr(&TTL, &self.attr(&m)),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let s = self.lock();
        match self
            .path(&s, self.back(ino))
            .and_then(|p| std::fs::read_link(p).map_err(errno))
        {
            Ok(t) => reply.data(t.as_os_str().as_bytes()),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        if let Err(e) = self.gate(&[IoOp::Namespace], &[(parent, Some(name))]) {
            return reply.error(e);
        }
        let mut s = self.lock();
        let parent = self.back(parent);
        let result = (|| -> Result<std::fs::Metadata, Errno> {
            let dir = self.path(&s, parent)?;
            let path = self.child(&s, parent, name)?;
            s.tracker.before_dir_change(parent, &dir).map_err(errno)?;
            let c = cstring(&path)?;
            // SAFETY: a valid path; mode and device as the kernel gave them.
            if unsafe { libc::mknod(c.as_ptr(), mode & !umask, rdev as libc::dev_t) } != 0 {
                return Err(errno(io::Error::last_os_error()));
            }
            Self::owned(req, &path)?;
            let meta = path.symlink_metadata().map_err(errno)?;
            s.tracker.created_file(meta.ino());
            s.no_xattr.remove(&meta.ino());
            s.links
                .insert(meta.ino(), vec![(parent, name.to_os_string())]);
            Ok(meta)
        })();
        match result {
            Ok(m) => reply.entry(&TTL, &self.attr(&m), Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        if let Err(e) = self.gate(&[IoOp::Namespace], &[(parent, Some(name))]) {
            return reply.error(e);
        }
        let mut s = self.lock();
        let parent = self.back(parent);
        let result = (|| -> Result<std::fs::Metadata, Errno> {
            let dir = self.path(&s, parent)?;
            let path = self.child(&s, parent, name)?;
            s.tracker.before_dir_change(parent, &dir).map_err(errno)?;
            std::fs::DirBuilder::new()
                .mode(mode & !umask)
                .create(&path)
                .map_err(errno)?;
            Self::owned(req, &path)?;
            let meta = path.symlink_metadata().map_err(errno)?;
            s.tracker.created_dir(meta.ino());
            s.no_xattr.remove(&meta.ino());
            s.links
                .insert(meta.ino(), vec![(parent, name.to_os_string())]);
            Ok(meta)
        })();
        match result {
            Ok(m) => reply.entry(&TTL, &self.attr(&m), Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        if let Err(e) = self.gate(&[IoOp::Namespace], &[(parent, Some(name))]) {
            return reply.error(e);
        }
        let mut s = self.lock();
        let parent = self.back(parent);
        let result = (|| -> Result<(), Errno> {
            let dir = self.path(&s, parent)?;
            let path = self.child(&s, parent, name)?;
            let meta = path.symlink_metadata().map_err(errno)?;
            if meta.is_dir() {
                return Err(Errno::EISDIR);
            }
            s.tracker.before_dir_change(parent, &dir).map_err(errno)?;
            self.remove_name(&mut s, meta.ino(), &path, &meta)?;
            Self::remove_link(&mut s, meta.ino(), parent, name);
            Ok(())
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        if let Err(e) = self.gate(&[IoOp::Namespace], &[(parent, Some(name))]) {
            return reply.error(e);
        }
        let mut s = self.lock();
        let parent = self.back(parent);
        let result = (|| -> Result<(), Errno> {
            let dir = self.path(&s, parent)?;
            let path = self.child(&s, parent, name)?;
            let meta = path.symlink_metadata().map_err(errno)?;
            if !meta.is_dir() {
                return Err(Errno::ENOTDIR);
            }
            if std::fs::read_dir(&path).map_err(errno)?.next().is_some() {
                return Err(Errno::ENOTEMPTY);
            }
            s.tracker.before_dir_change(parent, &dir).map_err(errno)?;
            self.remove_name(&mut s, meta.ino(), &path, &meta)?;
            Self::remove_link(&mut s, meta.ino(), parent, name);
            Ok(())
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        if let Err(e) = self.gate(&[IoOp::Namespace], &[(parent, Some(link_name))]) {
            return reply.error(e);
        }
        let mut s = self.lock();
        let parent = self.back(parent);
        let result = (|| -> Result<std::fs::Metadata, Errno> {
            let dir = self.path(&s, parent)?;
            let path = self.child(&s, parent, link_name)?;
            s.tracker.before_dir_change(parent, &dir).map_err(errno)?;
            std::os::unix::fs::symlink(target, &path).map_err(errno)?;
            Self::owned(req, &path)?;
            let meta = path.symlink_metadata().map_err(errno)?;
            s.tracker.forget(meta.ino());
            s.no_xattr.remove(&meta.ino());
            s.links
                .insert(meta.ino(), vec![(parent, link_name.to_os_string())]);
            Ok(meta)
        })();
        match result {
            Ok(m) => reply.entry(&TTL, &self.attr(&m), Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        // The source and the destination: a fault under either matches.
        let at = [(parent, Some(name)), (newparent, Some(newname))];
        if let Err(e) = self.gate(&[IoOp::Namespace], &at) {
            return reply.error(e);
        }
        let mut s = self.lock();
        let (parent, newparent) = (self.back(parent), self.back(newparent));
        let result = (|| -> Result<(), Errno> {
            if flags.contains(RenameFlags::RENAME_EXCHANGE)
                || flags.contains(RenameFlags::RENAME_WHITEOUT)
            {
                return Err(Errno::EINVAL);
            }
            let (dir, newdir) = (self.path(&s, parent)?, self.path(&s, newparent)?);
            let from = self.child(&s, parent, name)?;
            let to = self.child(&s, newparent, newname)?;
            let src = from.symlink_metadata().map_err(errno)?;
            let dst = to.symlink_metadata().ok();
            if let Some(dst) = &dst {
                if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                    return Err(Errno::EEXIST);
                }
                if dst.ino() == src.ino() {
                    return Ok(()); // two names of one inode: rename does nothing
                }
                match (src.is_dir(), dst.is_dir()) {
                    (true, false) => return Err(Errno::ENOTDIR),
                    (false, true) => return Err(Errno::EISDIR),
                    (true, true) if std::fs::read_dir(&to).map_err(errno)?.next().is_some() => {
                        return Err(Errno::ENOTEMPTY)
                    }
                    _ => {}
                }
            }
            s.tracker.before_dir_change(parent, &dir).map_err(errno)?;
            s.tracker
                .before_dir_change(newparent, &newdir)
                .map_err(errno)?;
            if let Some(dst) = &dst {
                // The replaced inode loses a name: keep it where a durable entry
                // still names it.
                let last = dst.is_dir() || dst.nlink() <= 1;
                if last && s.tracker.keeps(dst.ino()) {
                    s.tracker.stash(dst.ino(), &to).map_err(errno)?;
                } else if last {
                    s.tracker.forget(dst.ino());
                }
                Self::remove_link(&mut s, dst.ino(), newparent, newname);
                if s.tracker.model() == super::Model::Ext4Like && src.is_file() {
                    // auto_da_alloc: a replace-by-rename flushes the new data first.
                    s.tracker.synced_data(src.ino());
                }
            }
            std::fs::rename(&from, &to).map_err(errno)?;
            Self::remove_link(&mut s, src.ino(), parent, name);
            Self::add_link(&mut s, src.ino(), newparent, newname);
            Ok(())
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        // The linked file and the new name: a fault under either matches.
        let at = [(ino, None), (newparent, Some(newname))];
        if let Err(e) = self.gate(&[IoOp::Namespace], &at) {
            return reply.error(e);
        }
        let mut s = self.lock();
        let (ino, newparent) = (self.back(ino), self.back(newparent));
        let result = (|| -> Result<std::fs::Metadata, Errno> {
            let from = self.path(&s, ino)?;
            let dir = self.path(&s, newparent)?;
            let to = self.child(&s, newparent, newname)?;
            s.tracker
                .before_dir_change(newparent, &dir)
                .map_err(errno)?;
            std::fs::hard_link(&from, &to).map_err(errno)?;
            Self::add_link(&mut s, ino, newparent, newname);
            to.symlink_metadata().map_err(errno)
        })();
        match result {
            Ok(m) => reply.entry(&TTL, &self.attr(&m), Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        // An open that truncates also writes.
        let ops: &[IoOp] = if flags.0 & libc::O_TRUNC != 0 {
            &[IoOp::Open, IoOp::Write]
        } else {
            &[IoOp::Open]
        };
        if let Err(e) = self.gate(ops, &[(ino, None)]) {
            return reply.error(e);
        }
        let mut s = self.lock();
        let ino = self.back(ino);
        let result = (|| -> Result<FileHandle, Errno> {
            let path = self.path(&s, ino)?;
            let (file, sync) = open_backing(&path, flags.0, false, 0)?;
            if flags.0 & libc::O_TRUNC != 0 {
                s.tracker.before_truncate(ino, &file, 0).map_err(errno)?;
                file.set_len(0).map_err(errno)?;
                if req.uid() != 0 {
                    kill_suidgid(&file, req.gid()).map_err(errno)?;
                }
            }
            Ok(Self::new_handle(&mut s, ino, file, sync))
        })();
        match result {
            Ok(fh) => reply.opened(fh, FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        if let Err(e) = self.gate(&[IoOp::Read], &[(ino, None)]) {
            return reply.error(e);
        }
        let file = match self.lock().handles.get(&fh.0) {
            Some(h) => h.file.clone(),
            None => return reply.error(Errno::EBADF),
        };
        let mut buf = vec![0u8; size as usize];
        let mut got = 0;
        while got < buf.len() {
            match file.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return reply.error(errno(e)),
            }
        }
        reply.data(&buf[..got]);
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        // A write on an O_SYNC/O_DSYNC handle is also its fsync.
        let ops = |s: &Shared| -> &'static [IoOp] {
            if s.handles.get(&fh.0).is_some_and(|h| h.sync) {
                &[IoOp::Write, IoOp::Fsync]
            } else {
                &[IoOp::Write]
            }
        };
        if let Err(e) = self.gate_by(ops, &[(ino, None)]) {
            return reply.error(e);
        }
        let mut s = self.lock();
        let Some((ino, file, sync)) = s
            .handles
            .get(&fh.0)
            .map(|h| (h.ino, h.file.clone(), h.sync))
        else {
            return reply.error(Errno::EBADF);
        };
        let result = (|| -> io::Result<()> {
            s.tracker
                .before_write(ino, &file, offset, data.len() as u64)?;
            file.write_all_at(data, offset)?;
            if write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID) {
                kill_suidgid(&file, req.gid())?;
            }
            if sync {
                file.sync_data()?;
                s.tracker.synced_file(ino);
            }
            Ok(())
        })();
        match result {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.lock().handles.remove(&fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        if let Err(e) = self.gate(&[IoOp::Fsync], &[(ino, None)]) {
            return reply.error(e);
        }
        // The backing sync runs without the lock (a disk flush takes
        // milliseconds; every other operation would wait for it): the tracker
        // takes what was written so far aside and makes it durable only once the
        // sync returned. The kernel holds the inode's lock across an fsync, so
        // no write of this file runs meanwhile.
        let (file, token, epoch) = {
            let mut s = self.lock();
            let file = match self.file_for(&s, self.back(ino), Some(fh)) {
                Ok(f) => f,
                Err(e) => return reply.error(e),
            };
            let token = s.tracker.sync_begins(self.back(ino));
            (file, token, s.epoch)
        };
        let synced = if datasync {
            file.sync_data()
        } else {
            file.sync_all()
        };
        let mut s = self.lock();
        if s.epoch != epoch {
            // A power cut (or an unmount) came first: the rollback counted this
            // sync as not done.
            return reply.error(Errno::EIO);
        }
        s.tracker.sync_done(token, synced.is_ok());
        match synced {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if let Err(e) = self.gate(&[IoOp::Open], &[(ino, None)]) {
            return reply.error(e);
        }
        let mut s = self.lock();
        let ino = self.back(ino);
        let result = (|| -> Result<FileHandle, Errno> {
            let path = self.path(&s, ino)?;
            let mut list = vec![
                (ino, FileType::Directory, OsString::from(".")),
                (ino, FileType::Directory, OsString::from("..")),
            ];
            for e in std::fs::read_dir(&path).map_err(errno)? {
                let e = e.map_err(errno)?;
                if is_stash(ino == self.root, &e.file_name()) {
                    continue;
                }
                let kind = e.file_type().map(kind_of).unwrap_or(FileType::RegularFile);
                list.push((std::os::unix::fs::DirEntryExt::ino(&e), kind, e.file_name()));
            }
            let fh = s.next_fh;
            s.next_fh += 1;
            s.listings.insert(fh, list);
            Ok(FileHandle(fh))
        })();
        match result {
            Ok(fh) => reply.opened(fh, FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let s = self.lock();
        let Some(list) = s.listings.get(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        for (i, (ino, kind, name)) in list.iter().enumerate().skip(offset as usize) {
            if reply.add(self.front(*ino), (i + 1) as u64, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.lock().listings.remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        if let Err(e) = self.gate(&[IoOp::Fsync], &[(ino, None)]) {
            return reply.error(e);
        }
        let mut s = self.lock();
        let ino = self.back(ino);
        let result = (|| -> Result<(), Errno> {
            let path = self.path(&s, ino)?;
            File::open(&path)
                .and_then(|d| d.sync_all())
                .map_err(errno)?;
            s.tracker.synced_dir(ino);
            Ok(())
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let c = match cstring(&self.base) {
            Ok(c) => c,
            Err(e) => return reply.error(e),
        };
        // SAFETY: statvfs fills the zeroed struct for a valid path.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
            return reply.error(errno(io::Error::last_os_error()));
        }
        reply.statfs(
            st.f_blocks,
            st.f_bfree,
            st.f_bavail,
            st.f_files,
            st.f_ffree,
            st.f_bsize as u32,
            st.f_namemax as u32,
            st.f_frsize as u32,
        );
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let mut s = self.lock();
        s.no_xattr.remove(&self.back(ino));
        let result = (|| -> Result<(), Errno> {
            let path = cstring(&self.path(&s, self.back(ino))?)?;
            let name = CString::new(name.as_bytes()).map_err(|_| Errno::EINVAL)?;
            // SAFETY: valid path, name and value buffer.
            let rc = unsafe {
                libc::lsetxattr(
                    path.as_ptr(),
                    name.as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    flags,
                )
            };
            if rc != 0 {
                return Err(errno(io::Error::last_os_error()));
            }
            Ok(())
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let mut s = self.lock();
        let back = self.back(ino);
        if s.no_xattr.get(&back).is_some_and(|n| n.contains(name)) {
            return reply.error(Errno::ENODATA);
        }
        let bytes = (|| -> Result<Vec<u8>, Errno> {
            let path = cstring(&self.path(&s, back)?)?;
            let cname = CString::new(name.as_bytes()).map_err(|_| Errno::EINVAL)?;
            // SAFETY: valid path and name; the buffer is as long as given.
            xattr_bytes(|buf, len| unsafe {
                libc::lgetxattr(path.as_ptr(), cname.as_ptr(), buf, len)
            })
        })();
        if bytes.as_ref().err() == Some(&Errno::ENODATA) {
            if s.no_xattr.len() >= NO_XATTR_MAX {
                s.no_xattr.clear();
            }
            s.no_xattr
                .entry(back)
                .or_default()
                .insert(name.to_os_string());
        }
        xattr_reply(reply, size, bytes);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let s = self.lock();
        let bytes = (|| -> Result<Vec<u8>, Errno> {
            let path = cstring(&self.path(&s, self.back(ino))?)?;
            // SAFETY: a valid path; the buffer is as long as given.
            xattr_bytes(|buf, len| unsafe { libc::llistxattr(path.as_ptr(), buf.cast(), len) })
        })();
        xattr_reply(reply, size, bytes);
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut s = self.lock();
        s.no_xattr.remove(&self.back(ino));
        let result = (|| -> Result<(), Errno> {
            let path = cstring(&self.path(&s, self.back(ino))?)?;
            let name = CString::new(name.as_bytes()).map_err(|_| Errno::EINVAL)?;
            // SAFETY: valid path and name.
            if unsafe { libc::lremovexattr(path.as_ptr(), name.as_ptr()) } != 0 {
                return Err(errno(io::Error::last_os_error()));
            }
            Ok(())
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // default_permissions: the kernel checks modes itself.
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let ops: &[IoOp] = if flags & libc::O_TRUNC != 0 {
            &[IoOp::Open, IoOp::Namespace, IoOp::Write]
        } else {
            &[IoOp::Open, IoOp::Namespace]
        };
        if let Err(e) = self.gate(ops, &[(parent, Some(name))]) {
            return reply.error(e);
        }
        let mut s = self.lock();
        let parent = self.back(parent);
        let result = (|| -> Result<(std::fs::Metadata, FileHandle), Errno> {
            let dir = self.path(&s, parent)?;
            let path = self.child(&s, parent, name)?;
            let existed = path.symlink_metadata().is_ok();
            if !existed {
                s.tracker.before_dir_change(parent, &dir).map_err(errno)?;
            }
            let (file, sync) = open_backing(&path, flags, true, mode & !umask)?;
            let meta = file.metadata().map_err(errno)?;
            if existed {
                if flags & libc::O_TRUNC != 0 {
                    s.tracker
                        .before_truncate(meta.ino(), &file, 0)
                        .map_err(errno)?;
                    file.set_len(0).map_err(errno)?;
                    if req.uid() != 0 {
                        kill_suidgid(&file, req.gid()).map_err(errno)?;
                    }
                }
                Self::add_link(&mut s, meta.ino(), parent, name);
            } else {
                Self::owned(req, &path)?;
                s.tracker.created_file(meta.ino());
                s.no_xattr.remove(&meta.ino());
                s.links
                    .insert(meta.ino(), vec![(parent, name.to_os_string())]);
            }
            let fh = Self::new_handle(&mut s, meta.ino(), file, sync);
            Ok((path.symlink_metadata().map_err(errno)?, fh))
        })();
        match result {
            Ok((m, fh)) => {
                reply.created(&TTL, &self.attr(&m), Generation(0), fh, FopenFlags::empty())
            }
            Err(e) => reply.error(e),
        }
    }
}

/// Opens a backing file for a handle: always readable and writable where it can
/// be (the tracker reads what a write will overwrite), never O_APPEND (the kernel
/// gives the offset), O_DIRECT or O_TRUNC (done through the tracker). Returns
/// whether writes are synchronous.
fn open_backing(path: &Path, flags: i32, create: bool, mode: u32) -> Result<(File, bool), Errno> {
    let sync = flags & (libc::O_SYNC | libc::O_DSYNC) != 0;
    let keep = flags
        & !(libc::O_APPEND
            | libc::O_DIRECT
            | libc::O_TRUNC
            | libc::O_CREAT
            | libc::O_EXCL
            | libc::O_ACCMODE
            | libc::O_NOFOLLOW
            | libc::O_PATH);
    let mut o = OpenOptions::new();
    o.read(true).write(true).custom_flags(keep);
    if create {
        o.create(true).mode(mode);
        if flags & libc::O_EXCL != 0 {
            o.create_new(true);
        }
    }
    match o.open(path) {
        Ok(f) => Ok((f, sync)),
        Err(e) if create || e.raw_os_error() == Some(libc::EISDIR) => Err(errno(e)),
        Err(_) => {
            // Not writable (a read-only file system, say): open as asked.
            let mut o = OpenOptions::new();
            match flags & libc::O_ACCMODE {
                libc::O_WRONLY => o.write(true),
                libc::O_RDWR => o.read(true).write(true),
                _ => o.read(true),
            };
            o.custom_flags(keep);
            o.open(path).map(|f| (f, sync)).map_err(errno)
        }
    }
}
