//! The right panel: the weight scheme, bits, granularity and clip-range calibration, the learned
//! (AdaRound) rounding in use, activation bits and calibration method, the per-layer override,
//! the transforms, and the data source. Every control says what it does in the lecture's terms. Edits a copy of the settings and returns
//! commands; the app applies them.

use crate::calib::Method;
use crate::calib::methods::DEFAULT_PERCENTILE;
use crate::jobs::pipeline::DataSource;
use crate::load::images::{ChannelOrder, ImagePreset, Layout, PixelScale};
use crate::quant::learned_rounding::describe;
use crate::quant::{LayerQuant, QuantConfig, WeightScheme};

use super::activation_distribution::method_label;
use super::commands::AppCommand;
use super::panel::Panel;
use super::transforms_panel::{TransformsInput, TransformsPanel};

/// What the panel shows.
pub struct SettingsInput<'a> {
    pub config: &'a QuantConfig,
    /// Why learned (AdaRound) rounding was last dropped from the config.
    pub adaround_notice: Option<&'a str>,
    /// The node of the selected layer (for the per-layer override).
    pub node: Option<&'a str>,
    pub source: &'a DataSource,
    /// The source as the Data line shows it ([`DataSource::describe_for`] the open model).
    pub source_label: String,
    /// Whether the bundled digits fit the open model.
    pub bundled_available: bool,
    /// Why calibration data cannot be used (weights-only files).
    pub inference_unavailable: Option<&'a str>,
    /// The transform switches and what they did.
    pub transforms: TransformsInput<'a>,
}

/// The panel's own UI state.
#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct SettingsPanel {
    pub image_preset: ImagePreset,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    LinearAsym,
    LinearSym,
    Binary,
    Ternary,
    KMeans,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::LinearSym,
        Kind::LinearAsym,
        Kind::Binary,
        Kind::Ternary,
        Kind::KMeans,
    ];

    fn of(scheme: WeightScheme) -> Kind {
        match scheme {
            WeightScheme::Linear {
                symmetric: true, ..
            } => Kind::LinearSym,
            WeightScheme::Linear { .. } => Kind::LinearAsym,
            WeightScheme::Binary { .. } => Kind::Binary,
            WeightScheme::Ternary { .. } => Kind::Ternary,
            WeightScheme::KMeans { .. } => Kind::KMeans,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Kind::LinearSym => "linear symmetric",
            Kind::LinearAsym => "linear asymmetric",
            Kind::Binary => "binary",
            Kind::Ternary => "ternary",
            Kind::KMeans => "k-means",
        }
    }

    fn tooltip(self) -> &'static str {
        match self {
            Kind::LinearSym => {
                "r = S*q with Z = 0: a signed grid centred on zero, S = max|r| / qmax"
            }
            Kind::LinearAsym => {
                "r = S*(q - Z): S = (rmax - rmin)/(qmax - qmin), Z = round(qmin - rmin/S); \
                 the grid covers [rmin, rmax] exactly"
            }
            Kind::Binary => {
                "W in {-1, +1} (sign), optionally times alpha = mean|W|: 1 bit per weight"
            }
            Kind::Ternary => {
                "W in {-alpha, 0, +alpha}: TWN threshold Delta = 0.7*E|W|; TTQ learns Wp and Wn"
            }
            Kind::KMeans => {
                "2^bits shared values found by k-means clustering (Deep Compression); \
                 weights store a codebook index"
            }
        }
    }

    /// The scheme of this kind closest to `from`.
    fn scheme(self, from: WeightScheme) -> WeightScheme {
        let bits = match from {
            WeightScheme::Linear { bits, .. } => bits,
            WeightScheme::KMeans { bits } => bits.max(2),
            _ => 8,
        };
        match self {
            Kind::LinearSym => WeightScheme::Linear {
                bits,
                symmetric: true,
            },
            Kind::LinearAsym => WeightScheme::Linear {
                bits,
                symmetric: false,
            },
            Kind::Binary => match from {
                b @ WeightScheme::Binary { .. } => b,
                _ => WeightScheme::Binary {
                    scaled: true,
                    stochastic: false,
                },
            },
            Kind::Ternary => match from {
                t @ WeightScheme::Ternary { .. } => t,
                _ => WeightScheme::Ternary { ttq: false },
            },
            Kind::KMeans => WeightScheme::KMeans { bits: bits.min(8) },
        }
    }
}

