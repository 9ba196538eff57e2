//! The fsync discipline, in one place: a file is complete on disk only after its data is
//! fsynced, and a name in a directory only after that directory is fsynced (a rename alone
//! survives a crash on no file system's promise; OpenSMTPD's queue misses the second step).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Spool files hold other people's mail: readable by the server only.
const FILE_MODE: u32 = 0o600;

/// Creates (or truncates) `path`, writes `parts` one after another, and fsyncs the file.
/// On an error the partial file is removed.
pub(crate) fn write_synced(path: &Path, parts: &[&[u8]]) -> io::Result<()> {
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(path)?;
        for part in parts {
            file.write_all(part)?;
        }
        // sync_all rather than sync_data: the file is new, its size and the inode are part of
        // what must survive.
        file.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(path);
    }
    result
}

/// Makes the entries of directory `dir` (new names, renames, removals) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Atomically replaces `dst` by `parts`: written to `tmp` (same file system), fsynced,
/// renamed over `dst`, then `dst`'s directory fsynced. A crash leaves either the old or the
/// new content at `dst`, never a mix.
pub(crate) fn replace(tmp: &Path, dst: &Path, parts: &[&[u8]]) -> io::Result<()> {
    write_synced(tmp, parts)?;
    if let Err(e) = fs::rename(tmp, dst) {
        let _ = fs::remove_file(tmp);
        return Err(e);
    }
    sync_dir(dst.parent().unwrap_or(Path::new(".")))
}

/// Creates directory `dir` (mode 0700) if missing; says whether it did.
pub(crate) fn ensure_dir(dir: &Path) -> io::Result<bool> {
    use std::os::unix::fs::DirBuilderExt;
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(false),
        Err(e) => Err(e),
    }
}
