//! The extra normalizations against closed forms.

use super::super::testutil::*;
use crate::ir::Attribute;

#[test]
fn group_norm_per_group_and_per_channel_params() {
    // N=1, C=4, 2 groups of 2 channels × 2 positions
    let x = f(&[1, 4, 2], &[1., 2., 3., 4., 10., 20., 30., 40.]);
    let group = |v: &[f32]| {
        let m = v.iter().sum::<f32>() / v.len() as f32;
        let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f32>() / v.len() as f32;
        v.iter()
            .map(|x| (x - m) / (var + 1e-5).sqrt())
            .collect::<Vec<f32>>()
    };
    let mut want = group(&[1., 2., 3., 4.]);
    want.extend(group(&[10., 20., 30., 40.]));
    let groups = ("num_groups", Attribute::Int(2));
    // opset 18: scale and bias per group
    let (s, b) = (f(&[2], &[2., 1.]), f(&[2], &[0.5, 0.]));
    let per_group: Vec<f32> = want
        .iter()
        .enumerate()
        .map(|(k, v)| if k < 4 { 2. * v + 0.5 } else { *v })
        .collect();
    check_f(
        "GroupNormalization",
        18,
        vec![groups.clone()],
        &[&x, &s, &b],
        &[1, 4, 2],
        &per_group,
    );
    // opset 21: per channel
    let (s, b) = (f(&[4], &[1., 2., 1., 1.]), f(&[4], &[0., 0., 0., 1.]));
    let per_channel: Vec<f32> = want
        .iter()
        .enumerate()
        .map(|(k, v)| match k / 2 {
            1 => 2. * v,
            3 => v + 1.,
            _ => *v,
        })
        .collect();
    check_f(
        "GroupNormalization",
        21,
        vec![groups],
        &[&x, &s, &b],
        &[1, 4, 2],
        &per_channel,
    );
}

#[test]
fn lrn_window_across_channels() {
    // C=4, size=3: the window of channel c is c-1..=c+1
    let x = f(&[1, 4, 1, 1], &[1., 2., 3., 4.]);
    let sq = [1. + 4., 1. + 4. + 9., 4. + 9. + 16., 9. + 16.];
    let want: Vec<f32> = (0..4)
        .map(|c| (c + 1) as f32 / (2.0f32 + 0.3 / 3.0 * sq[c]).powf(0.6))
        .collect();
    check_f(
        "LRN",
        13,
        vec![
            ("size", Attribute::Int(3)),
            ("alpha", Attribute::Float(0.3)),
            ("beta", Attribute::Float(0.6)),
            ("bias", Attribute::Float(2.0)),
        ],
        &[&x],
        &[1, 4, 1, 1],
        &want,
    );
    // even size 2: the window is c..=c+1
    let sq2 = [1. + 4., 4. + 9., 9. + 16., 16.];
    let want: Vec<f32> = (0..4)
        .map(|c| (c + 1) as f32 / (1.0f32 + 1e-4 / 2.0 * sq2[c]).powf(0.75))
        .collect();
    check_f(
        "LRN",
        13,
        vec![("size", Attribute::Int(2))],
        &[&x],
        &[1, 4, 1, 1],
        &want,
    );
}

#[test]
fn mean_variance_normalization_over_axes() {
    let x = f(&[2, 1, 1, 2], &[1., 3., 5., 7.]);
    // default axes [0, 2, 3]: one channel, mean 4, std sqrt(5)
    let s = 5f32.sqrt();
    check_f(
        "MeanVarianceNormalization",
        13,
        vec![],
        &[&x],
        &[2, 1, 1, 2],
        &[-3. / s, -1. / s, 1. / s, 3. / s],
    );
    // over the last axis only
    check_f(
        "MeanVarianceNormalization",
        13,
        vec![("axes", ints(&[3]))],
        &[&x],
        &[2, 1, 1, 2],
        &[-1., 1., -1., 1.],
    );
}

#[test]
fn lp_normalization_and_hardmax() {
    let x = f(&[2, 2], &[3., 4., -1., 1.]);
    check_f(
        "LpNormalization",
        13,
        vec![],
        &[&x],
        &[2, 2],
        &[0.6, 0.8, -0.5f32.sqrt(), 0.5f32.sqrt()],
    );
    check_f(
        "LpNormalization",
        13,
        vec![("p", Attribute::Int(1)), ("axis", Attribute::Int(0))],
        &[&x],
        &[2, 2],
        &[0.75, 0.8, -0.25, 0.2],
    );
    let x = f(&[2, 3], &[1., 5., 5., 2., 0., 1.]);
    check_f(
        "Hardmax",
        13,
        vec![],
        &[&x],
        &[2, 3],
        &[0., 1., 0., 1., 0., 0.],
    );
    check_f(
        "Hardmax",
        13,
        vec![("axis", Attribute::Int(0))],
        &[&x],
        &[2, 3],
        &[0., 1., 1., 1., 0., 0.],
    );
    // opset 11, axis 0: one row of 6
    check_f(
        "Hardmax",
        11,
        vec![("axis", Attribute::Int(0))],
        &[&x],
        &[2, 3],
        &[0., 1., 0., 0., 0., 0.],
    );
}

#[test]
fn rms_norm_divides_by_the_root_mean_square() {
    // rows [3, 4] and [0, 2]: mean squares 12.5 and 2
    let x = f(&[2, 2], &[3., 4., 0., 2.]);
    let scale = f(&[2], &[1., 2.]);
    let out = run(
        "RMSNormalization",
        23,
        vec![("epsilon", Attribute::Float(0.0))],
        &[&x, &scale],
    )
    .expect("kernel ok");
    let r1 = 12.5f32.sqrt();
    let r2 = 2f32.sqrt();
    assert_close(&fvals(&out[0]).1, &[3. / r1, 8. / r1, 0., 4. / r2], 1e-6);
    // a scale that does not broadcast to the normalized axes is an error
    assert!(run("RMSNormalization", 23, vec![], &[&x, &f(&[3], &[1.; 3])]).is_err());
}
