//! The machine's own limits, measured in the same run as the logs: the
//! floor under a durable commit (`pwrite` of 4 KiB + `fdatasync`, into a
//! preallocated file in the directory the logs use), `msync` of one dirty
//! mapped page (what our Strict commit does), each into blocks that were
//! only `fallocate`d (unwritten extents: the sync must also journal their
//! conversion) and into blocks written and synced once, and the CPU
//! ceilings of a replay (CRC-32C and `memcpy` over 256 MiB).

use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput};

use crate::quiesce;

/// Size of the files the sync benchmarks write into (16384 pages: more
/// than a sample at any plausible sync rate).
const SYNC_FILE: u64 = 64 << 20;

/// A preallocated file written 4 KiB at a time at advancing offsets,
/// wrapping at the end.
pub struct SyncTarget {
    file: File,
    path: PathBuf,
    off: u64,
    /// Re-create the file (unwritten extents again) instead of wrapping.
    recreate_on_wrap: bool,
}

impl SyncTarget {
    /// `written == false`: blocks reserved with `fallocate` only, so every
    /// first write to a block also converts an unwritten extent (a
    /// metadata change the sync must journal). `written == true`: the file
    /// is filled with zeros and synced once, so later writes overwrite
    /// written blocks and `fdatasync` flushes data only.
    pub fn new(path: PathBuf, written: bool) -> SyncTarget {
        let file = Self::make(&path, written);
        SyncTarget {
            file,
            path,
            off: 0,
            recreate_on_wrap: !written,
        }
    }

    fn make(path: &Path, written: bool) -> File {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .expect("create sync target");
        rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, SYNC_FILE)
            .expect("fallocate");
        if written {
            let zeros = vec![0u8; 1 << 20];
            for _ in 0..SYNC_FILE >> 20 {
                file.write_all(&zeros).expect("zero-fill");
            }
        }
        file.sync_all().expect("sync target");
        file
    }

    /// Makes room for `iters` more writes without wrapping, if the file can
    /// hold them (outside the timed part).
    pub fn prepare(&mut self, iters: u64) {
        if self.off + iters * 4096 > SYNC_FILE {
            if self.recreate_on_wrap {
                self.file = Self::make(&self.path, false);
            }
            self.off = 0;
        }
    }

    /// One `pwrite` of 4 KiB and one `fdatasync`.
    #[inline]
    pub fn write_sync(&mut self, page: &[u8; 4096]) {
        if self.off + 4096 > SYNC_FILE {
            if self.recreate_on_wrap {
                self.file = Self::make(&self.path, false);
            }
            self.off = 0;
        }
        self.file.write_all_at(page, self.off).expect("pwrite");
        self.file.sync_data().expect("fdatasync");
        self.off += 4096;
    }
}

/// `limits`: the hardware floors and ceilings.
pub fn limits(c: &mut Criterion, root: &Path, big: usize) {
    let mut g = c.benchmark_group("limits");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));

    g.throughput(Throughput::Elements(1));
    let page = [0xA5u8; 4096];
    for (name, written) in [
        ("pwrite4k_fdatasync/fallocated", false),
        ("pwrite4k_fdatasync/written", true),
    ] {
        let mut target: Option<SyncTarget> = None;
        g.bench_function(name, |b| {
            let t = target.get_or_insert_with(|| {
                SyncTarget::new(root.join(format!("limits-{written}.dat")), written)
            });
            quiesce();
            b.iter_custom(|iters| {
                t.prepare(iters);
                let start = Instant::now();
                for _ in 0..iters {
                    t.write_sync(&page);
                }
                start.elapsed()
            })
        });
        if let Some(t) = target.take() {
            let _ = std::fs::remove_file(&t.path);
        }
    }

    // msync(MS_SYNC) of one dirty 4 KiB page of a mapped file, again into
    // fallocated-only blocks (as a new segment of our log is) and into
    // written ones.
    for (name, written) in [
        ("msync_one_dirty_page/fallocated", false),
        ("msync_one_dirty_page/written", true),
    ] {
        let path = root.join(format!("limits-msync-{written}.dat"));
        let map_file = |path: &Path| {
            let file = SyncTarget::make(path, written);
            // SAFETY: the file is private to this benchmark and is neither
            // truncated nor written by anyone else while mapped.
            let m = unsafe { memmap2::MmapMut::map_mut(&file) }.expect("mmap");
            (file, m)
        };
        let mut map: Option<((File, memmap2::MmapMut), usize)> = None;
        g.bench_function(name, |b| {
            let (fm, next) = map.get_or_insert_with(|| (map_file(&path), 0));
            quiesce();
            b.iter_custom(|iters| {
                let pages = fm.1.len() / 4096;
                if *next + iters as usize > pages {
                    // Fresh (unwritten) blocks again, or wrap over written.
                    if !written {
                        drop(std::mem::replace(fm, map_file(&path)));
                    }
                    *next = 0;
                }
                let m = &mut fm.1;
                let start = Instant::now();
                for _ in 0..iters {
                    let off = (*next % pages) * 4096;
                    *next += 1;
                    m[off..off + 4096].copy_from_slice(&page);
                    m.flush_range(off, 4096).expect("msync");
                }
                start.elapsed()
            })
        });
        drop(map);
        let _ = std::fs::remove_file(&path);
    }

    // The CPU ceilings, over `big` bytes (256 MiB; less under --test).
    g.sampling_mode(SamplingMode::Flat)
        .throughput(Throughput::Bytes(big as u64));
    let src: Vec<u8> = (0..big).map(|i| (i * 131 + (i >> 12)) as u8).collect();
    g.bench_function("crc32c_256MiB", |b| {
        b.iter(|| crc32c::crc32c(black_box(&src)))
    });
    let mut dst = vec![0u8; big];
    g.bench_function("memcpy_256MiB", |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&src));
            black_box(&mut dst);
        })
    });
    g.finish();
}
