//! Calibration: the statistics of every float tensor over the samples (integer tensors are
//! never observed), the tensor shapes of the first chunk, the sample count and the batch used.
//!
//! Chunks are observed in order (the order-dependent statistics, such as the EMA of per-batch
//! ranges, then follow the data order), each chunk at the largest batch the graph accepts.
//! Histograms are exact: with several chunks, the first pass gathers every other statistic
//! (ranges, moments, per-sample extremes) and a second pass over the same chunks fills the
//! histograms with every range fixed to its final value, so the calibrators (KL, percentile,
//! MSE) see the histogram of all the values, whatever the chunking; it also sums |x − μ| about
//! the final mean (the Laplace fit's scale, exact). A single chunk is observed in one pass.
//! The command line keeps the |x| histogram only (all the calibrators need); the app also the
//! histogram of x it shows.
//!
//! With [`Detail::Channels`] (the app's per-channel activation views; the command-line tools
//! quantize from per-tensor statistics and skip them), every float tensor of rank 2 or more
//! also gets per-channel statistics ([`ChannelStats`]:
//! each channel's min/max and a coarse histogram), channels along the axis its consumer treats
//! as channels ([`ChannelAxis::of_graph`]: axis 1 for a convolution's input, the last axis for
//! a `MatMul`/`Gemm` input, axis 1 otherwise). With several chunks their histograms are filled
//! in the second pass too (exact, with the channels' final ranges); a single chunk's are
//! filled, exact, in the first.
//!
//! The histograms' memory is bounded by the memory budget, not by the model's depth: half the
//! budget goes to them, and a model with more tensors than fit at the default resolution gets
//! fewer internal bins per final bin (down to one) before it is refused with one line; the
//! per-channel statistics get what the per-tensor histograms leave (fewer channel histograms,
//! then fewer channels), so they never change the per-tensor results.

use std::collections::{BTreeMap, HashMap};

use super::batching::{BatchChoice, choose_batch};
use super::runner::{RunControl, for_each_chunk};
use super::samples::Samples;
use crate::budget::MemoryBudget;
use crate::calib::{
    ActivationCollector, CalibrationStats, ChannelAxis, ChannelStats, ObserverConfig,
};
use crate::engine::{Plan, TensorHook, TensorSite};
use crate::error::{Error, Result};
use crate::ir::{Graph, TensorData};
use crate::quant::cost::ShapeRecorder;

/// What a calibration collects besides every float tensor's statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Per-tensor statistics only: all that quantizing needs.
    Tensors,
    /// Also every tensor's per-channel statistics (per-channel activation views).
    Channels,
}

/// Calibration statistics and what they were computed on.
#[derive(Debug, Clone)]
pub struct Calibration {
    pub stats: BTreeMap<String, CalibrationStats>,
    /// Per-channel statistics of every float tensor of rank 2 or more ([`Detail::Channels`];
    /// empty otherwise).
    pub channels: BTreeMap<String, ChannelStats>,
    /// Every tensor's shape in the first chunk.
    pub shapes: HashMap<String, Vec<usize>>,
    /// Calibration samples.
    pub samples: usize,
    pub batch: BatchChoice,
    /// What the samples are.
    pub data: String,
}

/// The collector, plus the tensor shapes of the first chunk.
struct CollectShapes<'a> {
    collector: &'a mut ActivationCollector,
    shapes: Option<&'a mut ShapeRecorder>,
}

impl TensorHook for CollectShapes<'_> {
    fn on_tensor(&mut self, site: TensorSite<'_>, value: &mut TensorData) -> Result<()> {
        if let Some(shapes) = self.shapes.as_mut() {
            shapes.on_tensor(site, value)?;
        }
        self.collector.on_tensor(site, value)
    }
}

