//! Weight quantizers for training: the forward of each scheme is the tensor quantizer of
//! [`crate::quant`] (the one a quantized model uses after training), and beside it the backward
//! rule that turns the gradient of the quantized weights Ŵ into gradients of what is trained.
//!
//! * Linear (N-bit, per tensor or per channel, min-max or manual range): the STE, gradient 1
//!   where the latent weight lies inside its channel's clip range, 0 outside.
//! * Binary (BinaryConnect, deterministic or stochastic; optionally scaled by α = mean|W|):
//!   b = sign(w) with the hard-tanh STE 1{|w| ≤ 1}; with α, the exact chain rule through
//!   Ŵ = α·b, ∂L/∂w_i = α·g_i·1{|w_i| ≤ 1} + sign(w_i)/n·Σ_j g_j·b_j. Latent weights are clipped to
//!   [−1, 1] after each update (BinaryConnect).
//! * TWN: Ŵ from [`ternarize`] (Δ = 0.7·E|W|, α); the STE, ∂L/∂w = ∂L/∂Ŵ.
//! * TTQ: codes from [`ternarize`] with threshold Δ = t·max|W| (t a setting), the scales Wp and
//!   Wn learned: ∂L/∂Wp = Σ_{Ŵ=+Wp} g, ∂L/∂Wn = −Σ_{Ŵ=−Wn} g (Wn is a magnitude, Ŵ = −Wn), and
//!   the latent weights get the paper's scaled gradients Wp·g, g, Wn·g on the positive, zero and
//!   negative codes. The optimizer steps the scales in log coordinates (ln Wp, with
//!   ∂L/∂ln Wp = Wp·∂L/∂Wp): a step then changes a scale by a fraction of itself, whatever the
//!   layer's weight magnitude, and the scales stay positive. In plain coordinates Adam moves a
//!   scale of 0.05 by its learning rate per step, and training diverges.
//! * K-means: the codebook from [`kmeans`] on the float weights; the indices stay fixed and
//!   each centroid's gradient is the sum of the gradients of the weights assigned to it (the
//!   lecture's figure). The latent weights are not trained.

pub mod xnor;

use ndarray::ArrayD;

use crate::error::{Error, Result};
use crate::ir::Tensor;
use crate::quant::WeightScheme;
use crate::quant::binary::{Binarization, BinaryConfig, binarize};
use crate::quant::channels::{ChannelLayout, Granularity};
use crate::quant::config::WeightQuant;
use crate::quant::kmeans::{KMeansConfig, KMeansQuantized, kmeans};
use crate::quant::ternary::{Ternarized, TernaryMethod, ternarize};

/// The state of one scheme.
#[derive(Debug, Clone)]
enum Rule {
    Linear {
        manual: Option<(f32, f32)>,
    },
    Binary {
        scaled: bool,
        stochastic: bool,
    },
    Twn,
    Ttq {
        threshold: f32,
        wp: Vec<f32>,
        wn: Vec<f32>,
    },
    KMeans {
        quantized: KMeansQuantized,
    },
}

/// What the last training forward left for the backward pass.
#[derive(Debug, Clone)]
enum Saved {
    /// Linear: the representable range of each channel.
    Ranges(Vec<(f32, f32)>),
    /// Binary: the codes and α per channel.
    Binary { codes: ArrayD<i8>, alpha: Vec<f32> },
    /// TTQ: the codes.
    Codes(ArrayD<i8>),
}

/// The gradients one backward step produces.
#[derive(Debug, Clone)]
pub struct WeightGrads {
    /// For the latent (float) weights; None when they are not trained (k-means).
    pub latent: Option<ArrayD<f32>>,
    /// For the scheme's own parameters in the coordinates of [`WeightQuantizer::own_params`]
    /// (TTQ: ln Wp then ln Wn per channel; k-means: the codebooks one after the other); empty
    /// when it has none.
    pub own: Vec<f32>,
}

/// One quantized weight tensor during training.
#[derive(Debug, Clone)]
pub struct WeightQuantizer {
    pub tensor: String,
    /// The (first) layer reading it.
    pub node: String,
    pub quant: WeightQuant,
    granularity: Granularity,
    layout: ChannelLayout,
    rule: Rule,
    saved: Option<Saved>,
}

fn error(tensor: &str, msg: impl Into<String>) -> Error {
    Error::Quant {
        tensor: tensor.to_string(),
        msg: msg.into(),
    }
}

