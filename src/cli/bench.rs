//! `quantscope bench`: time the engine on one model and the first chunk of its data (the
//! largest batch the model accepts); one JSON line on stdout, so a script can compare with
//! onnxruntime in the same run.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use quantscope::engine::{RunOptions, TensorHook, TensorSite};
use quantscope::ir::TensorData;
use quantscope::workflow::{RunControl, choose_batch};

use super::feeds::{BatchFlags, DataFlags, open_model, plan_for};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Model file (.onnx).
    model: PathBuf,
    /// Input data: a .npy, an .npz (arrays by input name), a folder of .npz files or a folder
    /// of images (see --preset); the first chunk is timed.
    #[arg(long)]
    data: PathBuf,
    #[command(flatten)]
    data_flags: DataFlags,
    #[command(flatten)]
    batch: BatchFlags,
    /// Timed runs (after two warm-up runs).
    #[arg(long, default_value_t = 20)]
    iters: usize,
    /// Also print each node's median time to stderr, slowest first.
    #[arg(long)]
    per_node: bool,
}

/// Times each node: the gap between consecutive tensors seen is the producing node's run time.
struct NodeTimer {
    last: Instant,
    /// Milliseconds per node name, one entry per timed run.
    times_ms: std::collections::HashMap<String, (String, Vec<f64>)>,
}

impl TensorHook for NodeTimer {
    fn on_tensor(&mut self, site: TensorSite<'_>, _: &mut TensorData) -> quantscope::Result<()> {
        let now = Instant::now();
        if let Some(node) = site.producer
            && site.name == node.outputs[0]
        {
            let elapsed_ms = (now - self.last).as_secs_f64() * 1e3;
            self.times_ms
                .entry(node.name.clone())
                .or_insert_with(|| (node.op_type.clone(), Vec::new()))
                .1
                .push(elapsed_ms);
        }
        self.last = Instant::now();
        Ok(())
    }
}

fn print_node_times(timer: NodeTimer) {
    let mut rows: Vec<(f64, String, String)> = timer
        .times_ms
        .into_iter()
        .map(|(name, (op, mut times))| {
            times.sort_by(f64::total_cmp);
            (times[times.len() / 2], name, op)
        })
        .collect();
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    let total: f64 = rows.iter().map(|r| r.0).sum();
    eprintln!("{:>10} {:>6}  node", "median ms", "share");
    for (ms, name, op) in rows {
        eprintln!(
            "{ms:>10.4} {:>5.1}%  {name} ({op})",
            100.0 * ms / total.max(1e-12)
        );
    }
}

pub fn bench(args: &BenchArgs) -> anyhow::Result<()> {
    let model = open_model(&args.model)?;
    let plan = plan_for(&model)?;
    let samples = args.data_flags.samples(&model.graph, &args.data)?;
    let choice = choose_batch(
        &plan,
        &samples,
        args.batch.batch_size,
        RunControl::default().options(),
    )?;
    let batch = choice.size.min(samples.count());
    let feeds = samples.feeds(0..batch);
    // The loop runs on a rayon worker, where the workflows call the engine from (their
    // parallel loops over chunks): called from another thread, every run would also include a
    // hand-off to the pool and back (tens of microseconds, most of a sub-millisecond model's
    // run), which onnxruntime, running on the calling thread, does not pay.
    let mut times_ms = rayon::scope(|_| -> anyhow::Result<Vec<f64>> {
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
        Ok(times_ms)
    })?;
    if args.per_node {
        let mut timer = NodeTimer {
            last: Instant::now(),
            times_ms: Default::default(),
        };
        for _ in 0..args.iters.max(1) {
            let inputs = feeds.clone();
            timer.last = Instant::now();
            plan.run(inputs, Some(&mut timer), RunOptions::default())?;
        }
        print_node_times(timer);
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
