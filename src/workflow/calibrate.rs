//! Calibration: the statistics of every float tensor over the samples (integer tensors are
//! never observed), the tensor shapes of the first chunk, the sample count and the batch used.
//!
//! Chunks are observed in order (the order-dependent statistics, such as the EMA of per-batch
//! ranges and the growing histograms, then follow the data order), each chunk at the largest
//! batch the graph accepts.

use std::collections::{BTreeMap, HashMap};

use super::batching::{BatchChoice, choose_batch};
use super::runner::{RunControl, for_each_chunk};
use super::samples::Samples;
use crate::calib::{ActivationCollector, CalibrationStats};
use crate::engine::{Plan, TensorHook, TensorSite};
use crate::error::{Error, Result};
use crate::ir::{Graph, TensorData};
use crate::quant::cost::ShapeRecorder;

/// Calibration statistics and what they were computed on.
#[derive(Debug, Clone)]
pub struct Calibration {
    pub stats: BTreeMap<String, CalibrationStats>,
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
/// tensor's statistics.
pub fn calibrate(
    graph: &Graph,
    samples: &Samples,
    limit: Option<usize>,
    control: &RunControl<'_>,
) -> Result<Calibration> {
    let plan = Plan::new(graph)?;
    samples.check(graph)?;
    if samples.count() == 0 {
        return Err(Error::Input {
            name: "calibration data".into(),
            msg: "holds no samples".into(),
        });
    }
    let batch = choose_batch(&plan, samples, limit, control.options())?;
    let mut collector = ActivationCollector::new();
    let mut shapes = ShapeRecorder::default();
    for_each_chunk(samples, batch.size, control, |chunk, feeds| {
        let mut hook = CollectShapes {
            collector: &mut collector,
            shapes: (chunk.index == 0).then_some(&mut shapes),
        };
        plan.run(feeds, Some(&mut hook), control.options())?;
        Ok(())
    })?;
    Ok(Calibration {
        stats: collector.into_stats(),
        shapes: shapes.shapes,
        samples: samples.count(),
        batch,
        data: samples.description.clone(),
    })
}