impl WeightQuantizer {
    /// The quantizer of `tensor` (read by `node`) under `quant`, with the manual clip range of
    /// the configuration (linear schemes) and the TTQ threshold factor `ttq_threshold`.
    pub fn new(
        tensor: &Tensor,
        node: &str,
        quant: &WeightQuant,
        manual: Option<(f32, f32)>,
        ttq_threshold: f32,
    ) -> Result<Self> {
        let name = tensor.name.as_str();
        let values = tensor
            .data
            .as_f32()
            .ok_or_else(|| error(name, "integer tensors are not quantized"))?;
        // As QuantizedModel::prepare: per channel on the tensor's channel axis, unless a manual
        // (per-tensor) range is set.
        let manual = manual.filter(|_| quant.scheme.is_linear());
        let granularity = match (quant.per_channel, tensor.channel_axis) {
            (true, Some(axis)) if manual.is_none() => Granularity::PerChannel { axis },
            _ => Granularity::PerTensor,
        };
        let layout = granularity
            .layout(values.shape())
            .map_err(|e| error(name, e.0))?;
        let rule = match quant.scheme {
            WeightScheme::Linear { .. } => Rule::Linear { manual },
            WeightScheme::Binary { scaled, stochastic } => Rule::Binary { scaled, stochastic },
            WeightScheme::Ternary { ttq: false } => Rule::Twn,
            WeightScheme::Ternary { ttq: true } => {
                let method = TernaryMethod::Ttq {
                    threshold: ttq_threshold,
                };
                let t =
                    ternarize(values.view(), method, granularity).map_err(|e| error(name, e.0))?;
                let (wp, wn) = positive_scales(t.wp, t.wn, &t.delta);
                Rule::Ttq {
                    threshold: ttq_threshold,
                    wp,
                    wn,
                }
            }
            WeightScheme::KMeans { bits } => {
                let quantized = kmeans(values.view(), &KMeansConfig::new(bits, granularity))
                    .map_err(|e| error(name, e.0))?;
                Rule::KMeans { quantized }
            }
        };
        Ok(WeightQuantizer {
            tensor: name.to_string(),
            node: node.to_string(),
            quant: *quant,
            granularity,
            layout,
            rule,
            saved: None,
        })
    }

    /// Whether the latent float weights are trained (not for k-means, whose indices are fixed).
    pub fn trains_latent(&self) -> bool {
        !matches!(self.rule, Rule::KMeans { .. })
    }

    /// Ŵ for the latent weights `w` (standard layout). `training` keeps what the backward pass
    /// needs; `seed` draws the stochastic binarization of this step (deterministic sign when
    /// None, as after training).
    pub fn quantize(
        &mut self,
        w: &ArrayD<f32>,
        training: bool,
        seed: Option<u64>,
    ) -> Result<ArrayD<f32>> {
        let name = self.tensor.clone();
        let err = |e: crate::quant::QuantError| error(&name, e.0);
        let (values, saved) = match &self.rule {
            Rule::Linear { manual } => {
                let q = self
                    .quant
                    .scheme
                    .fake_quantize(w.view(), self.granularity, *manual)
                    .map_err(err)?;
                let ranges = q.params.iter().map(|p| p.range()).collect();
                (q.values, Saved::Ranges(ranges))
            }
            Rule::Binary { scaled, stochastic } => {
                let mode = match (stochastic, seed) {
                    (true, Some(seed)) => Binarization::Stochastic { seed },
                    _ => Binarization::Deterministic,
                };
                let config = BinaryConfig {
                    granularity: self.granularity,
                    scaled: *scaled,
                    mode,
                };
                let b = binarize(w.view(), &config).map_err(err)?;
                let values = b.dequantize().map_err(err)?;
                (
                    values,
                    Saved::Binary {
                        codes: b.codes,
                        alpha: b.alpha,
                    },
                )
            }
            Rule::Twn => {
                let t = ternarize(w.view(), TernaryMethod::Twn, self.granularity).map_err(err)?;
                (t.dequantize().map_err(err)?, Saved::Ranges(Vec::new()))
            }
            Rule::Ttq { threshold, wp, wn } => {
                let method = TernaryMethod::Ttq {
                    threshold: *threshold,
                };
                let t = ternarize(w.view(), method, self.granularity).map_err(err)?;
                // The codes of this step with the learned scales.
                let learned = Ternarized {
                    wp: wp.clone(),
                    wn: wn.clone(),
                    ..t
                };
                (
                    learned.dequantize().map_err(err)?,
                    Saved::Codes(learned.codes),
                )
            }
            Rule::KMeans { quantized } => (
                quantized.dequantize().map_err(err)?,
                Saved::Ranges(Vec::new()),
            ),
        };
        if training {
            self.saved = Some(saved);
        }
        Ok(values)
    }

