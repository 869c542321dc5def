use ndarray::{ArrayD, IxDyn, array};

use super::*;
use crate::ir::{DType, TensorData};

/// Deterministic bell-shaped values (sum of uniforms), scaled by `scale`.
fn gaussian_like(shape: &[usize], seed: u64, scale: f32) -> ArrayD<f32> {
    use rand::{RngExt, SeedableRng};
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
    ArrayD::from_shape_simple_fn(IxDyn(shape), || {
        let s: f32 = (0..4).map(|_| rng.random::<f32>() - 0.5).sum();
        s * scale
    })
}

fn tensor(values: ArrayD<f32>, axis: Option<usize>) -> Tensor {
    let mut t = Tensor::new("w", TensorData::F32(values), DType::F32);
    t.role = crate::ir::ParamRole::Weight;
    t.channel_axis = axis;
    t
}

fn quant(text: &str, per_channel: bool) -> WeightQuant {
    WeightQuant {
        scheme: text.parse().unwrap(),
        per_channel,
    }
}

/// Σ g·Ŵ: a loss linear in the quantized weights, for derivatives of the scheme parameters.
fn dot(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum()
}

#[test]
fn forward_is_the_ptq_quantizer() {
    let w = gaussian_like(&[4, 3, 3, 3], 7, 0.2);
    for (text, per_channel) in [
        ("int4", true),
        ("int2", false),
        ("binary-scaled", true),
        ("ternary", true),
        ("kmeans2", false),
    ] {
        let q = quant(text, per_channel);
        let mut trainer =
            WeightQuantizer::new(&tensor(w.clone(), Some(0)), "conv", &q, None, 0.05).unwrap();
        let granularity = if per_channel {
            Granularity::PerChannel { axis: 0 }
        } else {
            Granularity::PerTensor
        };
        let want = q
            .scheme
            .fake_quantize(w.view(), granularity, None)
            .unwrap()
            .values;
        assert_eq!(trainer.quantize(&w, false, None).unwrap(), want, "{text}");
    }
}

#[test]
fn linear_ste_is_zero_outside_the_manual_clip_range() {
    let w = array![[-1.0f32, -0.2, 0.1, 0.45, 0.8]].into_dyn();
    let mut q = WeightQuantizer::new(
        &tensor(w.clone(), Some(0)),
        "fc",
        &quant("int4", false),
        Some((-0.5, 0.5)),
        0.05,
    )
    .unwrap();
    q.quantize(&w, true, None).unwrap();
    let g = ArrayD::from_elem(IxDyn(&[1, 5]), 1.0f32);
    let grads = q.backward(&w, &g).unwrap();
    // Symmetric int4 on ±0.5: S = 0.5/7, the grid reaches −8S = −0.571 and +7S = 0.5.
    assert_eq!(
        grads.latent.unwrap(),
        array![[0.0f32, 1.0, 1.0, 1.0, 0.0]].into_dyn()
    );
}

#[test]
fn scaled_binary_gradient_is_the_ste_plus_the_exact_alpha_term() {
    let w = array![[0.3f32, -0.1, 0.6, -0.2], [1.5, -0.4, 0.05, -0.9]].into_dyn();
    let g = array![[0.5f32, -1.0, 0.25, 2.0], [1.0, 0.5, -0.5, 0.3]].into_dyn();
    let mut q = WeightQuantizer::new(
        &tensor(w.clone(), Some(0)),
        "fc",
        &quant("binary-scaled", true),
        None,
        0.05,
    )
    .unwrap();
    let wq = q.quantize(&w, true, None).unwrap();
    let grads = q.backward(&w, &g).unwrap().latent.unwrap();
    for c in 0..2 {
        let alpha = w
            .index_axis(ndarray::Axis(0), c)
            .iter()
            .map(|v| v.abs())
            .sum::<f32>()
            / 4.0;
        assert!((wq[[c, 0]].abs() - alpha).abs() < 1e-7);
        // The α term with the codes held fixed: ∂/∂w_i Σ_j g_j·α(w)·b_j = sign(w_i)/n·Σ g_j b_j.
        let gb: f32 = (0..4).map(|j| g[[c, j]] * w[[c, j]].signum()).sum();
        for i in 0..4 {
            let ste = if w[[c, i]].abs() <= 1.0 {
                alpha * g[[c, i]]
            } else {
                0.0
            };
            let want = ste + w[[c, i]].signum() * gb / 4.0;
            assert!(
                (grads[[c, i]] - want).abs() < 1e-6,
                "({c}, {i}): {} vs {want}",
                grads[[c, i]]
            );
        }
    }
    // BinaryConnect keeps latent weights in [−1, 1].
    let mut latent = w.clone();
    q.clamp_latent(&mut latent);
    assert_eq!(latent[[1, 0]], 1.0);
}

