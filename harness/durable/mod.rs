//! The power-loss layer: a FUSE filesystem over a backing directory that tracks
//! what was made durable and, on a power cut, drops everything that was not
//! ([`Layer::cut`]), so the backing directory then holds exactly the durable state
//! under the chosen [`Model`]. Reads see everything, as the page cache does.
//!
//! [`tracker`] is the model and the rollback (no FUSE in it); [`fs`] is the
//! passthrough that feeds it. A mount shows in `/proc/mounts` with the source
//! [`FS_NAME`].

pub mod fs;
pub mod inject;
pub mod tracker;

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use inject::{IoError, IoFault, IoHits, IoOp};
pub use tracker::{lose_unsynced, Loss, Model, Tracker, ROLLING_BACK, STASH};

/// The source name of rebound's mounts in `/proc/mounts`.
pub const FS_NAME: &str = "rebound-durable";

/// Where the kernel lists FUSE connections (the `fusectl` filesystem), when mounted.
const FUSECTL: &str = "/sys/fs/fuse/connections";

/// A failure of the layer, with the path it concerns.
#[derive(Debug, thiserror::Error)]
pub enum DurableError {
    /// A filesystem call failed.
    #[error("{path}: {what}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The layer cannot work here (no /dev/fuse, not root, …).
    #[error("{0}")]
    Unsupported(String),
}

fn io_err<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(io::Error) -> DurableError + 'a {
    move |source| DurableError::Io {
        path: path.to_path_buf(),
        what,
        source,
    }
}

/// Whether FUSE mounts can be made here; the reason when not.
pub fn supported() -> Result<(), String> {
    if !Path::new("/dev/fuse").exists() {
        return Err("/dev/fuse does not exist (load the fuse module, or give a container --device /dev/fuse)".into());
    }
    let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !fs
        .lines()
        .any(|l| l.split_whitespace().last() == Some("fuse"))
    {
        return Err("the kernel has no fuse filesystem (/proc/filesystems)".into());
    }
    if !nix::unistd::geteuid().is_root() {
        return Err(
            "mounting the layer needs root (rebound mounts with mount(2) on /dev/fuse)".into(),
        );
    }
    Ok(())
}

/// Mount points of rebound's layer that are mounted now (from `/proc/mounts`).
pub fn mounts() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let source = f.next()?;
            let target = f.next()?;
            (source == FS_NAME).then(|| PathBuf::from(unescape_mount_path(target)))
        })
        .collect()
}

/// `/proc/mounts` writes space, tab, newline and backslash as octal escapes.
fn unescape_mount_path(p: &str) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    let b = p.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) if b[i] == b'\\' => {
                out.push(d.iter().fold(0u8, |v, c| v.wrapping_mul(8) + (c - b'0')));
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    std::ffi::OsString::from_vec(out)
}

/// Unmounts rebound's layer at `path` whatever state its daemon is in: the
/// connection is aborted first (a dead or killed daemon leaves a mount that
/// answers ENOTCONN), then the mount is detached. Harmless when nothing is there.
pub fn force_unmount(path: &Path) -> Result<(), DurableError> {
    if !mounts().iter().any(|m| m == path) {
        return Ok(());
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        let _ = abort_connection(meta.dev());
    }
    nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH).map_err(|e| DurableError::Io {
        path: path.to_path_buf(),
        what: "unmounting",
        source: io::Error::from(e),
    })
}

/// What `rebound heal` does for a layer a dead rebound left: unmounts it at
/// `mountpoint` (its connection aborted, detached if busy) and removes the stash
/// of unlinked inodes from `backing`, which then holds what was written — every
/// write, as after a clean shutdown — and is usable without the layer. Returns
/// whether it was still mounted, and a warning when rebound died in the middle of
/// a rollback: the stash then holds the directory's tree and is kept, never deleted.
pub fn heal_mount(
    mountpoint: &Path,
    backing: &Path,
) -> Result<(bool, Option<String>), DurableError> {
    let was = mounts().iter().any(|m| m == mountpoint);
    force_unmount(mountpoint)?;
    let stash = backing.join(STASH);
    if stash.join(ROLLING_BACK).exists() {
        return Ok((
            was,
            Some(format!(
                "rebound stopped in the middle of rolling {} back: its files are kept in {} (named by inode number; see {ROLLING_BACK} there), nothing was deleted",
                backing.display(),
                stash.display()
            )),
        ));
    }
    match std::fs::remove_dir_all(&stash) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(io_err(&stash, "removing the stash")(e));
        }
        _ => {}
    }
    Ok((was, None))
}

