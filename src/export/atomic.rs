//! Atomic file writes: every file Quantscope writes goes through [`write_atomic`] (or
//! [`write_atomic_file`], [`write_files_atomic`]), which fills a temporary file in the
//! target's directory, flushes it to disk and renames it over the target only once everything
//! was written. A failed (or cancelled) write leaves nothing behind and the old file as it
//! was; a write that would replace one of the source files (the model being exported) is
//! refused. Several files written together appear all or none.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::error::{Error, Result, io_text, shown_path};

/// Writes `path` atomically: `fill` writes the content into a temporary file in the same
/// directory, which is renamed to `path` when `fill` succeeds and removed when it fails.
/// `sources` are files the export was made from (the model); `path` must not name any of them.
pub fn write_atomic(
    path: &Path,
    sources: &[&Path],
    fill: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    write_atomic_file(path, sources, |file| {
        let mut writer = BufWriter::new(file);
        fill(&mut writer)?;
        writer.flush().map_err(|e| write_error(path, &e))
    })
}

/// [`write_atomic`] for writers that also need to seek (zip archives): `fill` gets the
/// temporary file itself.
pub fn write_atomic_file(
    path: &Path,
    sources: &[&Path],
    fill: impl FnOnce(&mut File) -> Result<()>,
) -> Result<()> {
    refuse_overwriting_sources(path, sources)?;
    let mut temp = temporary_beside(path)?;
    // On any error below, `temp` is dropped, which deletes the temporary file.
    fill(temp.as_file_mut())?;
    finish(path, temp)?;
    sync_directory(path);
    Ok(())
}

/// Writes `bytes` to `path` atomically (see [`write_atomic`]).
pub fn write_bytes_atomic(path: &Path, sources: &[&Path], bytes: &[u8]) -> Result<()> {
    write_atomic(path, sources, |w| {
        w.write_all(bytes).map_err(|e| write_error(path, &e))
    })
}

/// Writes several files as one output: every temporary file is written and flushed first, and
/// only then are they renamed into place; when any write fails no target is touched (the
/// temporary files are removed), and when a rename fails the files already renamed are
/// removed again, so the set appears whole or not at all.
pub fn write_files_atomic(files: &[(PathBuf, Vec<u8>)], sources: &[&Path]) -> Result<()> {
    let mut temps = Vec::with_capacity(files.len());
    for (path, bytes) in files {
        refuse_overwriting_sources(path, sources)?;
        let mut temp = temporary_beside(path)?;
        {
            let mut writer = BufWriter::new(temp.as_file_mut());
            writer
                .write_all(bytes)
                .and_then(|_| writer.flush())
                .map_err(|e| write_error(path, &e))?;
        }
        temp.as_file()
            .sync_all()
            .map_err(|e| write_error(path, &e))?;
        temps.push((path, temp));
    }
    let mut placed: Vec<&Path> = Vec::with_capacity(temps.len());
    for (path, temp) in temps {
        if let Err(e) = temp.persist(path) {
            for done in placed {
                let _ = std::fs::remove_file(done);
            }
            return Err(write_error(path, &e.error));
        }
        placed.push(path);
    }
    for path in placed {
        sync_directory(path);
    }
    Ok(())
}

/// The directory `path` is written in ("." for a bare file name).
fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// A temporary file in `path`'s directory, with a message naming the output when it cannot
/// be created (a missing or read-only directory, /proc, a full disk).
fn temporary_beside(path: &Path) -> Result<NamedTempFile> {
    let dir = directory_of(path);
    tempfile::Builder::new()
        .prefix(".quantscope-write-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| {
            let why = if !dir.is_dir() {
                format!("the directory '{}' does not exist", shown_path(dir))
            } else if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "the directory '{}' does not accept new files",
                    shown_path(dir)
                )
            } else {
                format!(
                    "cannot create a file in '{}' ({})",
                    shown_path(dir),
                    io_text(&std::io::Error::from(e.kind()))
                )
            };
            Error::format(path, format!("cannot write the file: {why}"))
        })
}

/// Flushes the temporary file to disk and renames it to `path`.
fn finish(path: &Path, temp: NamedTempFile) -> Result<()> {
    temp.as_file()
        .sync_all()
        .map_err(|e| write_error(path, &e))?;
    temp.persist(path)
        .map_err(|e| write_error(path, &e.error))?;
    Ok(())
}

/// Flushes the directory entry of a renamed file (best effort: some file systems refuse).
fn sync_directory(path: &Path) {
    if let Ok(dir) = File::open(directory_of(path)) {
        let _ = dir.sync_all();
    }
}

fn write_error(path: &Path, e: &std::io::Error) -> Error {
    Error::format(path, format!("cannot write the file ({})", io_text(e)))
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

    #[test]
    fn several_files_appear_all_or_none() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("a.md"), b"old a").unwrap();
        let files = vec![
            (d.join("a.md"), b"new a".to_vec()),
            (d.join("missing/b.csv"), b"b".to_vec()),
        ];
        let err = write_files_atomic(&files, &[]).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
        assert_eq!(std::fs::read(d.join("a.md")).unwrap(), b"old a");
        assert_eq!(names_in(d), vec!["a.md"]);

        let files = vec![
            (d.join("a.md"), b"new a".to_vec()),
            (d.join("b.csv"), b"b".to_vec()),
        ];
        write_files_atomic(&files, &[]).unwrap();
        assert_eq!(std::fs::read(d.join("a.md")).unwrap(), b"new a");
        assert_eq!(names_in(d), vec!["a.md", "b.csv"]);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_directory_that_takes_no_files_is_one_clear_line() {
        let err = write_bytes_atomic(Path::new("/proc/x.onnx"), &[], b"x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/proc/x.onnx: cannot write the file: the directory '/proc' does not accept new files"
        );
    }
}
