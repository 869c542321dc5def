//! GridSample against closed forms.

use super::super::testutil::*;
use crate::ir::Attribute;

fn s(v: &str) -> Attribute {
    Attribute::String(v.into())
}

fn sample(
    x: &crate::ir::TensorData,
    grid: &[f32],
    oh: usize,
    ow: usize,
    attrs: Vec<(&str, Attribute)>,
) -> Vec<f32> {
    let g = f(&[1, oh, ow, 2], grid);
    fvals(&run("GridSample", 16, attrs, &[x, &g]).expect("kernel ok")[0]).1
}

#[test]
fn corners_aligned_grid_reads_the_pixels_back() {
    let x = f(&[1, 1, 2, 3], &[1., 2., 3., 4., 5., 6.]);
    let grid: Vec<f32> = [-1f32, 1.]
        .iter()
        .flat_map(|&y| [-1f32, 0., 1.].into_iter().flat_map(move |x| [x, y]))
        .collect();
    for mode in ["bilinear", "nearest", "bicubic"] {
        let out = sample(
            &x,
            &grid,
            2,
            3,
            vec![("mode", s(mode)), ("align_corners", Attribute::Int(1))],
        );
        assert_close(&out, &[1., 2., 3., 4., 5., 6.], 1e-5);
    }
}

#[test]
fn bilinear_interpolates_and_padding_decides_outside() {
    // a plane 1 + col + 10·row is reproduced exactly by bilinear sampling inside
    let plane: Vec<f32> = (0..3)
        .flat_map(|r| (0..4).map(move |c| 1. + c as f32 + 10. * r as f32))
        .collect();
    let x = f(&[1, 1, 3, 4], &plane);
    // align_corners = 0: x = ((g + 1)·W − 1)/2, so g = 0 is column 1.5, row 1
    let out = sample(&x, &[0., 0.], 1, 1, vec![]);
    assert_close(&out, &[1. + 1.5 + 10.], 1e-5);
    // far outside on the left: zeros gives 0, border gives column 0, reflection mirrors
    let g = [-2.0f32, 0.0];
    assert_close(
        &sample(&x, &g, 1, 1, vec![("padding_mode", s("zeros"))]),
        &[0.],
        1e-6,
    );
    assert_close(
        &sample(&x, &g, 1, 1, vec![("padding_mode", s("border"))]),
        &[11.],
        1e-5,
    );
    // column (−4 − 1)/2 = −2.5 reflects about −0.5 to 1.5
    assert_close(
        &sample(&x, &g, 1, 1, vec![("padding_mode", s("reflection"))]),
        &[12.5],
        1e-5,
    );
}

#[test]
fn bad_shapes_and_modes_are_errors() {
    let x = f(&[1, 1, 2, 2], &[0.; 4]);
    let g = f(&[1, 1, 1, 3], &[0.; 3]);
    assert!(run("GridSample", 16, vec![], &[&x, &g]).is_err());
    let g = f(&[1, 1, 1, 2], &[0.; 2]);
    let e = run("GridSample", 16, vec![("mode", s("area"))], &[&x, &g]).unwrap_err();
    assert!(e.0.contains("area"), "{}", e.0);
}

#[test]
fn identity_affine_grid_samples_the_image_back() {
    let theta = f(&[1, 2, 3], &[1., 0., 0., 0., 1., 0.]);
    let size = i(&[4], &[1, 1, 2, 3]);
    let grid = run(
        "AffineGrid",
        20,
        vec![("align_corners", Attribute::Int(1))],
        &[&theta, &size],
    )
    .expect("kernel ok");
    let (shape, g) = fvals(&grid[0]);
    assert_eq!(shape, vec![1, 2, 3, 2]);
    assert_close(
        &g,
        &[-1., -1., 0., -1., 1., -1., -1., 1., 0., 1., 1., 1.],
        1e-6,
    );
    // pixel centers without aligned corners, read back exactly by bilinear sampling
    let grid = run("AffineGrid", 20, vec![], &[&theta, &size]).expect("kernel ok");
    let x = f(&[1, 1, 2, 3], &[1., 2., 3., 4., 5., 6.]);
    let out = run("GridSample", 20, vec![], &[&x, &grid[0]]).expect("kernel ok");
    assert_close(&fvals(&out[0]).1, &[1., 2., 3., 4., 5., 6.], 1e-5);
    // a theta that does not fit the size is an error naming both
    let e = run(
        "AffineGrid",
        20,
        vec![],
        &[&theta, &i(&[5], &[1, 1, 2, 3, 4])],
    )
    .unwrap_err();
    assert!(e.0.contains("theta"), "{}", e.0);
}
