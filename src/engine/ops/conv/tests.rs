//! Conv and ConvTranspose against naive references, the lane kernels, errors.

use ndarray::{ArrayD, IxDyn};

use super::super::testutil::{Rng, assert_arrays_close, err, ints, node, run1};
use super::lanes::{LaneKernel, conv_lanes};
use super::{Axis, ConvData, to3};
use crate::ir::{Attribute, Node};

/// Spatial dims padded to 3 (leading 1s).
fn pad3(v: &[usize], fill: usize) -> [usize; 3] {
    let mut o = [fill; 3];
    o[3 - v.len()..].copy_from_slice(v);
    o
}

/// Naive direct convolution. `pb` are the begin pads; `out` the output spatial dims.
#[allow(clippy::too_many_arguments)]
pub(super) fn conv_ref(
    x: &ArrayD<f32>,
    w: &ArrayD<f32>,
    b: Option<&ArrayD<f32>>,
    group: usize,
    strides: &[usize],
    dil: &[usize],
    pb: &[isize],
    out: &[usize],
) -> ArrayD<f32> {
    let sp = x.ndim() - 2;
    let (n, c, m) = (x.shape()[0], x.shape()[1], w.shape()[0]);
    let (cg, mg) = (c / group, m / group);
    let i3 = pad3(&x.shape()[2..], 1);
    let k3 = pad3(&w.shape()[2..], 1);
    let o3 = pad3(out, 1);
    let s3 = pad3(strides, 1);
    let d3 = pad3(dil, 1);
    let mut p3 = [0isize; 3];
    p3[3 - sp..].copy_from_slice(pb);
    let xs = x.as_standard_layout().iter().copied().collect::<Vec<_>>();
    let ws = w.as_standard_layout().iter().copied().collect::<Vec<_>>();
    let mut y = Vec::new();
    for ni in 0..n {
        for mi in 0..m {
            let g = mi / mg;
            for od in 0..o3[0] {
                for oh in 0..o3[1] {
                    for ow in 0..o3[2] {
                        let mut s = b.map_or(0.0, |b| b[[mi]] as f64);
                        for ci in 0..cg {
                            let cin = g * cg + ci;
                            for kd in 0..k3[0] {
                                for kh in 0..k3[1] {
                                    for kw in 0..k3[2] {
                                        let id = (od * s3[0] + kd * d3[0]) as isize - p3[0];
                                        let ih = (oh * s3[1] + kh * d3[1]) as isize - p3[1];
                                        let iw = (ow * s3[2] + kw * d3[2]) as isize - p3[2];
                                        if id < 0
                                            || ih < 0
                                            || iw < 0
                                            || id >= i3[0] as isize
                                            || ih >= i3[1] as isize
                                            || iw >= i3[2] as isize
                                        {
                                            continue;
                                        }
                                        let (id, ih, iw) = (id as usize, ih as usize, iw as usize);
                                        let xv = xs[(((ni * c + cin) * i3[0] + id) * i3[1] + ih)
                                            * i3[2]
                                            + iw];
                                        let wv = ws[(((mi * cg + ci) * k3[0] + kd) * k3[1] + kh)
                                            * k3[2]
                                            + kw];
                                        s += xv as f64 * wv as f64;
                                    }
                                }
                            }
                        }
                        y.push(s as f32);
                    }
                }
            }
        }
    }
    let mut shape = vec![n, m];
    shape.extend_from_slice(out);
    ArrayD::from_shape_vec(IxDyn(&shape), y).unwrap()
}

fn ilist(v: &[usize]) -> Attribute {
    Attribute::Ints(v.iter().map(|&x| x as i64).collect())
}

