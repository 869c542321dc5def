//! The `quantscope` command line: inspect and run models, benchmark the engine, open the app.

mod cli;

use std::process::ExitCode;

use clap::Parser;

/// An allocator that keeps freed memory for reuse (see Cargo.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    cli::install_panic_message();
    let args = cli::Cli::parse();
    match cli::execute(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
