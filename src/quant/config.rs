//! `QuantConfig`: the one piece of state a user edits. Per layer: the weight scheme, bits and
//! granularity, and how its input activations are quantized; layers without a setting stay in
//! float. Serializable, so it is the heart of the session file.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::grid::QuantError;
use super::ternary::{TTQ_DEFAULT_THRESHOLD, TernaryMethod};
use crate::calib::Method;

/// Ops whose weights and input activations are quantized.
pub const QUANTIZABLE_OPS: [&str; 4] = ["Conv", "ConvTranspose", "Gemm", "MatMul"];

/// How a weight tensor is quantized.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum WeightScheme {
    /// Linear on a signed `bits`-bit grid; symmetric (Z = 0) or asymmetric.
    Linear { bits: u32, symmetric: bool },
    /// ±1 (deterministic sign or BinaryConnect's stochastic rule), optionally times α = mean|W|.
    Binary { scaled: bool, stochastic: bool },
    /// {−α, 0, +α} with TWN's Δ = 0.7·E|W|, or TTQ's Δ = 0.05·max|W| with Wp, Wn.
    Ternary { ttq: bool },
    /// 2^bits shared values found by k-means (Deep Compression).
    KMeans { bits: u32 },
}

impl WeightScheme {
    /// Bits per stored weight (codebooks and scales not included).
    pub fn bits(&self) -> u32 {
        match self {
            WeightScheme::Linear { bits, .. } | WeightScheme::KMeans { bits } => *bits,
            WeightScheme::Binary { .. } => 1,
            WeightScheme::Ternary { .. } => 2,
        }
    }

    /// The ternary method of this scheme (TWN or TTQ with the default threshold).
    pub fn ternary_method(&self) -> TernaryMethod {
        match self {
            WeightScheme::Ternary { ttq: true } => TernaryMethod::Ttq {
                threshold: TTQ_DEFAULT_THRESHOLD,
            },
            _ => TernaryMethod::Twn,
        }
    }
}

impl fmt::Display for WeightScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WeightScheme::Linear {
                bits,
                symmetric: true,
            } => write!(f, "int{bits}"),
            WeightScheme::Linear {
                bits,
                symmetric: false,
            } => write!(f, "int{bits}-asym"),
            WeightScheme::Binary { scaled, stochastic } => {
                f.write_str("binary")?;
                if *stochastic {
                    f.write_str("-stochastic")?;
                }
                if *scaled {
                    f.write_str("-scaled")?;
                }
                Ok(())
            }
            WeightScheme::Ternary { ttq: false } => f.write_str("ternary"),
            WeightScheme::Ternary { ttq: true } => f.write_str("ttq"),
            WeightScheme::KMeans { bits } => write!(f, "kmeans{bits}"),
        }
    }
}

impl FromStr for WeightScheme {
    type Err = QuantError;

    /// `int8`, `int4-asym`, `binary`, `binary-scaled`, `binary-stochastic[-scaled]`,
    /// `ternary` (TWN), `ttq`, `kmeans4` (bits 1..=8).
    fn from_str(text: &str) -> Result<Self, QuantError> {
        let bad = || {
            QuantError(format!(
                "unknown weight scheme '{text}' (expected int<bits>[-asym], binary[-stochastic][-scaled], \
                 ternary, ttq or kmeans<bits>)"
            ))
        };
        let parse_bits = |digits: &str, lo: u32, hi: u32| -> Result<u32, QuantError> {
            let bits: u32 = digits.parse().map_err(|_| bad())?;
            if (lo..=hi).contains(&bits) {
                Ok(bits)
            } else {
                Err(QuantError(format!(
                    "'{text}': {bits} bits is out of range ({lo} to {hi})"
                )))
            }
        };
        Ok(match text {
            "ternary" | "twn" => WeightScheme::Ternary { ttq: false },
            "ttq" => WeightScheme::Ternary { ttq: true },
            _ if text.starts_with("binary") => {
                let rest = &text["binary".len()..];
                let (stochastic, rest) = match rest.strip_prefix("-stochastic") {
                    Some(r) => (true, r),
                    None => (false, rest),
                };
                let scaled = match rest {
                    "" => false,
                    "-scaled" => true,
                    _ => return Err(bad()),
                };
                WeightScheme::Binary { scaled, stochastic }
            }
            _ if text.starts_with("kmeans") => WeightScheme::KMeans {
                bits: parse_bits(&text["kmeans".len()..], 1, 8)?,
            },
            _ if text.starts_with("int") => {
                let rest = &text["int".len()..];
                let (digits, symmetric) = match rest.strip_suffix("-asym") {
                    Some(d) => (d, false),
                    None => (rest, true),
                };
                WeightScheme::Linear {
                    bits: parse_bits(digits, 2, 16)?,
                    symmetric,
                }
            }
            _ => return Err(bad()),
        })
    }
}

