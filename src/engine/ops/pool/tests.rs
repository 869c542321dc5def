//! Pools against the ONNX documentation examples and a naive reference, global pools, errors.

use ndarray::{ArrayD, IxDyn};

use super::super::testutil::{Rng, assert_arrays_close, err, ints, node, run_arrays, run1};
use crate::ir::Attribute;

fn seq(shape: &[usize]) -> ArrayD<f32> {
    let n = shape.iter().product::<usize>();
    ArrayD::from_shape_vec(IxDyn(shape), (1..=n).map(|v| v as f32).collect()).unwrap()
}

fn vals(a: &ArrayD<f32>) -> Vec<f32> {
    a.iter().copied().collect()
}

#[test]
fn onnx_doc_examples() {
    let x = seq(&[1, 1, 4, 4]);
    let attrs = || {
        vec![
            ("kernel_shape", ints(&[3, 3])),
            ("strides", ints(&[2, 2])),
            ("ceil_mode", Attribute::Int(1)),
        ]
    };
    let y = run1(&node("MaxPool", 1, 1, attrs()), &[Some(&x)]);
    assert_eq!(vals(&y), [11., 12., 15., 16.]);
    let y = run1(&node("AveragePool", 1, 1, attrs()), &[Some(&x)]);
    assert_eq!(vals(&y), [6., 7.5, 12., 13.5]);

    let x = seq(&[1, 1, 5, 5]);
    let out = run_arrays(
        &node(
            "MaxPool",
            1,
            2,
            vec![
                ("kernel_shape", ints(&[5, 5])),
                ("pads", ints(&[2, 2, 2, 2])),
            ],
        ),
        &[Some(&x)],
    )
    .unwrap();
    let y: Vec<f32> = out[0].as_f32().unwrap().iter().copied().collect();
    let z: Vec<i64> = out[1].as_i64().unwrap().iter().copied().collect();
    let row = |a: f32| vec![a, a + 1., a + 2., a + 2., a + 2.];
    let want_y: Vec<f32> = [13., 18., 23., 23., 23.]
        .iter()
        .flat_map(|&a| row(a))
        .collect();
    assert_eq!(y, want_y);
    assert_eq!(z, want_y.iter().map(|&v| v as i64 - 1).collect::<Vec<_>>());

    let out = run_arrays(
        &node(
            "MaxPool",
            1,
            2,
            vec![
                ("kernel_shape", ints(&[2, 2])),
                ("strides", ints(&[2, 2])),
                ("storage_order", Attribute::Int(1)),
            ],
        ),
        &[Some(&x)],
    )
    .unwrap();
    assert_eq!(vals(out[0].as_f32().unwrap()), [7., 9., 17., 19.]);
    assert_eq!(
        out[1].as_i64().unwrap().iter().copied().collect::<Vec<_>>(),
        [6, 16, 8, 18]
    );
}

struct Geo {
    k: Vec<usize>,
    s: Vec<usize>,
    d: Vec<usize>,
    pb: Vec<usize>,
    pe: Vec<usize>,
    out: Vec<usize>,
}

/// Naive pooling of one plane `xp` with spatial dims `sh` (1 to 3 of them); returns
/// (max value, argmax within plane, average) per output position.
fn pool_ref(xp: &[f32], sh: &[usize], g: &Geo, include_pad: bool) -> Vec<(f32, i64, f32)> {
    let sp = sh.len();
    let total: usize = g.out.iter().product();
    let mut res = Vec::new();
    for o in 0..total {
        // Unravel the output index.
        let mut oi = vec![0; sp];
        let mut r = o;
        for i in (0..sp).rev() {
            oi[i] = r % g.out[i];
            r /= g.out[i];
        }
        let taps: usize = g.k.iter().product();
        let (mut best, mut arg, mut sum, mut cnt, mut cnt_pad) =
            (f32::NEG_INFINITY, -1i64, 0.0f64, 0usize, 0usize);
        for t in 0..taps {
            let mut ki = vec![0; sp];
            let mut r = t;
            for i in (0..sp).rev() {
                ki[i] = r % g.k[i];
                r /= g.k[i];
            }
            let pos: Vec<isize> = (0..sp)
                .map(|i| (oi[i] * g.s[i] + ki[i] * g.d[i]) as isize - g.pb[i] as isize)
                .collect();
            if (0..sp).all(|i| pos[i] < (sh[i] + g.pe[i]) as isize) {
                cnt_pad += 1;
            }
            if (0..sp).any(|i| pos[i] < 0 || pos[i] >= sh[i] as isize) {
                continue;
            }
            let mut flat = 0usize;
            for i in 0..sp {
                flat = flat * sh[i] + pos[i] as usize;
            }
            let v = xp[flat];
            if v > best {
                best = v;
                arg = flat as i64;
            }
            sum += v as f64;
            cnt += 1;
        }
        let avg = sum / if include_pad { cnt_pad } else { cnt } as f64;
        res.push((best, arg, avg as f32));
    }
    res
}

