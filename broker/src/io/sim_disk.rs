//! A simulated disk that forgets what was never made durable.
//!
//! Fault model (what a crash does):
//! - Each file keeps its durable contents (as of its last successful `sync`) and the writes and
//!   truncations made since, in order. A crash keeps a random prefix of those pending operations,
//!   and may tear the first dropped write at a sector boundary, so a crash leaves a file at its
//!   durable contents plus some, possibly torn, tail of later writes: never a later write
//!   without the earlier ones.
//! - Directory entries (creations, renames, removals, new directories) are durable only after
//!   `sync_dir` of the parent directory; a crash reverts every entry change made since.
//! - File handles opened before a crash fail with an I/O error afterwards.
//!
//! Everything is in memory and ordered (`BTreeMap`), so a run is a pure function of its seed.
//! The disk is shared through an `Arc`, outside the simulated node, so it survives the node's
//! restart the way a real disk survives a reboot.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::disk::{DirEntry, Disk, DiskFile};

/// The unit a torn write is cut at.
pub const SECTOR_BYTES: u64 = 512;

/// An in-memory disk with crash semantics. Cloning shares the disk.
#[derive(Clone, Default)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// Bumped by every crash; handles from an older generation are dead.
    generation: u64,
    next_inode: u64,
    inodes: BTreeMap<u64, Inode>,
    entries: BTreeMap<PathBuf, u64>,
    durable_entries: BTreeMap<PathBuf, u64>,
    directories: BTreeSet<PathBuf>,
    durable_directories: BTreeSet<PathBuf>,
    /// Counts of operations, for tests and reports.
    syncs: u64,
}

#[derive(Default, Clone)]
struct Inode {
    durable: Vec<u8>,
    current: Vec<u8>,
    pending: Vec<PendingOperation>,
}

#[derive(Clone)]
enum PendingOperation {
    Write { offset: u64, data: Vec<u8> },
    Truncate { len: u64 },
}

struct SimFile {
    state: Arc<Mutex<State>>,
    inode: u64,
    generation: u64,
}

impl SimDisk {
    pub fn new() -> Self {
        Self::default()
    }

    /// Simulates power loss: every file falls back to its durable contents plus a random prefix
    /// of its pending writes (the first dropped one possibly torn), and directory changes not
    /// made durable by `sync_dir` are undone. Deterministic for a given `seed`.
    pub fn crash(&self, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut state = lock(&self.state);
        state.generation += 1;
        state.entries = state.durable_entries.clone();
        state.directories = state.durable_directories.clone();
        let live: BTreeSet<u64> = state.entries.values().copied().collect();
        state.inodes.retain(|inode, _| live.contains(inode));
        for inode in state.inodes.values_mut() {
            let kept = rng.gen_range(0..=inode.pending.len());
            let mut contents = std::mem::take(&mut inode.durable);
            for operation in &inode.pending[..kept] {
                apply(&mut contents, operation);
            }
            if let Some(PendingOperation::Write { offset, data }) = inode.pending.get(kept) {
                if rng.gen_bool(0.5) {
                    let sectors = (data.len() as u64).div_ceil(SECTOR_BYTES);
                    let torn_bytes = (rng.gen_range(0..sectors.max(1)) * SECTOR_BYTES) as usize;
                    let torn = PendingOperation::Write {
                        offset: *offset,
                        data: data[..torn_bytes.min(data.len())].to_vec(),
                    };
                    apply(&mut contents, &torn);
                }
            }
            inode.pending.clear();
            inode.current = contents.clone();
            inode.durable = contents;
        }
    }

    /// Simulates power loss that keeps nothing unsynced: the harshest crash.
    pub fn crash_losing_everything_unsynced(&self) {
        let mut state = lock(&self.state);
        state.generation += 1;
        state.entries = state.durable_entries.clone();
        state.directories = state.durable_directories.clone();
        let live: BTreeSet<u64> = state.entries.values().copied().collect();
        state.inodes.retain(|inode, _| live.contains(inode));
        for inode in state.inodes.values_mut() {
            inode.pending.clear();
            inode.current = inode.durable.clone();
        }
    }

    /// How many file syncs have succeeded.
    pub fn sync_count(&self) -> u64 {
        lock(&self.state).syncs
    }

