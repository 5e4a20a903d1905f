//! Scratch directories for the targets that write log files: one root per
//! process, on tmpfs when there is one (`/dev/shm`), so `fsync`/`msync` cost
//! nothing and nothing touches a real disk.
//!
//! The root, `durability-fuzz-<pid>`, is removed when the process exits
//! normally (libFuzzer calls `exit`); roots left behind by processes that
//! crashed are removed by the next process that starts.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const PREFIX: &str = "durability-fuzz-";

static ROOT: OnceLock<PathBuf> = OnceLock::new();

extern "C" {
    fn atexit(f: extern "C" fn()) -> std::os::raw::c_int;
}

extern "C" fn remove_root() {
    if let Some(root) = ROOT.get() {
        let _ = fs::remove_dir_all(root);
    }
}

/// Where scratch roots go: `/dev/shm` if it is a writable directory, else
/// the system temporary directory.
fn parent() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        let probe = shm.join(format!("{PREFIX}probe-{}", std::process::id()));
        if fs::create_dir(&probe).is_ok() {
            let _ = fs::remove_dir(&probe);
            return shm.to_path_buf();
        }
    }
    std::env::temp_dir()
}

/// Removes roots of processes that no longer exist.
fn remove_stale(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// This process's scratch root (created on first use).
pub fn root() -> &'static Path {
    ROOT.get_or_init(|| {
        let parent = parent();
        remove_stale(&parent);
        let root = parent.join(format!("{PREFIX}{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).expect("create scratch root");
        // SAFETY: registering a plain `extern "C" fn` with no captured state.
        unsafe { atexit(remove_root) };
        root
    })
}

/// The path of scratch directory `name` for this thread (threads get their
/// own, so tests can run in parallel).
pub fn path(name: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static ID: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    root().join(format!("{name}.{}", ID.with(|id| *id)))
}

/// An empty directory `name` under the root (emptied if it exists).
pub fn fresh(name: &str) -> PathBuf {
    let dir = path(name);
    match fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("clear scratch dir {}: {e}", dir.display()),
    }
    fs::create_dir(&dir).expect("create scratch dir");
    dir
}

/// The regular files of `dir`, sorted by name, with their contents. Files
/// that vanish while being listed (a concurrent rename) are skipped.
pub fn read_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).expect("list dir").flatten() {
        let Ok(ft) = e.file_type() else { continue };
        if !ft.is_file() {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        match fs::read(e.path()) {
            Ok(bytes) => out.push((name, bytes)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => panic!("read {}: {err}", e.path().display()),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Writes `files` into `dir`.
pub fn write_files(dir: &Path, files: &[(String, Vec<u8>)]) {
    for (name, bytes) in files {
        fs::write(dir.join(name), bytes).expect("write file");
    }
}