/// The calibration methods offered (percentile keeps its own p).
fn method_choices(current: Method) -> Vec<Method> {
    let p = match current {
        Method::Percentile(p) => p,
        _ => DEFAULT_PERCENTILE,
    };
    Method::ALL
        .iter()
        .map(|m| match m {
            Method::Percentile(_) => Method::Percentile(p),
            other => *other,
        })
        .collect()
}

fn method_tooltip(method: Method) -> &'static str {
    match method {
        Method::MinMax => {
            "Clip at the smallest and largest value seen: no clipping error, coarse steps"
        }
        Method::Ema => "Exponential moving average of each batch's min and max",
        Method::BatchMean => "Mean over samples of each sample's min and max",
        Method::Percentile(_) => {
            "Clip at the p-th percentile of |x|: outliers are clipped, steps get finer"
        }
        Method::Mse => {
            "The clip that minimises the mean squared quantization error (clipping + rounding)"
        }
        Method::AciqGauss => {
            "ACIQ: the analytically optimal clip for a Gaussian of the measured spread"
        }
        Method::AciqLaplace => "ACIQ: the analytically optimal clip for a Laplace distribution",
        Method::Kl => "TensorRT: the clip whose quantized histogram is closest in KL divergence",
    }
}

impl Panel for SettingsPanel {
    type Input<'a> = SettingsInput<'a>;

    fn ui(&mut self, ui: &mut egui::Ui, input: &SettingsInput<'_>) -> Vec<AppCommand> {
        let mut commands = Vec::new();
        let config = input.config;
        let overridden = input.node.is_some_and(|n| config.layers.contains_key(n));
        ui.heading("Quantization");
        if let Some(node) = input.node {
            let mut per_layer = overridden;
            if ui
                .checkbox(&mut per_layer, format!("override for {node}"))
                .on_hover_text(
                    "Give this layer its own settings (mixed precision); unticked, it follows \
                     the global default",
                )
                .changed()
            {
                commands.push(AppCommand::SetLayer {
                    node: node.to_string(),
                    quant: per_layer.then(|| *config.layer(node)),
                });
            }
        }
        ui.label(if overridden {
            "Editing: this layer only"
        } else {
            "Editing: global default (every layer without an override)"
        });
        let current = match input.node {
            Some(node) if overridden => *config.layer(node),
            _ => config.default,
        };
        let mut quant = current;
        weights_ui(ui, &mut quant);
        if quant.weights.is_some_and(|w| w.scheme.is_linear()) {
            commands.extend(weight_calib_ui(ui, config));
        }
        commands.extend(adaround_ui(ui, config, input.adaround_notice));
        ui.separator();
        activations_ui(ui, &mut quant);
        if config.default.activations.is_some() {
            commands.extend(outputs_ui(ui, config));
        }
        if quant != current {
            commands.push(match input.node {
                Some(node) if overridden => AppCommand::SetLayer {
                    node: node.to_string(),
                    quant: Some(quant),
                },
                _ => AppCommand::SetDefault(quant),
            });
        }
        ui.separator();
        commands.extend(TransformsPanel.ui(ui, &input.transforms));
        ui.separator();
        self.data_ui(ui, input, &mut commands);
        commands
    }
}