#[test]
fn conv_onnx_doc_examples() {
    let x =
        ArrayD::from_shape_vec(IxDyn(&[1, 1, 5, 5]), (0..25).map(|v| v as f32).collect()).unwrap();
    let w = ArrayD::from_elem(IxDyn(&[1, 1, 3, 3]), 1.0f32);
    let n = node("Conv", 2, 1, vec![("pads", ints(&[1, 1, 1, 1]))]);
    let y = run1(&n, &[Some(&x), Some(&w)]);
    let want = [
        12., 21., 27., 33., 24., 33., 54., 63., 72., 51., 63., 99., 108., 117., 81., 93., 144.,
        153., 162., 111., 72., 111., 117., 123., 84.,
    ];
    assert_eq!(y.iter().copied().collect::<Vec<_>>(), want);
    let n = node("Conv", 2, 1, vec![]);
    let y = run1(&n, &[Some(&x), Some(&w)]);
    assert_eq!(
        y.iter().copied().collect::<Vec<_>>(),
        [54., 63., 72., 99., 108., 117., 144., 153., 162.]
    );
    let n = node(
        "Conv",
        2,
        1,
        vec![("pads", ints(&[1, 1, 1, 1])), ("strides", ints(&[2, 2]))],
    );
    let y = run1(&n, &[Some(&x), Some(&w)]);
    assert_eq!(
        y.iter().copied().collect::<Vec<_>>(),
        [12., 27., 24., 63., 108., 81., 72., 117., 84.]
    );
}

struct Case {
    spatial: Vec<usize>,
    kernel: Vec<usize>,
    strides: Vec<usize>,
    dil: Vec<usize>,
    pads: Vec<usize>,
    auto_pad: &'static str,
    n: usize,
    cg: usize,
    mg: usize,
    group: usize,
    bias: bool,
}

fn check_conv(rng: &mut Rng, c: &Case) {
    let sp = c.spatial.len();
    let mut xshape = vec![c.n, c.cg * c.group];
    xshape.extend(&c.spatial);
    let mut wshape = vec![c.mg * c.group, c.cg];
    wshape.extend(&c.kernel);
    let x = rng.array(&xshape);
    let w = rng.array(&wshape);
    let b = rng.array(&[c.mg * c.group]);
    let mut out = vec![];
    let mut pb = vec![];
    for i in 0..sp {
        let span = c.dil[i] * (c.kernel[i] - 1) + 1;
        match c.auto_pad {
            "SAME_UPPER" | "SAME_LOWER" => {
                let o = c.spatial[i].div_ceil(c.strides[i]);
                let total = ((o - 1) * c.strides[i] + span).saturating_sub(c.spatial[i]);
                pb.push(if c.auto_pad == "SAME_UPPER" {
                    total / 2
                } else {
                    total - total / 2
                } as isize);
                out.push(o);
            }
            "VALID" => {
                pb.push(0);
                out.push((c.spatial[i] - span) / c.strides[i] + 1);
            }
            _ => {
                pb.push(c.pads[i] as isize);
                out.push((c.spatial[i] + c.pads[i] + c.pads[i + sp] - span) / c.strides[i] + 1);
            }
        }
    }
    let mut attrs = vec![
        ("strides", ilist(&c.strides)),
        ("dilations", ilist(&c.dil)),
        ("group", Attribute::Int(c.group as i64)),
        ("auto_pad", Attribute::String(c.auto_pad.into())),
    ];
    if c.auto_pad == "NOTSET" {
        attrs.push(("pads", ilist(&c.pads)));
    }
    if rng.range(0, 1) == 1 {
        attrs.push(("kernel_shape", ilist(&c.kernel)));
    }
    let nd = node("Conv", if c.bias { 3 } else { 2 }, 1, attrs);
    let inputs = if c.bias {
        vec![Some(&x), Some(&w), Some(&b)]
    } else {
        vec![Some(&x), Some(&w)]
    };
    let y = run1(&nd, &inputs);
    let want = conv_ref(
        &x,
        &w,
        c.bias.then_some(&b),
        c.group,
        &c.strides,
        &c.dil,
        &pb,
        &out,
    );
    assert_arrays_close(
        &y,
        &want,
        1e-5,
        &format!(
            "conv x{xshape:?} w{wshape:?} s{:?} d{:?} p{:?} {} g{}",
            c.strides, c.dil, c.pads, c.auto_pad, c.group
        ),
    );
}

