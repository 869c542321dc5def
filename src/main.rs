//! The `quantscope` command line.

fn main() {}
