//! Models and data, shared by every command that runs a model: opening the model with what its
//! load found printed as warnings; `--data` (a `.npy`, an `.npz`, a folder of `.npz` files or
//! a folder of images), `--preset` (how images become inputs) and `--labels`, all through
//! [`quantscope::workflow`], refusing data without samples or without one finite value; the
//! run plan; the one line that says what the data is and how it is batched.

use std::path::{Path, PathBuf};

use anyhow::bail;
use clap::Args;
use quantscope::budget::MemoryBudget;
use quantscope::engine::Plan;
use quantscope::ir::{Graph, Model, TensorData};
use quantscope::load::images::ImagePreset;
use quantscope::load::load_model_checked;
use quantscope::workflow::{
    BatchChoice, DataSource, SampleInputs, Samples, read_labels, read_samples,
};

/// How image folders become inputs (shared by the data-reading commands).
#[derive(Debug, Args)]
pub struct DataFlags {
    /// How a folder of images becomes the input: comma-separated channel order
    /// (rgb|bgr|luma), scaling (0..255|0..1|-1..1|127 for (x-127)/128|imagenet|
    /// mean:a/b/c,std:a/b/c), layout (nchw|nhwc|auto) and HxW for models without a fixed size;
    /// e.g. `bgr,0..255` or `rgb,-1..1,nhwc`.
    #[arg(long, allow_hyphen_values = true)]
    pub preset: Option<ImagePreset>,
}

/// How many samples go through the model at once.
#[derive(Debug, Args)]
pub struct BatchFlags {
    /// Most samples per run (default: the largest batch the model accepts, up to 64).
    #[arg(long)]
    pub batch_size: Option<usize>,
}

/// Class labels, one integer per evaluation sample.
#[derive(Debug, Args)]
pub struct LabelFlags {
    /// Class labels (.npy or .npz, one integer per evaluation sample) for top-1 accuracy; by
    /// default the `labels` or `y` array of the data, if it has one.
    #[arg(long)]
    pub labels: Option<PathBuf>,
}

impl DataFlags {
    /// The samples at `path` for `graph` (image folders through the preset).
    pub fn samples(&self, graph: &Graph, path: &Path) -> anyhow::Result<Samples> {
        let preset = self.preset.filter(|_| path.is_dir() && !has_npz(path));
        let source = DataSource::from_path(path, preset)?;
        let samples = read_samples(graph, &source)?;
        check_values(&samples, path)?;
        Ok(samples)
    }

    /// The samples at `path` with the labels of `--labels` (or their own).
    pub fn labelled_samples(
        &self,
        graph: &Graph,
        path: &Path,
        labels: &LabelFlags,
    ) -> anyhow::Result<Samples> {
        let samples = self.samples(graph, path)?;
        Ok(match &labels.labels {
            Some(labels) => samples.with_labels(Some(read_labels(labels)?))?,
            None => samples,
        })
    }
}

fn has_npz(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.filter_map(|e| e.ok()).any(|e| {
            e.path()
                .extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("npz"))
        })
    })
}

/// Loads a model within the memory budget, printing what the load found that does not stop
/// it (an opset or IR version outside what Quantscope is tested with) as warnings.
pub fn open_model(path: &Path) -> anyhow::Result<Model> {
    let (model, report) = load_model_checked(path, MemoryBudget::current())?;
    let name = path.display().to_string();
    for finding in report.findings.iter().filter(|f| !f.is_error()) {
        let text = finding.to_string();
        if text.contains(&name) {
            eprintln!("warning: {text}");
        } else {
            eprintln!("warning: {name}: {text}");
        }
    }
    Ok(model)
}

/// Refuses data without samples or whose float input holds no finite value (nothing to run or
/// calibrate on); warns when some values are NaN or infinite.
fn check_values(samples: &Samples, path: &Path) -> anyhow::Result<()> {
    if samples.count() == 0 {
        bail!(
            "{}: holds no samples; the data needs at least one",
            path.display()
        );
    }
    let mut non_finite: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    let mut count = |name: &String, data: &TensorData| {
        if let TensorData::F32(values) = data {
            let bad = values.iter().filter(|v| !v.is_finite()).count();
            let entry = non_finite.entry(name.clone()).or_default();
            entry.0 += bad;
            entry.1 += values.len();
        }
    };
    match samples.inputs() {
        SampleInputs::Stacked { arrays, .. } => {
            arrays.iter().for_each(|(n, v)| count(n, v));
        }
        SampleInputs::PerSample(feeds) => {
            for feed in feeds {
                feed.arrays.iter().for_each(|(n, v)| count(n, v));
            }
        }
    }
    for (name, (bad, total)) in non_finite {
        if bad > 0 && bad == total {
            bail!(
                "{}: input '{name}': every value is NaN or infinite; there is nothing to run or calibrate on",
                path.display()
            );
        }
        if bad > 0 {
            eprintln!(
                "warning: {}: input '{name}': {bad} of {total} values are NaN or infinite; ranges and errors computed from them are unreliable",
                path.display()
            );
        }
    }
    Ok(())
}

/// Loads a model (as [`open_model`]) that must run: weights-only files say so, naming the file.
pub fn open_runnable(path: &Path) -> anyhow::Result<Model> {
    let model = open_model(path)?;
    plan_for(&model)?;
    Ok(model)
}

/// The run plan of a loaded model; weights-only files say so, naming the file.
pub fn plan_for(model: &Model) -> anyhow::Result<Plan<'_>> {
    if !model.graph.is_runnable() {
        return Err(quantscope::Error::NotRunnable(model.path.clone()).into());
    }
    Ok(Plan::new(&model.graph)?)
}

/// "data: 5 samples (file x.npz), chunks of 1 sample (input 'x' declares batch 1)".
pub fn data_line(what: &str, samples: &Samples, batch: &BatchChoice) -> String {
    let labels = if samples.labels.is_some() {
        ", labelled"
    } else {
        ""
    };
    format!(
        "{what}: {} samples ({}{labels}), {}",
        samples.count(),
        samples.description,
        batch.describe()
    )
}