    /// Total bytes held by files that currently exist.
    pub fn used_bytes(&self) -> u64 {
        let state = lock(&self.state);
        state
            .entries
            .values()
            .filter_map(|inode| state.inodes.get(inode))
            .map(|inode| inode.current.len() as u64)
            .sum()
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|poison| poison.into_inner())
}

fn apply(contents: &mut Vec<u8>, operation: &PendingOperation) {
    match operation {
        PendingOperation::Write { offset, data } => {
            let start = *offset as usize;
            let end = start + data.len();
            if contents.len() < end {
                contents.resize(end, 0);
            }
            contents[start..end].copy_from_slice(data);
        }
        PendingOperation::Truncate { len } => contents.resize(*len as usize, 0),
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} does not exist", path.display()),
    )
}

fn parent_of(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The root always exists, as on a real filesystem.
fn is_root(path: &Path) -> bool {
    path.as_os_str().is_empty() || path == Path::new("/")
}

impl State {
    fn parent_exists(&self, path: &Path) -> bool {
        self.directory_exists(&parent_of(path))
    }

    fn directory_exists(&self, path: &Path) -> bool {
        is_root(path) || self.directories.contains(path)
    }
}

impl Disk for SimDisk {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn DiskFile>> {
        let mut state = lock(&self.state);
        let inode = match state.entries.get(path) {
            Some(inode) => *inode,
            None if create => {
                if !state.parent_exists(path) {
                    return Err(not_found(&parent_of(path)));
                }
                state.next_inode += 1;
                let inode = state.next_inode;
                state.inodes.insert(inode, Inode::default());
                state.entries.insert(path.to_path_buf(), inode);
                inode
            }
            None => return Err(not_found(path)),
        };
        Ok(Arc::new(SimFile {
            state: self.state.clone(),
            inode,
            generation: state.generation,
        }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        for ancestor in path.ancestors() {
            if ancestor.as_os_str().is_empty() || ancestor == Path::new("/") {
                continue;
            }
            state.directories.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        if !state.directory_exists(path) {
            return Err(not_found(path));
        }
        let in_directory = |candidate: &Path| candidate.parent() == Some(path);
        let State {
            entries,
            durable_entries,
            directories,
            durable_directories,
            ..
        } = &mut *state;
        durable_entries.retain(|name, _| !in_directory(name));
        for (name, inode) in entries.iter() {
            if in_directory(name) {
                durable_entries.insert(name.clone(), *inode);
            }
        }
        durable_directories.retain(|name| !in_directory(name));
        for name in directories.iter() {
            if in_directory(name) {
                durable_directories.insert(name.clone());
            }
        }
        // The directory itself becomes durable too: a real filesystem journals its own entry
        // with the parent's, and every caller here syncs parents before children.
        if !is_root(path) {
            durable_directories.insert(path.to_path_buf());
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        let inode = state.entries.remove(from).ok_or_else(|| not_found(from))?;
        state.entries.insert(to.to_path_buf(), inode);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        state
            .entries
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        if !state.directories.contains(path) {
            return Err(not_found(path));
        }
        state.entries.retain(|name, _| !name.starts_with(path));
        state.directories.retain(|name| !name.starts_with(path));
        Ok(())
    }

    fn list(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let state = lock(&self.state);
        if !state.directory_exists(path) {
            return Err(not_found(path));
        }
        let name_of = |child: &Path| {
            child
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
        };
        let mut listing: Vec<DirEntry> = state
            .entries
            .keys()
            .filter(|name| name.parent() == Some(path))
            .filter_map(|name| name_of(name))
            .map(|name| DirEntry {
                name,
                is_dir: false,
            })
            .chain(
                state
                    .directories
                    .iter()
                    .filter(|name| name.parent() == Some(path))
                    .filter_map(|name| name_of(name))
                    .map(|name| DirEntry { name, is_dir: true }),
            )
            .collect();
        listing.sort();
        Ok(listing)
    }

    fn exists(&self, path: &Path) -> bool {
        let state = lock(&self.state);
        state.entries.contains_key(path) || state.directory_exists(path)
    }
}

impl SimFile {
    fn with_inode<R>(&self, work: impl FnOnce(&mut Inode, &mut State) -> R) -> io::Result<R> {
        let mut state = lock(&self.state);
        if state.generation != self.generation {
            return Err(io::Error::other("file handle from before a crash"));
        }
        let mut inode = state
            .inodes
            .remove(&self.inode)
            .ok_or_else(|| io::Error::other("file was removed"))?;
        let result = work(&mut inode, &mut state);
        state.inodes.insert(self.inode, inode);
        Ok(result)
    }
}

impl DiskFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.with_inode(|inode, _| {
            let start = (offset as usize).min(inode.current.len());
            let end = (start + buf.len()).min(inode.current.len());
            buf[..end - start].copy_from_slice(&inode.current[start..end]);
            end - start
        })
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.with_inode(|inode, _| {
            let operation = PendingOperation::Write {
                offset,
                data: buf.to_vec(),
            };
            apply(&mut inode.current, &operation);
            inode.pending.push(operation);
        })
    }

    fn len(&self) -> io::Result<u64> {
        self.with_inode(|inode, _| inode.current.len() as u64)
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        self.with_inode(|inode, _| {
            let operation = PendingOperation::Truncate { len };
            apply(&mut inode.current, &operation);
            inode.pending.push(operation);
        })
    }

    fn sync(&self) -> io::Result<()> {
        self.with_inode(|inode, state| {
            inode.durable = inode.current.clone();
            inode.pending.clear();
            state.syncs += 1;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_file(disk: &SimDisk, path: &str, data: &[u8], sync: bool) {
        let file = disk.open(Path::new(path), true).expect("open");
        file.write_at(data, 0).expect("write");
        if sync {
            file.sync().expect("sync");
        }
    }

    #[test]
    fn crash_loses_unsynced_writes_and_unsynced_entries() {
        let disk = SimDisk::new();
        disk.create_dir_all(Path::new("/data")).unwrap();
        disk.sync_dir(Path::new("/data")).unwrap();
        write_file(&disk, "/data/synced", b"kept", true);
        write_file(&disk, "/data/unsynced-entry", b"lost", true);
        disk.sync_dir(Path::new("/data")).unwrap();
        write_file(&disk, "/data/late", b"never durable", true);
        let file = disk.open(Path::new("/data/synced"), false).unwrap();
        file.write_at(b"more", 4).unwrap();

        disk.crash_losing_everything_unsynced();

        assert!(file.len().is_err(), "old handles die with the crash");
        assert!(!disk.exists(Path::new("/data/late")));
        let reopened = disk.open(Path::new("/data/synced"), false).unwrap();
        let mut buf = vec![0; 16];
        let read = reopened.read_at(&mut buf, 0).unwrap();
        assert_eq!(&buf[..read], b"kept");
    }

    #[test]
    fn crash_keeps_a_prefix_of_pending_writes() {
        for seed in 0..64 {
            let disk = SimDisk::new();
            disk.create_dir_all(Path::new("/d")).unwrap();
            disk.sync_dir(Path::new("/d")).unwrap();
            let file = disk.open(Path::new("/d/log"), true).unwrap();
            disk.sync_dir(Path::new("/d")).unwrap();
            let chunk = vec![7u8; 1024];
            for index in 0..4u64 {
                file.write_at(&chunk, index * 1024).unwrap();
            }
            disk.crash(seed);
            let contents = crate::io::disk::read_whole(&disk, Path::new("/d/log")).unwrap();
            assert_eq!(contents.len() as u64 % SECTOR_BYTES, 0);
            assert!(
                contents.iter().all(|byte| *byte == 7),
                "no byte from nowhere"
            );
        }
    }

    #[test]
    fn rename_is_durable_only_after_sync_dir() {
        let disk = SimDisk::new();
        disk.create_dir_all(Path::new("/d")).unwrap();
        disk.sync_dir(Path::new("/d")).unwrap();
        write_file(&disk, "/d/a", b"x", true);
        disk.sync_dir(Path::new("/d")).unwrap();
        disk.rename(Path::new("/d/a"), Path::new("/d/b")).unwrap();
        disk.crash_losing_everything_unsynced();
        assert!(disk.exists(Path::new("/d/a")));
        assert!(!disk.exists(Path::new("/d/b")));
    }
}