#[test]
fn conv_random_against_naive() {
    let mut rng = Rng::new(3);
    let modes = ["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"];
    for case in 0..150 {
        let sp = 1 + case % 3;
        let kernel: Vec<usize> = (0..sp).map(|_| rng.range(1, 3)).collect();
        let strides: Vec<usize> = (0..sp).map(|_| rng.range(1, 3)).collect();
        let dil: Vec<usize> = (0..sp).map(|_| rng.range(1, 2)).collect();
        let pads: Vec<usize> = (0..2 * sp).map(|_| rng.range(0, 2)).collect();
        let max_sz = if sp == 3 { 6 } else { 11 };
        let spatial: Vec<usize> = (0..sp)
            .map(|i| rng.range(dil[i] * (kernel[i] - 1) + 1, max_sz))
            .collect();
        let (group, cg, mg) = match case % 5 {
            0 => (1, rng.range(1, 5), rng.range(1, 5)),
            1 => (rng.range(2, 3), rng.range(1, 3), rng.range(1, 3)),
            2 => (rng.range(2, 6), 1, 1),               // depthwise
            3 => (rng.range(2, 4), 1, rng.range(2, 3)), // depthwise with multiplier
            _ => (1, rng.range(1, 8), rng.range(1, 8)),
        };
        let c = Case {
            auto_pad: modes[rng.range(0, modes.len() - 1)],
            spatial,
            kernel,
            strides,
            dil,
            pads,
            n: rng.range(1, 3),
            cg,
            mg,
            group,
            bias: rng.range(0, 1) == 1,
        };
        check_conv(&mut rng, &c);
    }
}

#[test]
fn conv_special_paths() {
    let mut rng = Rng::new(5);
    let base = |spatial: Vec<usize>, kernel: Vec<usize>| Case {
        strides: vec![1; spatial.len()],
        dil: vec![1; spatial.len()],
        pads: vec![0; 2 * spatial.len()],
        auto_pad: "NOTSET",
        spatial,
        kernel,
        n: 1,
        cg: 1,
        mg: 1,
        group: 1,
        bias: true,
    };
    // Pointwise (input used directly as GEMM operand), batch 1 and 3, grouped.
    for (n, group) in [(1, 1), (3, 1), (2, 2)] {
        check_conv(
            &mut rng,
            &Case {
                n,
                group,
                cg: 5,
                mg: 7,
                ..base(vec![6, 9], vec![1, 1])
            },
        );
    }
    // Large single product (threaded GEMM, parallel im2col), with padding and stride.
    check_conv(
        &mut rng,
        &Case {
            cg: 32,
            mg: 48,
            pads: vec![1, 2, 1, 0],
            strides: vec![1, 2],
            ..base(vec![20, 23], vec![3, 3])
        },
    );
    check_conv(
        &mut rng,
        &Case {
            n: 2,
            cg: 24,
            mg: 40,
            pads: vec![1; 4],
            ..base(vec![17, 17], vec![3, 3])
        },
    );
    // Large planes processed in im2col column blocks (last block partial; 3-D blocks
    // crossing depth slices).
    check_conv(
        &mut rng,
        &Case {
            cg: 64,
            mg: 8,
            pads: vec![1; 4],
            ..base(vec![53, 47], vec![3, 3])
        },
    );
    check_conv(
        &mut rng,
        &Case {
            cg: 16,
            mg: 4,
            pads: vec![1; 6],
            ..base(vec![4, 24, 24], vec![3, 3, 3])
        },
    );
    // Several images with large planes (one task per image and group).
    check_conv(
        &mut rng,
        &Case {
            n: 2,
            cg: 3,
            mg: 4,
            pads: vec![1; 4],
            ..base(vec![36, 36], vec![3, 3])
        },
    );
    // Images batched into one product, with a partial last chunk (3 images, 2 per chunk).
    check_conv(
        &mut rng,
        &Case {
            n: 3,
            cg: 6,
            mg: 5,
            group: 2,
            ..base(vec![22, 22], vec![3, 3])
        },
    );
    // Depthwise with stride 2 and larger kernel.
    check_conv(
        &mut rng,
        &Case {
            group: 16,
            strides: vec![2, 2],
            pads: vec![2, 2, 2, 2],
            ..base(vec![19, 21], vec![5, 5])
        },
    );
    // Kernel exactly the padded input; pads larger than the kernel.
    check_conv(
        &mut rng,
        &Case {
            cg: 2,
            mg: 3,
            pads: vec![2, 3],
            ..base(vec![4], vec![9])
        },
    );
    check_conv(
        &mut rng,
        &Case {
            cg: 2,
            mg: 3,
            pads: vec![4, 5],
            ..base(vec![3], vec![2])
        },
    );
}

