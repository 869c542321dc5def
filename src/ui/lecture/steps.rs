//! The lecture's sections in order, each with the demo it sets up on the bundled MobileNet
//! (scheme, granularity, activation calibration, transforms, the tensor and the view to show)
//! and a two-line caption of what to look at. Sections whose feature the app does not have
//! say so and set up the closest live view.

use crate::calib::Method;
use crate::quant::config::{ActivationQuant, WeightQuant, WeightScheme};
use crate::transform::toggles::{BiasCorrection, TransformToggles};

use super::super::distribution::Tab;
use super::super::selection::Part;

/// What one step sets up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepSetup {
    /// The default weight quantization of every layer.
    pub weights: WeightQuant,
    /// The default activation quantization (None: activations in float).
    pub activations: Option<ActivationQuant>,
    /// A mixed-precision preset (`dw8-pw4`) replacing the weights per layer.
    pub preset: Option<&'static str>,
    pub transforms: TransformToggles,
    /// The layer (node name) whose tensor is shown, and which of its tensors.
    pub node: &'static str,
    pub part: Part,
    pub tab: Tab,
    /// Open the Analysis window (AdaRound, sensitivity and bit allocation live there).
    pub analysis: bool,
}

/// One section of the lecture.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LectureStep {
    pub title: &'static str,
    /// Two lines: what is on screen, and what to look at or try.
    pub caption: [&'static str; 2],
    pub setup: StepSetup,
    /// What the app does not have for this section yet (the view shown is the closest live
    /// one).
    pub missing: Option<&'static str>,
}

const fn linear(bits: u32, symmetric: bool, per_channel: bool) -> WeightQuant {
    WeightQuant {
        scheme: WeightScheme::Linear { bits, symmetric },
        per_channel,
    }
}

const fn activations(bits: u32, symmetric: bool, method: Method) -> Option<ActivationQuant> {
    Some(ActivationQuant {
        bits,
        symmetric,
        method,
    })
}

const NO_TRANSFORMS: TransformToggles = TransformToggles {
    fold_bn: false,
    equalize: false,
    absorb_bias: false,
    bias_correction: BiasCorrection::Off,
};

const FOLDED: TransformToggles = TransformToggles {
    fold_bn: true,
    ..NO_TRANSFORMS
};

const UINT8_MINMAX: Option<ActivationQuant> = activations(8, false, Method::MinMax);

const BASE: StepSetup = StepSetup {
    weights: linear(8, true, true),
    activations: UINT8_MINMAX,
    preset: None,
    transforms: NO_TRANSFORMS,
    node: "/block2/pw/Conv",
    part: Part::Weight,
    tab: Tab::Histogram,
    analysis: false,
};

