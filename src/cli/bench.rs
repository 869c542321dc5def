//! `quantscope bench`: time the engine on one model and input; one JSON line on stdout, so a
//! script can compare with onnxruntime in the same run.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use quantscope::engine::RunOptions;
use quantscope::load::load_model;

use super::feeds::{plan_for, read_feeds};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Model file (.onnx).
    model: PathBuf,
    /// Input data (.npy for a single-input model, .npz by input name).
    #[arg(long)]
    data: PathBuf,
    /// Timed runs (after two warm-up runs).
    #[arg(long, default_value_t = 20)]
    iters: usize,
}

pub fn bench(args: &BenchArgs) -> anyhow::Result<()> {
    let model = load_model(&args.model)?;
    let plan = plan_for(&model)?;
    let feeds = read_feeds(&model.graph, &args.data)?;
    let batch = feeds
        .values()
        .next()
        .and_then(|t| t.shape().first().copied())
        .unwrap_or(1);
    for _ in 0..2 {
        plan.run(feeds.clone(), None, RunOptions::default())?;
    }
    let mut times_ms = Vec::with_capacity(args.iters.max(1));
    for _ in 0..args.iters.max(1) {
        let inputs = feeds.clone();
        let start = Instant::now();
        let outputs = plan.run(inputs, None, RunOptions::default())?;
        times_ms.push(start.elapsed().as_secs_f64() * 1e3);
        drop(outputs);
    }
    times_ms.sort_by(f64::total_cmp);
    let line = serde_json::json!({
        "model": args.model.display().to_string(),
        "batch": batch,
        "iters": times_ms.len(),
        "median_ms": times_ms[times_ms.len() / 2],
        "min_ms": times_ms[0],
    });
    println!("{line}");
    Ok(())
}