/// Aborts the FUSE connection of the mount whose device is `dev`: every request
/// in flight and to come fails at once with ENOTCONN, and the daemon's loop ends.
///
/// When `/sys/fs/fuse/connections` is not mounted, `fusectl` (one superblock,
/// mountable in many places) is mounted for the moment on a private directory
/// of this call's own, so callers in parallel never contend for one mount point
/// and the system's `/sys` is left as it was.
fn abort_connection(dev: u64) -> Result<(), DurableError> {
    let minor = libc::minor(dev).to_string();
    let sys = Path::new(FUSECTL);
    if sys.join(&minor).exists() {
        let abort = sys.join(&minor).join("abort");
        return std::fs::write(&abort, b"1").map_err(io_err(&abort, "aborting the connection"));
    }
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "rebound-fusectl-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).map_err(io_err(&dir, "creating a fusectl mount point"))?;
    let mounted = nix::mount::mount(
        Some("fusectl"),
        &dir,
        Some("fusectl"),
        nix::mount::MsFlags::MS_NOSUID
            | nix::mount::MsFlags::MS_NODEV
            | nix::mount::MsFlags::MS_NOEXEC,
        None::<&str>,
    );
    let result = match mounted {
        Ok(()) => {
            let abort = dir.join(&minor).join("abort");
            let r = std::fs::write(&abort, b"1").map_err(io_err(&abort, "aborting the connection"));
            let _ = nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH);
            r
        }
        Err(e) => Err(DurableError::Io {
            path: dir.clone(),
            what: "mounting fusectl",
            source: io::Error::from(e),
        }),
    };
    let _ = std::fs::remove_dir(&dir);
    result
}

/// A mounted layer (or one between a cut and its remount).
pub struct Layer {
    backing: PathBuf,
    mountpoint: PathBuf,
    /// The backing root as the daemon reaches it: the directory itself, or
    /// `/proc/self/fd/N` when the layer is mounted over it.
    base: PathBuf,
    _base_fd: Option<File>,
    root: u64,
    shared: Arc<Mutex<fs::Shared>>,
    session: Option<fuser::BackgroundSession>,
    dev: Option<u64>,
    /// The connection was aborted (a cut begun) since the last mount.
    aborted: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layer")
            .field("backing", &self.backing)
            .field("mountpoint", &self.mountpoint)
            .field("mounted", &self.session.is_some())
            .finish()
    }
}

impl Layer {
    /// Mounts the layer at `mountpoint` over `backing` (they may be the same
    /// directory: the layer then hides it and reaches it through an open
    /// descriptor). Everything in `backing` counts as durable.
    pub fn mount(backing: &Path, mountpoint: &Path, model: Model) -> Result<Layer, DurableError> {
        supported().map_err(DurableError::Unsupported)?;
        let backing = backing
            .canonicalize()
            .map_err(io_err(backing, "opening the backing directory"))?;
        let mountpoint = mountpoint
            .canonicalize()
            .map_err(io_err(mountpoint, "opening the mount point"))?;
        let (base, base_fd) = if backing == mountpoint {
            let fd = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags_dir()
                .open(&backing)
                .map_err(io_err(&backing, "opening the backing directory"))?;
            use std::os::fd::AsRawFd;
            (
                // The trailing `/.` makes even an lstat of the root follow the
                // descriptor's link to the directory.
                PathBuf::from(format!("/proc/self/fd/{}/.", fd.as_raw_fd())),
                Some(fd),
            )
        } else {
            (backing.clone(), None)
        };
        let root = std::fs::metadata(&base)
            .map_err(io_err(&backing, "reading the backing directory"))?
            .ino();
        let shared = Arc::new(Mutex::new(fs::Shared::new(Tracker::new(
            model,
            base.clone(),
        ))));
        let mut layer = Layer {
            backing,
            mountpoint,
            base,
            _base_fd: base_fd,
            root,
            shared,
            session: None,
            dev: None,
            aborted: std::sync::atomic::AtomicBool::new(false),
        };
        layer.remount()?;
        Ok(layer)
    }

    /// The backing directory.
    pub fn backing(&self) -> &Path {
        &self.backing
    }

    /// Where the layer is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// The model.
    pub fn model(&self) -> Model {
        self.lock().tracker.model()
    }