    /// The gradients of what is trained, from the gradient `g` of Ŵ (after a training
    /// [`WeightQuantizer::quantize`] of the same latent weights `w`).
    pub fn backward(&mut self, w: &ArrayD<f32>, g: &ArrayD<f32>) -> Result<WeightGrads> {
        if g.shape() != w.shape() {
            return Err(error(&self.tensor, "gradient and weights differ in shape"));
        }
        let saved = self
            .saved
            .take()
            .ok_or_else(|| error(&self.tensor, "backward without a training forward"))?;
        let layout = self.layout;
        let channels = layout.channels.max(1);
        let ws = w
            .as_slice()
            .ok_or_else(|| error(&self.tensor, "weights not contiguous"))?;
        let g = g.as_standard_layout();
        let gs = g
            .as_slice()
            .ok_or_else(|| error(&self.tensor, "gradient not contiguous"))?;
        let shaped = |v: Vec<f32>| {
            ArrayD::from_shape_vec(w.raw_dim(), v).map_err(|e| error(&self.tensor, e.to_string()))
        };
        Ok(match (&self.rule, saved) {
            (Rule::Linear { .. }, Saved::Ranges(ranges)) => {
                let latent = gs
                    .iter()
                    .zip(ws)
                    .enumerate()
                    .map(|(i, (&g, &w))| {
                        let (lo, hi) = ranges[layout.channel_of(i).min(ranges.len() - 1)];
                        if w >= lo && w <= hi { g } else { 0.0 }
                    })
                    .collect();
                WeightGrads {
                    latent: Some(shaped(latent)?),
                    own: Vec::new(),
                }
            }
            (Rule::Binary { scaled, .. }, Saved::Binary { codes, alpha }) => {
                let codes = codes.as_standard_layout();
                let cs = codes.as_slice().unwrap_or(&[]);
                // Σ_j g_j·b_j and n per channel, for the α term.
                let mut gb = vec![0.0f64; channels];
                let mut count = vec![0usize; channels];
                for (i, (&g, &b)) in gs.iter().zip(cs).enumerate() {
                    let c = layout.channel_of(i);
                    gb[c] += f64::from(g) * f64::from(b);
                    count[c] += 1;
                }
                let latent = gs
                    .iter()
                    .zip(ws)
                    .enumerate()
                    .map(|(i, (&g, &w))| {
                        let c = layout.channel_of(i);
                        let a = if *scaled { alpha[c] } else { 1.0 };
                        let ste = if w.abs() <= 1.0 { a * g } else { 0.0 };
                        if *scaled {
                            let sign = if w > 0.0 {
                                1.0
                            } else if w < 0.0 {
                                -1.0
                            } else {
                                0.0
                            };
                            ste + sign * (gb[c] / count[c].max(1) as f64) as f32
                        } else {
                            ste
                        }
                    })
                    .collect();
                WeightGrads {
                    latent: Some(shaped(latent)?),
                    own: Vec::new(),
                }
            }
            (Rule::Twn, _) => WeightGrads {
                latent: Some(g.to_owned()),
                own: Vec::new(),
            },
            (Rule::Ttq { wp, wn, .. }, Saved::Codes(codes)) => {
                let codes = codes.as_standard_layout();
                let cs = codes.as_slice().unwrap_or(&[]);
                let mut dwp = vec![0.0f64; channels];
                let mut dwn = vec![0.0f64; channels];
                let latent = gs
                    .iter()
                    .zip(cs)
                    .enumerate()
                    .map(|(i, (&g, &code))| {
                        let c = layout.channel_of(i);
                        match code {
                            1 => {
                                dwp[c] += f64::from(g);
                                wp[c] * g
                            }
                            -1 => {
                                dwn[c] -= f64::from(g);
                                wn[c] * g
                            }
                            _ => g,
                        }
                    })
                    .collect();
                // In the optimizer's log coordinates: ∂L/∂ln Wp = Wp·∂L/∂Wp.
                let own = dwp
                    .iter()
                    .zip(wp.iter())
                    .chain(dwn.iter().zip(wn.iter()))
                    .map(|(&d, &scale)| d as f32 * scale)
                    .collect();
                WeightGrads {
                    latent: Some(shaped(latent)?),
                    own,
                }
            }
            (Rule::KMeans { quantized }, _) => {
                let indices = quantized.indices.as_standard_layout();
                let is = indices.as_slice().unwrap_or(&[]);
                let k = quantized.codebooks.first().map_or(0, Vec::len);
                let mut own = vec![0.0f64; channels * k];
                for (i, (&g, &idx)) in gs.iter().zip(is).enumerate() {
                    own[layout.channel_of(i) * k + usize::from(idx)] += f64::from(g);
                }
                WeightGrads {
                    latent: None,
                    own: own.into_iter().map(|v| v as f32).collect(),
                }
            }
            _ => {
                return Err(error(
                    &self.tensor,
                    "internal error: saved state of another scheme",
                ));
            }
        })
    }

