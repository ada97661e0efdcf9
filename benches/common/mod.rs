//! What the layer's benchmarks share: their arguments, and a plain directory next
//! to one under rebound's power-loss layer.

use rebound::durable::{Layer, Model};

/// The value of `--name N` on the command line, else `default`.
pub fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A plain directory and one with the layer mounted over it (posix-strict);
/// exits 4 saying why when the layer cannot work here. The layer unmounts when
/// dropped, before the directories are removed.
pub fn plain_and_layered(bench: &str) -> (tempfile::TempDir, Layer, tempfile::TempDir) {
    if let Err(why) = rebound::durable::supported() {
        eprintln!("{bench} bench: {why}");
        std::process::exit(4);
    }
    let plain = tempfile::tempdir().expect("tempdir");
    let layered = tempfile::tempdir().expect("tempdir");
    let layer = Layer::mount(layered.path(), layered.path(), Model::PosixStrict).expect("mount");
    (plain, layer, layered)
}
