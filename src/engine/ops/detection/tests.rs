//! NonMaxSuppression and RoiAlign against hand-worked cases.

use super::super::testutil::*;
use crate::ir::{Attribute, TensorData};

fn nms(
    boxes: &TensorData,
    scores: &TensorData,
    max_out: i64,
    iou: f32,
    score: Option<f32>,
    attrs: Vec<(&str, Attribute)>,
) -> Vec<i64> {
    let m = i(&[1], &[max_out]);
    let t = f(&[1], &[iou]);
    let s = score.map(|v| f(&[1], &[v]));
    let n = node("NonMaxSuppression", 5, 1, attrs);
    let out = run_node(
        &n,
        11,
        &[Some(boxes), Some(scores), Some(&m), Some(&t), s.as_ref()],
    )
    .unwrap();
    ivals(&out[0]).1
}

#[test]
fn nms_keeps_the_best_of_overlapping_boxes() {
    // the ONNX suppress-by-IoU example: three overlapping boxes, two far ones
    let boxes = f(
        &[1, 6, 4],
        &[
            0.0, 0.0, 1.0, 1.0, 0.0, 0.1, 1.0, 1.1, 0.0, -0.1, 1.0, 0.9, 0.0, 10.0, 1.0, 11.0, 0.0,
            10.1, 1.0, 11.1, 0.0, 100.0, 1.0, 101.0,
        ],
    );
    let scores = f(&[1, 1, 6], &[0.9, 0.75, 0.6, 0.95, 0.5, 0.3]);
    assert_eq!(
        nms(&boxes, &scores, 3, 0.5, Some(0.0), vec![]),
        vec![0, 0, 3, 0, 0, 0, 0, 0, 5]
    );
    // at most 2 per class; a score threshold drops the weak ones
    assert_eq!(
        nms(&boxes, &scores, 2, 0.5, None, vec![]),
        vec![0, 0, 3, 0, 0, 0]
    );
    assert_eq!(
        nms(&boxes, &scores, 10, 0.5, Some(0.4), vec![]),
        vec![0, 0, 3, 0, 0, 0]
    );
    // no limit given: nothing selected
    assert!(nms(&boxes, &scores, 0, 0.5, None, vec![]).is_empty());
    // the same boxes as centers and sizes
    let centers = f(
        &[1, 6, 4],
        &[
            0.5, 0.5, 1.0, 1.0, 0.5, 0.6, 1.0, 1.0, 0.5, 0.4, 1.0, 1.0, 0.5, 10.5, 1.0, 1.0, 0.5,
            10.6, 1.0, 1.0, 0.5, 100.5, 1.0, 1.0,
        ],
    );
    assert_eq!(
        nms(
            &centers,
            &scores,
            3,
            0.5,
            Some(0.0),
            vec![("center_point_box", Attribute::Int(1))]
        ),
        vec![0, 0, 3, 0, 0, 0, 0, 0, 5]
    );
}

#[test]
fn roi_align_averages_bilinear_samples() {
    // a plane whose value is x + 10·y: bilinear samples reproduce it exactly, so each bin is
    // the value at its centre
    let (h, w) = (6, 6);
    let plane: Vec<f32> = (0..h * w)
        .map(|k| (k % w) as f32 + 10.0 * (k / w) as f32)
        .collect();
    let x = f(&[1, 1, h, w], &plane);
    let rois = f(&[1, 4], &[1.0, 1.0, 4.0, 3.0]); // x1, y1, x2, y2
    let idx = i(&[1], &[0]);
    let n = node(
        "RoiAlign",
        3,
        1,
        vec![
            ("output_height", Attribute::Int(2)),
            ("output_width", Attribute::Int(3)),
            ("sampling_ratio", Attribute::Int(2)),
        ],
    );
    let out = run_node(&n, 16, &[Some(&x), Some(&rois), Some(&idx)]).unwrap();
    // half_pixel: the region is [0.5, 3.5] × [0.5, 2.5]; bins 1 wide, 1 high
    let want: Vec<f32> = [1.0f32, 2.0]
        .iter()
        .flat_map(|&y| [1.0f32, 2.0, 3.0].map(|x| x + 10.0 * y))
        .collect();
    assert_close(&fvals(&out[0]).1, &want, 1e-5);
    assert_eq!(fvals(&out[0]).0, vec![1, 1, 2, 3]);
}