impl SettingsPanel {
    fn data_ui(
        &mut self,
        ui: &mut egui::Ui,
        input: &SettingsInput<'_>,
        commands: &mut Vec<AppCommand>,
    ) {
        ui.heading("Data");
        if let Some(reason) = input.inference_unavailable {
            ui.add_enabled_ui(false, |ui| ui.label("Calibration data"))
                .response
                .on_disabled_hover_text(reason);
            ui.weak(reason);
            return;
        }
        ui.label(format!("Using: {}", input.source_label));
        if matches!(input.source, DataSource::Synthetic) {
            ui.colored_label(
                egui::Color32::from_rgb(235, 140, 50),
                "synthetic data: ranges are only indicative, accuracy has no labels",
            );
        }
        ui.horizontal_wrapped(|ui| {
            if input.bundled_available
                && ui
                    .button("bundled digits")
                    .on_hover_text(
                        "The sample models' own data: calibration set and labelled test set",
                    )
                    .clicked()
            {
                commands.push(AppCommand::SetSource(DataSource::BundledDigits));
            }
            if ui
                .button("file...")
                .on_hover_text(
                    "A .npy of inputs, or an .npz with arrays by input name (samples on axis 0) \
                     and optional labels in 'labels' or 'y'",
                )
                .clicked()
            {
                commands.push(AppCommand::PickDataFile);
            }
            if ui
                .button(".npz folder...")
                .on_hover_text(
                    "A folder of .npz files, one complete sample each (models with state inputs)",
                )
                .clicked()
            {
                commands.push(AppCommand::PickNpzFolder);
            }
            if ui
                .button("image folder...")
                .on_hover_text(
                    "PNG/JPEG/BMP images, resized to the model's input and scaled by the preset below",
                )
                .clicked()
            {
                commands.push(AppCommand::PickImageFolder(self.image_preset));
            }
            if ui
                .button("synthetic")
                .on_hover_text(
                    "Generated inputs of the model's declared shapes (N(0, 1) floats, zero integers), no labels",
                )
                .clicked()
            {
                commands.push(AppCommand::SetSource(DataSource::Synthetic));
            }
        });
        ui.collapsing("image preset", |ui| {
            preset_ui(ui, &mut self.image_preset);
            if let DataSource::ImageFolder { dir, preset } = input.source
                && *preset != self.image_preset
                && ui
                    .button("apply to the current folder")
                    .on_hover_text("Read the image folder again with this preset")
                    .clicked()
            {
                commands.push(AppCommand::SetSource(DataSource::ImageFolder {
                    dir: dir.clone(),
                    preset: self.image_preset,
                }));
            }
        });
    }
}

/// The image preset's controls: channel order, scaling, layout and size.
fn preset_ui(ui: &mut egui::Ui, preset: &mut ImagePreset) {
    egui::ComboBox::from_label("channels")
        .selected_text(match preset.channels {
            ChannelOrder::Rgb => "RGB",
            ChannelOrder::Bgr => "BGR",
            ChannelOrder::Luma => "luma",
        })
        .show_ui(ui, |ui| {
            ui.selectable_value(&mut preset.channels, ChannelOrder::Rgb, "RGB");
            ui.selectable_value(&mut preset.channels, ChannelOrder::Bgr, "BGR")
                .on_hover_text("OpenCV-trained models (e.g. YuNet) read blue first");
            ui.selectable_value(&mut preset.channels, ChannelOrder::Luma, "luma")
                .on_hover_text(
                    "Y = 0.299 R + 0.587 G + 0.114 B (one-channel models use it anyway)",
                );
        })
        .response
        .on_hover_text("The order of the colour channels the model reads");
    egui::ComboBox::from_label("scaling")
        .selected_text(preset.scale.label())
        .show_ui(ui, |ui| {
            for scale in PixelScale::ALL {
                ui.selectable_value(&mut preset.scale, scale, scale.label());
            }
        })
        .response
        .on_hover_text("How a pixel value v in 0..255 becomes the model's input");
    egui::ComboBox::from_label("layout")
        .selected_text(match preset.layout {
            Layout::Auto => "from the model",
            Layout::Nchw => "NCHW",
            Layout::Nhwc => "NHWC",
        })
        .show_ui(ui, |ui| {
            ui.selectable_value(&mut preset.layout, Layout::Auto, "from the model");
            ui.selectable_value(&mut preset.layout, Layout::Nchw, "NCHW");
            ui.selectable_value(&mut preset.layout, Layout::Nhwc, "NHWC")
                .on_hover_text("Channels last, as TensorFlow/TFLite exports read them");
        })
        .response
        .on_hover_text(
            "Where the channel axis is; by default the one of size 1 or 3 in the declared shape",
        );
    ui.horizontal(|ui| {
        let mut sized = preset.size.is_some();
        ui.checkbox(&mut sized, "size")
            .on_hover_text("Height x width for models that declare no fixed input size");
        let (mut h, mut w) = preset.size.unwrap_or((224, 224));
        if sized {
            ui.add(egui::DragValue::new(&mut h).range(1..=4096).suffix(" H"));
            ui.add(egui::DragValue::new(&mut w).range(1..=4096).suffix(" W"));
        }
        preset.size = sized.then_some((h, w));
    });
}