#[test]
fn conv_lane_paths() {
    // Enough images for the lane kernel (16 per vector with AVX-512, 8 with AVX2) and small
    // planes; partial last lane groups, padded channel tiles, groups, strides, dilations,
    // 1-D and 3-D, taps that are all padding.
    let mut rng = Rng::new(11);
    let base = |n: usize, spatial: Vec<usize>, kernel: Vec<usize>| Case {
        strides: vec![1; spatial.len()],
        dil: vec![1; spatial.len()],
        pads: vec![1; 2 * spatial.len()],
        auto_pad: "NOTSET",
        spatial,
        kernel,
        n,
        cg: 1,
        mg: 16,
        group: 1,
        bias: true,
    };
    let cases = [
        base(64, vec![8, 8], vec![3, 3]),
        Case {
            cg: 5,
            mg: 19,
            ..base(16, vec![8, 8], vec![3, 3])
        },
        Case {
            cg: 3,
            mg: 8,
            group: 2,
            bias: false,
            ..base(17, vec![4, 4], vec![3, 3])
        },
        Case {
            cg: 4,
            mg: 7,
            strides: vec![2, 1],
            dil: vec![1, 2],
            pads: vec![2, 0, 1, 1],
            ..base(33, vec![7, 5], vec![3, 2])
        },
        Case {
            cg: 2,
            mg: 5,
            dil: vec![2],
            pads: vec![2, 1],
            ..base(20, vec![9], vec![3])
        },
        Case {
            cg: 3,
            mg: 17,
            ..base(16, vec![3, 4, 4], vec![3, 3, 3])
        },
        Case {
            cg: 4,
            mg: 8,
            pads: vec![0; 4],
            ..base(16, vec![6, 6], vec![1, 1])
        },
        Case {
            cg: 2,
            mg: 3,
            strides: vec![2, 2],
            auto_pad: "SAME_UPPER",
            ..base(24, vec![7, 7], vec![3, 3])
        },
        Case {
            cg: 2,
            mg: 4,
            pads: vec![3, 3, 3, 3],
            ..base(16, vec![2, 2], vec![5, 5])
        },
        // Depthwise (own kernel; one lane group, so split over threads), with a channel
        // multiplier, stride 2, no bias.
        Case {
            mg: 1,
            group: 24,
            ..base(16, vec![4, 4], vec![3, 3])
        },
        Case {
            mg: 3,
            group: 5,
            strides: vec![2, 2],
            bias: false,
            ..base(17, vec![8, 7], vec![3, 3])
        },
    ];
    for c in &cases {
        check_conv(&mut rng, c);
    }
}

