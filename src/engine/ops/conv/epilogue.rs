//! The fused epilogue of a convolution: a per-output-channel scale and shift (a folded
//! BatchNormalization, say), an activation and a quantize/de-quantize round trip (a QDQ
//! file's pair on the output), applied to each output channel's values while they are still
//! in cache, right after the kernel computed them.
//!
//! Per output channel `c`, the node's result becomes
//! `round_trip(activation((conv + bias[c]) · scale[c] + shift[c]))`, with a missing scale
//! meaning 1, a missing shift 0 and a missing activation or round trip the identity. A plan-time rewrite attaches an epilogue to a Conv or ConvTranspose node of
//! its inference copy of the graph with [`ConvEpilogue::write_to`] (plain node attributes, so
//! nothing else has to carry it); the kernels read it back with [`ConvEpilogue::from_node`].
//! Each activation computes exactly what the engine's standalone operator of that name does.

use crate::engine::ops::Quantizer;
use crate::engine::ops::elementwise::math;
use crate::ir::{Attribute, Node};

use super::OpError;
use super::simd::wide_fn;

wide_fn! {
    /// [`ConvEpilogue::apply_plain`] in wide vectors.
    fn apply_wide(e: &ConvEpilogue, channel: usize, values: &mut [f32]) => ConvEpilogue::apply_plain
}

/// Attribute holding the per-channel scale (floats, one per output channel).
pub const SCALE_ATTR: &str = "quantscope.epilogue.scale";
/// Attribute holding the per-channel shift (floats, one per output channel).
pub const SHIFT_ATTR: &str = "quantscope.epilogue.shift";
/// Attribute naming the activation (string: the ONNX operator name, or "Silu").
pub const ACTIVATION_ATTR: &str = "quantscope.epilogue.activation";
/// The activation's first parameter (Clip min, LeakyRelu / HardSigmoid alpha).
pub const ALPHA_ATTR: &str = "quantscope.epilogue.alpha";
/// The activation's second parameter (Clip max, HardSigmoid beta).
pub const BETA_ATTR: &str = "quantscope.epilogue.beta";
/// Attribute of the output grid `[scale, zero point, qmin, qmax]` ([`ConvEpilogue::round_trip`]).
pub const ROUND_TRIP_ATTR: &str = "quantscope.epilogue.round_trip";

/// An activation a convolution can apply to its output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, min), max)` (ReLU6 is `Clip { min: 0, max: 6 }`).
    Clip { min: f32, max: f32 },
    /// `x` for `x ≥ 0`, else `alpha · x`.
    LeakyRelu { alpha: f32 },
    /// `1 / (1 + e^−x)`.
    Sigmoid,
    /// `x · sigmoid(x)` (Sigmoid followed by Mul with its input; also called swish).
    Silu,
    /// `x · clamp(x / 6 + 1/2, 0, 1)`.
    HardSwish,
    /// `clamp(alpha · x + beta, 0, 1)`.
    HardSigmoid { alpha: f32, beta: f32 },
}

impl Activation {
    /// The activation of one value.
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Relu => relu(x),
            Activation::Clip { min, max } => clip(x, min, max),
            Activation::LeakyRelu { alpha } => leaky_relu(x, alpha),
            Activation::Sigmoid => sigmoid(x),
            Activation::Silu => x * sigmoid(x),
            Activation::HardSwish => hard_swish(x),
            Activation::HardSigmoid { alpha, beta } => (alpha * x + beta).clamp(0.0, 1.0),
        }
    }

    /// Applies the activation to every value of `values` (one loop per kind, so it
    /// vectorizes where the kind allows).
    #[inline(always)]
    pub fn apply_slice(self, values: &mut [f32]) {
        match self {
            Activation::Relu => values.iter_mut().for_each(|v| *v = relu(*v)),
            Activation::Clip { min, max } => {
                values.iter_mut().for_each(|v| *v = clip(*v, min, max));
            }
            Activation::LeakyRelu { alpha } => {
                values.iter_mut().for_each(|v| *v = leaky_relu(*v, alpha));
            }
            Activation::Sigmoid => math::map_in_place(values, math::sigmoid),
            Activation::Silu => math::map_in_place(values, |v| v * math::sigmoid(v)),
            Activation::HardSwish => values.iter_mut().for_each(|v| *v = hard_swish(*v)),
            Activation::HardSigmoid { alpha, beta } => values
                .iter_mut()
                .for_each(|v| *v = (alpha * *v + beta).clamp(0.0, 1.0)),
        }
    }

    /// The name stored in [`ACTIVATION_ATTR`] and its two parameters.
    fn encode(self) -> (&'static str, f32, f32) {
        match self {
            Activation::Relu => ("Relu", 0.0, 0.0),
            Activation::Clip { min, max } => ("Clip", min, max),
            Activation::LeakyRelu { alpha } => ("LeakyRelu", alpha, 0.0),
            Activation::Sigmoid => ("Sigmoid", 0.0, 0.0),
            Activation::Silu => ("Silu", 0.0, 0.0),
            Activation::HardSwish => ("HardSwish", 0.0, 0.0),
            Activation::HardSigmoid { alpha, beta } => ("HardSigmoid", alpha, beta),
        }
    }

    fn decode(name: &str, alpha: f32, beta: f32) -> Result<Activation, OpError> {
        Ok(match name {
            "Relu" => Activation::Relu,
            "Clip" => Activation::Clip {
                min: alpha,
                max: beta,
            },
            "LeakyRelu" => Activation::LeakyRelu { alpha },
            "Sigmoid" => Activation::Sigmoid,
            "Silu" => Activation::Silu,
            "HardSwish" => Activation::HardSwish,
            "HardSigmoid" => Activation::HardSigmoid { alpha, beta },
            other => {
                return Err(OpError(format!(
                    "attribute '{ACTIVATION_ATTR}' names an unknown activation '{other}'"
                )));
            }
        })
    }
}