fn weights_ui(ui: &mut egui::Ui, quant: &mut LayerQuant) {
    let mut on = quant.weights.is_some();
    ui.checkbox(&mut on, "quantize weights")
        .on_hover_text("Store the weights on a low-bit grid; unticked they stay float32");
    if !on {
        quant.weights = None;
        return;
    }
    let Some(mut w) = quant
        .weights
        .or(QuantConfig::int8_per_channel().default.weights)
    else {
        return;
    };
    let mut kind = Kind::of(w.scheme);
    egui::ComboBox::from_label("scheme")
        .selected_text(kind.label())
        .show_ui(ui, |ui| {
            for k in Kind::ALL {
                ui.selectable_value(&mut kind, k, k.label())
                    .on_hover_text(k.tooltip());
            }
        })
        .response
        .on_hover_text(kind.tooltip());
    w.scheme = kind.scheme(w.scheme);
    match &mut w.scheme {
        WeightScheme::Linear { bits, .. } => {
            ui.add(egui::Slider::new(bits, 2..=16).text("bits"))
                .on_hover_text(
                    "b bits give 2^b levels: each bit halves the step S and adds about 6 dB SQNR",
                );
        }
        WeightScheme::KMeans { bits } => {
            ui.add(egui::Slider::new(bits, 1..=8).text("bits"))
                .on_hover_text("2^bits centroids in the codebook");
        }
        WeightScheme::Binary { scaled, stochastic } => {
            ui.checkbox(stochastic, "stochastic").on_hover_text(
                "BinaryConnect's stochastic rule: +1 with probability hard_sigmoid(w), \
                 unbiased in expectation; unticked: deterministic sign(w)",
            );
            ui.checkbox(scaled, "scaling alpha").on_hover_text(
                "Multiply by alpha = mean|W| (XNOR-Net), so the binary weights keep the layer's scale",
            );
        }
        WeightScheme::Ternary { ttq } => {
            ui.horizontal(|ui| {
                ui.radio_value(ttq, false, "TWN").on_hover_text(
                    "Ternary Weight Networks: Delta = 0.7*E|W|, alpha = mean of |W| above Delta",
                );
                ui.radio_value(ttq, true, "TTQ").on_hover_text(
                    "Trained Ternary Quantization: Delta = 0.05*max|W|, separate scales Wp and Wn",
                );
            });
        }
    }
    ui.horizontal(|ui| {
        ui.label("granularity");
        ui.radio_value(&mut w.per_channel, false, "per tensor")
            .on_hover_text("One scale for the whole tensor: a wide channel sets the step for all");
        ui.radio_value(&mut w.per_channel, true, "per channel")
            .on_hover_text("One scale per output channel: each channel's grid fits its own range");
    });
    quant.weights = Some(w);
}

/// The weight calibration methods offered (percentile keeps its own p); min-max is the
/// config's default (None).
fn weight_method_choices(current: Option<Method>) -> Vec<Method> {
    method_choices(current.unwrap_or(Method::MinMax))
        .into_iter()
        .filter(|m| !matches!(m, Method::Ema | Method::BatchMean))
        .collect()
}

fn weight_method_tooltip(method: Method) -> &'static str {
    match method {
        Method::MinMax => "Clip each range at the weights' smallest and largest value",
        Method::Percentile(_) => "Clip at the p-th percentile of |w|: rare large weights saturate",
        Method::Mse => {
            "Search the clip that minimises the weights' mean squared quantization error \
             (clipping + rounding): usually the best SQNR at 4 bits and below"
        }
        Method::AciqGauss => "ACIQ: the optimal clip if the weights were Gaussian",
        Method::AciqLaplace => "ACIQ: the optimal clip if the weights were Laplace distributed",
        Method::Kl => "The clip whose quantized histogram is closest in KL divergence",
        Method::Ema | Method::BatchMean => "Activation-only method",
    }
}

