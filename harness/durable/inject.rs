//! Disk faults served by the power-loss layer while a fault lasts: chosen
//! operations on chosen paths fail with an error (EIO, ENOSPC, EROFS) or are
//! delayed, before they reach the backing directory (a failed fsync makes
//! nothing durable, a failed write writes nothing).

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The classes of operations a disk fault can match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IoOp {
    /// read(2) of file data.
    Read,
    /// write(2) and truncation of file data.
    Write,
    /// fsync/fdatasync of a file or a directory.
    Fsync,
    /// Opening a file or a directory (open, create, opendir).
    Open,
    /// Changes of directory entries: create, mknod, mkdir, unlink, rmdir,
    /// symlink, link, rename.
    Namespace,
}

impl IoOp {
    /// Every class, in the order of their names.
    pub const ALL: [IoOp; 5] = [
        IoOp::Read,
        IoOp::Write,
        IoOp::Fsync,
        IoOp::Open,
        IoOp::Namespace,
    ];

    /// The name a scenario uses.
    pub fn name(self) -> &'static str {
        match self {
            IoOp::Read => "read",
            IoOp::Write => "write",
            IoOp::Fsync => "fsync",
            IoOp::Open => "open",
            IoOp::Namespace => "namespace",
        }
    }

    /// The class named `name`, if any.
    pub fn parse(name: &str) -> Option<IoOp> {
        IoOp::ALL.into_iter().find(|o| o.name() == name)
    }
}

/// The errors a disk fault can answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoError {
    /// `EIO`: the device failed.
    Eio,
    /// `ENOSPC`: no space left on the device.
    Enospc,
    /// `EROFS`: the filesystem went read-only.
    Erofs,
}

impl IoError {
    /// Every error, in the order of their names.
    pub const ALL: [IoError; 3] = [IoError::Eio, IoError::Enospc, IoError::Erofs];

    /// The name a scenario uses (`EIO`, `ENOSPC`, `EROFS`).
    pub fn name(self) -> &'static str {
        match self {
            IoError::Eio => "EIO",
            IoError::Enospc => "ENOSPC",
            IoError::Erofs => "EROFS",
        }
    }

    /// The error named `name` (any case), if any.
    pub fn parse(name: &str) -> Option<IoError> {
        IoError::ALL
            .into_iter()
            .find(|e| e.name().eq_ignore_ascii_case(name))
    }

    /// The errno the layer answers with.
    pub fn errno(self) -> fuser::Errno {
        match self {
            IoError::Eio => fuser::Errno::EIO,
            IoError::Enospc => fuser::Errno::ENOSPC,
            IoError::Erofs => fuser::Errno::EROFS,
        }
    }
}

/// A disk fault: which operations on which paths, and what happens to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoFault {
    /// The classes of operations that match.
    pub ops: Vec<IoOp>,
    /// Only paths under this one (relative to the layer's directory) match;
    /// `None`: every path.
    pub path: Option<PathBuf>,
    /// The error a matching operation fails with (`None`: it succeeds, late).
    pub error: Option<IoError>,
    /// How long a matching operation waits before it fails or is done.
    pub delay: Duration,
}

impl IoFault {
    /// Whether an operation of one of `ops` on `rel` (relative to the layer's
    /// directory; `None` when its path is unknown) matches.
    pub fn matches(&self, ops: &[IoOp], rel: Option<&Path>) -> bool {
        if !ops.iter().any(|o| self.ops.contains(o)) {
            return false;
        }
        match (&self.path, rel) {
            (None, _) => true,
            (Some(p), Some(rel)) => rel.starts_with(p),
            (Some(_), None) => false,
        }
    }

    /// One line: what matches and what it does.
    pub fn describe(&self) -> String {
        let ops: Vec<&str> = self.ops.iter().map(|o| o.name()).collect();
        let what = match (self.error, self.delay.is_zero()) {
            (Some(e), true) => format!("fail with {}", e.name()),
            (Some(e), false) => format!("fail with {} after {:?}", e.name(), self.delay),
            (None, _) => format!("wait {:?}", self.delay),
        };
        let under = self
            .path
            .as_ref()
            .map(|p| format!(" under {}", p.display()))
            .unwrap_or_default();
        format!("{} operations{under} {what}", ops.join("/"))
    }
}

/// The operations a disk fault matched while it lasted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IoHits {
    /// How many.
    pub count: u64,
    /// The first few, as `op path`.
    pub first: Vec<String>,
}

impl IoHits {
    /// How many operations are kept in [`IoHits::first`].
    pub const KEPT: usize = 3;

    /// The summary of a fault that matched nothing.
    pub const NONE: &'static str = "no operation matched";

    /// Records one.
    pub fn hit(&mut self, op: IoOp, rel: Option<&Path>) {
        self.count += 1;
        if self.first.len() < Self::KEPT {
            let path = rel
                .map(|p| {
                    if p.as_os_str().is_empty() {
                        ".".to_string()
                    } else {
                        p.display().to_string()
                    }
                })
                .unwrap_or_else(|| "?".into());
            self.first.push(format!("{} {path}", op.name()));
        }
    }

    /// One line for the fault's end: `12 matched (first: fsync pg_wal/…, …)`.
    pub fn summary(&self) -> String {
        if self.count == 0 {
            return Self::NONE.into();
        }
        format!(
            "{} operation(s) matched (first: {})",
            self.count,
            self.first.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_matches_its_operations_under_its_path_only() {
        let f = IoFault {
            ops: vec![IoOp::Fsync, IoOp::Write],
            path: Some("pg_wal".into()),
            error: Some(IoError::Eio),
            delay: Duration::ZERO,
        };
        assert!(f.matches(&[IoOp::Fsync], Some(Path::new("pg_wal/000001"))));
        assert!(f.matches(&[IoOp::Open, IoOp::Write], Some(Path::new("pg_wal"))));
        assert!(!f.matches(&[IoOp::Read], Some(Path::new("pg_wal/000001"))));
        assert!(!f.matches(&[IoOp::Fsync], Some(Path::new("pg_walx/1"))));
        assert!(!f.matches(&[IoOp::Fsync], Some(Path::new("base/1"))));
        assert!(!f.matches(&[IoOp::Fsync], None));
        let everywhere = IoFault { path: None, ..f };
        assert!(everywhere.matches(&[IoOp::Write], None));
        assert_eq!(
            everywhere.describe(),
            "fsync/write operations fail with EIO"
        );
    }

    #[test]
    fn names_parse_back_and_hits_keep_the_first_few() {
        for op in IoOp::ALL {
            assert_eq!(IoOp::parse(op.name()), Some(op));
        }
        assert_eq!(IoError::parse("enospc"), Some(IoError::Enospc));
        assert_eq!(IoError::parse("EPERM"), None);
        let mut hits = IoHits::default();
        assert_eq!(hits.summary(), "no operation matched");
        for i in 0..5 {
            hits.hit(IoOp::Write, Some(Path::new(&format!("f{i}"))));
        }
        hits.hit(IoOp::Fsync, Some(Path::new("")));
        assert_eq!(hits.count, 6);
        assert_eq!(
            hits.summary(),
            "6 operation(s) matched (first: write f0, write f1, write f2)"
        );
    }
}
