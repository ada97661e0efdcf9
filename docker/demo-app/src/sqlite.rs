//! Embedded SQLite item store with backups and a hot-swap restore (seed 001's story).
//!
//! `restore` swaps the live database file for a backup without restarting the
//! process: the backup is staged next to the live file, the connection is closed,
//! the files are renamed, the new file is opened and verified (integrity check and
//! a digest equal to the backup's). If verification fails, the previous file is put
//! back and reopened (rollback). Requests wait on the store lock during the swap:
//! that wait is the availability window rebound measures.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::Serialize;

/// Name of the live database file inside the data directory.
pub const LIVE: &str = "items.db";
/// Directory (inside the data directory) holding backups.
pub const BACKUPS: &str = "backups";

/// What went wrong in the SQLite store.
#[derive(Debug, thiserror::Error)]
pub enum SqliteError {
    /// An SQLite call failed.
    #[error("sqlite: {0}")]
    Sql(#[from] rusqlite::Error),
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A backup name that is not a plain file name.
    #[error("invalid backup name `{0}` (letters, digits, '-' and '_' only)")]
    BadName(String),
    /// No backup with that name.
    #[error("no backup named `{0}`")]
    NoBackup(String),
    /// The restored file failed verification and the previous one was put back.
    #[error("restore of `{backup}` failed verification ({reason}); rolled back to the previous database")]
    RolledBack {
        /// The backup that was tried.
        backup: String,
        /// Why verification failed.
        reason: String,
    },
    /// The database file failed its integrity check.
    #[error("database is damaged: {0}")]
    Corrupt(String),
    /// The live database is closed (a swap failed half-way and could not reopen it).
    #[error("the live database is closed")]
    Closed,
    /// The store lock was poisoned by a panic.
    #[error("store lock poisoned")]
    Poisoned,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SqliteError + '_ {
    move |source| SqliteError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Content summary of a database: row count and an order-independent digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Digest {
    /// Number of items.
    pub items: u64,
    /// FNV-1a over `id\0value\n` of every row in id order, as hex.
    #[serde(serialize_with = "hex")]
    pub digest: u64,
}

fn hex<S: serde::Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{v:016x}"))
}

/// Result of a successful restore.
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    /// The backup restored.
    pub backup: String,
    /// Always true: a restore that fails verification returns an error instead.
    pub verified: bool,
    /// Content of the live database after the swap (equal to the backup's).
    pub live: Digest,
    /// How long requests were held off, in milliseconds.
    pub window_ms: f64,
}

/// The SQLite store.
pub struct SqliteStore {
    dir: PathBuf,
    conn: Mutex<Option<Connection>>,
    /// `PRAGMA synchronous` of every connection.
    synchronous: String,
}

fn open(path: &Path, synchronous: &str) -> Result<Connection, SqliteError> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "DELETE")?;
    conn.pragma_update(None, "synchronous", synchronous)?;
    conn.execute(
        "CREATE TABLE IF NOT EXISTS items (id TEXT PRIMARY KEY, value TEXT NOT NULL)",
        [],
    )?;
    Ok(conn)
}

fn digest_of(conn: &Connection) -> Result<Digest, SqliteError> {
    let mut stmt = conn.prepare("SELECT id, value FROM items ORDER BY id")?;
    let mut rows = stmt.query([])?;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut items = 0;
    while let Some(row) = rows.next()? {
        let id: String = row.get(0)?;
        let value: String = row.get(1)?;
        for b in id.bytes().chain([0]).chain(value.bytes()).chain([b'\n']) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        items += 1;
    }
    Ok(Digest { items, digest: h })
}

/// Opens a file read-only and checks it is an intact item database.
fn verify_file(path: &Path) -> Result<Digest, SqliteError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    verify_conn(&conn)
}

fn verify_conn(conn: &Connection) -> Result<Digest, SqliteError> {
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(SqliteError::Corrupt(format!("integrity_check: {check}")));
    }
    digest_of(conn)
}

fn check_name(name: &str) -> Result<(), SqliteError> {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        Ok(())
    } else {
        Err(SqliteError::BadName(name.to_string()))
    }
}

fn sync_dir(dir: &Path) -> Result<(), SqliteError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

impl SqliteStore {
    /// Opens (or creates) `<dir>/items.db` and the backups directory
    /// (synchronous = FULL).
    pub fn open(dir: &Path) -> Result<Self, SqliteError> {
        Self::open_with(dir, "FULL")
    }