/// Every lane kernel this CPU supports (not only the one `lane_kernel` picks), with its
/// transpose, against the naive convolution.
#[cfg(target_arch = "x86_64")]
#[test]
fn lane_kernel_variants() {
    let variants = [LaneKernel::avx512(), LaneKernel::avx2()];
    let mut rng = Rng::new(12);
    for k in variants.into_iter().flatten() {
        for (rows, cols) in [(1, 1), (16, 16), (17, 33), (40, 8), (8, 40), (5, 100)] {
            let (lds, ldd) = (cols + 3, rows + 2);
            let src: Vec<f32> = (0..rows * lds).map(|_| rng.f32()).collect();
            let mut dst = vec![f32::NAN; cols * ldd];
            (k.transpose)(&src, lds, &mut dst, ldd, rows, cols);
            for (i, &v) in dst.iter().enumerate() {
                let (c, r) = (i / ldd, i % ldd);
                if r < rows {
                    assert_eq!(v, src[r * lds + c], "{rows}x{cols} at ({r}, {c})");
                } else {
                    assert!(v.is_nan(), "{rows}x{cols}: wrote past the rows");
                }
            }
        }
        for (group, cg, mg) in [(2, 3, 11), (6, 1, 2)] {
            let n = 2 * k.lanes + 3;
            let (c, m) = (group * cg, group * mg);
            let x = rng.array(&[n, c, 5, 6]);
            let w = rng.array(&[m, cg, 3, 2]);
            let b = rng.array(&[m]);
            let axes = [
                Axis {
                    input: 5,
                    kernel: 3,
                    stride: 1,
                    dilation: 2,
                    pad_begin: 2,
                    pad_end: 1,
                    output: 4,
                },
                Axis {
                    input: 6,
                    kernel: 2,
                    stride: 2,
                    dilation: 1,
                    pad_begin: 1,
                    pad_end: 0,
                    output: 3,
                },
            ];
            let mut out = vec![0.0f32; n * m * 12];
            let bias: Vec<f32> = b.iter().copied().collect();
            let data = ConvData {
                x: x.as_slice().unwrap(),
                n,
                c,
                w: w.as_slice().unwrap(),
                m,
                group,
                bias: Some(&bias),
                a: &to3(&axes),
            };
            conv_lanes(data, k, &mut out);
            let got = ArrayD::from_shape_vec(IxDyn(&[n, m, 4, 3]), out).unwrap();
            let want = conv_ref(&x, &w, Some(&b), group, &[1, 2], &[2, 1], &[2, 1], &[4, 3]);
            assert_arrays_close(
                &got,
                &want,
                1e-5,
                &format!("{} lanes, {group} groups of {cg}", k.lanes),
            );
        }
    }
}

fn conv_node(attrs: Vec<(&str, Attribute)>) -> Node {
    node("Conv", 3, 1, attrs)
}

