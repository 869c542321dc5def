//! Atomic file writes: every exporter writes through [`write_atomic`], which fills a temporary
//! file in the target's directory and renames it over the target only once everything was
//! written. A failed (or cancelled) export leaves nothing behind, and a write that would replace
//! one of the source files (the model being exported) is refused.

use std::io::{BufWriter, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `path` atomically: `fill` writes the content into a temporary file in the same
/// directory, which is renamed to `path` when `fill` succeeds and removed when it fails.
/// `sources` are files the export was made from (the model); `path` must not name any of them.
pub fn write_atomic(
    path: &Path,
    sources: &[&Path],
    fill: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    refuse_overwriting_sources(path, sources)?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let temp = tempfile::Builder::new()
        .prefix(".quantscope-export-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, std::io::Error::from(e.kind())))?;
    let mut writer = BufWriter::new(temp);
    // On any error below, `temp` is dropped, which deletes the temporary file.
    fill(&mut writer)?;
    let temp = writer
        .into_inner()
        .map_err(|e| Error::io(path, e.into_error()))?;
    temp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    temp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// Writes `bytes` to `path` atomically (see [`write_atomic`]).
pub fn write_bytes_atomic(path: &Path, sources: &[&Path], bytes: &[u8]) -> Result<()> {
    write_atomic(path, sources, |w| {
        w.write_all(bytes).map_err(|e| Error::io(path, e))
    })
}

/// Errors when `path` is one of `sources` (compared after resolving links and `..`).
fn refuse_overwriting_sources(path: &Path, sources: &[&Path]) -> Result<()> {
    let target = std::fs::canonicalize(path).ok();
    for source in sources {
        let same = match (&target, std::fs::canonicalize(source).ok()) {
            (Some(t), Some(s)) => *t == s,
            _ => path == *source,
        };
        if same {
            return Err(Error::format(
                path,
                "refusing to overwrite the source model; choose another output path",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_successful_write_leaves_only_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        write_bytes_atomic(&path, &[], b"hello").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello");
        assert_eq!(names_in(dir.path()), vec!["out.txt"]);
    }

    #[test]
    fn a_failed_write_leaves_nothing_and_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        let failing = |w: &mut dyn Write| {
            w.write_all(b"half of it").unwrap();
            Err(Error::Cancelled)
        };
        assert!(matches!(
            write_atomic(&path, &[], failing),
            Err(Error::Cancelled)
        ));
        assert!(names_in(dir.path()).is_empty());

        std::fs::write(&path, b"old").unwrap();
        assert!(write_atomic(&path, &[], failing).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(names_in(dir.path()), vec!["out.txt"]);
    }

    #[test]
    fn the_source_model_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("model.onnx");
        std::fs::write(&model, b"model").unwrap();
        let same = dir.path().join(".").join("model.onnx");
        let err = write_bytes_atomic(&same, &[&model], b"x").unwrap_err();
        assert!(err.to_string().contains("source model"), "{err}");
        assert_eq!(std::fs::read(&model).unwrap(), b"model");
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no/such/dir/out.txt");
        let err = write_bytes_atomic(&path, &[], b"x").unwrap_err();
        assert!(err.to_string().contains("no/such/dir"), "{err}");
    }
}