/// The 2×2 stride-2 fast path gives bit-identical results to the general row pass,
/// including NaN, infinities and signed zeros, for max and both average modes.
#[test]
fn pool_2x2_matches_rows() {
    use super::{Reduce, pool_2x2, pool_rows};
    use crate::engine::geometry::{Axis, to3};
    let mut rng = Rng::new(17);
    let special = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        -0.0,
        0.0,
        -f32::MAX,
    ];
    for (h, w, pad_end) in [(8, 8, 0), (7, 9, 0), (2, 2, 0), (5, 4, 1), (3, 6, 0)] {
        let axis = |input: usize| Axis {
            input,
            kernel: 2,
            stride: 2,
            dilation: 1,
            pad_begin: 0,
            pad_end,
            output: (input + pad_end as usize - 2) / 2 + 1,
        };
        let a = to3(&[axis(h), axis(w)]);
        let planes = 3;
        let xs: Vec<f32> = (0..planes * h * w)
            .map(|i| {
                let v = rng.f32();
                if i % 3 == 0 {
                    special[(i / 3) % special.len()]
                } else {
                    v
                }
            })
            .collect();
        for reduce in [
            Reduce::Max,
            Reduce::Avg { include_pad: false },
            Reduce::Avg { include_pad: true },
        ] {
            let fast = pool_2x2(&xs, planes, &a, reduce);
            let inside = 2 * a[1].output <= h && 2 * a[2].output <= w;
            assert_eq!(fast.is_some(), inside, "{h}x{w} pad_end {pad_end}");
            if let Some(fast) = fast {
                let rows = pool_rows(&xs, planes, &a, reduce);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&fast), bits(&rows), "{h}x{w}");
            }
        }
    }
}

#[test]
fn pools_random_against_naive() {
    let mut rng = Rng::new(17);
    for case in 0..200 {
        let sp = 1 + case % 3;
        let k: Vec<usize> = (0..sp).map(|_| rng.range(1, 3)).collect();
        let s: Vec<usize> = (0..sp).map(|_| rng.range(1, 3)).collect();
        let d: Vec<usize> = (0..sp)
            .map(|_| if case % 4 == 0 { rng.range(1, 2) } else { 1 })
            .collect();
        let pb: Vec<usize> = (0..sp).map(|i| rng.range(0, k[i] / 2)).collect();
        let pe: Vec<usize> = (0..sp).map(|i| rng.range(0, k[i] / 2)).collect();
        let sh: Vec<usize> = (0..sp)
            .map(|i| rng.range(d[i] * (k[i] - 1) + 1, if sp == 3 { 6 } else { 10 }))
            .collect();
        let ceil = case % 2 == 1;
        let include_pad = (case / 2) % 2 == 1;
        let auto = match case % 7 {
            5 => "SAME_UPPER",
            6 => "SAME_LOWER",
            _ => "NOTSET",
        };
        let mut g = Geo {
            k: k.clone(),
            s: s.clone(),
            d: d.clone(),
            pb: pb.clone(),
            pe: pe.clone(),
            out: vec![],
        };
        for i in 0..sp {
            let span = d[i] * (k[i] - 1) + 1;
            if auto == "NOTSET" {
                let room = sh[i] + pb[i] + pe[i] - span;
                let mut o = if ceil {
                    room.div_ceil(s[i]) + 1
                } else {
                    room / s[i] + 1
                };
                if ceil && (o - 1) * s[i] >= sh[i] + pb[i] {
                    o -= 1;
                }
                g.out.push(o);
            } else {
                let o = sh[i].div_ceil(s[i]);
                let total = ((o - 1) * s[i] + span).saturating_sub(sh[i]);
                let small = total / 2;
                let (b, e) = if auto == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
                g.pb[i] = b;
                g.pe[i] = e;
                g.out.push(o);
            }
        }
        let (n, c) = (rng.range(1, 2), rng.range(1, 3));
        let mut xshape = vec![n, c];
        xshape.extend(&sh);
        let x = rng.array(&xshape);
        let mut pads = pb.clone();
        pads.extend(&pe);
        let attrs = |avg: bool| {
            let mut a = vec![
                (
                    "kernel_shape",
                    Attribute::Ints(k.iter().map(|&v| v as i64).collect()),
                ),
                (
                    "strides",
                    Attribute::Ints(s.iter().map(|&v| v as i64).collect()),
                ),
                ("ceil_mode", Attribute::Int(ceil as i64)),
                ("auto_pad", Attribute::String(auto.into())),
            ];
            if d.iter().any(|&v| v != 1) || case % 3 == 0 {
                a.push((
                    "dilations",
                    Attribute::Ints(d.iter().map(|&v| v as i64).collect()),
                ));
            }
            if auto == "NOTSET" {
                a.push((
                    "pads",
                    Attribute::Ints(pads.iter().map(|&v| v as i64).collect()),
                ));
            }
            if avg {
                a.push(("count_include_pad", Attribute::Int(include_pad as i64)));
            }
            a
        };
        let out = run_arrays(&node("MaxPool", 1, 2, attrs(false)), &[Some(&x)]).unwrap();
        let avg = run1(&node("AveragePool", 1, 1, attrs(true)), &[Some(&x)]);
        let mut oshape = vec![n, c];
        oshape.extend(&g.out);
        let plane_in: usize = sh.iter().product();
        let (mut wy, mut wz, mut wa) = (vec![], vec![], vec![]);
        for p in 0..n * c {
            let xs: Vec<f32> = x.iter().copied().collect();
            for (m, i, a) in pool_ref(&xs[p * plane_in..(p + 1) * plane_in], &sh, &g, include_pad) {
                wy.push(m);
                wz.push((p * plane_in) as i64 + i);
                wa.push(a);
            }
        }
        let what = format!(
            "pool x{xshape:?} k{k:?} s{s:?} d{d:?} pads{pads:?} ceil {ceil} {auto} incl {include_pad}"
        );
        let wy = ArrayD::from_shape_vec(IxDyn(&oshape), wy).unwrap();
        let wa = ArrayD::from_shape_vec(IxDyn(&oshape), wa).unwrap();
        assert_arrays_close(out[0].as_f32().unwrap(), &wy, 0.0, &what);
        let y1 = run1(&node("MaxPool", 1, 1, attrs(false)), &[Some(&x)]);
        assert_arrays_close(&y1, &wy, 0.0, &format!("{what} (no indices)"));
        assert_eq!(
            out[1].as_i64().unwrap().iter().copied().collect::<Vec<_>>(),
            wz,
            "{what}"
        );
        assert_arrays_close(&avg, &wa, 1e-6, &what);
    }
}

