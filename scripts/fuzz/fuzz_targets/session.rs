//! Session files (`export::Session::read`), through a file as the app opens them.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use quantscope::export::Session;

fn scratch() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("scratch directory"))
}

fuzz_target!(|data: &[u8]| {
    let path = scratch().path().join("fuzz.qsession");
    if std::fs::write(&path, data).is_ok() {
        let _ = Session::read(&path);
    }
});