    /// The scheme's own trained parameters in the optimizer's coordinates, flat (TTQ: ln Wp
    /// then ln Wn; k-means: the codebooks). [`WeightGrads::own`] is the gradient in the same
    /// coordinates.
    pub fn own_params(&self) -> Vec<f32> {
        match &self.rule {
            Rule::Ttq { wp, wn, .. } => wp.iter().chain(wn).map(|v| v.ln()).collect(),
            Rule::KMeans { quantized } => quantized.codebooks.concat(),
            _ => Vec::new(),
        }
    }

    /// Sets the scheme's own parameters after an optimizer step, in the coordinates of
    /// [`WeightQuantizer::own_params`].
    pub fn set_own_params(&mut self, values: &[f32]) {
        match &mut self.rule {
            Rule::Ttq { wp, wn, .. } => {
                let c = wp.len();
                if values.len() == 2 * c {
                    for (t, &v) in wp.iter_mut().chain(wn.iter_mut()).zip(values) {
                        let scale = v.exp();
                        if scale.is_finite() && scale > 0.0 {
                            *t = scale;
                        }
                    }
                }
            }
            Rule::KMeans { quantized } => {
                let k = quantized.codebooks.first().map_or(0, Vec::len);
                if values.len() == k * quantized.codebooks.len() {
                    for (book, chunk) in quantized.codebooks.iter_mut().zip(values.chunks(k.max(1)))
                    {
                        book.copy_from_slice(chunk);
                    }
                }
            }
            _ => {}
        }
    }

    /// Keeps latent weights where the scheme wants them (BinaryConnect: in [−1, 1]).
    pub fn clamp_latent(&self, w: &mut ArrayD<f32>) {
        if let Rule::Binary { .. } = self.rule {
            w.mapv_inplace(|v| v.clamp(-1.0, 1.0));
        }
    }

    /// The setting the trained weights are stored with: stochastic binarization becomes the
    /// deterministic sign (the trained model is evaluated and exported deterministically).
    pub fn result_quant(&self) -> WeightQuant {
        let scheme = match self.quant.scheme {
            WeightScheme::Binary { scaled, .. } => WeightScheme::Binary {
                scaled,
                stochastic: false,
            },
            other => other,
        };
        WeightQuant {
            scheme,
            per_channel: self.quant.per_channel,
        }
    }

    /// The manual range of a linear scheme, if the configuration set one.
    pub fn manual_range(&self) -> Option<(f32, f32)> {
        match self.rule {
            Rule::Linear { manual } => manual,
            _ => None,
        }
    }

    /// The TTQ scales (Wp, Wn) per channel.
    pub fn ttq_scales(&self) -> Option<(&[f32], &[f32])> {
        match &self.rule {
            Rule::Ttq { wp, wn, .. } => Some((wp, wn)),
            _ => None,
        }
    }

    /// The k-means codebooks (one per channel, or one).
    pub fn codebooks(&self) -> Option<&[Vec<f32>]> {
        match &self.rule {
            Rule::KMeans { quantized } => Some(&quantized.codebooks),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;

/// TTQ's initial scales made positive (trained in log coordinates): a channel without positive
/// (or negative) weights beyond Δ starts that scale from the other one, or from Δ itself.
fn positive_scales(mut wp: Vec<f32>, mut wn: Vec<f32>, delta: &[f32]) -> (Vec<f32>, Vec<f32>) {
    for (c, (p, n)) in wp.iter_mut().zip(wn.iter_mut()).enumerate() {
        let fallback = delta.get(c).copied().filter(|d| *d > 0.0).unwrap_or(1e-3);
        let usable = |v: f32| v.is_finite() && v > 0.0;
        match (usable(*p), usable(*n)) {
            (true, true) => {}
            (true, false) => *n = *p,
            (false, true) => *p = *n,
            (false, false) => (*p, *n) = (fallback, fallback),
        }
    }
    (wp, wn)
}