#[test]
fn conv_errors() {
    let x = ArrayD::<f32>::zeros(IxDyn(&[1, 3, 8, 8]));
    let w = ArrayD::<f32>::zeros(IxDyn(&[16, 16, 3, 3]));
    let msg = err(&conv_node(vec![]), &[Some(&x), Some(&w)]);
    assert_eq!(msg, "input channels 3 do not match weight's 16 × group 1");
    let w = ArrayD::<f32>::zeros(IxDyn(&[16, 3, 3, 3]));
    let b = ArrayD::<f32>::zeros(IxDyn(&[15]));
    let msg = err(&conv_node(vec![]), &[Some(&x), Some(&w), Some(&b)]);
    assert!(msg.contains("bias"), "{msg}");
    let msg = err(
        &conv_node(vec![("strides", ints(&[0, 1]))]),
        &[Some(&x), Some(&w)],
    );
    assert!(msg.contains("strides"), "{msg}");
    let msg = err(
        &conv_node(vec![("strides", ints(&[1]))]),
        &[Some(&x), Some(&w)],
    );
    assert!(msg.contains("expected 2"), "{msg}");
    let msg = err(
        &conv_node(vec![("pads", ints(&[1, 1, -1, 1]))]),
        &[Some(&x), Some(&w)],
    );
    assert!(msg.contains("pads"), "{msg}");
    let msg = err(
        &conv_node(vec![("dilations", ints(&[4, 4]))]),
        &[Some(&x), Some(&w)],
    );
    assert!(msg.contains("larger than the padded input"), "{msg}");
    let msg = err(
        &conv_node(vec![("kernel_shape", ints(&[5, 5]))]),
        &[Some(&x), Some(&w)],
    );
    assert!(msg.contains("kernel_shape"), "{msg}");
    let msg = err(
        &conv_node(vec![("auto_pad", Attribute::String("SAME".into()))]),
        &[Some(&x), Some(&w)],
    );
    assert!(msg.contains("auto_pad"), "{msg}");
    let msg = err(
        &conv_node(vec![("group", Attribute::Int(0))]),
        &[Some(&x), Some(&w)],
    );
    assert!(msg.contains("group"), "{msg}");
    let w5 = ArrayD::<f32>::zeros(IxDyn(&[16, 3, 3]));
    let msg = err(&conv_node(vec![]), &[Some(&x), Some(&w5)]);
    assert!(msg.contains("rank"), "{msg}");
    let x2 = ArrayD::<f32>::zeros(IxDyn(&[1, 3]));
    let msg = err(&conv_node(vec![]), &[Some(&x2), Some(&w)]);
    assert!(msg.contains("[N, C"), "{msg}");
    let wg = ArrayD::<f32>::zeros(IxDyn(&[5, 1, 3, 3]));
    let msg = err(
        &conv_node(vec![("group", Attribute::Int(3))]),
        &[Some(&x), Some(&wg)],
    );
    assert!(msg.contains("not divisible"), "{msg}");
    let w0 = ArrayD::<f32>::zeros(IxDyn(&[4, 3, 0, 3]));
    let msg = err(&conv_node(vec![]), &[Some(&x), Some(&w0)]);
    assert!(msg.contains("zero"), "{msg}");
}

/// Naive transposed convolution by scattering, with begin pads `pb` and output dims `out`.
#[allow(clippy::too_many_arguments)]
fn conv_t_ref(
    x: &ArrayD<f32>,
    w: &ArrayD<f32>,
    b: Option<&ArrayD<f32>>,
    group: usize,
    strides: &[usize],
    dil: &[usize],
    pb: &[isize],
    out: &[usize],
) -> ArrayD<f32> {
    let sp = x.ndim() - 2;
    let (n, c, mg) = (x.shape()[0], x.shape()[1], w.shape()[1]);
    let cg = c / group;
    let m = mg * group;
    let mut shape = vec![n, m];
    shape.extend_from_slice(out);
    let mut y = ArrayD::<f64>::zeros(IxDyn(&shape));
    for (idx, &xv) in x.indexed_iter() {
        let (ni, ci) = (idx[0], idx[1]);
        let g = ci / cg;
        for (widx, &wv) in w.indexed_iter() {
            if widx[0] != ci {
                continue;
            }
            let mo = g * mg + widx[1];
            let mut oidx = vec![ni, mo];
            let mut inside = true;
            for i in 0..sp {
                let o = (idx[2 + i] * strides[i] + widx[2 + i] * dil[i]) as isize - pb[i];
                if o < 0 || o >= out[i] as isize {
                    inside = false;
                }
                oidx.push(o.max(0) as usize);
            }
            if inside {
                y[IxDyn(&oidx)] += xv as f64 * wv as f64;
            }
        }
    }
    if let Some(b) = b {
        for (idx, v) in y.indexed_iter_mut() {
            *v += b[[idx[1]]] as f64;
        }
    }
    y.mapv(|v| v as f32)
}

