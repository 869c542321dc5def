//! Fixed-point primitives against gemmlowp's semantics; Conv and Gemm within 1 LSB of fake
//! quantization (random layers and the sample CNN); i32 accumulation and its bounds.

use std::collections::BTreeMap;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use ndarray::{ArrayD, Axis, IxDyn};

use super::*;
use crate::engine::geometry::WindowSpec;
use crate::engine::{Plan, RunOptions, TensorHook, TensorSite};
use crate::ir::{Attribute, Node, ParamRole, TensorData};
use crate::quant::grid::{IntGrid, LinearParams, QuantError};
use crate::quant::test_support::{Rng, sample_cnn_with_images};

fn grids(input: LinearParams, output: LinearParams, relu: bool) -> LayerGrids {
    LayerGrids {
        input,
        output,
        relu,
    }
}

fn range_of(a: &ArrayD<f32>) -> (f32, f32) {
    a.iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

/// Largest |a − b| and how many elements differ at all.
fn compare(a: &ArrayD<i32>, b: &ArrayD<i32>) -> (i32, usize) {
    assert_eq!(a.shape(), b.shape());
    a.iter().zip(b).fold((0, 0), |(worst, n), (&x, &y)| {
        (worst.max((x - y).abs()), n + usize::from(x != y))
    })
}

#[test]
fn quantize_multiplier_is_exact_for_powers_of_two() {
    for k in -60..=20 {
        let m = 2f64.powi(k);
        let (m0, n) = quantize_multiplier(m);
        assert_eq!((m0, n), (1 << 30, -(k + 1)), "2^{k}");
        assert_eq!(FixedMultiplier { m0, shift: n }.to_real(), m);
    }
    assert_eq!(quantize_multiplier(0.0), (0, 0));
    assert_eq!(quantize_multiplier(f64::NAN), (0, 0));
    assert_eq!(quantize_multiplier(1e-30), (0, 0));
}

#[test]
fn quantize_multiplier_relative_error_is_below_2_pow_minus_30() {
    let mut rng = Rng(7);
    for _ in 0..20_000 {
        let m = 10f64.powf(f64::from(rng.uniform(-8.0, 3.0)));
        let (m0, n) = quantize_multiplier(m);
        assert!((1 << 30..=i32::MAX).contains(&m0), "m0 {m0} for {m}");
        let back = FixedMultiplier { m0, shift: n }.to_real();
        assert!(((back - m) / m).abs() < 2f64.powi(-30), "{m} -> {back}");
    }
    // Values just under 1 round up to 2^31 and renormalize.
    let (m0, n) = quantize_multiplier(1.0 - 1e-12);
    assert_eq!((m0, n), (1 << 30, -1));
}

#[test]
fn fixed_point_primitives_follow_gemmlowp() {
    assert_eq!(
        saturating_rounding_doubling_high_mul(i32::MIN, i32::MIN),
        i32::MAX
    );
    // 2^30 is 0.5 in Q31: halves; ties go toward +∞ (−1.5 → −1, −3.5 → −3).
    let half = 1 << 30;
    assert_eq!(
        [3, -3, 5, -5, 4, -7].map(|x| saturating_rounding_doubling_high_mul(x, half)),
        [2, -1, 3, -2, 2, -3]
    );
    assert_eq!(
        [
            (5, 1),
            (-5, 1),
            (7, 2),
            (-6, 2),
            (6, 2),
            (-5, 2),
            (0, 3),
            (1000, 0)
        ]
        .map(|(x, e)| rounding_divide_by_pot(x, e)),
        [3, -3, 2, -2, 2, -1, 0, 1000]
    );
    assert_eq!(rounding_divide_by_pot(i32::MIN, 31), -1);
    assert_eq!(rounding_divide_by_pot(i32::MAX, 31), 1);
}

#[test]
fn fixed_multiplier_rounds_within_one_of_exact() {
    let mut rng = Rng(11);
    let (mut exact, mut counted) = (0, 0);
    let trials = 50_000;
    for _ in 0..trials {
        let m = 10f64.powf(f64::from(rng.uniform(-6.0, 1.5)));
        let acc = (rng.next() as i32) >> rng.below(24);
        let fixed = FixedMultiplier::from_real(m);
        let got = fixed.apply(acc);
        let want = (f64::from(acc) * m).round();
        // M ≥ 1 pre-shifts acc left, which must itself fit in i32.
        let pre_shifted = f64::from(acc) * 2f64.powi((-fixed.shift).max(0));
        if pre_shifted.abs() < 2e9 {
            assert!(
                (f64::from(got) - want).abs() <= 1.0,
                "{acc}·{m}: {got} vs {want}"
            );
            // Large results also carry M0's relative error (2^−31) times their size, and
            // a small shift n lets the first rounding move the second one (double
            // rounding is off when acc·M is within 2^−(n+1) of a tie).
            if want.abs() < 65_536.0 && fixed.shift >= 8 {
                exact += usize::from(f64::from(got) == want);
                counted += 1;
            }
        }
    }
    assert!(counted > trials / 4);
    assert!(
        exact * 100 > counted * 99,
        "only {exact} of {counted} exact"
    );
    // M ≥ 1 shifts left first, saturating at i32::MAX, so the result is capped at
    // M0 · (2^31 − 1) / 2^31 (here M0 = 0.5).
    let big = FixedMultiplier::from_real(4.0);
    assert_eq!(big.apply(1000), 4000);
    assert_eq!(big.apply(-1000), -4000);
    assert_eq!(big.apply(i32::MAX / 2), 1 << 30);
}

/// Builds a conv with output parameters taken from the float output's range, checks the
/// integer path against fake quantization within 1 LSB everywhere; returns the count of
/// differing elements and the element count.
#[allow(clippy::too_many_arguments)]
fn check_conv(
    rng: &mut Rng,
    x_shape: [usize; 4],
    cout: usize,
    kernel: [usize; 2],
    window: WindowSpec,
    per_channel: bool,
    relu: bool,
    signed_input: bool,
) -> (usize, usize) {
    let cin_g = x_shape[1] / window.group;
    let mut w = rng.array(&[cout, cin_g, kernel[0], kernel[1]], -0.5, 0.5);
    // Very different channel ranges, where per-channel scales matter.
    for (c, mut ch) in w.axis_iter_mut(Axis(0)).enumerate() {
        let f = 1.0 + 4.0 * (c % 3) as f32;
        ch.mapv_inplace(|v| v * f);
    }
    let bias: Vec<f32> = (0..cout).map(|_| rng.uniform(-0.3, 0.3)).collect();
    let (x, in_grid) = if signed_input {
        (rng.array(&x_shape, -1.5, 1.0), IntGrid::INT8)
    } else {
        (rng.array(&x_shape, -0.2, 2.0), IntGrid::UINT8)
    };
    let (lo, hi) = range_of(&x);
    let input = LinearParams::from_range(lo, hi, in_grid, false).unwrap();
    let placeholder = LinearParams::from_scale_zero(1.0, 0, IntGrid::UINT8).unwrap();
    let layer = IntConv::from_float(
        &w,
        Some(&bias),
        per_channel,
        IntGrid::INT8,
        grids(input, placeholder, relu),
        window.clone(),
    )
    .unwrap();
    let (ylo, yhi) = range_of(&layer.fake_quant_float(&x).unwrap());
    let out_grid = if relu { IntGrid::UINT8 } else { IntGrid::INT8 };
    let layer = layer.with_output(LinearParams::from_range(ylo, yhi, out_grid, false).unwrap());
    let got = layer.run(&quantize_tensor(&x, &input)).unwrap();
    let want = layer.fake_quant_reference(&x).unwrap();
    let (worst, differ) = compare(&got, &want);
    assert!(
        worst <= 1,
        "{x_shape:?} → {cout}, kernel {kernel:?}, {window:?}, per-channel {per_channel}, \
         relu {relu}: worst difference {worst} LSB"
    );
    if relu {
        let z = layer.output_params().zero_point;
        assert!(got.iter().all(|&q| q >= z));
    }
    (differ, got.len())
}

#[test]
fn random_convs_match_fake_quantization_within_one_lsb() {
    let mut rng = Rng(0x5eed);
    let window = |k: [usize; 2], s: i64, p: [i64; 4], d: i64, g: i64| {
        let attributes = BTreeMap::from([
            ("strides".to_string(), Attribute::Ints(vec![s, s])),
            ("dilations".to_string(), Attribute::Ints(vec![d, d])),
            ("pads".to_string(), Attribute::Ints(p.to_vec())),
            ("group".to_string(), Attribute::Int(g)),
        ]);
        WindowSpec::conv_with("conv", &k, attributes).unwrap()
    };
    // (input, Cout, kernel, geometry)
    let cases = [
        ([2, 3, 9, 9], 8, [3, 3], (1, [1, 1, 1, 1], 1, 1)),
        ([1, 16, 8, 8], 16, [3, 3], (1, [1, 1, 1, 1], 1, 16)), // depthwise
        ([2, 8, 11, 7], 12, [3, 3], (2, [1, 0, 2, 1], 1, 4)),  // grouped, strided
        ([1, 4, 10, 10], 6, [3, 2], (1, [2, 1, 2, 1], 2, 2)),  // dilated
        ([3, 32, 5, 5], 10, [1, 1], (1, [0; 4], 1, 1)),        // pointwise
        ([1, 5, 12, 12], 7, [5, 5], (3, [2, 2, 2, 2], 1, 1)),
    ];
    let (mut differ, mut total) = (0, 0);
    for (i, &(x_shape, cout, kernel, (st, pads, dil, group))) in cases.iter().enumerate() {
        for per_channel in [false, true] {
            for relu in [false, true] {
                let signed = (i + usize::from(relu)) % 2 == 0;
                let (d, n) = check_conv(
                    &mut rng,
                    x_shape,
                    cout,
                    kernel,
                    window(kernel, st, pads, dil, group),
                    per_channel,
                    relu,
                    signed,
                );
                differ += d;
                total += n;
            }
        }
    }
    // Off-by-one only at rounding ties: rare.
    assert!(differ * 50 < total, "{differ} of {total} elements differ");
}

fn check_linear(rng: &mut Rng, m: usize, k: usize, n: usize, per_channel: bool, relu: bool) {
    let b = rng.array(&[k, n], -0.4, 0.4);
    let c = rng.array(&[n], -0.5, 0.5);
    let x = rng.array(&[m, k], -1.0, 3.0);
    let (lo, hi) = range_of(&x);
    let input = LinearParams::from_range(lo, hi, IntGrid::UINT8, false).unwrap();
    let placeholder = LinearParams::from_scale_zero(1.0, 0, IntGrid::UINT8).unwrap();
    let gemm = |b: &ArrayD<f32>, trans_b: bool| {
        IntLinear::from_gemm(
            b,
            trans_b,
            1.0,
            1.0,
            Some(&c),
            per_channel,
            IntGrid::INT8,
            grids(input, placeholder, relu),
        )
    };
    let layers = [
        gemm(&b, false),
        gemm(&b.t().as_standard_layout().into_owned(), true),
        IntLinear::from_matmul(
            &b,
            per_channel,
            IntGrid::INT8,
            grids(input, placeholder, relu),
        ),
    ];
    for layer in layers {
        let layer = layer.unwrap();
        let (ylo, yhi) = range_of(&layer.fake_quant_float(&x).unwrap());
        let layer =
            layer.with_output(LinearParams::from_range(ylo, yhi, IntGrid::INT8, false).unwrap());
        let got = layer.run(&quantize_tensor(&x, &input)).unwrap();
        let want = layer.fake_quant_reference(&x).unwrap();
        assert_eq!(got.shape(), &[m, n]);
        let (worst, _) = compare(&got, &want);
        assert!(worst <= 1, "[{m},{k}]x[{k},{n}]: worst {worst} LSB");
    }
}

#[test]
fn random_gemms_and_matmuls_match_fake_quantization_within_one_lsb() {
    let mut rng = Rng(42);
    for (m, k, n) in [(1, 64, 10), (7, 33, 5), (16, 128, 64), (3, 1, 4)] {
        for per_channel in [false, true] {
            for relu in [false, true] {
                check_linear(&mut rng, m, k, n, per_channel, relu);
            }
        }
    }
}

#[test]
fn gemm_alpha_beta_and_scalar_bias_are_folded() {
    let mut rng = Rng(3);
    let b = rng.array(&[6, 4], -1.0, 1.0);
    let x = rng.array(&[5, 6], 0.0, 1.0);
    let input = LinearParams::from_range(0.0, 1.0, IntGrid::UINT8, false).unwrap();
    let output = LinearParams::from_range(-4.0, 4.0, IntGrid::INT8, false).unwrap();
    let c = ArrayD::from_elem(IxDyn(&[1]), 0.25f32);
    let layer = IntLinear::from_gemm(
        &b,
        false,
        0.5,
        2.0,
        Some(&c),
        true,
        IntGrid::INT8,
        grids(input, output, false),
    )
    .unwrap();
    let want_float = x
        .clone()
        .into_dimensionality::<ndarray::Ix2>()
        .unwrap()
        .dot(&b.clone().into_dimensionality::<ndarray::Ix2>().unwrap())
        * 0.5
        + 0.5;
    let got = dequantize_tensor(&layer.run(&quantize_tensor(&x, &input)).unwrap(), &output);
    for (g, w) in got.iter().zip(want_float.iter()) {
        assert!((g - w).abs() < 0.08, "{g} vs {w}");
    }
    let bad = ArrayD::zeros(IxDyn(&[5, 4]));
    assert!(
        IntLinear::from_gemm(
            &b,
            false,
            1.0,
            1.0,
            Some(&bad),
            true,
            IntGrid::INT8,
            grids(input, output, false)
        )
        .is_err()
    );
}

/// A MatMul by `b` with per-tensor INT8 weights and no ReLU.
fn int8_matmul(
    b: &ArrayD<f32>,
    input: LinearParams,
    output: LinearParams,
) -> Result<IntLinear, QuantError> {
    IntLinear::from_matmul(b, false, IntGrid::INT8, grids(input, output, false))
}

#[test]
fn accumulation_overflowing_i16_is_exact_in_i32() {
    // 64 taps of 255 · 127: 2,072,640, far beyond i16 (32,767), well inside i32.
    let input = LinearParams::from_scale_zero(1.0 / 255.0, 0, IntGrid::UINT8).unwrap();
    let output = LinearParams::from_scale_zero(0.5, 0, IntGrid::UINT8).unwrap();
    let weights = ArrayD::from_elem(IxDyn(&[1, 64]), 1.0f32);
    let layer = int8_matmul(&weights.t().to_owned(), input, output).unwrap();
    assert_eq!(layer.weights().codes.iter().next(), Some(&127));
    let x = ArrayD::from_elem(IxDyn(&[1, 64]), 255i32);
    let acc = layer.accumulators(&x).unwrap()[[0, 0]];
    assert_eq!(acc, 64 * 127 * 255);
    assert!(layer.accumulator_bound() > i64::from(i16::MAX));
    // The same sum in a 16-bit accumulator wraps to garbage: 32 bits are required.
    let acc16 = (0..64).fold(0i16, |a, _| {
        a.wrapping_add((127i16).wrapping_mul(255u8 as i16))
    });
    assert_ne!(i32::from(acc16), acc);
    // And the output is right: 64 inputs of 1.0 times weights of 1.0 = 64.0 → 128 at S_y 0.5,
    // clamped to 255; with a larger S_y it is exact.
    let wide =
        LinearParams::from_scale_zero(0.5, 0, IntGrid::new(8, false, false).unwrap()).unwrap();
    assert_eq!(
        layer.clone().with_output(wide).run(&x).unwrap()[[0, 0]],
        128
    );

    // A 3×3×64 conv with u8 activations: accumulators need 25 bits.
    let w = ArrayD::from_elem(IxDyn(&[2, 64, 3, 3]), -1.0f32);
    let conv = IntConv::from_float(
        &w,
        None,
        true,
        IntGrid::INT8,
        grids(input, output, false),
        WindowSpec::conv_with("conv", &[3, 3], BTreeMap::new()).unwrap(),
    )
    .unwrap();
    let bound = conv.accumulator_bound();
    assert!(bound > i64::from(i16::MAX) && bound <= i64::from(i32::MAX));
    let x = ArrayD::from_elem(IxDyn(&[1, 64, 3, 3]), 255i32);
    assert_eq!(
        conv.accumulators(&x).unwrap()[[0, 1, 0, 0]],
        -(64 * 9 * 127 * 255)
    );
}

#[test]
fn layers_that_could_overflow_i32_are_refused() {
    let input = LinearParams::from_scale_zero(1.0, 0, IntGrid::UINT8).unwrap();
    let output = input;
    // 70,000 · 127 · 255 ≈ 2.27e9 > 2^31.
    let b = ArrayD::from_elem(IxDyn(&[70_000, 1]), 1.0f32);
    let err = int8_matmul(&b, input, output).unwrap_err();
    assert!(err.0.contains("overflows i32"), "{err}");
    // Codes outside the input grid are refused too.
    let ok = int8_matmul(&ArrayD::from_elem(IxDyn(&[4, 1]), 1.0f32), input, output).unwrap();
    assert!(ok.run(&ArrayD::from_elem(IxDyn(&[1, 4]), 256)).is_err());
    assert!(ok.run(&ArrayD::from_elem(IxDyn(&[1, 3]), 1)).is_err());
}

struct Capture {
    wanted: HashSet<String>,
    got: HashMap<String, ArrayD<f32>>,
}

impl TensorHook for Capture {
    fn on_tensor(&mut self, site: TensorSite<'_>, value: &mut TensorData) -> crate::Result<()> {
        if self.wanted.contains(site.name) {
            self.got.insert(site.name.to_string(), value.to_f32());
        }
        Ok(())
    }
}

#[test]
fn sample_cnn_convs_match_fake_quantization_within_one_lsb() {
    let (model, images) = sample_cnn_with_images(32);
    let graph = &model.graph;
    let convs: Vec<&Node> = graph.nodes.iter().filter(|n| n.op_type == "Conv").collect();
    assert!(convs.len() >= 2, "the sample CNN has {} convs", convs.len());
    let mut capture = Capture {
        wanted: convs.iter().map(|n| n.inputs[0].clone()).collect(),
        got: HashMap::new(),
    };
    let plan = Plan::new(graph).unwrap();
    let feeds = HashMap::from([(graph.inputs[0].name.clone(), TensorData::F32(images))]);
    plan.run(feeds, Some(&mut capture), RunOptions::default())
        .unwrap();

    for node in convs {
        let x = &capture.got[&node.inputs[0]];
        let w_tensor = &graph.initializers[node.input(1).unwrap()];
        assert_eq!(w_tensor.role, ParamRole::Weight);
        let w = w_tensor.data.as_f32().unwrap();
        let bias: Option<Vec<f32>> = node
            .input(2)
            .and_then(|b| graph.initializers.get(b))
            .map(|b| b.data.to_f32().iter().copied().collect());
        let window = WindowSpec::conv(node, &w.shape()[2..]).unwrap();
        let (lo, hi) = range_of(x);
        let input = LinearParams::from_range(lo, hi, IntGrid::UINT8, false).unwrap();
        let placeholder = LinearParams::from_scale_zero(1.0, 0, IntGrid::UINT8).unwrap();
        let layer = IntConv::from_float(
            w,
            bias.as_deref(),
            true,
            IntGrid::INT8,
            grids(input, placeholder, false),
            window,
        )
        .unwrap();
        let (ylo, yhi) = range_of(&layer.fake_quant_float(x).unwrap());
        let layer =
            layer.with_output(LinearParams::from_range(ylo, yhi, IntGrid::INT8, false).unwrap());
        let got = layer.run(&quantize_tensor(x, &input)).unwrap();
        let want = layer.fake_quant_reference(x).unwrap();
        let (worst, differ) = compare(&got, &want);
        assert!(
            worst <= 1,
            "{}: worst difference {worst} LSB ({differ} of {} differ)",
            node.name,
            got.len()
        );
        assert!(differ * 50 < got.len(), "{}: {differ} differ", node.name);
    }
}

/// `compare_integer` on the sample CNN: every layer runs, nothing is more than 1 LSB off, and
/// each layer's traced element follows the fixed-point steps to the layer's own output code.
#[test]
fn compare_integer_traces_one_element_per_layer_on_the_sample_cnn() {
    use crate::workflow::{DataSource, RunControl, calibrate, read_data};
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let path = root.join("sample_models/digits_cnn.onnx");
    let model = crate::load::load_model(&path).unwrap();
    let source = DataSource::File(root.join("sample_models/data/digits_test_x.npy"));
    let data = read_data(&model.graph, &path, &source).unwrap();
    let control = RunControl::default();
    let stats = calibrate(&model.graph, &data.calibration, None, &control)
        .unwrap()
        .stats;
    let config = crate::quant::QuantConfig::int8_per_channel();
    let result = compare::compare_integer(
        &model.graph,
        &config,
        &stats,
        &data.evaluation,
        None,
        &control,
    )
    .unwrap();
    assert!(!result.tensors.is_empty());
    assert_eq!(result.traces.len(), result.tensors.len());
    for (t, c) in result.traces.iter().zip(&result.tensors) {
        assert_eq!(t.layer, c.layer);
        assert_eq!(c.beyond_one, 0, "{}", c.layer);
        // The steps: the fixed multiplier applied to the accumulator, plus Z_y, clamped.
        let m = FixedMultiplier {
            m0: t.m0,
            shift: t.shift,
        };
        let code = m
            .apply(t.accumulator)
            .saturating_add(t.output_zero_point)
            .clamp(t.clamp.0, t.clamp.1);
        assert_eq!(code, t.output_code, "{}", t.layer);
        assert!((f64::from(t.scaled) - t.real_product).abs() <= 1.0, "{t:?}");
        assert!((i64::from(t.output_code) - i64::from(t.simulated_code)).abs() <= 1);
        assert!((m.to_real() - t.multiplier).abs() <= t.multiplier * 2f64.powi(-30));
        // q = round(x/S) + Z on the grid.
        let i = &t.input;
        assert_eq!(
            i.code,
            ((i.ratio.round_ties_even() as i64 + i64::from(i.zero_point))
                .clamp(i64::from(i.qmin), i64::from(i.qmax))) as i32
        );
        assert_eq!(t.lines().len(), if t.shift < 0 { 6 } else { 5 });
    }
}
