//! Each convolution strategy, on every instruction set this CPU has, against the naive
//! reference: odd sizes, groups, strides, dilations, asymmetric pads, batches, and the fused
//! epilogue.

use ndarray::{ArrayD, IxDyn};

use super::super::testutil::{Rng, assert_arrays_close};
use super::direct::{conv_direct, use_direct};
use super::simd::Isa;
use super::tests::conv_ref;
use super::{Activation, Axis, ConvData, ConvEpilogue, im2col_by_panels, pointwise_by_panels, to3};

/// One random 1-D or 2-D convolution geometry.
struct Shape {
    n: usize,
    group: usize,
    cg: usize,
    mg: usize,
    input: Vec<usize>,
    kernel: Vec<usize>,
    stride: Vec<usize>,
    dil: Vec<usize>,
    pad: Vec<(usize, usize)>,
}

impl Shape {
    fn axes(&self) -> Vec<Axis> {
        (0..self.input.len())
            .map(|i| {
                let span = self.dil[i] * (self.kernel[i] - 1) + 1;
                let (pb, pe) = self.pad[i];
                Axis {
                    input: self.input[i],
                    kernel: self.kernel[i],
                    stride: self.stride[i],
                    dilation: self.dil[i],
                    pad_begin: pb as isize,
                    pad_end: pe as isize,
                    output: (self.input[i] + pb + pe - span) / self.stride[i] + 1,
                }
            })
            .collect()
    }

    fn describe(&self) -> String {
        format!(
            "n{} g{} cg{} mg{} in{:?} k{:?} s{:?} d{:?} p{:?}",
            self.n,
            self.group,
            self.cg,
            self.mg,
            self.input,
            self.kernel,
            self.stride,
            self.dil,
            self.pad
        )
    }
}

/// A random shape whose padded input covers the dilated kernel.
fn random_shape(rng: &mut Rng, dims: usize, group: usize, cg: usize, mg: usize) -> Shape {
    let mut s = Shape {
        n: rng.range(1, 3),
        group,
        cg,
        mg,
        input: vec![],
        kernel: vec![],
        stride: vec![],
        dil: vec![],
        pad: vec![],
    };
    for _ in 0..dims {
        let k = rng.range(1, 5);
        let d = rng.range(1, 2);
        let span = d * (k - 1) + 1;
        let pb = rng.range(0, k - 1);
        let pe = rng.range(0, k - 1);
        let input = rng.range(span.saturating_sub(pb + pe).max(1), 37);
        s.kernel.push(k);
        s.dil.push(d);
        s.stride.push(rng.range(1, 3));
        s.pad.push((pb, pe));
        s.input.push(input);
    }
    s
}

/// The reference result, with the epilogue applied per channel.
fn reference(
    s: &Shape,
    x: &ArrayD<f32>,
    w: &ArrayD<f32>,
    b: &ArrayD<f32>,
    epilogue: Option<&ConvEpilogue>,
) -> ArrayD<f32> {
    let axes = s.axes();
    let out: Vec<usize> = axes.iter().map(|a| a.output).collect();
    let pb: Vec<isize> = axes.iter().map(|a| a.pad_begin).collect();
    let mut y = conv_ref(x, w, Some(b), s.group, &s.stride, &s.dil, &pb, &out);
    if let Some(e) = epilogue {
        let m = s.group * s.mg;
        let plane: usize = out.iter().product();
        for (p, chunk) in y.as_slice_mut().unwrap().chunks_mut(plane).enumerate() {
            e.apply(p % m, chunk);
        }
    }
    y
}

fn operands(rng: &mut Rng, s: &Shape) -> (ArrayD<f32>, ArrayD<f32>, ArrayD<f32>) {
    let mut xs = vec![s.n, s.group * s.cg];
    xs.extend(&s.input);
    let mut ws = vec![s.group * s.mg, s.cg];
    ws.extend(&s.kernel);
    (rng.array(&xs), rng.array(&ws), rng.array(&[s.group * s.mg]))
}

fn epilogue(m: usize) -> ConvEpilogue {
    ConvEpilogue {
        scale: Some((0..m).map(|i| 0.5 + 0.1 * i as f32).collect()),
        shift: Some((0..m).map(|i| 0.05 * i as f32 - 0.2).collect()),
        activation: Some(Activation::Clip {
            min: -0.3,
            max: 0.8,
        }),
        round_trip: crate::engine::ops::Quantizer::new(0.01, 3.0, -128.0, 127.0),
    }
}

#[test]
fn direct_kernel_matches_reference() {
    let mut rng = Rng::new(41);
    // (group, cg, mg): depthwise, depthwise with multiplier, one input channel to many, and
    // small dense groups.
    let configs = [
        (7, 1, 1),
        (16, 1, 1),
        (5, 1, 2),
        (3, 1, 5),
        (1, 1, 17),
        (1, 3, 16),
        (2, 2, 9),
        (1, 3, 5),
    ];
    let mut checked = 0;
    for isa in Isa::available() {
        for (i, &(group, cg, mg)) in configs.iter().cycle().take(48).enumerate() {
            let dims = if i % 5 == 4 { 1 } else { 2 };
            let s = random_shape(&mut rng, dims, group, cg, mg);
            let a = to3(&s.axes());
            if !use_direct(&a, cg, mg) {
                continue;
            }
            let (x, w, b) = operands(&mut rng, &s);
            let m = group * mg;
            let ep = (i % 3 == 0).then(|| epilogue(m));
            let want = reference(&s, &x, &w, &b, ep.as_ref());
            let mut out = vec![f32::NAN; want.len()];
            conv_direct(
                isa,
                x.as_slice().unwrap(),
                [s.n, group * cg, m, group],
                w.as_slice().unwrap(),
                Some(b.as_slice().unwrap()),
                ep.as_ref(),
                &a,
                &mut out,
            );
            let got = ArrayD::from_shape_vec(IxDyn(want.shape()), out).unwrap();
            assert_arrays_close(&got, &want, 1e-5, &format!("{isa:?} {}", s.describe()));
            checked += 1;
        }
    }
    assert!(
        checked >= 40,
        "only {checked} shapes took the direct kernel"
    );
}

