//! What the view keeps between frames for one tensor and setting: k-means codebooks (fitted on
//! the ≤ 4096-value sample, once per bit width), the calibration markers' error estimates, the
//! per-channel estimate (once per quantization choice and channel clip ranges) and the
//! threshold curves. Everything is dropped when the tensor changes.

use ndarray::ArrayD;

use crate::metrics::ErrorEstimate;
use crate::quant::channels::Granularity;
use crate::quant::config::WeightScheme;
use crate::quant::kmeans::{KMeansConfig, kmeans};

use super::channels_plot::per_channel_estimate;
use super::{CalibrationMarker, DistributionInput, QuantChoice, ScaleStats, TensorDistribution};

/// Identity of the shown tensor data: its address, name and sizes.
type DataKey = (usize, String, u64, usize);

/// The per-channel estimate of a choice with each channel's clip range.
type PerChannelEntry = (QuantChoice, Vec<(f32, f32)>, Option<ErrorEstimate>);

#[derive(Debug, Default)]
pub struct ViewCache {
    key: Option<DataKey>,
    codebooks: Vec<(u32, Option<Vec<f32>>)>,
    markers: Option<(
        QuantChoice,
        Vec<CalibrationMarker>,
        Vec<Option<ErrorEstimate>>,
    )>,
    per_channel: Option<PerChannelEntry>,
}

impl ViewCache {
    /// Drops everything when `input` shows other data than the cached one.
    pub fn sync(&mut self, input: &DistributionInput<'_>) {
        let data = input.data;
        let same = self.key.as_ref().is_some_and(|(ptr, name, count, sample)| {
            *ptr == std::ptr::from_ref(data) as usize
                && *name == input.tensor.name
                && *count == data.fine.count()
                && *sample == data.sample.len()
        });
        if !same {
            *self = ViewCache {
                key: Some((
                    std::ptr::from_ref(data) as usize,
                    input.tensor.name.clone(),
                    data.fine.count(),
                    data.sample.len(),
                )),
                ..Default::default()
            };
        }
    }

    /// The k-means codebook of `scheme` (None for other schemes or when the fit fails), fitted
    /// on the sample the first time it is asked for.
    pub fn codebook(
        &mut self,
        data: &TensorDistribution,
        scheme: WeightScheme,
    ) -> Option<Vec<f32>> {
        let bits = scheme.kmeans_bits()?;
        if let Some((_, book)) = self.codebooks.iter().find(|(b, _)| *b == bits) {
            return book.clone();
        }
        let book = fit_codebook(&data.sample, bits);
        self.codebooks.push((bits, book.clone()));
        book
    }

    /// Each marker's estimated error at the current choice (linear schemes only), computed
    /// once per choice and marker set.
    pub fn marker_estimates(
        &mut self,
        data: &TensorDistribution,
        choice: &QuantChoice,
    ) -> &[Option<ErrorEstimate>] {
        let fresh = self
            .markers
            .as_ref()
            .is_some_and(|(c, m, _)| c == choice && *m == data.markers);
        if !fresh {
            let estimates = data
                .markers
                .iter()
                .map(|m| marker_estimate(data, choice, m.range))
                .collect();
            self.markers = Some((*choice, data.markers.clone(), estimates));
        }
        self.markers
            .as_ref()
            .map(|(_, _, e)| e.as_slice())
            .unwrap_or(&[])
    }

    /// The per-channel estimate of `choice` with each channel's clip range in `ranges`,
    /// computed once per choice and ranges.
    pub fn per_channel(
        &mut self,
        data: &TensorDistribution,
        choice: &QuantChoice,
        codebook: Option<&[f32]>,
        ranges: &[(f32, f32)],
    ) -> Option<ErrorEstimate> {
        match &self.per_channel {
            Some((c, r, e)) if c == choice && r == ranges => *e,
            _ => {
                let e = per_channel_estimate(data, choice, codebook, ranges);
                self.per_channel = Some((*choice, ranges.to_vec(), e));
                e
            }
        }
    }
}

/// The error of a linear choice with the clip range `range`.
fn marker_estimate(
    data: &TensorDistribution,
    choice: &QuantChoice,
    range: (f32, f32),
) -> Option<ErrorEstimate> {
    if !choice.scheme.is_linear() {
        return None;
    }
    let quantizer = choice.quantizer(range, &ScaleStats::default(), None).ok()?;
    data.fine.estimate_quantizer(&quantizer)
}

/// k-means on the sample (1-D Lloyd from a linear init), at most 4096 values.
pub fn fit_codebook(sample: &[f32], bits: u32) -> Option<Vec<f32>> {
    let values = ArrayD::from_shape_vec(vec![sample.len()], sample.to_vec()).ok()?;
    let fit = kmeans(
        values.view(),
        &KMeansConfig::new(bits, Granularity::PerTensor),
    )
    .ok()?;
    fit.codebooks.into_iter().next()
}
