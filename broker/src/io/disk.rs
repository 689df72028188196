//! The disk seam.
//!
//! Files are opened through a [`Disk`] and accessed by position through a [`DiskFile`]. The
//! contract is the one a careful storage engine assumes of a POSIX filesystem, and no more:
//!
//! - `write_at` puts bytes in a volatile cache. They may be lost, partly lost, or (at sector
//!   granularity) torn by a crash until `sync` on that file returns `Ok`.
//! - Creating, renaming or removing a file changes the directory, which is durable only after
//!   `sync_dir` on the parent directory returns `Ok`.
//! - After `sync` returns an error the file's contents are unknown: callers must treat it as
//!   suspect (re-read and verify, or stop), never retry the sync and assume success.
//!
//! All methods are blocking. They are cheap when data stays in the page cache; `sync` is the slow
//! one and drivers run it off the reactor (see [`crate::io::tasks::run_blocking`]).

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DirEntry {
    pub name: String,
    pub is_dir: bool,
}

/// The size of a volume and the part of it still free, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VolumeSpace {
    pub total_bytes: u64,
    pub usable_bytes: u64,
}

/// A filesystem: real, or simulated by the simulator.
pub trait Disk: Send + Sync + 'static {
    /// Opens a file for reading and writing, creating it if `create` is set.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn DiskFile>>;
    /// Creates a directory and its missing parents. Durable after `sync_dir` of each parent.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Atomically replaces `to` with `from`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory and everything below it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// The entries of a directory, sorted by name so that callers iterate deterministically.
    fn list(&self, path: &Path) -> io::Result<Vec<DirEntry>>;
    fn exists(&self, path: &Path) -> bool;
    /// The size of the volume holding `path` and the bytes free on it for this process (as
    /// `statvfs` reports them). A disk that cannot tell says `Unsupported`.
    fn space(&self, _path: &Path) -> io::Result<VolumeSpace> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this disk does not report its space",
        ))
    }

    /// Returns and resets the simulated latency the operations accrued since the last call. The
    /// simulated disk's methods block but take no simulated time, so the driver sleeps for this
    /// after a sync or a batch of I/O. A real disk spends its latency for real and returns zero.
    fn take_simulated_latency(&self) -> Duration {
        Duration::ZERO
    }
}

/// An open file, shared between the writer and readers.
pub trait DiskFile: Send + Sync + 'static {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read (0 at the end).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `offset`, extending the file if needed.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Writes `parts` one after another from `offset`, as one write of their concatenation.
    /// The log uses it to write a batch whose first bytes it rewrote without copying the rest.
    /// This default joins the parts and makes one `write_at`, so a disk that models each write
    /// (the simulated one) sees exactly the write a single buffer would have made.
    fn write_parts_at(&self, parts: &[&[u8]], offset: u64) -> io::Result<()> {
        self.write_at(&parts.concat(), offset)
    }
    fn len(&self) -> io::Result<u64>;
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    fn truncate(&self, len: u64) -> io::Result<()>;
    /// Makes every earlier write to this file durable.
    fn sync(&self) -> io::Result<()>;
    /// Reads exactly `length` bytes at `offset` into a new buffer that is not zeroed first, in
    /// one attempt; `None` if that attempt fell short in any way (an error, a short read), and
    /// the caller then reads with [`DiskFile::read_exact_at`], which retries. Zeroing a
    /// megabyte that a read then overwrites costs as much as a copy of it, on every fetch. A
    /// disk without a way to read into uninitialised memory keeps this default.
    fn read_exact_uninitialised(&self, _length: usize, _offset: u64) -> Option<Vec<u8>> {
        None
    }

    /// Reads exactly `buf.len()` bytes at `offset`, failing with `UnexpectedEof` if the file is
    /// shorter. A failed read is retried a few times: disks report transient errors (a
    /// timed-out command, a sector read that succeeds on the next attempt), and giving up on the
    /// first one would take a partition offline, or stop a start-up, for nothing.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut attempt = 1;
        loop {
            match read_exact_once(self, buf, offset) {
                Err(error) if attempt < READ_ATTEMPTS_MAX && is_retryable(&error) => attempt += 1,
                result => return result,
            }
        }
    }
}

/// Reads exactly `length` bytes at `offset` into a new buffer, with the retries of
/// [`DiskFile::read_exact_at`].
pub fn read_exact_to_vec(file: &dyn DiskFile, length: usize, offset: u64) -> io::Result<Vec<u8>> {
    if let Some(buffer) = file.read_exact_uninitialised(length, offset) {
        return Ok(buffer);
    }
    let mut buffer = vec![0u8; length];
    file.read_exact_at(&mut buffer, offset)?;
    Ok(buffer)
}

/// How many times a read is attempted before its error is reported.
pub const READ_ATTEMPTS_MAX: u32 = 5;

fn is_retryable(error: &io::Error) -> bool {
    !matches!(
        error.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::NotFound | io::ErrorKind::InvalidInput
    )
}

fn read_exact_once<File: DiskFile + ?Sized>(
    file: &File,
    buf: &mut [u8],
    offset: u64,
) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let read = file.read_at(&mut buf[done..], offset + done as u64)?;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file ended before the requested range",
            ));
        }
        done += read;
    }
    Ok(())
}

/// Reads a whole small file (metadata, checkpoints).
pub fn read_whole(disk: &dyn Disk, path: &Path) -> io::Result<Vec<u8>> {
    let file = disk.open(path, false)?;
    let len = usize::try_from(file.len()?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large to read whole"))?;
    read_exact_to_vec(file.as_ref(), len, 0)
}

/// Replaces a small file atomically and durably: write a temporary file, sync it, rename it over
/// the target, sync the directory. After a crash the target holds either the old or the new
/// contents, never a mix.
pub fn write_atomically(disk: &dyn Disk, path: &Path, contents: &[u8]) -> io::Result<()> {
    let parent = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = std::path::PathBuf::from(temporary);
    let file = disk.open(&temporary, true)?;
    file.truncate(0)?;
    file.write_at(contents, 0)?;
    file.sync()?;
    disk.rename(&temporary, path)?;
    disk.sync_dir(parent)
}