/// Runs the float `graph` over `samples` (at most `limit` per chunk), collecting every float
/// tensor's statistics within the process-wide memory budget.
pub fn calibrate(
    graph: &Graph,
    samples: &Samples,
    limit: Option<usize>,
    control: &RunControl<'_>,
) -> Result<Calibration> {
    calibrate_within(
        graph,
        samples,
        limit,
        control,
        Detail::Tensors,
        MemoryBudget::current(),
    )
}

/// [`calibrate`], also collecting every tensor's per-channel statistics.
pub fn calibrate_with_channels(
    graph: &Graph,
    samples: &Samples,
    limit: Option<usize>,
    control: &RunControl<'_>,
) -> Result<Calibration> {
    calibrate_within(
        graph,
        samples,
        limit,
        control,
        Detail::Channels,
        MemoryBudget::current(),
    )
}

/// The observer settings for `graph` at this `detail`: the default (without the histogram of
/// x at [`Detail::Tensors`]: only the app's views show it, quantizing needs the |x| one), with
/// the oversampling lowered until the histograms of every tensor a run can observe (graph
/// inputs and node outputs) fit in half of `budget`, and the per-channel statistics in what
/// they leave.
pub fn observer_config_for(
    graph: &Graph,
    detail: Detail,
    budget: MemoryBudget,
) -> Result<ObserverConfig> {
    let tensors = graph.inputs.len() + graph.nodes.iter().map(|n| n.outputs.len()).sum::<usize>();
    let config = ObserverConfig {
        signed_histogram: detail == Detail::Channels,
        ..ObserverConfig::default()
    };
    config.within(tensors, budget.bytes() / 2, budget.bytes())
}

/// [`calibrate`] within an explicit memory budget.
pub fn calibrate_within(
    graph: &Graph,
    samples: &Samples,
    limit: Option<usize>,
    control: &RunControl<'_>,
    detail: Detail,
    budget: MemoryBudget,
) -> Result<Calibration> {
    let config = observer_config_for(graph, detail, budget)?;
    let plan = Plan::new(graph)?;
    samples.check(graph)?;
    if samples.count() == 0 {
        return Err(Error::Input {
            name: "calibration data".into(),
            msg: "holds no samples".into(),
        });
    }
    let batch = choose_batch(&plan, samples, limit, control.options())?;
    // With several chunks the ranges almost always grow after the first, so the histograms
    // wait for a second pass with the ranges fixed (the first keeps the other statistics and
    // per-channel min/max) and the first pass reports up to one half.
    let several = samples.count() > batch.size;
    let mut collector = ActivationCollector::with_config(config).histograms_in_second_pass(several);
    if detail == Detail::Channels {
        collector = collector.with_channels(ChannelAxis::of_graph(graph));
    }
    let mut shapes = ShapeRecorder::default();
    let first_half =
        |fraction: f32| control.report(if several { fraction / 2.0 } else { fraction });
    let first = RunControl {
        cancel: control.cancel,
        progress: Some(&first_half),
    };
    for_each_chunk(samples, batch.size, &first, |chunk, feeds| {
        let mut hook = CollectShapes {
            collector: &mut collector,
            shapes: (chunk.index == 0).then_some(&mut shapes),
        };
        plan.run(feeds, Some(&mut hook), control.options())?;
        Ok(())
    })?;
    if !collector.histograms_are_exact() || collector.histograms_pending() {
        collector.start_histogram_pass();
        let second_half = |fraction: f32| control.report(0.5 + fraction / 2.0);
        let second = RunControl {
            cancel: control.cancel,
            progress: Some(&second_half),
        };
        for_each_chunk(samples, batch.size, &second, |_, feeds| {
            plan.run(feeds, Some(&mut collector), control.options())?;
            Ok(())
        })?;
    }
    let (stats, channels) = collector.into_parts();
    Ok(Calibration {
        stats,
        channels,
        shapes: shapes.shapes,
        samples: samples.count(),
        batch,
        data: samples.description.clone(),
    })
}
