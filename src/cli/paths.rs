//! The files one command reads and writes, checked before any work starts: no output may
//! name one of the command's inputs (the model, data, labels, a session, encodings) or
//! another of its outputs, however the path is spelled (`./m.onnx`, `../dir/m.onnx`, a
//! symbolic link, a hard link).

use std::path::{Component, Path, PathBuf};

use anyhow::bail;

/// How commands name their model among the inputs ([`CommandFiles::input`]).
pub const MODEL: &str = "the model";

/// The inputs and outputs of one command, by the flag that named them.
#[derive(Debug, Default)]
pub struct CommandFiles {
    inputs: Vec<(String, PathBuf)>,
    outputs: Vec<(String, PathBuf)>,
}

impl CommandFiles {
    pub fn new() -> Self {
        Self::default()
    }

    /// A file (or folder) the command reads, named by `flag` in messages.
    pub fn input(mut self, flag: &str, path: &Path) -> Self {
        self.inputs.push((flag.to_string(), path.to_path_buf()));
        self
    }

    /// An optional input (see [`CommandFiles::input`]).
    pub fn maybe_input(self, flag: &str, path: Option<&PathBuf>) -> Self {
        match path {
            Some(p) => self.input(flag, p),
            None => self,
        }
    }

    /// A file the command writes, named by `flag` in messages.
    pub fn output(mut self, flag: &str, path: &Path) -> Self {
        self.outputs.push((flag.to_string(), path.to_path_buf()));
        self
    }

    /// An optional output (see [`CommandFiles::output`]).
    pub fn maybe_output(self, flag: &str, path: Option<&PathBuf>) -> Self {
        match path {
            Some(p) => self.output(flag, p),
            None => self,
        }
    }

    /// Errors (one line) when an output is the same file as an input or as an earlier output.
    pub fn check(&self) -> anyhow::Result<()> {
        let inputs: Vec<(&str, &Path, FileIdentity)> = self
            .inputs
            .iter()
            .map(|(f, p)| (f.as_str(), p.as_path(), FileIdentity::of(p)))
            .collect();
        let mut outputs: Vec<(&str, &Path, FileIdentity)> = Vec::new();
        for (flag, path) in &self.outputs {
            let identity = FileIdentity::of(path);
            if let Some((input_flag, input, _)) = inputs.iter().find(|(_, _, i)| *i == identity) {
                let what = if *input_flag == MODEL {
                    "the source model"
                } else {
                    "an input"
                };
                bail!(
                    "{flag} '{}' is the same file as {input_flag} '{}': refusing to overwrite {what}; choose another output path",
                    path.display(),
                    input.display()
                );
            }
            if let Some((other_flag, other, _)) = outputs.iter().find(|(_, _, i)| *i == identity) {
                bail!(
                    "{flag} '{}' is the same file as {other_flag} '{}': two outputs cannot share a file; choose another path",
                    path.display(),
                    other.display()
                );
            }
            outputs.push((flag, path, identity));
        }
        Ok(())
    }
}

/// What makes two spellings of a path the same file: the device and inode of an existing
/// file (catching hard links too), and the resolved path (links and `..` resolved where they
/// exist, lexically beyond).
#[derive(Debug)]
struct FileIdentity {
    inode: Option<(u64, u64)>,
    resolved: PathBuf,
}

impl PartialEq for FileIdentity {
    fn eq(&self, other: &Self) -> bool {
        match (self.inode, other.inode) {
            (Some(a), Some(b)) => a == b,
            _ => self.resolved == other.resolved,
        }
    }
}

impl FileIdentity {
    fn of(path: &Path) -> Self {
        FileIdentity {
            inode: inode_of(path),
            resolved: resolved(path),
        }
    }
}

#[cfg(unix)]
fn inode_of(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn inode_of(_path: &Path) -> Option<(u64, u64)> {
    None
}

/// The real path of an existing file; for a file not yet written, its directory's real path
/// joined with its name; failing that, the absolute path with `.` and `..` removed lexically.
fn resolved(path: &Path) -> PathBuf {
    if let Ok(real) = path.canonicalize() {
        return real;
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let (Ok(dir), Some(name)) = (parent.canonicalize(), path.file_name()) {
        return dir.join(name);
    }
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut clean = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                clean.pop();
            }
            other => clean.push(other),
        }
    }
    clean
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(files: CommandFiles, fragments: &[&str]) {
        let err = files.check().expect_err("refused").to_string();
        assert_eq!(err.lines().count(), 1, "{err}");
        for f in fragments {
            assert!(err.contains(f), "{f:?} not in {err}");
        }
    }

    #[test]
    fn every_spelling_of_an_input_is_refused_as_an_output() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("sub")).unwrap();
        let model = d.join("m.onnx");
        std::fs::write(&model, b"model").unwrap();
        let spellings = [
            d.join(".").join("m.onnx"),
            d.join("sub").join("..").join("m.onnx"),
        ];
        for spelling in &spellings {
            refused(
                CommandFiles::new()
                    .input(MODEL, &model)
                    .output("--out", spelling),
                &[
                    "--out",
                    "same file as the model",
                    "refusing to overwrite the source model",
                ],
            );
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&model, d.join("soft.onnx")).unwrap();
            std::fs::hard_link(&model, d.join("hard.onnx")).unwrap();
            for link in ["soft.onnx", "hard.onnx"] {
                refused(
                    CommandFiles::new()
                        .input(MODEL, &model)
                        .output("--out", &d.join(link)),
                    &["same file as the model"],
                );
            }
        }
        assert!(
            CommandFiles::new()
                .input(MODEL, &model)
                .output("--out", &d.join("other.onnx"))
                .check()
                .is_ok()
        );
    }

    #[test]
    fn two_outputs_may_not_share_a_file_even_before_it_exists() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("sub")).unwrap();
        refused(
            CommandFiles::new()
                .input("--data", &d.join("x.npy"))
                .output("--out", &d.join("x.npy")),
            &["same file as --data", "refusing to overwrite an input"],
        );
        refused(
            CommandFiles::new()
                .output("--out", &d.join("s.json"))
                .output("--save-session", &d.join("sub/../s.json")),
            &["--save-session", "same file as --out", "two outputs"],
        );
        // Neither the file nor its directory exists: compared lexically.
        refused(
            CommandFiles::new()
                .output("--out", &d.join("no/dir/x.npz"))
                .output("--save-inputs", &d.join("no/./dir/x.npz")),
            &["two outputs"],
        );
    }
}
