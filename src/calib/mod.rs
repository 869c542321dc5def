//! Range calibration: from tensors seen during runs (or weights) to clip ranges (min, max).
//!
//! * [`observer`]: streaming per-tensor statistics over batches ([`CalibrationStats`]):
//!   min/max, EMA of batch min/max, mean of per-sample min/max, moments, and histograms of x and
//!   |x| whose range grows by re-binning ([`histogram`]) with memory fixed per tensor.
//! * [`channels`]: streaming per-channel statistics of an activation ([`ChannelStats`]): each
//!   channel's min/max and a coarse histogram, along the axis its consumer treats as channels
//!   ([`ChannelAxis`]), bounded by [`ChannelConfig`].
//! * [`ActivationCollector`]: the [`TensorHook`](crate::engine::TensorHook) gathering those
//!   statistics for every float tensor of a model run, batch after batch; a second pass over
//!   the same data with the final ranges fixed makes the histograms exact.
//! * [`methods`]: [`Method`] turns statistics into a range: min-max, EMA, batch-mean,
//!   percentile (onnxruntime semantics), MSE search, ACIQ (Gauss/Laplace) and KL (TensorRT).
//!
//! ```no_run
//! # use quantscope::{calib::{ActivationCollector, Method}, engine::Plan, load::load_model};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let model = load_model("m.onnx".as_ref())?;
//! let plan = Plan::new(&model.graph)?;
//! # let data = ndarray::ArrayD::<f32>::zeros(ndarray::IxDyn(&[4, 1, 8, 8]));
//! let mut collector = ActivationCollector::new();
//! collector.run_batches(&plan, "input", data.view(), 32)?;
//! for (name, stats) in collector.stats() {
//!     let (lo, hi) = "kl".parse::<Method>()?.range(stats, 8)?;
//!     println!("{name}: [{lo}, {hi}]");
//! }
//! # Ok(()) }
//! ```

pub mod channels;
mod collector;
pub mod histogram;
pub mod methods;
pub mod observer;

pub use channels::{ChannelAxis, ChannelConfig, ChannelLimit, ChannelStats};
pub use collector::ActivationCollector;
pub use histogram::GrowingHistogram;
pub use methods::{KlChoice, Method, kl_curve, kl_levels, kl_search, mse_curve};
pub use observer::{CalibrationStats, ObserverConfig};

/// A calibration failure: a bad setting, or nothing to calibrate from.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CalibError {
    /// An out-of-range or unparseable setting (bit width, percentile, method name).
    #[error("{0}")]
    Setting(String),
    /// No finite value has been observed for the tensor.
    #[error("no finite calibration data")]
    NoData,
}
