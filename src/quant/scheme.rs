//! [`WeightScheme`]: how a weight tensor is quantized (linear, binary, ternary, k-means), with
//! everything that differs by scheme in one place: its name in configs and on the command line,
//! its bits and storage, its scalar quantizer ([`WeightScheme::quantizer`]: what the
//! distribution view draws, the histogram estimate integrates and explain mode spells out) and
//! the whole-tensor quantizer a quantized model uses ([`WeightScheme::fake_quantize`]).

use std::fmt;
use std::str::FromStr;

use ndarray::{ArrayD, ArrayViewD};
use serde::{Deserialize, Serialize};

use super::binary::{Binarization, BinaryConfig, binarize};
use super::channels::Granularity;
use super::cost::StorageScheme;
use super::grid::{IntGrid, LinearParams, QuantError};
use super::kmeans::{KMeansConfig, kmeans};
use super::linear::{self, LinearConfig, Rounding};
use super::scalar::{Quantizer, ScaleStats, linear_params};
use super::ternary::{TTQ_DEFAULT_THRESHOLD, TernaryMethod, ternarize};

/// Seed of the stochastic binarization (fixed so a config always gives the same model).
const STOCHASTIC_SEED: u64 = 0x5155_414e_5453_434f;

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

    /// Whether the scheme is linear: it has a clip range (calibrated or set by hand).
    pub fn is_linear(&self) -> bool {
        matches!(self, WeightScheme::Linear { .. })
    }

    /// Whether the scheme is linear and symmetric (Z = 0): its clip range is mirrored about 0.
    pub fn is_symmetric(&self) -> bool {
        matches!(
            self,
            WeightScheme::Linear {
                symmetric: true,
                ..
            }
        )
    }

    /// The index width of a k-means scheme (None for the others).
    pub fn kmeans_bits(&self) -> Option<u32> {
        match self {
            WeightScheme::KMeans { bits } => Some(*bits),
            _ => None,
        }
    }

    /// How a tensor quantized with this scheme is stored (one set of parameters per channel
    /// when `per_channel`), for the size accounting of [`super::cost`].
    pub fn storage(&self, per_channel: bool) -> StorageScheme {
        match *self {
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

    /// The scalar quantizer of one tensor or channel: linear schemes from the clip range `clip`
    /// (on an unsigned grid when `unsigned`, for non-negative activations), binary and ternary
    /// from the scales `scales`, k-means from `codebook` (an error while it is not computed).
    pub fn quantizer(
        &self,
        unsigned: bool,
        clip: (f32, f32),
        scales: &ScaleStats,
        codebook: Option<&[f32]>,
    ) -> Result<Quantizer, QuantError> {
        match *self {
            WeightScheme::Linear { bits, symmetric } => Ok(Quantizer::Linear(linear_params(
                bits, symmetric, unsigned, clip,
            )?)),
            WeightScheme::Binary { scaled, .. } => Ok(Quantizer::Binary {
                alpha: if scaled { scales.mean_abs } else { 1.0 },
            }),
            WeightScheme::Ternary { ttq } => {
                let t = scales.ternary(ttq);
                Ok(Quantizer::Ternary {
                    delta: t.delta,
                    wp: t.wp,
                    wn: t.wn,
                })
            }
            WeightScheme::KMeans { .. } => match codebook {
                Some(book) if !book.is_empty() => Quantizer::codebook(book),
                _ => Err(QuantError(
                    "the k-means codebook is not computed yet".into(),
                )),
            },
        }
    }

    /// Quantizes `values` with this scheme and de-quantizes them again, per tensor or per
    /// channel. Linear schemes take their clip range from `range` (one for the whole tensor)
    /// or else from each channel's min and max; the others compute their scales from the
    /// values and ignore `range`.
    pub fn fake_quantize(
        &self,
        values: ArrayViewD<'_, f32>,
        granularity: Granularity,
        range: Option<(f32, f32)>,
    ) -> Result<FakeQuantized, QuantError> {
        self.fake_quantize_in(values, granularity, range.map(|r| vec![r]))
    }

    /// [`Self::fake_quantize`] with linear schemes' clip ranges given: one for the whole
    /// tensor, or one per channel of `granularity` (calibrated weight ranges, say); min-max
    /// when None.
    pub fn fake_quantize_in(
        &self,
        values: ArrayViewD<'_, f32>,
        granularity: Granularity,
        ranges: Option<Vec<(f32, f32)>>,
    ) -> Result<FakeQuantized, QuantError> {
        let (values, ranges, params) = match *self {
            WeightScheme::Linear { bits, symmetric } => {
                let config = LinearConfig {
                    grid: IntGrid::new(bits, true, false)?,
                    symmetric,
                    granularity,
                    rounding: Rounding::NearestEven,
                };
                let ranges = match ranges {
                    Some(ranges) => ranges,
                    None => linear::minmax_ranges(values.view(), granularity)?,
                };
                let params = linear::params(values.view(), &config, &ranges)?;
                let values =
                    linear::fake_quantize(values.view(), &params, granularity, config.rounding)?;
                (values, ranges, params)
            }
            WeightScheme::Binary { scaled, stochastic } => {
                let mode = if stochastic {
                    Binarization::Stochastic {
                        seed: STOCHASTIC_SEED,
                    }
                } else {
                    Binarization::Deterministic
                };
                let config = BinaryConfig {
                    granularity,
                    scaled,
                    mode,
                };
                let values = binarize(values.view(), &config)?.dequantize()?;
                (values, Vec::new(), Vec::new())
            }
            WeightScheme::Ternary { .. } => {
                let values =
                    ternarize(values.view(), self.ternary_method(), granularity)?.dequantize()?;
                (values, Vec::new(), Vec::new())
            }
            WeightScheme::KMeans { bits } => {
                let values =
                    kmeans(values.view(), &KMeansConfig::new(bits, granularity))?.dequantize()?;
                (values, Vec::new(), Vec::new())
            }
        };
        Ok(FakeQuantized {
            values,
            ranges,
            params,
        })
    }
}

/// A tensor quantized and de-quantized by [`WeightScheme::fake_quantize`].
#[derive(Debug, Clone, PartialEq)]
pub struct FakeQuantized {
    /// The de-quantized values, in the shape of the input.
    pub values: ArrayD<f32>,
    /// Linear schemes: the clip range and (S, Z) of each channel (one per tensor); empty for
    /// the others.
    pub ranges: Vec<(f32, f32)>,
    pub params: Vec<LinearParams>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::scalar::{SchemeStats, TernaryParams};
    use crate::quant::test_support::gaussian_like;

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
    fn quantizers_take_their_scales_from_the_scheme() {
        let stats = ScaleStats {
            mean_abs: 0.5,
            max_abs: 2.0,
            twn: TernaryParams {
                delta: 0.35,
                wp: 0.9,
                wn: 0.9,
            },
            ttq: TernaryParams {
                delta: 0.1,
                wp: 0.8,
                wn: 0.6,
            },
        };
        let quantizer = |scheme: WeightScheme, codebook: Option<&[f32]>| {
            scheme.quantizer(false, (-1.0, 2.0), &stats, codebook)
        };
        // 2-bit asymmetric on [−1, 2]: S = 1, Z = −1.
        let linear = WeightScheme::Linear {
            bits: 2,
            symmetric: false,
        };
        assert_eq!(
            quantizer(linear, None).unwrap(),
            Quantizer::Linear(
                LinearParams::from_scale_zero(1.0, -1, IntGrid::new(2, true, false).unwrap())
                    .unwrap()
            )
        );
        assert_eq!(
            quantizer(WeightScheme::Ternary { ttq: false }, None).unwrap(),
            Quantizer::Ternary {
                delta: 0.35,
                wp: 0.9,
                wn: 0.9
            }
        );
        assert_eq!(
            quantizer(WeightScheme::Ternary { ttq: true }, None).unwrap(),
            Quantizer::Ternary {
                delta: 0.1,
                wp: 0.8,
                wn: 0.6
            }
        );
        let binary = |scaled| WeightScheme::Binary {
            scaled,
            stochastic: false,
        };
        assert_eq!(
            quantizer(binary(true), None).unwrap(),
            Quantizer::Binary { alpha: 0.5 }
        );
        assert_eq!(
            quantizer(binary(false), None).unwrap(),
            Quantizer::Binary { alpha: 1.0 }
        );
        let kmeans = WeightScheme::KMeans { bits: 2 };
        assert!(quantizer(kmeans, None).is_err());
        assert!(quantizer(kmeans, Some(&[])).is_err());
        assert_eq!(
            quantizer(kmeans, Some(&[0.5, -1.0, 0.5, 2.0])).unwrap(),
            Quantizer::Codebook(vec![-1.0, 0.5, 2.0])
        );
        assert!(linear.is_linear() && !linear.is_symmetric());
        assert!(
            WeightScheme::Linear {
                bits: 8,
                symmetric: true
            }
            .is_symmetric()
        );
        assert!(!binary(true).is_linear() && !binary(true).is_symmetric());
        assert_eq!(
            (kmeans.kmeans_bits(), linear.kmeans_bits()),
            (Some(2), None)
        );
    }

    #[test]
    fn the_scalar_quantizer_is_the_tensor_quantizer_per_value() {
        // Per tensor, the whole-tensor quantizer gives each value what the scalar quantizer
        // built from the tensor's range and scales gives it.
        let values = gaussian_like(&[16, 64], 3, 0.1);
        let stats = SchemeStats::compute(values.view(), None).tensor;
        let range = (
            values.iter().copied().fold(f32::INFINITY, f32::min),
            values.iter().copied().fold(f32::NEG_INFINITY, f32::max),
        );
        for text in [
            "int4",
            "int8-asym",
            "binary",
            "binary-scaled",
            "ternary",
            "ttq",
            "kmeans3",
        ] {
            let scheme: WeightScheme = text.parse().unwrap();
            let tensor = scheme
                .fake_quantize(values.view(), Granularity::PerTensor, None)
                .unwrap();
            let codebook = {
                let mut book: Vec<f32> = tensor.values.iter().copied().collect();
                book.sort_by(f32::total_cmp);
                book.dedup();
                book
            };
            let scalar = scheme
                .quantizer(false, range, &stats, Some(&codebook))
                .unwrap();
            let apply = scalar.applier();
            for (&x, &y) in values.iter().zip(&tensor.values) {
                assert_eq!(apply(x), y, "{text}: x = {x}");
            }
            assert_eq!(
                tensor.ranges.len(),
                usize::from(scheme.is_linear()),
                "{text}"
            );
        }
    }
}