#[test]
fn ttq_scale_gradients_are_the_sums_over_their_codes() {
    let w = gaussian_like(&[3, 8], 3, 0.5);
    let g = gaussian_like(&[3, 8], 4, 1.0);
    let q0 = quant("ttq", true);
    let mut q = WeightQuantizer::new(&tensor(w.clone(), Some(0)), "fc", &q0, None, 0.2).unwrap();
    q.quantize(&w, true, None).unwrap();
    let grads = q.backward(&w, &g).unwrap();
    // The scales are trained as ln Wp, ln Wn: the gradient is Wp·Σ_{Ŵ=+Wp} g (and
    // −Wn·Σ_{Ŵ=−Wn} g), checked in closed form and against central differences.
    let base = q.own_params();
    let (wp, wn) = q.ttq_scales().unwrap();
    let (wp, wn) = (wp.to_vec(), wn.to_vec());
    let wq = q.clone().quantize(&w, false, None).unwrap();
    for c in 0..3 {
        let sum = |positive: bool| -> f32 {
            (0..8)
                .filter(|&i| (wq[[c, i]] > 0.0) == positive && wq[[c, i]] != 0.0)
                .map(|i| g[[c, i]])
                .sum()
        };
        assert!((grads.own[c] - wp[c] * sum(true)).abs() < 1e-5);
        assert!((grads.own[3 + c] + wn[c] * sum(false)).abs() < 1e-5);
    }
    for k in 0..base.len() {
        let at = |delta: f32| {
            let mut p = q.clone();
            let mut v = base.clone();
            v[k] += delta;
            p.set_own_params(&v);
            dot(&g, &p.quantize(&w, false, None).unwrap())
        };
        let numeric = (at(1e-3) - at(-1e-3)) / 2e-3;
        assert!(
            (f64::from(grads.own[k]) - numeric).abs() < 1e-3,
            "{k}: {} vs {numeric}",
            grads.own[k]
        );
    }
    // Latent gradients: Wp·g, g, Wn·g on the positive, zero and negative codes.
    let (wp, wn) = q.ttq_scales().unwrap();
    let latent = grads.latent.unwrap();
    let wq = q.clone().quantize(&w, false, None).unwrap();
    for ((index, &l), &v) in latent.indexed_iter().zip(wq.iter()) {
        let c = index[0];
        let want = if v > 0.0 {
            wp[c] * g[&index]
        } else if v < 0.0 {
            wn[c] * g[&index]
        } else {
            g[&index]
        };
        assert!((l - want).abs() < 1e-6);
    }
}

/// The lecture's figure: the gradient of each centroid is the sum of the gradients of the
/// weights in its cluster; the indices do not change.
#[test]
fn kmeans_centroid_gradients_are_grouped_sums() {
    let w = array![
        [2.09f32, -0.98, 1.48, 0.09],
        [0.05, -0.14, -1.08, 2.12],
        [-0.91, 1.92, 0.0, -1.03],
        [1.87, 0.0, 1.53, 1.49]
    ]
    .into_dyn();
    let g = array![
        [-0.03f32, -0.01, 0.03, 0.02],
        [-0.01, 0.01, -0.02, 0.12],
        [-0.01, 0.02, 0.04, 0.01],
        [-0.07, -0.02, 0.01, -0.02]
    ]
    .into_dyn();
    let mut q = WeightQuantizer::new(
        &tensor(w.clone(), None),
        "fc",
        &quant("kmeans2", false),
        None,
        0.05,
    )
    .unwrap();
    assert!(!q.trains_latent());
    let before = q.quantize(&w, true, None).unwrap();
    let grads = q.backward(&w, &g).unwrap();
    assert!(grads.latent.is_none());
    let book = q.codebooks().unwrap()[0].clone();
    for (k, &c) in book.iter().enumerate() {
        let want: f32 = before
            .iter()
            .zip(g.iter())
            .filter(|(v, _)| **v == c)
            .map(|(_, &gv)| gv)
            .sum();
        assert!(
            (grads.own[k] - want).abs() < 1e-6,
            "centroid {k}: {} vs {want}",
            grads.own[k]
        );
    }
    // One fine-tuning step moves the centroids, never the assignment.
    let moved: Vec<f32> = book
        .iter()
        .zip(&grads.own)
        .map(|(c, g)| c - 0.5 * g)
        .collect();
    q.set_own_params(&moved);
    let after = q.quantize(&w, false, None).unwrap();
    for (a, b) in before.iter().zip(after.iter()) {
        let (ia, ib) = (
            book.iter().position(|c| c == a),
            moved.iter().position(|c| c == b),
        );
        assert_eq!(ia, ib);
    }
}
