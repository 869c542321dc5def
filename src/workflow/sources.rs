//! Where samples come from, read one way for the CLI and the app:
//!
//! * a `.npy` (the single input) or `.npz` (arrays by input name; a one-array file feeds a
//!   single-input model), samples on axis 0, rank-0 arrays as constants; an `.npz` whose
//!   arrays do not share a sample axis but fit the inputs exactly is one sample;
//! * a folder of `.npz` files, one complete sample each (models with state inputs);
//! * a folder of images with an [`ImagePreset`] (channel order, scaling, layout, size);
//! * the bundled digits of the sample models (a calibration and a labelled test set);
//! * synthetic inputs for any number of inputs: N(0, 1) floats, zero integers.
//!
//! Labels are `labels` or `y` arrays (in the data file, in each sample file, or a file of
//! their own): 1-D integers, or integral floats; they are never inputs. Arrays the model has
//! no input for are an error naming them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ndarray::Array1;

use super::declared::{image_target, synthetic};
use super::samples::{Feed, Samples};
use crate::error::{Error, Result};
use crate::ir::{Graph, TensorData, ValueInfo};
use crate::load::images::{ImagePreset, read_image_folder};
use crate::load::{NamedArray, read_arrays};

/// Where calibration and evaluation data come from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum DataSource {
    /// The bundled digits (calibration `digits_calib_x.npy`, evaluation `digits_test.npz`).
    BundledDigits,
    /// A `.npy` or `.npz` file.
    File(PathBuf),
    /// A folder of `.npz` files, one sample each.
    NpzFolder(PathBuf),
    /// A folder of images, made into the model's input by `preset`.
    ImageFolder { dir: PathBuf, preset: ImagePreset },
    /// Generated inputs of the model's declared shapes (no labels).
    Synthetic,
}

impl DataSource {
    /// A short description for the UI.
    pub fn describe(&self) -> String {
        match self {
            DataSource::BundledDigits => "bundled digits".into(),
            DataSource::File(p) => format!("file {}", file_name(p)),
            DataSource::NpzFolder(p) => format!("samples in {}", file_name(p)),
            DataSource::ImageFolder { dir, preset } => {
                format!("images in {} ({})", file_name(dir), preset.label())
            }
            DataSource::Synthetic => "synthetic inputs (no labels)".into(),
        }
    }

    /// [`Self::describe`] with what synthetic data means for `graph` (the size free image
    /// inputs get).
    pub fn describe_for(&self, graph: &crate::ir::Graph) -> String {
        match self {
            DataSource::Synthetic => super::declared::synthetic_description(graph),
            other => other.describe(),
        }
    }