/// The lecture in order.
pub const STEPS: [LectureStep; 13] = [
    LectureStep {
        title: "K-means quantization and its codebook",
        caption: [
            "2-bit k-means on a pointwise weight: four shared values (the codebook) stored once, \
             every weight an index into it.",
            "Look at where the four levels sit: dense where the weights are; the formulas list \
             the codebook. Try 3 or 4 bits.",
        ],
        setup: StepSetup {
            weights: WeightQuant {
                scheme: WeightScheme::KMeans { bits: 2 },
                per_channel: false,
            },
            ..BASE
        },
        missing: None,
    },
    LectureStep {
        title: "Linear quantization: r = S·(q − Z)",
        caption: [
            "4-bit asymmetric linear grid on the same weight: [rmin, rmax] mapped onto \
             [qmin, qmax] by the scale S and zero point Z.",
            "Drag a red clip handle: S, Z and the error change live in the formulas below the \
             plot.",
        ],
        setup: StepSetup {
            weights: linear(4, false, false),
            ..BASE
        },
        missing: None,
    },
    LectureStep {
        title: "Symmetric vs asymmetric",
        caption: [
            "A ReLU6 output (never negative) on a 4-bit symmetric signed grid: Z = 0 and half \
             the levels sit below zero, unused.",
            "Switch activations to asymmetric in Settings: all 16 levels cover [0, rmax] and \
             the error falls.",
        ],
        setup: StepSetup {
            activations: activations(4, true, Method::MinMax),
            node: "/block2/pw/Conv",
            part: Part::Input,
            ..BASE
        },
        missing: None,
    },
    LectureStep {
        title: "Per-tensor vs per-channel",
        caption: [
            "BN folded into the depthwise convolution, int8 per tensor: a few channels span \
             ±200, the others are squeezed onto a handful of levels.",
            "Compare the SQNR per tensor and per channel above the plot, and the accuracy in \
             Results; then tick per channel.",
        ],
        setup: StepSetup {
            weights: linear(8, true, false),
            transforms: FOLDED,
            node: "/block2/dw/Conv",
            tab: Tab::Channels,
            ..BASE
        },
        missing: None,
    },
    LectureStep {
        title: "Weight equalization (CLE)",
        caption: [
            "Cross-layer equalization scales channel j of a layer by 1/s and the next layer's \
             input j by s: same outputs, even ranges.",
            "The grey ghosts are the ranges before equalization; per-tensor int8 accuracy comes \
             back in Results.",
        ],
        setup: StepSetup {
            weights: linear(8, true, false),
            transforms: TransformToggles {
                equalize: true,
                ..FOLDED
            },
            node: "/block2/dw/Conv",
            tab: Tab::Channels,
            ..BASE
        },
        missing: None,
    },
    LectureStep {
        title: "AdaRound: learn to round up or down",
        caption: [
            "4-bit per-tensor weights rounded to nearest; rounding to nearest is not the best \
             reconstruction of the layer's output.",
            "Run AdaRound in the Analysis window: each layer's error against round-to-nearest \
             and the loss curves.",
        ],
        setup: StepSetup {
            weights: linear(4, true, false),
            tab: Tab::Reconstruction,
            analysis: true,
            ..BASE
        },
        missing: None,
    },
    LectureStep {
        title: "Activation calibration: EMA, batch, MSE, ACIQ, KL",
        caption: [
            "A layer's input activation with every calibration method's clip range as a dashed \
             marker; the range in force is KL (TensorRT's).",
            "Click a marker to adopt it: the table under the plot compares each method's error \
             at this bit width.",
        ],
        setup: StepSetup {
            activations: activations(8, false, Method::Kl),
            node: "/block3/project/Conv",
            part: Part::Input,
            ..BASE
        },
        missing: None,
    },
    LectureStep {
        title: "Bias correction",
        caption: [
            "Quantization error is not unbiased: per-tensor int8 after folding shifts each \
             layer's mean output; bias correction subtracts the shift.",
            "Empirical correction is on (measured on the calibration data); compare the \
             accuracy in Results with it off in Transforms.",
        ],
        setup: StepSetup {
            weights: linear(8, true, false),
            transforms: TransformToggles {
                bias_correction: BiasCorrection::Empirical,
                ..FOLDED
            },
            node: "/block2/dw/Conv",
            part: Part::Output,
            ..BASE
        },
        missing: None,
    },
    LectureStep {
        title: "QAT with the straight-through estimator",
        caption: [
            "Shown: the 4-bit fake-quantization staircase Q(x) that QAT puts in the forward \
             pass; the STE passes the gradient through it as if Q(x) = x.",
            "Train it: `quantscope qat model.onnx --train-data ... --weights int4 --activations 4`; \
             README's table: this MobileNet 98.5 % after PTQ, 99.1 % after QAT (int2: 16.1 to 84.6 %).",
        ],
        setup: StepSetup {
            weights: linear(4, true, false),
            tab: Tab::Reconstruction,
            ..BASE
        },
        missing: None,
    },
    LectureStep {
        title: "Binarization: BinaryConnect and XNOR",
        caption: [
            "Binary weights α·sign(W) with α = E|W|; BinaryConnect keeps the float weights for \
             the update, XNOR-Net also binarizes the inputs.",
            "With both binary, a dot product is 2·popcount(XNOR(x, w)) − N: see the formulas.",
        ],
        setup: StepSetup {
            weights: WeightQuant {
                scheme: WeightScheme::Binary {
                    scaled: true,
                    stochastic: false,
                },
                per_channel: false,
            },
            ..BASE
        },
        missing: None,
    },
    LectureStep {
        title: "Ternary: TWN and TTQ",
        caption: [
            "Ternary weights {−α, 0, +α}: TWN's threshold Δ = 0.7·E|W| (dotted) sends the small \
             weights to zero.",
            "Switch to TTQ in Settings for separate positive and negative scales Wp and Wn.",
        ],
        setup: StepSetup {
            weights: WeightQuant {
                scheme: WeightScheme::Ternary { ttq: false },
                per_channel: false,
            },
            ..BASE
        },
        missing: None,
    },
    LectureStep {
        title: "Mixed precision",
        caption: [
            "Depthwise layers at 8 bits, pointwise at 4 (the dw8-pw4 preset): the sensitive \
             layers keep more bits.",
            "The Analysis window measures each layer's sensitivity and allocates bits under a \
             size budget.",
        ],
        setup: StepSetup {
            preset: Some("dw8-pw4"),
            analysis: true,
            ..BASE
        },
        missing: None,
    },
    LectureStep {
        title: "The cost of N bits",
        caption: [
            "2-bit per-channel weights: the model is 16× smaller than float and each product \
             needs 2×8-bit operations (BitOps).",
            "Read size, BitOps and accuracy in Results; try 8, 4, 3 bits in Settings.",
        ],
        setup: StepSetup {
            weights: linear(2, true, true),
            ..BASE
        },
        missing: None,
    },
];
