//! One data → run → calibrate → evaluate workflow for any model, shared by the CLI, the app's
//! jobs and the analyses (sensitivity, allocation, the paper's table, bias correction,
//! AdaRound): no GUI here.
//!
//! * [`samples`]: [`Samples`], inputs of any number and kind (stacked on a sample axis, or one
//!   complete feed per sample), labels, and their check against a graph;
//! * [`sources`]: [`DataSource`] → samples (`.npy`, `.npz`, a folder of `.npz`, images with a
//!   preset, the bundled digits, synthetic), labels read one way;
//! * [`batching`]: the largest batch the graph accepts (declared, or probed);
//! * [`runner`]: chunks in parallel (results in chunk order) or in order, cancel and progress;
//! * [`calibrate`](mod@calibrate): activation statistics with the sample count;
//! * [`evaluate`](mod@evaluate): one [`Evaluation`] for any task, streaming, and an
//!   [`Evaluator`] for many configs;
//! * [`cost`]: size and BitOps per inference; [`focus`]: exact figures of one tensor.

pub mod batching;
pub mod calibrate;
pub mod cost;
mod declared;
pub mod evaluate;
pub mod focus;
mod reduce;
pub mod runner;
pub mod samples;
pub mod sources;

pub use batching::{BatchChoice, DEFAULT_BATCH, choose_batch};
pub use calibrate::{
    Calibration, Detail, calibrate, calibrate_with_channels, calibrate_within, observer_config_for,
};
pub use cost::{Cost, RunShapes, quantized_cost};
pub use declared::{SYNTHETIC_SAMPLES, image_target, synthetic};
pub use evaluate::{
    Classification, EvalOptions, Evaluation, Evaluator, LayerError, OutputError, evaluate,
};
pub use focus::{Focus, FocusFigures};
pub use reduce::classification_rows;
pub use runner::{Chunk, RunControl, for_each_chunk, run_chunks};
pub use samples::{Feed, Feeds, SampleInputs, Samples, check_labels};
pub use sources::{
    Data, DataSource, bundled_digits_dir, default_source, labels_of, read_array_file, read_data,
    read_labels, read_npz_folder, read_samples,
};