    /// Whether it is mounted now.
    pub fn is_mounted(&self) -> bool {
        self.session.is_some()
    }

    /// Whether the connection was aborted since the layer was last mounted (a
    /// power cut begun and not finished).
    pub fn is_aborted(&self) -> bool {
        self.aborted.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, fs::Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Files and directories with unsynced changes now.
    pub fn pending(&self) -> (usize, usize) {
        self.lock().tracker.pending()
    }

    /// Puts a disk fault in force (`None`: lifts the one in force); returns what
    /// the one it replaces matched.
    pub fn set_io(&self, fault: Option<IoFault>) -> IoHits {
        let mut s = self.lock();
        s.io = fault;
        std::mem::take(&mut s.io_hits)
    }

    /// The disk fault in force, if any.
    pub fn io(&self) -> Option<IoFault> {
        self.lock().io.clone()
    }

    /// Makes everything durable (e.g. once a stack's setup is done).
    pub fn checkpoint(&self) {
        self.lock().tracker.checkpoint();
    }

    /// Mounts the layer again (after [`Layer::unmount`] or a cut).
    pub fn remount(&mut self) -> Result<(), DurableError> {
        if self.session.is_some() {
            return Ok(());
        }
        self.lock().reset_mount_state();
        let fs = fs::DurableFs::new(self.shared.clone(), self.base.clone(), self.root);
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            fuser::MountOption::FSName(FS_NAME.into()),
            fuser::MountOption::DefaultPermissions,
            fuser::MountOption::Dev,
            fuser::MountOption::Suid,
        ];
        config.acl = fuser::SessionACL::All;
        config.n_threads = Some(4);
        let session = fuser::spawn_mount(fs, &self.mountpoint, &config)
            .map_err(io_err(&self.mountpoint, "mounting the layer"))?;
        self.session = Some(session);
        self.aborted
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.dev = Some(
            std::fs::metadata(&self.mountpoint)
                .map_err(io_err(&self.mountpoint, "reading the mount"))?
                .dev(),
        );
        Ok(())
    }

    /// Aborts the connection: everything in flight and to come fails with
    /// ENOTCONN. The mount stays until [`Layer::unmount`].
    pub fn abort(&self) -> Result<(), DurableError> {
        match self.dev {
            Some(dev) if self.session.is_some() => {
                self.aborted
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                self.lock().epoch += 1;
                abort_connection(dev)
            }
            _ => Ok(()),
        }
    }

    /// Unmounts: normally when nothing uses the mount, else aborted and detached
    /// (whoever still uses it gets ENOTCONN).
    pub fn unmount(&mut self) -> Result<(), DurableError> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        self.lock().epoch += 1;
        if nix::mount::umount2(&self.mountpoint, nix::mount::MntFlags::empty()).is_err() {
            if let Some(dev) = self.dev {
                let _ = abort_connection(dev);
            }
            let _ = nix::mount::umount2(&self.mountpoint, nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = session.join();
        self.dev = None;
        if mounts().iter().any(|m| m == &self.mountpoint) {
            return Err(DurableError::Io {
                path: self.mountpoint.clone(),
                what: "unmounting the layer (still in /proc/mounts)",
                source: io::Error::from(io::ErrorKind::ResourceBusy),
            });
        }
        Ok(())
    }

    /// Rolls the backing directory back to its durable state (unmounting first if
    /// mounted, aborting whatever is in flight).
    pub fn lose_unsynced(&mut self) -> Result<Loss, DurableError> {
        if self.session.is_some() {
            // A failed abort is not fatal: unmount aborts and detaches by itself.
            let _ = self.abort();
            self.unmount()?;
        }
        let mut s = self.lock();
        lose_unsynced(&mut s.tracker).map_err(io_err(&self.backing, "dropping unsynced changes"))
    }

    /// The power cut: abort the connection, unmount, drop what was not durable,
    /// mount again.
    pub fn cut(&mut self) -> Result<Loss, DurableError> {
        let loss = self.lose_unsynced()?;
        self.remount()?;
        Ok(loss)
    }
}

impl Drop for Layer {
    fn drop(&mut self) {
        let _ = self.unmount();
    }
}

trait DirOpen {
    fn custom_flags_dir(&mut self) -> &mut Self;
}

impl DirOpen for std::fs::OpenOptions {
    fn custom_flags_dir(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_DIRECTORY)
    }
}

#[cfg(test)]
mod tests;