#[test]
fn global_pools() {
    let mut rng = Rng::new(2);
    for shape in [
        vec![2, 3, 5, 7],
        vec![1, 4, 9],
        vec![2, 2, 3, 2, 4],
        vec![1, 1, 1000],
    ] {
        let x = rng.array(&shape);
        let ga = run1(&node("GlobalAveragePool", 1, 1, vec![]), &[Some(&x)]);
        let gm = run1(&node("GlobalMaxPool", 1, 1, vec![]), &[Some(&x)]);
        let mut oshape = shape.clone();
        oshape[2..].iter_mut().for_each(|d| *d = 1);
        let plane: usize = shape[2..].iter().product();
        let xs: Vec<f32> = x.iter().copied().collect();
        let mean: Vec<f32> = xs
            .chunks(plane)
            .map(|c| (c.iter().map(|&v| v as f64).sum::<f64>() / plane as f64) as f32)
            .collect();
        let max: Vec<f32> = xs
            .chunks(plane)
            .map(|c| c.iter().copied().fold(f32::MIN, f32::max))
            .collect();
        assert_arrays_close(
            &ga,
            &ArrayD::from_shape_vec(IxDyn(&oshape), mean).unwrap(),
            1e-5,
            "gap",
        );
        assert_arrays_close(
            &gm,
            &ArrayD::from_shape_vec(IxDyn(&oshape), max).unwrap(),
            0.0,
            "gmp",
        );
    }
}

#[test]
fn pool_errors() {
    let x = ArrayD::<f32>::zeros(IxDyn(&[1, 2, 4, 4]));
    let msg = err(&node("MaxPool", 1, 1, vec![]), &[Some(&x)]);
    assert!(msg.contains("kernel_shape"), "{msg}");
    let msg = err(
        &node("MaxPool", 1, 1, vec![("kernel_shape", ints(&[5, 5]))]),
        &[Some(&x)],
    );
    assert!(msg.contains("larger than the padded input"), "{msg}");
    let msg = err(
        &node(
            "AveragePool",
            1,
            1,
            vec![("kernel_shape", ints(&[2, 2])), ("strides", ints(&[0, 1]))],
        ),
        &[Some(&x)],
    );
    assert!(msg.contains("strides"), "{msg}");
    let msg = err(
        &node(
            "AveragePool",
            1,
            1,
            vec![("kernel_shape", ints(&[2, 2])), ("pads", ints(&[1, 1]))],
        ),
        &[Some(&x)],
    );
    assert!(msg.contains("pads"), "{msg}");
    let msg = err(
        &node("MaxPool", 1, 1, vec![("kernel_shape", ints(&[2]))]),
        &[Some(&x)],
    );
    assert!(msg.contains("kernel_shape"), "{msg}");
    let x2 = ArrayD::<f32>::zeros(IxDyn(&[2, 3]));
    let msg = err(&node("GlobalAveragePool", 1, 1, vec![]), &[Some(&x2)]);
    assert!(msg.contains("[N, C"), "{msg}");
    let msg = err(
        &node("MaxPool", 1, 1, vec![("kernel_shape", ints(&[1]))]),
        &[Some(&x2)],
    );
    assert!(msg.contains("[N, C"), "{msg}");
}