    /// The source a path names: a file, a folder of `.npz` files, or a folder of images
    /// (made into inputs by `preset`, the default when None). A preset for anything but an
    /// image folder is an error.
    pub fn from_path(path: &Path, preset: Option<ImagePreset>) -> Result<DataSource> {
        let source = if path.is_dir() {
            let has = |ext: &[&str]| {
                std::fs::read_dir(path).is_ok_and(|entries| {
                    entries.filter_map(|e| e.ok()).any(|e| {
                        e.path().extension().is_some_and(|x| {
                            ext.contains(&x.to_string_lossy().to_ascii_lowercase().as_str())
                        })
                    })
                })
            };
            if has(&["npz"]) {
                DataSource::NpzFolder(path.to_path_buf())
            } else if has(&["png", "jpg", "jpeg", "bmp"]) {
                DataSource::ImageFolder {
                    dir: path.to_path_buf(),
                    preset: preset.unwrap_or_default(),
                }
            } else {
                return Err(Error::format(
                    path,
                    "holds no .npz files and no .png, .jpg or .bmp images",
                ));
            }
        } else if path.exists() {
            DataSource::File(path.to_path_buf())
        } else {
            return Err(Error::io(
                path,
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ));
        };
        if preset.is_some() && !matches!(source, DataSource::ImageFolder { .. }) {
            return Err(Error::format(
                path,
                "an image preset applies to a folder of images only",
            ));
        }
        Ok(source)
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

/// Calibration and evaluation samples.
#[derive(Debug, Clone)]
pub struct Data {
    pub calibration: Samples,
    pub evaluation: Samples,
}

/// Reads `source` for `graph` (the model at `model`): calibration and evaluation samples
/// (the same samples unless the source has a separate test set), checked against the graph.
pub fn read_data(graph: &Graph, model: &Path, source: &DataSource) -> Result<Data> {
    if let DataSource::BundledDigits = source {
        let dir = bundled_digits_dir(model).ok_or_else(|| Error::Input {
            name: "bundled digits".into(),
            msg: "they go with the digits_* sample models only".into(),
        })?;
        let mut calibration = read_array_file(graph, &dir.join("digits_calib_x.npy"))?;
        calibration.description = "bundled digits".into();
        let mut evaluation = read_array_file(graph, &dir.join("digits_test.npz"))?;
        evaluation.description = "bundled digits (test)".into();
        calibration.check(graph)?;
        evaluation.check(graph)?;
        return Ok(Data {
            calibration,
            evaluation,
        });
    }
    let samples = read_samples(graph, source)?;
    Ok(Data {
        calibration: samples.clone(),
        evaluation: samples,
    })
}

/// Reads the samples of `source` for `graph`, checked against it (the bundled digits give
/// their calibration set here; see [`read_data`]).
pub fn read_samples(graph: &Graph, source: &DataSource) -> Result<Samples> {
    let samples = match source {
        DataSource::BundledDigits => {
            return Err(Error::Input {
                name: "bundled digits".into(),
                msg: "read them with read_data (they need the model's path)".into(),
            });
        }
        DataSource::File(path) => read_array_file(graph, path)?,
        DataSource::NpzFolder(dir) => read_npz_folder(dir)?,
        DataSource::ImageFolder { dir, preset } => {
            let (name, target) = image_target(graph, preset)?;
            let values = read_image_folder(dir, target, preset)?;
            let layout = if target.channels_last { "NHWC" } else { "NCHW" };
            let description = format!(
                "images in {} ({}, {layout} {}x{})",
                file_name(dir),
                preset.pixels_label(),
                target.height,
                target.width
            );
            Samples::single(&name, TensorData::F32(values), description)?
        }
        DataSource::Synthetic => synthetic(graph)?,
    };
    samples.check(graph)?;
    Ok(samples)
}

/// The graph inputs data must be given for (those without an initializer).
pub fn required_inputs(graph: &Graph) -> Vec<&ValueInfo> {
    graph
        .inputs
        .iter()
        .filter(|i| !graph.initializers.contains_key(&i.name))
        .collect()
}

fn is_label(name: &str) -> bool {
    name == "labels" || name == "y"
}

/// Class labels from a `.npy` or `.npz` file: its `labels` or `y` array, or its only array.
pub fn read_labels(path: &Path) -> Result<Array1<i64>> {
    let arrays = read_arrays(path)?;
    let array = match arrays.iter().position(|a| is_label(&a.name)) {
        Some(i) => arrays.into_iter().nth(i),
        None if arrays.len() == 1 => arrays.into_iter().next(),
        None => {
            return Err(Error::format(
                path,
                "holds several arrays and none named 'labels' or 'y'",
            ));
        }
    };
    let array = array.ok_or_else(|| Error::format(path, "holds no arrays"))?;
    labels_of(array.data, &path.display().to_string())
}

/// `data` as class labels: 1-D (or `[N, 1]`, or one rank-0) integers, or integral floats.
pub fn labels_of(data: TensorData, origin: &str) -> Result<Array1<i64>> {
    let shape = data.shape().to_vec();
    let flat_ok = matches!(shape.as_slice(), [] | [_] | [_, 1]);
    if !flat_ok {
        return Err(Error::Input {
            name: "labels".into(),
            msg: format!("{origin}: labels must be one integer per sample, got shape {shape:?}"),
        });
    }
    let values: Vec<i64> = match data {
        TensorData::I64(a) => a.iter().copied().collect(),
        TensorData::F32(a) => {
            if let Some((i, bad)) = a
                .iter()
                .enumerate()
                .find(|(_, v)| !v.is_finite() || v.fract() != 0.0)
            {
                return Err(Error::Input {
                    name: "labels".into(),
                    msg: format!("{origin}: labels must be integers, found {bad} at sample {i}"),
                });
            }
            a.iter().map(|&v| v as i64).collect()
        }
    };
    Ok(Array1::from(values))
}

/// Reads a `.npy`/`.npz` file as samples of `graph`'s inputs.
pub fn read_array_file(graph: &Graph, path: &Path) -> Result<Samples> {
    let origin = path.display().to_string();
    let arrays = read_arrays(path)?;
    let mut labels = None;
    let mut inputs: Vec<NamedArray> = Vec::new();
    for array in arrays {
        if is_label(&array.name) {
            labels = Some(labels_of(array.data, &origin)?);
        } else {
            inputs.push(array);
        }
    }
    let required = required_inputs(graph);
    let named = name_arrays(graph, &required, inputs, path)?;
    let description = format!("file {}", file_name(path));
    let samples = stack_or_single_feed(graph, named, &description, &origin)?;
    samples.with_labels(labels)
}

/// Maps arrays to inputs: by position for a single-input model fed one array, else by name.
fn name_arrays(
    graph: &Graph,
    required: &[&ValueInfo],
    inputs: Vec<NamedArray>,
    path: &Path,
) -> Result<BTreeMap<String, TensorData>> {
    if inputs.is_empty() {
        return Err(Error::format(path, "holds no input arrays"));
    }
    if let ([input], [_]) = (required, inputs.as_slice())
        && !graph
            .inputs
            .iter()
            .any(|i| i.name == inputs[0].name && i.name != input.name)
    {
        let array = inputs.into_iter().next().map(|a| a.data);
        return Ok(array
            .map(|a| BTreeMap::from([(input.name.clone(), a)]))
            .unwrap_or_default());
    }
    let known: Vec<&str> = graph.inputs.iter().map(|i| i.name.as_str()).collect();
    let unknown: Vec<String> = inputs
        .iter()
        .filter(|a| !known.contains(&a.name.as_str()))
        .map(|a| format!("'{}'", a.name))
        .collect();
    if !unknown.is_empty() {
        let wanted: Vec<String> = required.iter().map(|i| format!("'{}'", i.name)).collect();
        return Err(Error::format(
            path,
            format!(
                "holds array(s) {} that are no input of the model (its inputs: {}; labels go in \
                 'labels' or 'y')",
                unknown.join(", "),
                wanted.join(", ")
            ),
        ));
    }
    Ok(inputs.into_iter().map(|a| (a.name, a.data)).collect())
}

/// Stacked samples (rank-0 arrays of rank-0 inputs as constants) when the arrays share a sample
/// axis; one per-sample feed when they do not but each fits its input exactly.
fn stack_or_single_feed(
    graph: &Graph,
    named: BTreeMap<String, TensorData>,
    description: &str,
    origin: &str,
) -> Result<Samples> {
    let (constants, arrays): (BTreeMap<_, _>, BTreeMap<_, _>) = named
        .into_iter()
        .partition(|(_, data)| data.shape().is_empty());
    let mut leading = arrays.values().map(|a| a.shape().first().copied());
    let first = leading.next().flatten();
    let shared = leading.all(|n| n == first);
    if shared {
        return Samples::stacked(arrays, constants, description);
    }
    let feed = Feed {
        origin: origin.to_string(),
        arrays: arrays.into_iter().chain(constants).collect(),
    };
    let samples = Samples::per_sample(vec![feed], description)?;
    // The arrays disagree on a sample axis: they must fit the inputs as one feed.
    samples.check(graph).map_err(|e| match e {
        Error::Input { name, msg } => Error::Input {
            name,
            msg: format!("{msg}; the arrays of {origin} hold different numbers of samples on axis 0, so they were read as one sample"),
        },
        other => other,
    })?;
    Ok(samples)
}

/// Reads a folder of `.npz` files (name order), one complete feed each; a `labels` or `y`
/// array in every file gives that sample's label.
pub fn read_npz_folder(dir: &Path) -> Result<Samples> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("npz")))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::format(dir, "holds no .npz files"));
    }
    let mut feeds = Vec::with_capacity(files.len());
    let mut labels = Vec::new();
    for file in &files {
        let origin = file_name(file);
        let mut arrays = BTreeMap::new();
        for array in read_arrays(file)? {
            if is_label(&array.name) {
                let label = labels_of(array.data, &origin)?;
                match label.as_slice() {
                    Some([one]) => labels.push(*one),
                    _ => {
                        return Err(Error::format(file, "a sample file holds one label"));
                    }
                }
            } else {
                arrays.insert(array.name, array.data);
            }
        }
        feeds.push(Feed { origin, arrays });
    }
    let labelled = labels.len();
    let samples = Samples::per_sample(feeds, format!("samples in {}", file_name(dir)))?;
    match labelled {
        0 => Ok(samples),
        n if n == files.len() => samples.with_labels(Some(Array1::from(labels))),
        n => Err(Error::format(
            dir,
            format!(
                "{n} of {} sample files hold a label: give one in every file or none",
                files.len()
            ),
        )),
    }
}
