//! Loads one model file and prints what was loaded; used by `scripts/measure_load.sh` to
//! measure load time and peak memory.
//!
//! `cargo run --release --no-default-features --example load_model -- MODEL`

use std::path::PathBuf;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let Some(path) = std::env::args_os().nth(1).map(PathBuf::from) else {
        anyhow::bail!("usage: load_model MODEL");
    };
    let start = Instant::now();
    let model = quantscope::load::load_model(&path)?;
    let elapsed = start.elapsed();
    let g = &model.graph;
    println!(
        "{}: {} tensors, {} parameters, {} nodes, opset {}; loaded in {:.3} s",
        model.format.name(),
        g.initializers.len(),
        g.parameter_count(),
        g.nodes.len(),
        g.opset,
        elapsed.as_secs_f64()
    );
    Ok(())
}
