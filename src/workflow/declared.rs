//! Inputs made from the graph's declared shapes: where an image folder's pixels go (channel
//! axis, channel count, height and width, from the declared `[N, C, H, W]` or `[N, H, W, C]`
//! and the preset), and synthetic samples for any number of inputs (seeded N(0, 1) floats,
//! zero integers) that respect a declared batch.

use std::collections::BTreeMap;

use ndarray::{ArrayD, IxDyn};
use rand::{RngExt, SeedableRng};

use super::samples::{Feed, Samples, expectation};
use super::sources::required_inputs;
use crate::error::{Error, Result};
use crate::ir::{Dim, Graph, TensorData, ValueInfo};
use crate::load::images::{ChannelOrder, ImagePreset, ImageTarget, Layout};

/// Most samples of synthetic data.
pub const SYNTHETIC_SAMPLES: usize = 128;
/// Fewest samples of synthetic data (however large the inputs).
pub const SYNTHETIC_MIN_SAMPLES: usize = 8;
/// Input values per synthetic data set (fewer samples for large inputs).
const SYNTHETIC_VALUES: usize = 1 << 24;

fn fixed(d: &Dim) -> Option<usize> {
    match d {
        Dim::Fixed(n) => Some(*n),
        _ => None,
    }
}

/// The image input of `graph` (its only input, of rank 4) and where `preset` puts the pixels.
pub fn image_target(graph: &Graph, preset: &ImagePreset) -> Result<(String, ImageTarget)> {
    let required = required_inputs(graph);
    let [input] = required.as_slice() else {
        return Err(Error::Input {
            name: "image folder".into(),
            msg: format!(
                "images feed a model with one input; this one has {} ({}): give a folder of \
                 .npz files instead",
                required.len(),
                required
                    .iter()
                    .map(|i| format!("'{}'", i.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    };
    let fail = |msg: String| Error::Input {
        name: input.name.clone(),
        msg,
    };
    let dims = match &input.shape {
        Some(d) if d.len() == 4 => d,
        _ => {
            return Err(fail(format!(
                "expects {}: images need an input of rank 4 ([N, C, H, W] or [N, H, W, C])",
                expectation(input)
            )));
        }
    };
    let is_channels = |d: &Dim| matches!(fixed(d), Some(1 | 3));
    let channels_last = match preset.layout {
        Layout::Nchw => false,
        Layout::Nhwc => true,
        Layout::Auto => match (is_channels(&dims[1]), is_channels(&dims[3])) {
            (true, _) => false,
            (false, true) => true,
            (false, false) => {
                return Err(fail(format!(
                    "expects {}: cannot tell the channel axis; say nchw or nhwc in the preset",
                    expectation(input)
                )));
            }
        },
    };
    let (c, h, w) = if channels_last {
        (&dims[3], &dims[1], &dims[2])
    } else {
        (&dims[1], &dims[2], &dims[3])
    };
    let channels = match fixed(c) {
        Some(n) => n,
        None if preset.channels == ChannelOrder::Luma => 1,
        None => 3,
    };
    let (height, width) = match (fixed(h), fixed(w), preset.size) {
        (Some(h), Some(w), None) => (h, w),
        (Some(h), Some(w), Some(size)) if size == (h, w) => (h, w),
        (Some(h), Some(w), Some((ph, pw))) => {
            return Err(fail(format!(
                "expects {}: the preset's size {ph}x{pw} is not the declared {h}x{w}",
                expectation(input)
            )));
        }
        (_, _, Some(size)) => size,
        _ => {
            return Err(fail(format!(
                "expects {}: it declares no fixed height and width, so give the size in the \
                 preset (e.g. 224x224)",
                expectation(input)
            )));
        }
    };
    Ok((
        input.name.clone(),
        ImageTarget {
            channels,
            height,
            width,
            channels_last,
        },
    ))
}

/// The height and width synthetic data gives an image input that leaves them free.
pub const SYNTHETIC_IMAGE_SIDE: usize = 224;

/// The spatial axes of an image input, when `dims` is one: rank 4 with a fixed 1, 3 or 4
/// channels on axis 1 (NCHW) or else on axis 3 (NHWC).
fn spatial_axes(dims: &[Dim]) -> Option<[usize; 2]> {
    let is_channels = |d: &Dim| matches!(fixed(d), Some(1 | 3 | 4));
    match dims {
        [_, c, _, _] if is_channels(c) => Some([2, 3]),
        [_, _, _, c] if is_channels(c) => Some([1, 2]),
        _ => None,
    }
}

/// The declared sizes of `info`, a symbolic batch (axis 0) as 1 and free image sizes as
/// [`SYNTHETIC_IMAGE_SIDE`]; the others must be fixed.
fn sample_dims(info: &ValueInfo) -> Result<Vec<usize>> {
    let dims = info.shape.as_ref().ok_or_else(|| Error::Input {
        name: info.name.clone(),
        msg: "declares no shape, so synthetic data cannot be made for it; give data".into(),
    })?;
    let spatial = spatial_axes(dims);
    dims.iter()
        .enumerate()
        .map(|(axis, d)| match (fixed(d), axis == 0) {
            (Some(n), _) => Ok(n),
            (None, true) => Ok(1),
            (None, false) if spatial.is_some_and(|s| s.contains(&axis)) => Ok(SYNTHETIC_IMAGE_SIDE),
            _ => Err(Error::Input {
                name: info.name.clone(),
                msg: format!(
                    "expects {}: synthetic data needs fixed sizes besides the batch; give data",
                    expectation(info)
                ),
            }),
        })
        .collect()
}

fn generate(info: &ValueInfo, shape: &[usize], rng: &mut rand_pcg::Pcg64) -> TensorData {
    let n: usize = shape.iter().product();
    let float = info.dtype.is_none_or(|d| d.is_held_as_f32());
    if float {
        let values: Vec<f32> = (0..n).map(|_| gaussian(rng)).collect();
        TensorData::F32(
            ArrayD::from_shape_vec(IxDyn(shape), values)
                .unwrap_or_else(|_| ArrayD::zeros(IxDyn(shape))),
        )
    } else {
        TensorData::I64(ArrayD::zeros(IxDyn(shape)))
    }
}

/// What [`synthetic`] data is for `graph`, in a few words: it has no labels, and image inputs
/// whose height or width is free get [`SYNTHETIC_IMAGE_SIDE`] pixels.
pub fn synthetic_description(graph: &Graph) -> String {
    let free_image = required_inputs(graph).iter().any(|info| {
        info.shape.as_ref().is_some_and(|dims| {
            spatial_axes(dims).is_some_and(|axes| axes.iter().any(|&a| fixed(&dims[a]).is_none()))
        })
    });
    if free_image {
        format!(
            "synthetic inputs (no labels; free image sizes at {SYNTHETIC_IMAGE_SIDE}x{SYNTHETIC_IMAGE_SIDE})"
        )
    } else {
        "synthetic inputs (no labels)".to_string()
    }
}

/// Seeded synthetic samples of every input: stacked when every input takes the samples on a
/// batch axis (symbolic or declared 1), else one complete feed per sample.
pub fn synthetic(graph: &Graph) -> Result<Samples> {
    let required = required_inputs(graph);
    if required.is_empty() {
        return Err(Error::Input {
            name: "synthetic data".into(),
            msg: "the model has no inputs to feed".into(),
        });
    }
    let mut per_input = Vec::new();
    for info in &required {
        let dims = sample_dims(info)?;
        per_input.push((*info, dims));
    }
    let values_per_sample: usize = per_input
        .iter()
        .map(|(_, d)| d.iter().skip(1).product::<usize>().max(1))
        .sum();
    let count = (SYNTHETIC_VALUES / values_per_sample.max(1))
        .clamp(SYNTHETIC_MIN_SAMPLES, SYNTHETIC_SAMPLES);
    let batch_axis = |info: &ValueInfo| {
        info.shape
            .as_ref()
            .and_then(|d| d.first())
            .is_some_and(|d| fixed(d).is_none_or(|n| n == 1))
    };
    let stackable = per_input
        .iter()
        .all(|(info, dims)| dims.is_empty() || batch_axis(info));
    let mut rng = rand_pcg::Pcg64::seed_from_u64(0x5eed);
    let description = synthetic_description(graph);
    let description = description.as_str();
    let samples = if stackable {
        let mut arrays = BTreeMap::new();
        let mut constants = BTreeMap::new();
        for (info, dims) in &per_input {
            if dims.is_empty() {
                constants.insert(info.name.clone(), generate(info, dims, &mut rng));
            } else {
                let mut shape = dims.clone();
                shape[0] = count;
                arrays.insert(info.name.clone(), generate(info, &shape, &mut rng));
            }
        }
        Samples::stacked(arrays, constants, description)?
    } else {
        let feeds = (0..count)
            .map(|i| Feed {
                origin: format!("synthetic sample {i}"),
                arrays: per_input
                    .iter()
                    .map(|(info, dims)| (info.name.clone(), generate(info, dims, &mut rng)))
                    .collect(),
            })
            .collect();
        Samples::per_sample(feeds, description)?
    };
    Ok(samples.into_synthetic())
}

/// A standard normal sample by Box-Muller (no extra crate for one distribution).
fn gaussian(rng: &mut rand_pcg::Pcg64) -> f32 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random::<f64>();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}
