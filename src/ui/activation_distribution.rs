//! Preparing the centre view's data on a worker: a weight's [`TensorDistribution`] from its
//! values, an activation's from its calibration statistics (the calibration histogram, as the
//! app keeps no activation values; the per-channel ranges and histograms from the
//! calibration's per-channel statistics), every calibration method's range as a marker and the
//! "why this threshold" curves; and [`Shown`], what the view data was prepared for.

use crate::calib::{CalibrationStats, ChannelStats, Method, ObserverConfig};
use crate::ir::Tensor;
use crate::jobs::pipeline::Calibration;
use crate::metrics::FineHistogram;
use crate::stats::Summary;
use crate::summary::{ModelSummary, TensorSummary};

use super::distribution::{CalibrationMarker, TensorDistribution, WhyThreshold};

/// What the shown view data was prepared for: the tensor and the activation settings its
/// markers depend on.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewKey {
    pub tensor: String,
    pub weight: bool,
    pub bits: u32,
    pub method: Method,
}

/// The shown tensor's view data (or why there is none).
pub struct Shown {
    pub key: ViewKey,
    pub summary: TensorSummary,
    pub data: Result<TensorDistribution, String>,
}

impl Shown {
    /// No view data for `key`, and why.
    pub fn problem(key: ViewKey, why: String) -> Shown {
        Shown {
            summary: placeholder_summary(&key.tensor),
            data: Err(why),
            key,
        }
    }
}

/// How the view data of a tensor is had.
pub enum ViewWork {
    /// Prepared by this work, on a worker.
    Prepare(Box<dyn FnOnce() -> Shown + Send>),
    /// Nothing to prepare: this is shown at once.
    Show(Box<Shown>),
    /// Nothing to prepare or show (the tensor is not in the model).
    Nothing,
}

/// How to get the view data of `key`. `unavailable` says why inference is not possible (then
/// activations have no statistics).
pub fn view_work(
    key: ViewKey,
    weights: &std::collections::BTreeMap<String, Tensor>,
    summary: &ModelSummary,
    calibration: Option<&std::sync::Arc<Calibration>>,
    unavailable: Option<String>,
) -> ViewWork {
    if key.weight {
        let Some(tensor) = weights.get(&key.tensor).cloned() else {
            return ViewWork::Nothing;
        };
        let summary = summary
            .tensors
            .iter()
            .find(|t| t.name == key.tensor)
            .cloned();
        return ViewWork::Prepare(Box::new(move || {
            let summary = summary.unwrap_or_else(|| TensorSummary::of(&tensor));
            Shown {
                data: weight_distribution(&tensor, key.bits, key.method),
                summary,
                key,
            }
        }));
    }
    let Some(calibration) = calibration.cloned() else {
        let why =
            unavailable.unwrap_or_else(|| "activations are shown once calibration has run".into());
        return ViewWork::Show(Box::new(Shown::problem(key, why)));
    };
    ViewWork::Prepare(Box::new(move || {
        let name = key.tensor.clone();
        let Some(stats) = calibration.stats.get(&name) else {
            return Shown::problem(key, format!("'{name}' was not seen during calibration"));
        };
        let shape: Vec<usize> = calibration
            .shapes
            .get(&name)
            .map(|s| s.iter().skip(1).copied().collect())
            .unwrap_or_default();
        let channels = calibration.channels.get(&name);
        let mut summary = activation_summary(&name, stats, &shape);
        if let Some(channels) = channels {
            // The summary's shape has no batch axis.
            summary.channel_axis = channels.axis().checked_sub(1);
            summary.channels = Some(channels.channels());
        }
        Shown {
            summary,
            data: activation_distribution(stats, key.bits, key.method)
                .map(|data| with_channels(data, channels)),
            key,
        }
    }))
}

/// The marker name of `method` (also what `AdoptMarker` carries back).
pub fn method_label(method: Method) -> String {
    match method {
        Method::MinMax => "min-max".into(),
        Method::Ema => "EMA".into(),
        Method::BatchMean => "batch mean".into(),
        Method::Percentile(p) => format!("percentile {p}"),
        Method::Mse => "MSE".into(),
        Method::AciqGauss => "ACIQ Gauss".into(),
        Method::AciqLaplace => "ACIQ Laplace".into(),
        Method::Kl => "KL".into(),
    }
}

/// Every method's range for `stats` at `bits` (plus `chosen`, when it is not among them);
/// methods that cannot give a range are left out.
pub fn markers(stats: &CalibrationStats, bits: u32, chosen: Method) -> Vec<CalibrationMarker> {
    let mut methods = Method::ALL.to_vec();
    if !methods.contains(&chosen) {
        methods.push(chosen);
    }
    methods
        .into_iter()
        .filter_map(|m| {
            Some(CalibrationMarker {
                method: method_label(m),
                range: m.range(stats, bits).ok()?,
            })
        })
        .collect()
}

/// A weight's view data, with markers from its own statistics.
pub fn weight_distribution(
    tensor: &Tensor,
    bits: u32,
    chosen: Method,
) -> Result<TensorDistribution, String> {
    let values = tensor.data.to_f32();
    let stats = CalibrationStats::of_tensor(values.view(), ObserverConfig::default());
    let mut data = TensorDistribution::prepare(
        values.view(),
        tensor.channel_axis,
        markers(&stats, bits, chosen),
    )?;
    data.why = WhyThreshold::of(&stats, bits);
    Ok(data)
}

