//! Read-only memory maps of model files, and giving their pages back once converted.

use std::path::Path;
use std::sync::Arc;

use memmap2::Mmap;

use crate::error::{Error, Result};

/// Maps a whole file read-only. An empty file is a format error ("the file is empty, not
/// `kind`").
pub(crate) fn map_file(path: &Path, kind: &str) -> Result<Mmap> {
    let file = super::open_regular(path, kind)?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len == 0 {
        return Err(Error::format(
            path,
            format!("the file is empty, not {kind}"),
        ));
    }
    // SAFETY: the mapping is read-only and lives only while the file is being loaded (every
    // loader drops it before returning). As with any memory map, another process truncating
    // or rewriting the file during those moments is outside what Rust can guard against;
    // model files are not expected to change while they are being opened.
    unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))
}

/// Lets a `bytes::Bytes` share ownership of a memory map.
pub(crate) struct SharedMap(pub(crate) Arc<Mmap>);

impl AsRef<[u8]> for SharedMap {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Tells the kernel the mapped pages under `slice` (a part of `map`) are no longer needed, so
/// they stop counting towards this process's memory. Slices outside `map` are ignored.
#[cfg(unix)]
pub(crate) fn release_pages(map: &Mmap, slice: &[u8]) {
    let base = map.as_ptr() as usize;
    let Some(offset) = (slice.as_ptr() as usize).checked_sub(base) else {
        return;
    };
    if slice.is_empty()
        || offset
            .checked_add(slice.len())
            .is_none_or(|end| end > map.len())
    {
        return;
    }
    // SAFETY: `Mmap::map` creates a read-only MAP_SHARED file mapping. MADV_DONTNEED on such a
    // mapping only drops this process's page-table entries: a later read of the range faults
    // the same file contents back in from the page cache (it does not zero-fill, which is what
    // makes the advice dangerous on private or anonymous mappings). So a slice still referring
    // to the range keeps reading the same bytes. A failure only costs memory; ignore it.
    let _ = unsafe {
        map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, slice.len())
    };
}

#[cfg(not(unix))]
pub(crate) fn release_pages(_map: &Mmap, _slice: &[u8]) {}