/// Runs `strategy` on `s` (random operands, with or without the epilogue) and checks it
/// against the reference.
fn check_strategy(
    rng: &mut Rng,
    s: &Shape,
    with_epilogue: bool,
    what: &str,
    strategy: impl Fn(ConvData<'_>, Option<&ConvEpilogue>) -> Vec<f32>,
) {
    let (x, w, b) = operands(rng, s);
    let m = s.group * s.mg;
    let ep = with_epilogue.then(|| epilogue(m));
    let want = reference(s, &x, &w, &b, ep.as_ref());
    let a = to3(&s.axes());
    let d = ConvData {
        x: x.as_slice().unwrap(),
        n: s.n,
        c: s.group * s.cg,
        w: w.as_slice().unwrap(),
        m,
        group: s.group,
        bias: Some(b.as_slice().unwrap()),
        a: &a,
    };
    let got = ArrayD::from_shape_vec(IxDyn(want.shape()), strategy(d, ep.as_ref())).unwrap();
    assert_arrays_close(&got, &want, 1e-5, &format!("{what} {}", s.describe()));
}

#[test]
fn depthwise_fma_rows_match_reference() {
    let mut rng = Rng::new(43);
    let mut fma_shapes = 0;
    for isa in Isa::available() {
        for i in 0..40 {
            // Kernel width 3 or 5 at column stride 1 (the FMA rows), any dilation and pads;
            // rows from narrower than a vector to several four-vector blocks.
            let (group, mg) = if i % 4 == 3 { (3, 2) } else { (5, 1) };
            let mut s = random_shape(&mut rng, 2, group, 1, mg);
            let kw = if i % 2 == 0 { 3 } else { 5 };
            s.kernel[1] = kw;
            s.stride[1] = 1;
            s.dil[1] = rng.range(1, 4);
            s.pad[1] = (rng.range(0, kw - 1), rng.range(0, kw - 1));
            s.input[1] = rng.range(s.dil[1] * (kw - 1) + 1, 150);
            let a = to3(&s.axes());
            let window = super::depthwise::Window::new(&a);
            if mg == 1 && super::depthwise_fma::fits(&window, &a) {
                fma_shapes += 1;
            }
            let what = format!("{isa:?} depthwise");
            check_strategy(&mut rng, &s, i % 3 == 0, &what, |d, e| {
                super::depthwise::depthwise(isa, d, e)
            });
        }
    }
    assert!(
        fma_shapes >= 40,
        "only {fma_shapes} shapes took the FMA rows"
    );
}

#[test]
fn panel_products_match_reference() {
    let mut rng = Rng::new(47);
    for isa in Isa::available() {
        for i in 0..30 {
            // Pointwise: up to 64 input channels, planes from a few columns to several
            // column blocks (1-D, up to 1,600 columns).
            let group = if i % 5 == 4 { 2 } else { 1 };
            let (cg, mg) = (rng.range(1, 64), rng.range(1, 21));
            let mut s = random_shape(&mut rng, 1, group, cg, mg);
            s.kernel[0] = 1;
            s.stride[0] = 1;
            s.dil[0] = 1;
            s.pad[0] = (0, 0);
            s.input[0] = if i % 3 == 0 {
                rng.range(1, 40)
            } else {
                rng.range(40, 1600)
            };
            let what = format!("{isa:?} pointwise panels");
            check_strategy(&mut rng, &s, i % 2 == 0, &what, |d, e| {
                pointwise_by_panels(isa, d, e)
            });
            // im2col blocks: small kernels over few channels, 2-D, any stride, dilation, pads.
            let (cg, mg) = (rng.range(1, 4), rng.range(1, 20));
            let s = random_shape(&mut rng, 2, group, cg, mg);
            let what = format!("{isa:?} im2col panels");
            check_strategy(&mut rng, &s, i % 2 == 1, &what, |d, e| {
                im2col_by_panels(isa, d, e)
            });
            // im2col blocks with long rows: 3×3 kernels over up to 64 channels into up to 64.
            let (cg, mg) = (rng.range(8, 64), rng.range(1, 64));
            let mut s = random_shape(&mut rng, 2, 1, cg, mg);
            s.kernel = vec![3, 3];
            s.dil = vec![1, 1];
            s.pad = vec![(1, 1), (1, 1)];
            let what = format!("{isa:?} long im2col panels");
            check_strategy(&mut rng, &s, i % 2 == 0, &what, |d, e| {
                im2col_by_panels(isa, d, e)
            });
        }
    }
}