/// An activation's view data from its calibration statistics: the signed calibration
/// histogram (values spread evenly in each bin), no channels (see [`with_channels`]), no
/// sample.
pub fn activation_distribution(
    stats: &CalibrationStats,
    bits: u32,
    chosen: Method,
) -> Result<TensorDistribution, String> {
    let histogram = stats
        .signed_histogram()
        .ok_or_else(|| "no calibration values were seen for this tensor".to_string())?;
    let fine = FineHistogram::from_histogram(&histogram).map_err(|e| e.to_string())?;
    Ok(TensorDistribution {
        fine,
        channel_ranges: Vec::new(),
        channel_histograms: Vec::new(),
        channel_note: None,
        sample: Vec::new(),
        markers: markers(stats, bits, chosen),
        // Activations are quantized linearly only: no binary/ternary scales.
        scheme_stats: Default::default(),
        why: WhyThreshold::of(stats, bits),
    })
}

/// `data` with the channels of the calibration's per-channel statistics `channels`: each
/// channel's [min, max] (a channel without finite values spans [0, 0]) and its histogram over
/// its own range, when they are kept; a note saying which axis they are on and what is left
/// out. Without statistics (a tensor of rank below 2), the note says so.
pub fn with_channels(
    mut data: TensorDistribution,
    channels: Option<&ChannelStats>,
) -> TensorDistribution {
    let Some(channels) = channels else {
        data.channel_note =
            Some("No per-channel statistics: the tensor has fewer than 2 axes.".into());
        return data;
    };
    data.channel_ranges = channels
        .ranges()
        .into_iter()
        .map(|r| r.unwrap_or((0.0, 0.0)))
        .collect();
    let histograms: Vec<FineHistogram> = (0..data.channel_ranges.len())
        .map_while(|c| {
            let h = channels
                .histogram(c)
                .unwrap_or_else(|| crate::stats::Histogram {
                    lo: 0.0,
                    hi: 0.0,
                    counts: vec![0; 1],
                });
            FineHistogram::from_histogram(&h).ok()
        })
        .collect();
    if channels.has_histograms() && histograms.len() == data.channel_ranges.len() {
        data.channel_histograms = histograms;
    }
    let mut note = format!(
        "{} channels along axis {} of the activation (batch axis 0), from calibration: {}",
        channels.channels(),
        channels.axis(),
        channels.limit()
    );
    if channels.has_histograms() && !channels.histograms_are_exact() {
        note.push_str("; channel histograms re-binned as ranges grew (approximate)");
    }
    note.push('.');
    data.channel_note = Some(note);
    data
}

/// A summary of an activation from its statistics (shape without the batch dimension).
pub fn activation_summary(name: &str, stats: &CalibrationStats, shape: &[usize]) -> TensorSummary {
    let (min, max) = stats.min_max().unwrap_or((0.0, 0.0));
    TensorSummary {
        name: name.to_string(),
        role: "activation",
        dtype: "float32",
        shape: shape.to_vec(),
        stats: Summary {
            count: stats.count() as usize,
            nan_count: stats.nan_count() as usize,
            inf_count: stats.inf_count() as usize,
            min,
            max,
            mean: stats.mean().unwrap_or(0.0),
            std: stats.std().unwrap_or(0.0),
        },
        channel_axis: None,
        channels: None,
        channel_range_spread: None,
    }
}

/// The summary of a tensor without statistics (shown beside a view problem).
fn placeholder_summary(name: &str) -> TensorSummary {
    TensorSummary {
        name: name.to_string(),
        role: "activation",
        dtype: "float32",
        shape: Vec::new(),
        stats: Summary {
            count: 0,
            nan_count: 0,
            inf_count: 0,
            min: 0.0,
            max: 0.0,
            mean: 0.0,
            std: 0.0,
        },
        channel_axis: None,
        channels: None,
        channel_range_spread: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};

    #[test]
    fn activation_view_data_spans_the_calibrated_range_with_every_marker() {
        let values: Vec<f32> = (0..1000).map(|i| i as f32 / 100.0).collect();
        let array = ArrayD::from_shape_vec(IxDyn(&[10, 100]), values).unwrap();
        let stats = CalibrationStats::of_tensor(array.view(), ObserverConfig::default());
        let data = activation_distribution(&stats, 8, Method::Percentile(99.0)).unwrap();
        let (lo, hi) = data.fine.range();
        assert!(lo <= 0.0 && hi >= 9.99, "{lo}..{hi}");
        assert_eq!(data.fine.count(), 1000);
        let names: Vec<&str> = data.markers.iter().map(|m| m.method.as_str()).collect();
        assert!(names.contains(&"min-max") && names.contains(&"KL"));
        assert!(names.contains(&"percentile 99"), "{names:?}");
        let minmax = data.markers.iter().find(|m| m.method == "min-max").unwrap();
        assert_eq!(minmax.range, (0.0, 9.99));
        let summary = activation_summary("x", &stats, &[100]);
        assert_eq!((summary.stats.min, summary.stats.max), (0.0, 9.99));
    }
}