#[inline]
fn relu(x: f32) -> f32 {
    if x < 0.0 { 0.0 } else { x }
}

#[inline]
fn clip(x: f32, min: f32, max: f32) -> f32 {
    let x = if x < min { min } else { x };
    if x > max { max } else { x }
}

#[inline]
fn leaky_relu(x: f32, alpha: f32) -> f32 {
    if x >= 0.0 { x } else { alpha * x }
}

/// The Sigmoid operator's own function (bit-identical results fused or not).
#[inline]
fn sigmoid(x: f32) -> f32 {
    math::sigmoid(x)
}

#[inline]
fn hard_swish(x: f32) -> f32 {
    x * (x / 6.0 + 0.5).clamp(0.0, 1.0)
}

/// What a convolution applies to its output channels after the bias (see the module docs).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConvEpilogue {
    /// Per output channel multiplier (None: 1).
    pub scale: Option<Vec<f32>>,
    /// Per output channel offset, added after the scale (None: 0).
    pub shift: Option<Vec<f32>>,
    /// Applied after the scale and shift (None: identity).
    pub activation: Option<Activation>,
    /// Applied last: the output quantized and de-quantized on this grid (a QDQ file's
    /// QuantizeLinear/DequantizeLinear pair on the convolution's output; None: identity).
    pub round_trip: Option<Quantizer>,
}

impl ConvEpilogue {
    /// Whether the epilogue changes nothing.
    pub fn is_identity(&self) -> bool {
        self.scale.is_none()
            && self.shift.is_none()
            && self.activation.is_none()
            && self.round_trip.is_none()
    }

    /// Stores the epilogue in `node`'s attributes (replacing any earlier one).
    pub fn write_to(&self, node: &mut Node) {
        for name in [
            SCALE_ATTR,
            SHIFT_ATTR,
            ACTIVATION_ATTR,
            ALPHA_ATTR,
            BETA_ATTR,
            ROUND_TRIP_ATTR,
        ] {
            node.attributes.remove(name);
        }
        let attrs = &mut node.attributes;
        if let Some(s) = &self.scale {
            attrs.insert(SCALE_ATTR.into(), Attribute::Floats(s.clone()));
        }
        if let Some(s) = &self.shift {
            attrs.insert(SHIFT_ATTR.into(), Attribute::Floats(s.clone()));
        }
        if let Some(act) = self.activation {
            let (name, alpha, beta) = act.encode();
            attrs.insert(ACTIVATION_ATTR.into(), Attribute::String(name.into()));
            attrs.insert(ALPHA_ATTR.into(), Attribute::Float(alpha));
            attrs.insert(BETA_ATTR.into(), Attribute::Float(beta));
        }
        if let Some(q) = self.round_trip {
            attrs.insert(
                ROUND_TRIP_ATTR.into(),
                Attribute::Floats(q.to_array().to_vec()),
            );
        }
    }

