//! Calibrated clip ranges of a weight tensor: any range [`Method`] (min-max, percentile, MSE,
//! ACIQ, KL) applied to the whole tensor or to each channel, from the same statistics and
//! calibrators as activations ([`CalibrationStats`] of the values, one batch).

use ndarray::{ArrayViewD, Axis};

use super::channels::Granularity;
use super::grid::QuantError;
use crate::calib::{CalibrationStats, Method, ObserverConfig};

/// The clip range of `values` for a `bits`-bit quantizer by `method`: one for the whole tensor,
/// or one per index along the channel axis of `granularity`.
pub fn calibrated_ranges(
    values: ArrayViewD<'_, f32>,
    granularity: Granularity,
    method: Method,
    bits: u32,
) -> Result<Vec<(f32, f32)>, QuantError> {
    let range = |v: ArrayViewD<'_, f32>| -> Result<(f32, f32), QuantError> {
        let stats = CalibrationStats::of_tensor(v, ObserverConfig::default());
        method
            .range(&stats, bits)
            .map_err(|e| QuantError(format!("weight calibration by {method}: {e}")))
    };
    match granularity {
        Granularity::PerTensor => Ok(vec![range(values)?]),
        Granularity::PerChannel { axis } => {
            if axis >= values.ndim() {
                return Err(QuantError(format!(
                    "channel axis {axis} is out of range for a tensor of rank {}",
                    values.ndim()
                )));
            }
            (0..values.shape()[axis])
                .map(|c| range(values.index_axis(Axis(axis), c)))
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, IxDyn};

    use super::*;

    #[test]
    fn min_max_ranges_are_each_channels_extremes() {
        let w =
            ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![-1.0, 0.5, 2.0, 0.1, -0.2, 0.3]).unwrap();
        let per_channel = calibrated_ranges(
            w.view(),
            Granularity::PerChannel { axis: 0 },
            Method::MinMax,
            8,
        )
        .unwrap();
        assert_eq!(per_channel, vec![(-1.0, 2.0), (-0.2, 0.3)]);
        let whole = calibrated_ranges(w.view(), Granularity::PerTensor, Method::MinMax, 8).unwrap();
        assert_eq!(whole, vec![(-1.0, 2.0)]);
        let bad = calibrated_ranges(
            w.view(),
            Granularity::PerChannel { axis: 2 },
            Method::Mse,
            8,
        );
        assert!(bad.is_err());
    }
}
