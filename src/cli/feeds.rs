//! Data flags and their reading, shared by every command that runs a model: `--data` (a
//! `.npy`, an `.npz`, a folder of `.npz` files or a folder of images), `--preset` (how images
//! become inputs) and `--labels`, all through [`quantscope::workflow`]; the run plan; the one
//! line that says what the data is and how it is batched.

use std::path::{Path, PathBuf};

use clap::Args;
use quantscope::engine::Plan;
use quantscope::ir::{Graph, Model};
use quantscope::load::images::ImagePreset;
use quantscope::workflow::{BatchChoice, DataSource, Samples, read_labels, read_samples};

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
        Ok(read_samples(graph, &source)?)
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
