//! Learned rounding of a weight tensor (AdaRound's result) as the quantizer uses it: for every
//! weight, whether it rounds up (⌊W/S⌋ + 1) or down (⌊W/S⌋) on its channel's grid, packed one
//! bit per weight, tied to what it was learned for: the layer's weight setting (scheme, bits,
//! granularity), the tensor's manual clip ranges and the weight calibration method (the config
//! side), and the clip ranges and a SHA-256 of the float weights (the data side).
//!
//! A config that no longer matches drops the rounding with a message ([`retain_matching`]);
//! weights or ranges that no longer match make [`LearnedRounding::codes`] refuse, so the
//! rounding is never applied to a grid it was not learned on.

use std::collections::BTreeMap;

use ndarray::{ArrayD, ArrayViewD};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::channels::Granularity;
use super::config::{QuantConfig, WeightQuant};
use super::grid::LinearParams;
use crate::calib::Method;

/// The rounding learned for one weight tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LearnedRounding {
    /// The layer it was learned for (the first one reading the tensor).
    pub node: String,
    /// The layer's weight setting then.
    pub quant: WeightQuant,
    /// The tensor's manual clip range then, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual_range: Option<(f32, f32)>,
    /// The tensor's manual per-channel clip ranges then.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub manual_channels: BTreeMap<usize, (f32, f32)>,
    /// The config's weight calibration method then (None: min-max).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_calib: Option<Method>,
    /// The clip range of each channel (one per tensor) the rounding was learned on.
    pub ranges: Vec<(f32, f32)>,
    /// SHA-256 of the float weights (little-endian f32 in standard order), lowercase hex.
    pub weights_sha256: String,
    /// Number of weights.
    pub count: usize,
    /// One bit per weight in standard order (bit i % 8 of byte i / 8): 1 rounds up.
    #[serde(with = "hex_bytes")]
    pub round_up: Vec<u8>,
}

/// SHA-256 of `values` as little-endian f32 in standard order, lowercase hex.
pub fn weights_fingerprint(values: ArrayViewD<'_, f32>) -> String {
    let mut hasher = Sha256::new();
    for v in values.iter() {
        hasher.update(v.to_le_bytes());
    }
    format!("{:x}", hasher.finalize())
}

/// Packs `up` one bit per entry, least significant bit first.
pub fn pack_bits(up: impl IntoIterator<Item = bool>) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (i, bit) in up.into_iter().enumerate() {
        if i % 8 == 0 {
            bytes.push(0u8);
        }
        if bit && let Some(last) = bytes.last_mut() {
            *last |= 1 << (i % 8);
        }
    }
    bytes
}

/// "int4 per channel", "int8-asym per tensor".
pub fn describe(quant: &WeightQuant) -> String {
    format!(
        "{} {}",
        quant.scheme,
        if quant.per_channel {
            "per channel"
        } else {
            "per tensor"
        }
    )
}

impl LearnedRounding {
    /// Whether weight `i` (standard order) rounds up.
    pub fn is_up(&self, i: usize) -> bool {
        self.round_up
            .get(i / 8)
            .is_some_and(|byte| byte & (1 << (i % 8)) != 0)
    }

    /// Why `config` no longer describes the grid this rounding was learned for (None: it
    /// still does). `tensor` is the weight's name.
    pub fn config_mismatch(&self, config: &QuantConfig, tensor: &str) -> Option<String> {
        let now = config.layer(&self.node).weights;
        if now != Some(self.quant) {
            return Some(match now {
                Some(q) => format!(
                    "learned for {}, the layer is now {}",
                    describe(&self.quant),
                    describe(&q)
                ),
                None => format!(
                    "learned for {}, the layer's weights are no longer quantized",
                    describe(&self.quant)
                ),
            });
        }
        if config.weight_ranges.get(tensor).copied() != self.manual_range {
            return Some("its manual clip range changed".into());
        }
        let channels = config.weight_channel_ranges.get(tensor);
        if channels.map_or(!self.manual_channels.is_empty(), |c| {
            *c != self.manual_channels
        }) {
            return Some("its per-channel clip ranges changed".into());
        }
        if config.weight_calib != self.weight_calib {
            return Some("the weight calibration method changed".into());
        }
        None
    }

    /// The integer codes of `values` under this rounding on the grid of `params` (one per
    /// channel along `granularity`, one per tensor): clamp(⌊W/S⌋ + up + Z, qmin, qmax). An
    /// error says why it does not apply when the weights, ranges or shape are not the ones it
    /// was learned on.
    pub fn codes(
        &self,
        values: ArrayViewD<'_, f32>,
        ranges: &[(f32, f32)],
        params: &[LinearParams],
        granularity: Granularity,
    ) -> Result<ArrayD<i32>, String> {
        if values.len() != self.count || self.round_up.len() != self.count.div_ceil(8) {
            return Err(format!(
                "learned for {} weights, the tensor has {}",
                self.count,
                values.len()
            ));
        }
        if ranges != self.ranges.as_slice() {
            return Err("the clip ranges differ from the ones it was learned on".into());
        }
        if weights_fingerprint(values.view()) != self.weights_sha256 {
            return Err("the weights differ from the ones it was learned on".into());
        }
        let (channels, inner) = match granularity {
            Granularity::PerTensor => (1, values.len().max(1)),
            Granularity::PerChannel { axis } => {
                let shape = values.shape();
                let channels = shape.get(axis).copied().unwrap_or(1).max(1);
                (channels, shape[axis + 1..].iter().product::<usize>().max(1))
            }
        };
        if params.len() != channels {
            return Err(format!(
                "{} grids given for {channels} channels",
                params.len()
            ));
        }
        let codes = values
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                let p = &params[(i / inner) % channels];
                let floor = (w / p.scale).floor() as i64;
                let code = floor + i64::from(self.is_up(i)) + i64::from(p.zero_point);
                code.clamp(i64::from(p.grid.qmin()), i64::from(p.grid.qmax())) as i32
            })
            .collect();
        ArrayD::from_shape_vec(values.raw_dim(), codes).map_err(|e| e.to_string())
    }
}

