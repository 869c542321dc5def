//! The activation functions a recurrent layer may name, with their alpha/beta parameters.

use super::super::OpError;

/// One activation of a recurrent layer's `activations` list.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Activation {
    Relu,
    Tanh,
    Sigmoid,
    /// alpha·x + beta
    Affine(f32, f32),
    LeakyRelu(f32),
    ThresholdedRelu(f32),
    /// alpha·tanh(beta·x)
    ScaledTanh(f32, f32),
    HardSigmoid(f32, f32),
    Elu(f32),
    Softsign,
    Softplus,
}

impl Activation {
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Relu => x.max(0.0),
            Activation::Tanh => x.tanh(),
            Activation::Sigmoid => {
                if x >= 0.0 {
                    1.0 / (1.0 + (-x).exp())
                } else {
                    let e = x.exp();
                    e / (1.0 + e)
                }
            }
            Activation::Affine(a, b) => a * x + b,
            Activation::LeakyRelu(a) => {
                if x >= 0.0 {
                    x
                } else {
                    a * x
                }
            }
            Activation::ThresholdedRelu(a) => {
                if x > a {
                    x
                } else {
                    0.0
                }
            }
            Activation::ScaledTanh(a, b) => a * (b * x).tanh(),
            Activation::HardSigmoid(a, b) => (a * x + b).clamp(0.0, 1.0),
            Activation::Elu(a) => {
                if x >= 0.0 {
                    x
                } else {
                    a * x.exp_m1()
                }
            }
            Activation::Softsign => x / (1.0 + x.abs()),
            Activation::Softplus => super::super::math::softplus_f(x),
        }
    }
}

/// Parses an `activations` list (names case-insensitive). Functions taking parameters consume
/// the next value of `alphas` (and `betas`) in list order, or take their default when the list
/// is exhausted: 0.01 for LeakyRelu, (0.2, 0.5) for HardSigmoid, 1 for Elu and 0 otherwise,
/// as onnxruntime does.
pub(super) fn parse_activations(
    names: &[String],
    alphas: &[f32],
    betas: &[f32],
) -> Result<Vec<Activation>, OpError> {
    let mut alphas = alphas.iter().copied();
    let mut betas = betas.iter().copied();
    names
        .iter()
        .map(|name| {
            let lower = name.to_ascii_lowercase();
            let mut alpha = |default: f32| alphas.next().unwrap_or(default);
            Ok(match lower.as_str() {
                "relu" => Activation::Relu,
                "tanh" => Activation::Tanh,
                "sigmoid" => Activation::Sigmoid,
                "softsign" => Activation::Softsign,
                "softplus" => Activation::Softplus,
                "leakyrelu" => Activation::LeakyRelu(alpha(0.01)),
                "thresholdedrelu" => Activation::ThresholdedRelu(alpha(0.0)),
                "elu" => Activation::Elu(alpha(1.0)),
                "affine" => {
                    let a = alpha(0.0);
                    Activation::Affine(a, betas.next().unwrap_or(0.0))
                }
                "scaledtanh" => {
                    let a = alpha(0.0);
                    Activation::ScaledTanh(a, betas.next().unwrap_or(0.0))
                }
                "hardsigmoid" => {
                    let a = alpha(0.2);
                    Activation::HardSigmoid(a, betas.next().unwrap_or(0.5))
                }
                _ => {
                    return Err(OpError(format!(
                        "unknown activation '{name}' (expected Relu, Tanh, Sigmoid, Affine, \
                         LeakyRelu, ThresholdedRelu, ScaledTanh, HardSigmoid, Elu, Softsign or \
                         Softplus)"
                    )));
                }
            })
        })
        .collect()
}