#[test]
fn conv_transpose_onnx_doc_example() {
    let x =
        ArrayD::from_shape_vec(IxDyn(&[1, 1, 3, 3]), (0..9).map(|v| v as f32).collect()).unwrap();
    let w = ArrayD::from_elem(IxDyn(&[1, 2, 3, 3]), 1.0f32);
    let y = run1(&node("ConvTranspose", 2, 1, vec![]), &[Some(&x), Some(&w)]);
    assert_eq!(y.shape(), [1, 2, 5, 5]);
    let plane = [
        0., 1., 3., 3., 2., 3., 8., 15., 12., 7., 9., 21., 36., 27., 15., 9., 20., 33., 24., 13.,
        6., 13., 21., 15., 8.,
    ];
    let got: Vec<f32> = y.iter().copied().collect();
    assert_eq!(&got[..25], plane);
    assert_eq!(&got[25..], plane);
}

#[test]
fn conv_transpose_random_against_naive() {
    let mut rng = Rng::new(9);
    for case in 0..120 {
        let sp = 1 + case % 3;
        let kernel: Vec<usize> = (0..sp).map(|_| rng.range(1, 3)).collect();
        let strides: Vec<usize> = (0..sp).map(|_| rng.range(1, 3)).collect();
        let dil: Vec<usize> = (0..sp).map(|_| rng.range(1, 2)).collect();
        let spatial: Vec<usize> = (0..sp)
            .map(|_| rng.range(1, if sp == 3 { 4 } else { 7 }))
            .collect();
        let outpad: Vec<usize> = (0..sp)
            .map(|i| rng.range(0, strides[i].max(dil[i]) - 1))
            .collect();
        let group = rng.range(1, 3);
        let (cg, mg) = (rng.range(1, 3), rng.range(1, 3));
        let n = rng.range(1, 2);
        let mut xshape = vec![n, cg * group];
        xshape.extend(&spatial);
        let mut wshape = vec![cg * group, mg];
        wshape.extend(&kernel);
        let x = rng.array(&xshape);
        let w = rng.array(&wshape);
        let b = rng.array(&[mg * group]);
        let full: Vec<isize> = (0..sp)
            .map(|i| {
                (strides[i] * (spatial[i] - 1) + outpad[i] + dil[i] * (kernel[i] - 1) + 1) as isize
            })
            .collect();
        let mut attrs = vec![
            ("strides", ilist(&strides)),
            ("dilations", ilist(&dil)),
            ("output_padding", ilist(&outpad)),
            ("group", Attribute::Int(group as i64)),
        ];
        let mode = case % 5;
        let (pb, out): (Vec<isize>, Vec<usize>) = match mode {
            0 | 1 => {
                // Explicit pads (kept small enough for a positive output).
                let pads: Vec<usize> = (0..2 * sp).map(|_| rng.range(0, 1)).collect();
                let pads: Vec<usize> = pads
                    .iter()
                    .enumerate()
                    .map(|(j, &p)| if full[j % sp] > 2 { p } else { 0 })
                    .collect();
                attrs.push(("pads", ilist(&pads)));
                (
                    (0..sp).map(|i| pads[i] as isize).collect(),
                    (0..sp)
                        .map(|i| (full[i] - pads[i] as isize - pads[i + sp] as isize) as usize)
                        .collect(),
                )
            }
            2 => {
                // output_shape: pads derived (NOTSET: extra pad at the beginning).
                let os: Vec<usize> = (0..sp)
                    .map(|i| (full[i] as usize).saturating_sub(rng.range(0, 2)).max(1))
                    .collect();
                attrs.push(("output_shape", ilist(&os)));
                let pb = (0..sp)
                    .map(|i| {
                        let t = full[i] - os[i] as isize;
                        t - t / 2
                    })
                    .collect();
                (pb, os)
            }
            3 | 4 => {
                let upper = mode == 3;
                attrs.push((
                    "auto_pad",
                    Attribute::String(if upper { "SAME_UPPER" } else { "SAME_LOWER" }.into()),
                ));
                let out: Vec<usize> = (0..sp).map(|i| spatial[i] * strides[i]).collect();
                let pb = (0..sp)
                    .map(|i| {
                        let t = (full[i] - out[i] as isize).max(0);
                        if upper { t / 2 } else { t - t / 2 }
                    })
                    .collect();
                (pb, out)
            }
            _ => unreachable!(),
        };
        let with_bias = case % 2 == 0;
        let nd = node("ConvTranspose", if with_bias { 3 } else { 2 }, 1, attrs);
        let inputs = if with_bias {
            vec![Some(&x), Some(&w), Some(&b)]
        } else {
            vec![Some(&x), Some(&w)]
        };
        let y = run1(&nd, &inputs);
        let want = conv_t_ref(
            &x,
            &w,
            with_bias.then_some(&b),
            group,
            &strides,
            &dil,
            &pb,
            &out,
        );
        assert_arrays_close(
            &y,
            &want,
            1e-5,
            &format!(
                "convT x{xshape:?} w{wshape:?} s{strides:?} d{dil:?} op{outpad:?} mode {mode}"
            ),
        );
    }
}

