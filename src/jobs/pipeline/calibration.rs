//! Calibration: every float tensor's statistics over the calibration data, batch by batch,
//! with the tensor shapes of the first batch.

use std::collections::{BTreeMap, HashMap};

use super::data::DataSet;
use super::feeds::{batch_feeds, batches, input_name};
use crate::calib::{ActivationCollector, CalibrationStats};
use crate::engine::{Plan, RunOptions, TensorHook, TensorSite};
use crate::ir::{Graph, TensorData};
use crate::jobs::{JobContext, JobError};
use crate::quant::cost::ShapeRecorder;

/// Calibration statistics and the shape (first batch) of every float tensor.
#[derive(Debug, Clone, Default)]
pub struct Calibration {
    pub stats: BTreeMap<String, CalibrationStats>,
    pub shapes: HashMap<String, Vec<usize>>,
}

/// The collector, plus the tensor shapes of the first batch.
struct CollectShapes<'a> {
    collector: &'a mut ActivationCollector,
    shapes: Option<&'a mut ShapeRecorder>,
}

impl TensorHook for CollectShapes<'_> {
    fn on_tensor(&mut self, site: TensorSite<'_>, value: &mut TensorData) -> crate::Result<()> {
        if let Some(shapes) = self.shapes.as_mut() {
            shapes.on_tensor(site, value)?;
        }
        self.collector.on_tensor(site, value)
    }
}

/// Runs the float `graph` over `data`, collecting every tensor's statistics; checks the
/// cancel flag between batches and reports progress.
pub fn calibrate(graph: &Graph, data: &DataSet, ctx: &JobContext) -> Result<Calibration, JobError> {
    let plan = Plan::new(graph)?;
    let input = input_name(graph)?;
    let samples = data.sample_count("calibration")?;
    let mut collector = ActivationCollector::new();
    let mut shapes = ShapeRecorder::default();
    for (start, end) in batches(samples) {
        ctx.check()?;
        let feeds = batch_feeds(input, &data.inputs, start, end);
        let options = RunOptions {
            cancel: Some(ctx.cancel_flag()),
        };
        let mut hook = CollectShapes {
            collector: &mut collector,
            shapes: (start == 0).then_some(&mut shapes),
        };
        plan.run(feeds, Some(&mut hook), options)?;
        ctx.set_progress(end as f32 / samples as f32);
    }
    Ok(Calibration {
        stats: collector.into_stats(),
        shapes: shapes.shapes,
    })
}