impl TryFrom<String> for WeightScheme {
    type Error = QuantError;
    fn try_from(s: String) -> Result<Self, QuantError> {
        s.parse()
    }
}

impl From<WeightScheme> for String {
    fn from(s: WeightScheme) -> String {
        s.to_string()
    }
}

/// A weight tensor's quantization.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WeightQuant {
    pub scheme: WeightScheme,
    /// One set of parameters per output channel (the tensor's channel axis) instead of one.
    pub per_channel: bool,
}

impl WeightQuant {
    /// How the quantized tensor is stored, for the size accounting of [`super::cost`].
    pub fn storage(&self) -> super::cost::StorageScheme {
        use super::cost::StorageScheme;
        let per_channel = self.per_channel;
        match self.scheme {
            WeightScheme::Linear { bits, symmetric } => StorageScheme::Linear {
                bits,
                per_channel,
                zero_point: !symmetric,
            },
            WeightScheme::Binary { .. } => StorageScheme::Binary { per_channel },
            WeightScheme::Ternary { ttq } => StorageScheme::Ternary {
                per_channel,
                scales: if ttq { 2 } else { 1 },
            },
            WeightScheme::KMeans { bits } => StorageScheme::KMeans { bits, per_channel },
        }
    }
}

/// How a layer's input activations are quantized (linear, per tensor).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ActivationQuant {
    pub bits: u32,
    /// Symmetric on a signed grid, or asymmetric on an unsigned grid (the usual uint8).
    pub symmetric: bool,
    /// How the clip range is chosen from calibration statistics.
    pub method: Method,
}

/// One layer's settings; `None` parts stay in float.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct LayerQuant {
    pub weights: Option<WeightQuant>,
    pub activations: Option<ActivationQuant>,
}

/// Everything a user chooses: a default for every quantizable layer, per-layer overrides (mixed
/// precision, layers kept in float) and manual clip ranges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct QuantConfig {
    pub default: LayerQuant,
    /// Overrides by node name.
    pub layers: BTreeMap<String, LayerQuant>,
    /// Manual clip ranges by activation tensor name; they win over the calibration method.
    pub activation_ranges: BTreeMap<String, (f32, f32)>,
    /// Manual clip ranges by weight tensor name (linear schemes, per tensor).
    pub weight_ranges: BTreeMap<String, (f32, f32)>,
}

impl QuantConfig {
    /// Every quantizable layer with `weights` and `activations`, no overrides.
    pub fn uniform(weights: Option<WeightQuant>, activations: Option<ActivationQuant>) -> Self {
        QuantConfig {
            default: LayerQuant {
                weights,
                activations,
            },
            ..Default::default()
        }
    }

    /// The usual deployment setting (and the app's default): int8 symmetric per-channel
    /// weights, uint8 min-max activations.
    pub fn int8_per_channel() -> Self {
        QuantConfig::uniform(
            Some(WeightQuant {
                scheme: WeightScheme::Linear {
                    bits: 8,
                    symmetric: true,
                },
                per_channel: true,
            }),
            Some(ActivationQuant {
                bits: 8,
                symmetric: false,
                method: Method::MinMax,
            }),
        )
    }

    /// The settings of the node named `node` (its override, else the default).
    pub fn layer(&self, node: &str) -> &LayerQuant {
        self.layers.get(node).unwrap_or(&self.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_parse_and_print_back() {
        for text in [
            "int8",
            "int4",
            "int8-asym",
            "binary",
            "binary-scaled",
            "binary-stochastic",
            "binary-stochastic-scaled",
            "ternary",
            "ttq",
            "kmeans4",
        ] {
            let scheme: WeightScheme = text.parse().unwrap();
            assert_eq!(scheme.to_string(), text);
        }
        assert_eq!(
            "int4".parse::<WeightScheme>().unwrap(),
            WeightScheme::Linear {
                bits: 4,
                symmetric: true
            }
        );
        for bad in ["int1", "int17", "kmeans9", "binary-x", "float", "int"] {
            assert!(bad.parse::<WeightScheme>().is_err(), "{bad}");
        }
    }

    #[test]
    fn config_round_trips_through_json() {
        let mut config = QuantConfig::uniform(
            Some(WeightQuant {
                scheme: WeightScheme::KMeans { bits: 3 },
                per_channel: true,
            }),
            Some(ActivationQuant {
                bits: 8,
                symmetric: false,
                method: Method::Percentile(99.9),
            }),
        );
        config.layers.insert("fc".into(), LayerQuant::default());
        config.activation_ranges.insert("x".into(), (-1.0, 2.5));
        let json = serde_json::to_string(&config).unwrap();
        let back: QuantConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config);
        assert_eq!(back.layer("fc").weights, None);
        assert_eq!(back.layer("conv").weights, config.default.weights);
    }
}