    /// The epilogue stored in `node`'s attributes, if any.
    pub fn from_node(node: &Node) -> Result<Option<ConvEpilogue>, OpError> {
        let scale = node.attr_floats(SCALE_ATTR)?;
        let shift = node.attr_floats(SHIFT_ATTR)?;
        let activation = if node.attributes.contains_key(ACTIVATION_ATTR) {
            let name = node.attr_string(ACTIVATION_ATTR, "")?;
            let alpha = node.attr_float(ALPHA_ATTR, 0.0)?;
            let beta = node.attr_float(BETA_ATTR, 0.0)?;
            Some(Activation::decode(&name, alpha, beta)?)
        } else {
            None
        };
        let round_trip = match node.attr_floats(ROUND_TRIP_ATTR)? {
            None => None,
            Some(grid) => {
                let grid = <[f32; 4]>::try_from(grid.as_slice())
                    .ok()
                    .and_then(Quantizer::from_array);
                Some(grid.ok_or_else(|| {
                    OpError(format!("attribute '{ROUND_TRIP_ATTR}' is not a grid"))
                })?)
            }
        };
        let epilogue = ConvEpilogue {
            scale,
            shift,
            activation,
            round_trip,
        };
        Ok((!epilogue.is_identity()).then_some(epilogue))
    }

    /// Checks the scale and shift hold one value per output channel (`channels`).
    pub fn check(&self, channels: usize) -> Result<(), OpError> {
        for (name, v) in [(SCALE_ATTR, &self.scale), (SHIFT_ATTR, &self.shift)] {
            if let Some(v) = v
                && v.len() != channels
            {
                return Err(OpError(format!(
                    "attribute '{name}' has {} values, expected {channels} (one per output channel)",
                    v.len()
                )));
            }
        }
        Ok(())
    }

    /// Applies the epilogue to `values`, all of output channel `channel` (checked with
    /// [`ConvEpilogue::check`] beforehand).
    pub fn apply(&self, channel: usize, values: &mut [f32]) {
        apply_wide(self, channel, values);
    }

    /// [`ConvEpilogue::apply`] compiled for the caller's instruction set.
    #[inline(always)]
    pub(super) fn apply_plain(&self, channel: usize, values: &mut [f32]) {
        let s = self.scale.as_ref().map(|s| s[channel]);
        let t = self.shift.as_ref().map(|t| t[channel]);
        match (s, t) {
            (Some(s), Some(t)) => values.iter_mut().for_each(|v| *v = *v * s + t),
            (Some(s), None) => values.iter_mut().for_each(|v| *v *= s),
            (None, Some(t)) => values.iter_mut().for_each(|v| *v += t),
            (None, None) => {}
        }
        if let Some(act) = self.activation {
            act.apply_slice(values);
        }
        if let Some(q) = &self.round_trip {
            q.round_trip_in_place(values);
        }
    }

    /// Applies the epilogue to `planes`: consecutive output channel planes of `plane`
    /// values, the first being channel `m0`.
    pub fn apply_planes(&self, planes: &mut [f32], plane: usize, m0: usize) {
        if plane == 0 {
            return;
        }
        for (i, p) in planes.chunks_mut(plane).enumerate() {
            self.apply(m0 + i, p);
        }
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, IxDyn};

    use super::super::super::testutil::{Rng, assert_arrays_close, err, node, run1};
    use super::*;
    use crate::ir::Attribute;

    /// Every activation with its standalone operator (op type, attributes, extra inputs).
    fn activations() -> Vec<(Activation, Node, Vec<ArrayD<f32>>)> {
        let scalar = |v: f32| ArrayD::from_elem(IxDyn(&[]), v);
        vec![
            (Activation::Relu, node("Relu", 1, 1, vec![]), vec![]),
            (
                Activation::Clip { min: 0.0, max: 6.0 },
                node("Clip", 3, 1, vec![]),
                vec![scalar(0.0), scalar(6.0)],
            ),
            (
                Activation::LeakyRelu { alpha: 0.1 },
                node("LeakyRelu", 1, 1, vec![("alpha", Attribute::Float(0.1))]),
                vec![],
            ),
            (Activation::Sigmoid, node("Sigmoid", 1, 1, vec![]), vec![]),
            (
                Activation::HardSwish,
                node("HardSwish", 1, 1, vec![]),
                vec![],
            ),
            (
                Activation::HardSigmoid {
                    alpha: 1.0 / 6.0,
                    beta: 0.5,
                },
                node(
                    "HardSigmoid",
                    1,
                    1,
                    vec![
                        ("alpha", Attribute::Float(1.0 / 6.0)),
                        ("beta", Attribute::Float(0.5)),
                    ],
                ),
                vec![],
            ),
        ]
    }