    /// [`SqliteStore::open`] with SQLite's `synchronous` level (OFF, NORMAL, FULL, EXTRA).
    pub fn open_with(dir: &Path, synchronous: &str) -> Result<Self, SqliteError> {
        let backups = dir.join(BACKUPS);
        std::fs::create_dir_all(&backups).map_err(io(&backups))?;
        let conn = open(&dir.join(LIVE), synchronous)?;
        Ok(SqliteStore {
            dir: dir.to_path_buf(),
            conn: Mutex::new(Some(conn)),
            synchronous: synchronous.to_string(),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, SqliteError>,
    ) -> Result<T, SqliteError> {
        let guard = self.conn.lock().map_err(|_| SqliteError::Poisoned)?;
        match guard.as_ref() {
            Some(c) => f(c),
            None => Err(SqliteError::Closed),
        }
    }

    /// Stores an item (durably unless `synchronous` is OFF).
    pub fn insert(&self, id: &str, value: &str) -> Result<(), SqliteError> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO items (id, value) VALUES (?1, ?2)",
                params![id, value],
            )?;
            Ok(())
        })
    }

    /// Reads an item's JSON text.
    pub fn get(&self, id: &str) -> Result<Option<String>, SqliteError> {
        self.with(|c| {
            Ok(
                c.query_row("SELECT value FROM items WHERE id = ?1", [id], |r| r.get(0))
                    .optional()?,
            )
        })
    }

    /// A query that needs the live database (readiness; waits during a swap).
    pub fn ping(&self) -> Result<(), SqliteError> {
        self.with(|c| {
            c.query_row(
                "SELECT count(*) FROM (SELECT 1 FROM items LIMIT 1)",
                [],
                |r| r.get::<_, i64>(0),
            )?;
            Ok(())
        })
    }

    /// Fills an empty database with `n` items `seed-<i>` in one transaction, so a
    /// restore moves real data; does nothing if the database has items.
    pub fn seed(&self, n: u64) -> Result<u64, SqliteError> {
        let mut guard = self.conn.lock().map_err(|_| SqliteError::Poisoned)?;
        let c = guard.as_mut().ok_or(SqliteError::Closed)?;
        let have: i64 = c.query_row("SELECT count(*) FROM items", [], |r| r.get(0))?;
        if have > 0 {
            return Ok(0);
        }
        let tx = c.transaction()?;
        {
            let mut stmt = tx.prepare("INSERT INTO items (id, value) VALUES (?1, ?2)")?;
            for i in 0..n {
                stmt.execute(params![format!("seed-{i:06}"), format!("{{\"n\":{i}}}")])?;
            }
        }
        tx.commit()?;
        Ok(n)
    }

    /// Row count and digest of the live database.
    pub fn digest(&self) -> Result<Digest, SqliteError> {
        self.with(digest_of)
    }

    fn backup_path(&self, name: &str) -> PathBuf {
        self.dir.join(BACKUPS).join(format!("{name}.db"))
    }

    /// Writes a consistent copy of the live database to `backups/<name>.db`
    /// (`VACUUM INTO` a temporary file, fsync, rename).
    pub fn backup(&self, name: &str) -> Result<Digest, SqliteError> {
        check_name(name)?;
        let tmp = self.dir.join(BACKUPS).join(format!(".{name}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        let digest = self.with(|c| {
            c.execute("VACUUM INTO ?1", [tmp.display().to_string()])?;
            digest_of(c)
        })?;
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io(&tmp))?;
        let dest = self.backup_path(name);
        std::fs::rename(&tmp, &dest).map_err(io(&dest))?;
        sync_dir(&self.dir.join(BACKUPS))?;
        Ok(digest)
    }

    /// Hot-swaps the live database for backup `name`; rolls back if the swapped-in
    /// file does not verify.
    pub fn restore(&self, name: &str) -> Result<Restored, SqliteError> {
        check_name(name)?;
        let source = self.backup_path(name);
        if !source.exists() {
            return Err(SqliteError::NoBackup(name.to_string()));
        }
        let live = self.dir.join(LIVE);
        let staging = self.dir.join(format!("{LIVE}.staging"));
        let rollback = self.dir.join(format!("{LIVE}.rollback"));
        // Staging happens while requests are still served.
        std::fs::copy(&source, &staging).map_err(io(&staging))?;
        File::open(&staging)
            .and_then(|f| f.sync_all())
            .map_err(io(&staging))?;
        // The staged copy's own content, read before the swap (None if unreadable): the
        // exact bytes swapped in, so a backup rewritten meanwhile cannot cause a mismatch.
        let expected = verify_file(&staging).ok();

        let mut guard = self.conn.lock().map_err(|_| SqliteError::Poisoned)?;
        let held = Instant::now();
        drop(guard.take()); // closes the live connection
        if let Err(e) = std::fs::rename(&live, &rollback) {
            // Nothing was swapped: serve the live file again.
            *guard = Some(open(&live, &self.synchronous)?);
            return Err(SqliteError::Io {
                path: rollback,
                source: e,
            });
        }
        let swapped = std::fs::rename(&staging, &live)
            .map_err(io(&live))
            .and_then(|()| sync_dir(&self.dir));
        let outcome = swapped
            .and_then(|()| Connection::open(&live).map_err(SqliteError::from))
            .and_then(|c| {
                let got = verify_conn(&c)?;
                Ok((c, got))
            })
            .and_then(|(c, got)| match expected {
                Some(want) if want == got => Ok((c, got)),
                Some(want) => Err(SqliteError::RolledBack {
                    backup: name.to_string(),
                    reason: format!(
                        "live digest {:016x} ({} items) differs from the backup's {:016x} ({} items)",
                        got.digest, got.items, want.digest, want.items
                    ),
                }),
                None => Err(SqliteError::RolledBack {
                    backup: name.to_string(),
                    reason: "the backup file is not a readable item database".into(),
                }),
            });
        match outcome {
            Ok((conn, got)) => {
                *guard = Some(conn);
                let window_ms = held.elapsed().as_secs_f64() * 1e3;
                drop(guard);
                let _ = std::fs::remove_file(&rollback);
                Ok(Restored {
                    backup: name.to_string(),
                    verified: true,
                    live: got,
                    window_ms,
                })
            }
            Err(e) => {
                std::fs::rename(&rollback, &live).map_err(io(&live))?;
                sync_dir(&self.dir)?;
                *guard = Some(open(&live, &self.synchronous)?);
                let reason = match e {
                    SqliteError::RolledBack { reason, .. } => reason,
                    other => other.to_string(),
                };
                Err(SqliteError::RolledBack {
                    backup: name.to_string(),
                    reason,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "demo-app-sqlite-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

    #[test]
    fn restore_brings_back_exactly_the_backup() {
        let d = dir();
        let s = SqliteStore::open(&d).expect("open");
        s.insert("a", "1").expect("insert");
        s.insert("b", "2").expect("insert");
        let at_backup = s.backup("nightly").expect("backup");
        s.insert("c", "3").expect("insert after backup");
        assert_ne!(s.digest().expect("digest"), at_backup);
        let r = s.restore("nightly").expect("restore");
        assert!(r.verified);
        assert_eq!(r.live, at_backup);
        assert_eq!(s.digest().expect("digest"), at_backup);
        assert_eq!(s.get("c").expect("get"), None);
        assert_eq!(s.get("a").expect("get").as_deref(), Some("1"));
        // The store keeps working after the swap.
        s.insert("d", "4").expect("insert after restore");
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn corrupt_backup_rolls_back_to_the_live_data() {
        let d = dir();
        let s = SqliteStore::open(&d).expect("open");
        s.insert("a", "1").expect("insert");
        let before = s.digest().expect("digest");
        let junk: Vec<u8> = (0..65536u32).map(|i| (i * 7919 % 251) as u8).collect();
        std::fs::write(d.join(BACKUPS).join("corrupt.db"), junk).expect("junk");
        let err = s.restore("corrupt").expect_err("must fail");
        assert!(
            matches!(err, SqliteError::RolledBack { .. }),
            "unexpected error: {err}"
        );
        assert_eq!(s.digest().expect("digest after rollback"), before);
        s.insert("b", "2").expect("store usable after rollback");
        assert!(matches!(
            s.restore("missing"),
            Err(SqliteError::NoBackup(_))
        ));
        assert!(matches!(s.restore("../x"), Err(SqliteError::BadName(_))));
        std::fs::remove_dir_all(&d).ok();
    }
}