/// How linear weights' clip ranges are chosen (the whole config; per tensor or per channel as
/// each layer's granularity says).
fn weight_calib_ui(ui: &mut egui::Ui, config: &QuantConfig) -> Option<AppCommand> {
    let current = config.weight_calib;
    let mut method = current.unwrap_or(Method::MinMax);
    egui::ComboBox::from_label("weight range")
        .selected_text(method_label(method))
        .show_ui(ui, |ui| {
            for m in weight_method_choices(current) {
                ui.selectable_value(&mut method, m, method_label(m))
                    .on_hover_text(weight_method_tooltip(m));
            }
        })
        .response
        .on_hover_text(format!(
            "How the weights' clip range is chosen, per tensor or per channel as the \
             granularity says (manual clips win): {}",
            weight_method_tooltip(method)
        ));
    if let Method::Percentile(p) = &mut method {
        ui.add(
            egui::DragValue::new(p)
                .range(90.0..=100.0)
                .speed(0.01)
                .max_decimals(4)
                .prefix("weight p = "),
        )
        .on_hover_text("The percentile of |w| the weights' range is clipped at");
    }
    let chosen = (method != Method::MinMax).then_some(method);
    (chosen != current).then(|| {
        let mut next = config.clone();
        next.weight_calib = chosen;
        AppCommand::SetConfig(Box::new(next))
    })
}

/// The learned (AdaRound) rounding the config holds, with a button dropping it, and why it was
/// last dropped.
fn adaround_ui(
    ui: &mut egui::Ui,
    config: &QuantConfig,
    notice: Option<&str>,
) -> Option<AppCommand> {
    let mut command = None;
    if let Some(first) = config.adaround.values().next() {
        let mut settings: Vec<String> = config
            .adaround
            .values()
            .map(|l| describe(&l.quant))
            .collect();
        settings.sort();
        settings.dedup();
        ui.horizontal(|ui| {
            ui.label(format!(
                "AdaRound: {} layers, learned for {}",
                config.adaround.len(),
                settings.join(", ")
            ))
            .on_hover_text(format!(
                "These weights use the rounding learned in the Analysis window instead of \
                 round-to-nearest (first: '{}' of layer {}); changing their settings drops it",
                config.adaround.keys().next().map_or("", String::as_str),
                first.node
            ));
            if ui
                .button("Drop")
                .on_hover_text("Back to round-to-nearest for every weight")
                .clicked()
            {
                let mut next = config.clone();
                next.adaround.clear();
                command = Some(AppCommand::SetConfig(Box::new(next)));
            }
        });
    }
    if let Some(notice) = notice {
        ui.colored_label(ui.visuals().warn_fg_color, notice);
    }
    command
}

/// Whether the graph's outputs are quantized too (a model-wide setting).
fn outputs_ui(ui: &mut egui::Ui, config: &QuantConfig) -> Option<AppCommand> {
    let mut on = config.quantize_outputs;
    ui.checkbox(&mut on, "quantize graph outputs")
        .on_hover_text(
            "Also put the model's float outputs on the default activation grid, as a \
             deployment that hands int8 outputs to the application does (onnxruntime's \
             quantize_static places these quantizers too); unticked, outputs stay float",
        )
        .changed()
        .then(|| {
            let mut next = config.clone();
            next.quantize_outputs = on;
            AppCommand::SetConfig(Box::new(next))
        })
}

fn activations_ui(ui: &mut egui::Ui, quant: &mut LayerQuant) {
    let mut on = quant.activations.is_some();
    ui.checkbox(&mut on, "quantize activations").on_hover_text(
        "Quantize each quantized layer's input at run time with a range calibrated beforehand",
    );
    if !on {
        quant.activations = None;
        return;
    }
    let Some(mut a) = quant
        .activations
        .or(QuantConfig::int8_per_channel().default.activations)
    else {
        return;
    };
    ui.add(egui::Slider::new(&mut a.bits, 2..=16).text("activation bits"))
        .on_hover_text("Bits of the activation grid (uint8 is the usual choice)");
    ui.checkbox(&mut a.symmetric, "symmetric (signed grid)").on_hover_text(
        "Z = 0 on a signed grid; unticked: asymmetric on an unsigned grid, which suits ReLU outputs",
    );
    egui::ComboBox::from_label("calibration")
        .selected_text(method_label(a.method))
        .show_ui(ui, |ui| {
            for m in method_choices(a.method) {
                ui.selectable_value(&mut a.method, m, method_label(m))
                    .on_hover_text(method_tooltip(m));
            }
        })
        .response
        .on_hover_text(method_tooltip(a.method));
    if let Method::Percentile(p) = &mut a.method {
        ui.add(
            egui::DragValue::new(p)
                .range(90.0..=100.0)
                .speed(0.01)
                .max_decimals(4)
                .prefix("p = "),
        )
        .on_hover_text("The percentile of |x| the range is clipped at");
    }
    quant.activations = Some(a);
}