#[test]
fn conv_transpose_output_shape_variants() {
    let mut rng = Rng::new(21);
    let x = rng.array(&[1, 2, 3, 3]);
    let w = rng.array(&[2, 3, 3, 3]);
    // output_shape given with N and C, larger than natural (negative padding → zeros).
    let nd = node(
        "ConvTranspose",
        2,
        1,
        vec![
            ("strides", ints(&[2, 2])),
            ("output_shape", ints(&[1, 3, 10, 8])),
        ],
    );
    let y = run1(&nd, &[Some(&x), Some(&w)]);
    // natural 7×7: totals −3 and −1 → begin pads −1 and 0 (NOTSET puts the larger half first).
    let want = conv_t_ref(&x, &w, None, 1, &[2, 2], &[1, 1], &[-1, 0], &[10, 8]);
    assert_arrays_close(&y, &want, 1e-5, "output_shape larger");
    // VALID ignores pads.
    let nd = node(
        "ConvTranspose",
        2,
        1,
        vec![
            ("auto_pad", Attribute::String("VALID".into())),
            ("strides", ints(&[2, 1])),
        ],
    );
    let y = run1(&nd, &[Some(&x), Some(&w)]);
    let want = conv_t_ref(&x, &w, None, 1, &[2, 1], &[1, 1], &[0, 0], &[7, 5]);
    assert_arrays_close(&y, &want, 1e-5, "VALID");
}

#[test]
fn conv_transpose_errors() {
    let x = ArrayD::<f32>::zeros(IxDyn(&[1, 4, 5, 5]));
    let w = ArrayD::<f32>::zeros(IxDyn(&[3, 2, 3, 3]));
    let msg = err(&node("ConvTranspose", 2, 1, vec![]), &[Some(&x), Some(&w)]);
    assert!(msg.contains("input channels 4"), "{msg}");
    let w = ArrayD::<f32>::zeros(IxDyn(&[4, 2, 3, 3]));
    let msg = err(
        &node("ConvTranspose", 2, 1, vec![("pads", ints(&[4, 4, 4, 4]))]),
        &[Some(&x), Some(&w)],
    );
    assert!(msg.contains("output size"), "{msg}");
    let msg = err(
        &node(
            "ConvTranspose",
            2,
            1,
            vec![("output_shape", ints(&[5, 5, 5]))],
        ),
        &[Some(&x), Some(&w)],
    );
    assert!(msg.contains("output_shape"), "{msg}");
    let msg = err(
        &node(
            "ConvTranspose",
            2,
            1,
            vec![("output_shape", ints(&[1 << 29, 1 << 29]))],
        ),
        &[Some(&x), Some(&w)],
    );
    assert!(msg.contains("too large"), "{msg}");
    let msg = err(
        &node("ConvTranspose", 2, 1, vec![("group", Attribute::Int(3))]),
        &[Some(&x), Some(&w)],
    );
    assert!(msg.contains("divisible"), "{msg}");
    let msg = err(
        &node("ConvTranspose", 2, 1, vec![("output_padding", ints(&[1]))]),
        &[Some(&x), Some(&w)],
    );
    assert!(msg.contains("output_padding"), "{msg}");
}