/// Drops from `config` every learned rounding its settings no longer match (another scheme,
/// bits or granularity for the layer, other manual ranges, another weight calibration) and
/// returns one message per dropped tensor.
pub fn retain_matching(config: &mut QuantConfig) -> Vec<String> {
    let mut dropped = Vec::new();
    let reasons: Vec<(String, String)> = config
        .adaround
        .iter()
        .filter_map(|(tensor, learned)| {
            learned
                .config_mismatch(config, tensor)
                .map(|why| (tensor.clone(), why))
        })
        .collect();
    for (tensor, why) in reasons {
        config.adaround.remove(&tensor);
        dropped.push(format!("AdaRound rounding of '{tensor}' dropped: {why}"));
    }
    dropped
}

/// Hex (de)serialization of a byte vector: two lowercase digits per byte.
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        serializer.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        if !text.len().is_multiple_of(2) || !text.is_ascii() {
            return Err(D::Error::custom("round_up: not a hex string"));
        }
        (0..text.len())
            .step_by(2)
            .map(|i| {
                u8::from_str_radix(&text[i..i + 2], 16)
                    .map_err(|_| D::Error::custom(format!("round_up: bad hex at {i}")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use ndarray::IxDyn;

    use super::*;
    use crate::quant::WeightScheme;
    use crate::quant::grid::IntGrid;

    fn learned(values: ArrayViewD<'_, f32>, up: &[bool]) -> LearnedRounding {
        LearnedRounding {
            node: "fc".into(),
            quant: WeightQuant {
                scheme: WeightScheme::Linear {
                    bits: 4,
                    symmetric: true,
                },
                per_channel: true,
            },
            manual_range: None,
            manual_channels: BTreeMap::new(),
            weight_calib: None,
            ranges: vec![(-1.0, 1.0), (-2.0, 2.0)],
            weights_sha256: weights_fingerprint(values.view()),
            count: values.len(),
            round_up: pack_bits(up.iter().copied()),
        }
    }

    #[test]
    fn codes_are_floor_plus_the_learned_bit_on_each_channels_grid() {
        let w =
            ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![0.1, -0.1, 0.99, 0.3, -0.3, 5.0]).unwrap();
        let up = [true, false, true, false, true, true];
        let l = learned(w.view(), &up);
        let grid = IntGrid::new(4, true, false).unwrap();
        let params: Vec<LinearParams> = [1.0f32 / 7.0, 2.0 / 7.0]
            .iter()
            .map(|&s| LinearParams::from_scale_zero(s, 0, grid).unwrap())
            .collect();
        let codes = l
            .codes(
                w.view(),
                &l.ranges.clone(),
                &params,
                Granularity::PerChannel { axis: 0 },
            )
            .unwrap();
        // 0.1·7 = 0.7 → 0 + 1; −0.7 → −1 + 0; 6.93 → 6 + 1; 0.3·3.5 = 1.05 → 1;
        // −1.05 → −2 + 1; 17.5 → 18, clamped to qmax 7.
        assert_eq!(
            codes.iter().copied().collect::<Vec<_>>(),
            [1, -1, 7, 1, -1, 7]
        );
        let json = serde_json::to_string(&l).unwrap();
        assert!(json.contains("\"round_up\":\"35\""), "{json}");
        assert_eq!(serde_json::from_str::<LearnedRounding>(&json).unwrap(), l);
        // Other weights or ranges: refused, never applied.
        let moved = w.mapv(|x| x * 1.01);
        let e = l
            .codes(
                moved.view(),
                &l.ranges,
                &params,
                Granularity::PerChannel { axis: 0 },
            )
            .unwrap_err();
        assert!(e.contains("weights differ"), "{e}");
        let e = l
            .codes(
                w.view(),
                &[(-1.0, 1.0), (-3.0, 3.0)],
                &params,
                Granularity::PerChannel { axis: 0 },
            )
            .unwrap_err();
        assert!(e.contains("clip ranges differ"), "{e}");
    }

    #[test]
    fn a_config_with_another_grid_drops_the_rounding_with_a_message() {
        let w = ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![0.1; 6]).unwrap();
        let l = learned(w.view(), &[true; 6]);
        let mut config = QuantConfig::uniform(Some(l.quant), None);
        config.adaround.insert("w".into(), l.clone());
        assert!(retain_matching(&mut config).is_empty());
        assert_eq!(config.adaround.len(), 1);
        config.default.weights = Some(WeightQuant {
            scheme: WeightScheme::Linear {
                bits: 8,
                symmetric: true,
            },
            per_channel: true,
        });
        let dropped = retain_matching(&mut config);
        assert!(config.adaround.is_empty());
        assert_eq!(
            dropped,
            [
                "AdaRound rounding of 'w' dropped: learned for int4 per channel, the layer \
              is now int8 per channel"
            ]
        );
        let mut config = QuantConfig::uniform(Some(l.quant), None);
        config.adaround.insert("w".into(), l);
        config.weight_calib = Some(Method::Mse);
        let dropped = retain_matching(&mut config);
        assert!(
            dropped[0].contains("weight calibration method changed"),
            "{dropped:?}"
        );
    }
}
