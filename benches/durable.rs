//! Power-loss layer benchmark: the same workloads on a plain directory and through
//! rebound's layer mounted over one (`rebound::durable`), and the ratio. Needs root
//! and /dev/fuse. Not part of CI. Run it with
//!
//! ```text
//! cargo bench --bench durable -- [--mib 64] [--files 500]
//! ```
//!
//! Workloads: sequential 1 MiB writes then one fsync (MB/s); small files, each
//! created, written 4 KiB, fsynced, and its directory fsynced (files per second);
//! an append log of 200-byte records each fdatasynced, as a database's WAL
//! commits (records per second).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

mod common;

use common::{arg, plain_and_layered};

fn sequential(dir: &Path, mib: u64) -> f64 {
    let chunk = vec![0x5au8; 1 << 20];
    let t = Instant::now();
    let mut f = File::create(dir.join("seq")).expect("create");
    for _ in 0..mib {
        f.write_all(&chunk).expect("write");
    }
    f.sync_all().expect("fsync");
    let s = t.elapsed().as_secs_f64();
    std::fs::remove_file(dir.join("seq")).expect("rm");
    mib as f64 * 1.048576 / s
}

fn small_files(dir: &Path, n: u64) -> f64 {
    let sub = dir.join("small");
    std::fs::create_dir_all(&sub).expect("mkdir");
    let data = vec![7u8; 4096];
    let d = File::open(&sub).expect("dir");
    let t = Instant::now();
    for i in 0..n {
        let mut f = File::create(sub.join(format!("f{i}"))).expect("create");
        f.write_all(&data).expect("write");
        f.sync_all().expect("fsync");
        d.sync_all().expect("fsync dir");
    }
    let s = t.elapsed().as_secs_f64();
    std::fs::remove_dir_all(&sub).expect("rm");
    n as f64 / s
}

fn commits(dir: &Path, n: u64) -> f64 {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("wal"))
        .expect("wal");
    let record = vec![b'r'; 200];
    let t = Instant::now();
    for _ in 0..n {
        f.write_all(&record).expect("append");
        f.sync_data().expect("fdatasync");
    }
    let s = t.elapsed().as_secs_f64();
    std::fs::remove_file(dir.join("wal")).expect("rm");
    n as f64 / s
}

/// One measured workload: a directory in, a rate out.
type Workload<'a> = dyn Fn(&Path) -> f64 + 'a;

fn main() {
    let mib = arg("--mib", 64);
    let files = arg("--files", 500);
    let (plain, layer, layered) = plain_and_layered("durable");
    println!(
        "{:<40} {:>12} {:>12} {:>7}",
        "workload", "plain", "layer", "ratio"
    );
    let rows: [(&str, &Workload<'_>); 3] = [
        (&format!("sequential {mib} MiB + fsync (MB/s)"), &|d| {
            sequential(d, mib)
        }),
        (
            &format!("{files} files create+4KiB+fsync+dirsync (/s)"),
            &|d| small_files(d, files),
        ),
        (
            &format!("{} 200 B appends + fdatasync (/s)", files * 4),
            &|d| commits(d, files * 4),
        ),
    ];
    for (name, f) in rows {
        // Best of three: the disk's own noise is not the layer's cost.
        let best = |d: &Path| (0..3).map(|_| f(d)).fold(0.0, f64::max);
        let p = best(plain.path());
        let l = best(layered.path());
        println!("{name:<40} {p:>12.1} {l:>12.1} {:>6.0}%", 100.0 * l / p);
    }
    drop(layer);
}
