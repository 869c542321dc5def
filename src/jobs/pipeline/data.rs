//! Calibration and evaluation data of the app: the bundled digits, a .npy/.npz file, a folder
//! of images, or seeded Gaussian inputs of the model's input shape.

use std::path::{Path, PathBuf};

use ndarray::{Array1, ArrayD, Ix1, IxDyn};
use rand::SeedableRng;
use rand_distr_free::gaussian;

use crate::ir::{Dim, Graph, TensorData};
use crate::jobs::JobError;
use crate::load::images::{ImagePreset, read_image_folder};
use crate::load::read_arrays;

/// Samples of synthetic Gaussian data.
pub const SYNTHETIC_SAMPLES: usize = 128;

/// Where calibration and evaluation data come from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum DataSource {
    /// The bundled digits (calibration `digits_calib_x.npy`, evaluation `digits_test.npz`).
    BundledDigits,
    /// A .npy (inputs) or .npz (`x` and optional labels `y`, or arrays by input name) file.
    File(PathBuf),
    /// A folder of images, resized to the model's input and normalised by `preset`.
    ImageFolder { dir: PathBuf, preset: ImagePreset },
    /// Gaussian N(0, 1) inputs of the model's input shape (no labels).
    Synthetic,
}

impl DataSource {
    /// A short description for the UI.
    pub fn describe(&self) -> String {
        match self {
            DataSource::BundledDigits => "bundled digits".into(),
            DataSource::File(p) => format!("file {}", file_name(p)),
            DataSource::ImageFolder { dir, preset } => {
                format!("images in {} ({})", file_name(dir), preset.label())
            }
            DataSource::Synthetic => "synthetic Gaussian inputs (no labels)".into(),
        }
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// The bundled digits directory, when `model` is one of the sample models.
pub fn bundled_digits_dir(model: &Path) -> Option<PathBuf> {
    let name = model.file_name()?.to_string_lossy().into_owned();
    if !name.starts_with("digits_") {
        return None;
    }
    let dir = model.parent()?.join("data");
    dir.join("digits_calib_x.npy").exists().then_some(dir)
}

/// The default data source for `model`: the bundled digits for the sample models, else
/// synthetic inputs.
pub fn default_source(model: &Path) -> DataSource {
    if bundled_digits_dir(model).is_some() {
        DataSource::BundledDigits
    } else {
        DataSource::Synthetic
    }
}

/// Inputs of the model's single input (samples on axis 0) and optional labels.
#[derive(Debug, Clone)]
pub struct DataSet {
    pub inputs: ArrayD<f32>,
    pub labels: Option<Array1<i64>>,
    /// Shown with every figure computed from it.
    pub description: String,
    pub synthetic: bool,
}

impl DataSet {
    /// The number of samples; an error naming the data (`what`) when it holds none.
    pub fn sample_count(&self, what: &str) -> Result<usize, JobError> {
        match self.inputs.shape().first() {
            Some(&samples) if samples > 0 => Ok(samples),
            _ => Err(JobError::Failed(format!(
                "the {what} data holds no samples"
            ))),
        }
    }
}

/// Calibration and evaluation data.
#[derive(Debug, Clone)]
pub struct Data {
    pub calibration: DataSet,
    pub evaluation: DataSet,
}

/// Reads `source` for `graph` (a single-input model).
pub fn read_data(graph: &Graph, model: &Path, source: &DataSource) -> Result<Data, JobError> {
    let fail = |msg: String| JobError::Failed(msg);
    match source {
        DataSource::BundledDigits => {
            let dir = bundled_digits_dir(model).ok_or_else(|| {
                fail("the bundled digits go with the digits_* sample models only".into())
            })?;
            let calibration = read_set(&dir.join("digits_calib_x.npy"), "bundled digits")?;
            let evaluation = read_set(&dir.join("digits_test.npz"), "bundled digits (test)")?;
            Ok(Data {
                calibration,
                evaluation,
            })
        }
        DataSource::File(path) => {
            let set = read_set(path, &format!("file {}", file_name(path)))?;
            Ok(Data {
                calibration: set.clone(),
                evaluation: set,
            })
        }
        DataSource::ImageFolder { dir, preset } => {
            let (channels, height, width) = image_input_shape(graph)?;
            let inputs = read_image_folder(dir, channels, height, width, *preset)
                .map_err(|e| fail(e.to_string()))?;
            let set = DataSet {
                inputs,
                labels: None,
                description: source.describe(),
                synthetic: false,
            };
            Ok(Data {
                calibration: set.clone(),
                evaluation: set,
            })
        }
        DataSource::Synthetic => {
            let set = synthetic(graph)?;
            Ok(Data {
                calibration: set.clone(),
                evaluation: set,
            })
        }
    }
}

fn read_set(path: &Path, description: &str) -> Result<DataSet, JobError> {
    let arrays = read_arrays(path)?;
    let mut inputs = None;
    let mut labels = None;
    for array in arrays {
        match (array.name.as_str(), array.data) {
            ("y" | "labels", TensorData::I64(a)) => {
                labels = a.into_dimensionality::<Ix1>().ok();
            }
            (_, TensorData::F32(a)) if inputs.is_none() => inputs = Some(a),
            _ => {}
        }
    }
    let inputs = inputs.ok_or_else(|| {
        JobError::Failed(format!("{}: holds no float input array", path.display()))
    })?;
    if let Some(l) = &labels
        && inputs.shape().first() != Some(&l.len())
    {
        labels = None;
    }
    Ok(DataSet {
        inputs,
        labels,
        description: description.to_string(),
        synthetic: false,
    })
}

/// The single input's declared shape with the batch dimension left out.
fn sample_shape(graph: &Graph) -> Result<Vec<usize>, JobError> {
    let [input] = graph.inputs.as_slice() else {
        return Err(JobError::Failed(format!(
            "the app calibrates single-input models; this one has {} inputs",
            graph.inputs.len()
        )));
    };
    let dims = input
        .shape
        .as_ref()
        .ok_or_else(|| JobError::Failed(format!("input '{}' declares no shape", input.name)))?;
    dims.iter()
        .skip(1)
        .map(|d| match d {
            Dim::Fixed(n) => Ok(*n),
            _ => Err(JobError::Failed(format!(
                "input '{}' has a non-fixed dimension {} besides the batch",
                input.name,
                input.shape_text()
            ))),
        })
        .collect()
}

/// (channels, height, width) of an image input `[N, C, H, W]`.
fn image_input_shape(graph: &Graph) -> Result<(usize, usize, usize), JobError> {
    match sample_shape(graph)?.as_slice() {
        [c, h, w] => Ok((*c, *h, *w)),
        other => Err(JobError::Failed(format!(
            "image folders need an input of shape [N, C, H, W]; this model's sample shape is {other:?}"
        ))),
    }
}

/// Seeded Gaussian inputs of the model's input shape.
pub fn synthetic(graph: &Graph) -> Result<DataSet, JobError> {
    let mut shape = vec![SYNTHETIC_SAMPLES];
    shape.extend(sample_shape(graph)?);
    let mut rng = rand_pcg::Pcg64::seed_from_u64(0x5eed);
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| gaussian(&mut rng)).collect();
    let inputs = ArrayD::from_shape_vec(IxDyn(&shape), values)
        .map_err(|e| JobError::Failed(e.to_string()))?;
    Ok(DataSet {
        inputs,
        labels: None,
        description: DataSource::Synthetic.describe(),
        synthetic: true,
    })
}

/// Standard normal samples by Box-Muller (no extra crate for one distribution).
mod rand_distr_free {
    use rand::RngExt;

    pub fn gaussian(rng: &mut rand_pcg::Pcg64) -> f32 {
        let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        let u2: f64 = rng.random::<f64>();
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }
}