    /// The standalone operator applied to `x`.
    fn standalone(op: &Node, extra: &[ArrayD<f32>], x: &ArrayD<f32>) -> ArrayD<f32> {
        let mut inputs = vec![Some(x)];
        inputs.extend(extra.iter().map(Some));
        run1(op, &inputs)
    }

    #[test]
    fn activations_match_their_operators() {
        let x = Rng::new(3).array(&[2, 3, 7, 5]).mapv(|v| v * 9.0);
        for (act, op, extra) in activations() {
            let mut got = x.clone();
            act.apply_slice(got.as_slice_mut().unwrap());
            let want = standalone(&op, &extra, &x);
            assert_eq!(got, want, "{act:?}");
            assert!(want.iter().zip(x.iter()).all(|(y, v)| act.apply(*v) == *y));
        }
        // SiLU is Sigmoid then Mul by the input.
        let sig = standalone(&node("Sigmoid", 1, 1, vec![]), &[], &x);
        let want = &sig * &x;
        let mut got = x.clone();
        Activation::Silu.apply_slice(got.as_slice_mut().unwrap());
        assert_eq!(got, want);
    }

    #[test]
    fn fused_conv_equals_conv_then_scale_shift_then_activation() {
        let mut rng = Rng::new(11);
        let x = rng.array(&[2, 4, 9, 8]);
        let w = rng.array(&[6, 2, 3, 3]);
        let b = rng.array(&[6]);
        let scale: Vec<f32> = (0..6).map(|i| 0.5 + i as f32 * 0.3).collect();
        let shift: Vec<f32> = (0..6).map(|i| i as f32 * 0.2 - 0.5).collect();
        let attrs = || {
            vec![
                ("group", Attribute::Int(2)),
                ("pads", Attribute::Ints(vec![1, 0, 1, 2])),
            ]
        };
        let plain = run1(
            &node("Conv", 3, 1, attrs()),
            &[Some(&x), Some(&w), Some(&b)],
        );
        for (act, op, extra) in activations() {
            let epilogue = ConvEpilogue {
                scale: Some(scale.clone()),
                shift: Some(shift.clone()),
                activation: Some(act),
                round_trip: None,
            };
            let mut fused = node("Conv", 3, 1, attrs());
            epilogue.write_to(&mut fused);
            assert_eq!(ConvEpilogue::from_node(&fused).unwrap(), Some(epilogue));
            let got = run1(&fused, &[Some(&x), Some(&w), Some(&b)]);
            let mut affine = plain.clone();
            for (i, v) in affine.indexed_iter_mut() {
                *v = *v * scale[i[1]] + shift[i[1]];
            }
            let want = standalone(&op, &extra, &affine);
            assert_arrays_close(&got, &want, 1e-6, &format!("{act:?}"));
        }
    }

    #[test]
    fn epilogue_attributes_round_trip_and_are_checked() {
        let mut n = node("Conv", 2, 1, vec![]);
        assert_eq!(ConvEpilogue::from_node(&n).unwrap(), None);
        let only_shift = ConvEpilogue {
            shift: Some(vec![1.0, 2.0]),
            ..ConvEpilogue::default()
        };
        only_shift.write_to(&mut n);
        assert_eq!(ConvEpilogue::from_node(&n).unwrap(), Some(only_shift));
        ConvEpilogue::default().write_to(&mut n);
        assert_eq!(ConvEpilogue::from_node(&n).unwrap(), None);

        let x = Rng::new(1).array(&[1, 1, 4, 4]);
        let w = Rng::new(2).array(&[3, 1, 1, 1]);
        let mut bad = node("Conv", 2, 1, vec![]);
        ConvEpilogue {
            scale: Some(vec![1.0; 2]),
            ..ConvEpilogue::default()
        }
        .write_to(&mut bad);
        let msg = err(&bad, &[Some(&x), Some(&w)]);
        assert!(
            msg.contains(SCALE_ATTR) && msg.contains("expected 3"),
            "{msg}"
        );
        let mut unknown = node("Conv", 2, 1, vec![]);
        unknown
            .attributes
            .insert(ACTIVATION_ATTR.into(), Attribute::String("Gelu".into()));
        let msg = err(&unknown, &[Some(&x), Some(&w)]);
        assert!(msg.contains("unknown activation 'Gelu'"), "{msg}");
    }
}
