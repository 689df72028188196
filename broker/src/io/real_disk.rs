//! The production disk: the operating system's filesystem, through `std::fs`.
//!
//! This is the only broker module allowed to use `std::fs`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use super::disk::{DirEntry, Disk, DiskFile, VolumeSpace};

/// The real filesystem.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealDisk;

struct RealFile {
    file: File,
}

impl Disk for RealDisk {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn DiskFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)?;
        Ok(Arc::new(RealFile { file }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }

    fn list(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue; // Names that are not UTF-8 are never ours.
            };
            entries.push(DirEntry {
                name,
                is_dir: entry.file_type()?.is_dir(),
            });
        }
        entries.sort();
        Ok(entries)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn space(&self, path: &Path) -> io::Result<VolumeSpace> {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))?;
        // SAFETY: `stats` is a plain C struct that statvfs fills in; `path` is a valid C string
        // that outlives the call.
        let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(path.as_ptr(), &mut stats) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let fragment = stats.f_frsize;
        Ok(VolumeSpace {
            total_bytes: stats.f_blocks.saturating_mul(fragment),
            usable_bytes: stats.f_bavail.saturating_mul(fragment),
        })
    }
}

impl DiskFile for RealFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn write_parts_at(&self, parts: &[&[u8]], offset: u64) -> io::Result<()> {
        write_parts_vectored(&self.file, parts, offset)
    }

    fn read_exact_uninitialised(&self, length: usize, offset: u64) -> Option<Vec<u8>> {
        let position = libc::off_t::try_from(offset).ok()?;
        let mut buffer: Vec<u8> = Vec::with_capacity(length);
        // SAFETY: the pointer and length describe the buffer's own spare capacity, which pread
        // only writes to; the length is set only once the kernel reports every byte written.
        let read = unsafe {
            libc::pread(
                self.file.as_raw_fd(),
                buffer.as_mut_ptr().cast(),
                length,
                position,
            )
        };
        if usize::try_from(read).ok()? != length {
            return None;
        }
        // SAFETY: pread wrote `length` bytes into the capacity above.
        unsafe { buffer.set_len(length) };
        Some(buffer)
    }

    fn sync(&self) -> io::Result<()> {
        // fdatasync: data plus the metadata needed to read it back (the file size).
        self.file.sync_data()
    }
}

/// The most parts one `pwritev` takes here; a batch is written as two.
const WRITE_PARTS_MAX: usize = 8;

/// Writes `parts` from `offset` with one `pwritev` where it writes them all (it nearly always
/// does), finishing a short write with plain writes of what is left.
fn write_parts_vectored(file: &File, parts: &[&[u8]], offset: u64) -> io::Result<()> {
    assert!(
        parts.len() <= WRITE_PARTS_MAX,
        "write_parts_at takes a few parts"
    );
    let total: usize = parts.iter().map(|part| part.len()).sum();
    let position = libc::off_t::try_from(offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset past off_t"))?;
    let mut vectors = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; WRITE_PARTS_MAX];
    for (vector, part) in vectors.iter_mut().zip(parts) {
        *vector = libc::iovec {
            iov_base: part.as_ptr() as *mut libc::c_void,
            iov_len: part.len(),
        };
    }
    // SAFETY: every iovec points into a live slice of `parts` with its length; pwritev reads
    // from them and nothing writes to them meanwhile.
    let written = unsafe {
        libc::pwritev(
            file.as_raw_fd(),
            vectors.as_ptr(),
            parts.len() as libc::c_int,
            position,
        )
    };
    let mut done = match usize::try_from(written) {
        Ok(done) => done,
        Err(_) => {
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(error);
            }
            0
        }
    };
    if done == total {
        return Ok(());
    }
    // A short write (a full disk reports what fitted before its error): the rest goes through
    // write_all_at, which retries interruptions and reports the error.
    let mut position = offset;
    for part in parts {
        let skip = done.min(part.len());
        done -= skip;
        position += skip as u64;
        file.write_all_at(&part[skip..], position)?;
        position += (part.len() - skip) as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::disk::read_exact_to_vec;

    /// A file of its own under the system's temporary directory, removed at the end.
    struct ScratchFile {
        path: std::path::PathBuf,
    }

    impl ScratchFile {
        fn new(name: &str) -> Self {
            let path =
                std::env::temp_dir().join(format!("skiff-real-disk-{}-{name}", std::process::id()));
            let _ = std::fs::remove_file(&path);
            Self { path }
        }
    }

    impl Drop for ScratchFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    #[test]
    fn parts_are_written_back_to_back_in_one_write() {
        let scratch = ScratchFile::new("parts");
        let file = RealDisk.open(&scratch.path, true).unwrap();
        file.write_at(b"0123456789", 0).unwrap();
        file.write_parts_at(&[b"ab", b"", b"cdef"], 3).unwrap();
        file.write_parts_at(&[b"XY", b"Z"], 10).unwrap();
        let contents = read_exact_to_vec(file.as_ref(), 13, 0).unwrap();
        assert_eq!(&contents, b"012abcdef9XYZ");
        assert_eq!(file.len().unwrap(), 13);
    }

    #[test]
    fn a_read_into_a_new_buffer_is_exact_or_fails_past_the_end() {
        let scratch = ScratchFile::new("read");
        let file = RealDisk.open(&scratch.path, true).unwrap();
        let written: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
        file.write_at(&written, 0).unwrap();
        assert_eq!(
            read_exact_to_vec(file.as_ref(), 70_000, 20_000).unwrap(),
            &written[20_000..90_000]
        );
        assert_eq!(read_exact_to_vec(file.as_ref(), 0, 100_000).unwrap(), b"");
        // One attempt that falls short leaves the read to the retrying path, which reports it.
        assert!(file.read_exact_uninitialised(10, 99_995).is_none());
        let error = read_exact_to_vec(file.as_ref(), 10, 99_995).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }
}
