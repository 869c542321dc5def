//! The data → run → calibrate → evaluate workflow on real public models (read in place from
//! `../shared/real_models/`) and on a crafted multi-input graph: declared batch 1 and NHWC
//! inputs in chunks of one with the same statistics as one sample at a time, symbolic batches
//! in larger chunks, multi-input models from `.npz` folders (int64 inputs passed through),
//! exact calibration histograms (the TensorRT KL threshold of the chunk-merged histogram equals
//! the one of the histogram of all the values), per-output figures for non-classifiers,
//! agreement and KL for a classifier, labels checked,
//! costs per inference, and one-line errors for data that does not fit. Models whose ops the
//! engine does not run yet must give the clear unsupported-op error.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::{ArrayD, IxDyn};
use quantscope::calib::{ActivationCollector, ObserverConfig, kl_search};
use quantscope::engine::{Plan, RunOptions, TensorHook, TensorSite};
use quantscope::ir::{
    Attribute, DType, Dim, Graph, Node, Tensor, TensorData, ValueInfo, assign_roles,
};
use quantscope::load::images::ImagePreset;
use quantscope::load::{load_model, write_npz};
use quantscope::quant::{QuantConfig, QuantizedModel};
use quantscope::workflow::{
    DataSource, EvalOptions, Evaluation, Evaluator, RunControl, Samples, calibrate, choose_batch,
    evaluate, read_samples,
};

/// A real model's path, or None (with one line saying so) when the folder is absent.
fn real(relative: &str) -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/real_models");
    if !root.is_dir() {
        println!("skipped: {} is absent", root.display());
        return None;
    }
    Some(root.join(relative))
}

/// The five street photos (the images folder also holds a text photo).
fn photos(graph: &Graph, preset: &str) -> Samples {
    let dir = real("images").expect("checked by the caller");
    let source = DataSource::ImageFolder {
        dir,
        preset: preset.parse().unwrap(),
    };
    read_samples(graph, &source).unwrap().first(5)
}

/// The value; every op of the real models is supported, so any error fails the test.
fn must_run<T>(model: &str, result: quantscope::Result<T>) -> Option<T> {
    Some(result.unwrap_or_else(|e| panic!("{model}: {e}")))
}

fn int8() -> QuantConfig {
    QuantConfig::int8_per_channel()
}

fn control() -> RunControl<'static> {
    RunControl::default()
}

/// Exact |x| histograms of every float tensor over `[0, max|x|]` (the final ranges, known
/// before this pass) in `bins` bins: bin k holds k·w ≤ |x| < (k+1)·w, the last one also
/// |x| = max, found by a binary search over the edges (independent of the calibrator's
/// binning).
struct ExactAbsHistograms {
    max: BTreeMap<String, f64>,
    bins: usize,
    counts: BTreeMap<String, Vec<u64>>,
}

impl TensorHook for ExactAbsHistograms {
    fn on_tensor(
        &mut self,
        site: TensorSite<'_>,
        value: &mut TensorData,
    ) -> quantscope::Result<()> {
        let (TensorData::F32(a), Some(&max)) = (&*value, self.max.get(site.name)) else {
            return Ok(());
        };
        let width = max / self.bins as f64;
        let edges: Vec<f64> = (1..self.bins).map(|k| k as f64 * width).collect();
        let counts = self
            .counts
            .entry(site.name.to_string())
            .or_insert_with(|| vec![0; self.bins]);
        for v in a.iter().filter(|v| v.is_finite()) {
            let x = f64::from(v.abs());
            let k = if max > 0.0 {
                edges.partition_point(|&e| e <= x)
            } else {
                0
            };
            counts[k] += 1;
        }
        Ok(())
    }
}

/// Calibration in chunks gives the same statistics as one sample at a time, in order, and
/// histograms equal to the exact histograms of all the values, so the same TensorRT KL
/// thresholds; with chunks of one, the growing (re-binned) histograms of a single pass are
/// shown to differ, which is what the exact pass is for.
fn assert_calibration_matches_one_by_one(graph: &Graph, samples: &Samples, chunks_of_one: bool) {
    let chunked = calibrate(graph, samples, None, &control()).unwrap();
    assert_eq!(chunked.samples, samples.count());
    let plan = Plan::new(graph).unwrap();
    let mut collector = ActivationCollector::new();
    for i in 0..samples.count() {
        plan.run(
            samples.feeds(i..i + 1),
            Some(&mut collector),
            RunOptions::default(),
        )
        .unwrap();
    }
    let growing_was_exact = collector.histograms_are_exact();
    let single = collector.into_stats();
    assert_eq!(chunked.stats.len(), single.len());
    for (name, s) in &chunked.stats {
        let o = &single[name];
        assert_eq!(s.min_max(), o.min_max(), "{name}");
        assert_eq!(s.samples(), o.samples(), "{name}");
        if chunks_of_one {
            assert_eq!(s.ema(), o.ema(), "{name}");
            assert_eq!(s.batch_mean(), o.batch_mean(), "{name}");
            assert_eq!(s.mean(), o.mean(), "{name}");
        }
    }
    // The exact histograms of all the values (in the calibration's chunks), from the final
    // ranges.
    let bins = ObserverConfig::default().bins;
    let mut exact = ExactAbsHistograms {
        max: chunked
            .stats
            .iter()
            .filter_map(|(n, s)| Some((n.clone(), f64::from(s.abs_max()?))))
            .collect(),
        bins,
        counts: BTreeMap::new(),
    };
    let size = chunked.batch.size;
    for start in (0..samples.count()).step_by(size) {
        let end = (start + size).min(samples.count());
        plan.run(
            samples.feeds(start..end),
            Some(&mut exact),
            RunOptions::default(),
        )
        .unwrap();
    }
    let (mut moved_by_growing, mut compared) = (0, 0);
    for (name, s) in &chunked.stats {
        let Some(reference) = exact.counts.get(name) else {
            continue;
        };
        let merged = s.abs_histogram().unwrap().counts;
        assert_eq!(&merged, reference, "{name}: merged vs exact histogram");
        compared += 1;
        for levels in [128, 256] {
            let want = kl_search(reference, levels).map(|c| c.edge);
            assert_eq!(
                kl_search(&merged, levels).map(|c| c.edge),
                want,
                "{name}: KL threshold at {levels} levels"
            );
            let growing = single[name].abs_histogram().unwrap().counts;
            if kl_search(&growing, levels).map(|c| c.edge) != want {
                moved_by_growing += 1;
            }
        }
    }
    assert!(compared > 0);
    println!(
        "{} samples: {compared} tensors with the exact histograms and KL thresholds; \
         one growing histogram per tensor moved {moved_by_growing} KL thresholds",
        samples.count()
    );
    if chunks_of_one && samples.count() > 1 {
        assert!(
            !growing_was_exact,
            "ranges never grew: the chunk merging is not exercised"
        );
    }
}

/// Σf², Σ(f−q)² per output, one sample at a time.
fn one_by_one_sqnr(
    graph: &Graph,
    stats: &BTreeMap<String, quantscope::calib::CalibrationStats>,
    samples: &Samples,
) -> Vec<(String, f64)> {
    let quantized = QuantizedModel::prepare(graph, &int8(), stats).unwrap();
    let (float, quant) = (
        Plan::new(graph).unwrap(),
        Plan::new(&quantized.graph).unwrap(),
    );
    let mut sums: Vec<(String, f64, f64)> = Vec::new();
    for i in 0..samples.count() {
        let f = float
            .run(samples.feeds(i..i + 1), None, RunOptions::default())
            .unwrap();
        let mut hook = quantized.hook();
        let q = quant
            .run(
                samples.feeds(i..i + 1),
                Some(&mut hook),
                RunOptions::default(),
            )
            .unwrap();
        for (k, ((name, f), (_, q))) in f.iter().zip(&q).enumerate() {
            let (f, q) = (f.as_f32().unwrap(), q.as_f32().unwrap());
            if sums.len() <= k {
                sums.push((name.clone(), 0.0, 0.0));
            }
            for (a, b) in f.iter().zip(q) {
                let (a, b) = (f64::from(*a), f64::from(*b));
                sums[k].1 += a * a;
                sums[k].2 += (a - b) * (a - b);
            }
        }
    }
    sums.into_iter()
        .map(|(n, s, e)| (n, 10.0 * (s / e).log10()))
        .collect()
}

fn assert_outputs_match(e: &Evaluation, reference: &[(String, f64)], tolerance_db: f64) {
    assert_eq!(e.outputs.len(), reference.len());
    for (o, (name, db)) in e.outputs.iter().zip(reference) {
        assert_eq!(&o.name, name);
        assert!(
            (o.sqnr_db - db).abs() <= tolerance_db,
            "{name}: {} dB in chunks vs {db} dB one by one",
            o.sqnr_db
        );
    }
}

fn describe(e: &Evaluation) -> String {
    e.outputs
        .iter()
        .map(|o| {
            format!(
                "{} {:.2} dB cos {:.4} max {:.3e}",
                o.name, o.sqnr_db, o.cosine, o.max_abs_error
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Declared batch 1 (and NHWC for DeepLab): chunks of one, the same statistics as one sample
/// at a time, per-output figures for a non-classifier, costs per inference.
fn declared_batch_one(model_path: &str, preset: &str, nhwc: bool) {
    let Some(path) = real(model_path) else {
        return;
    };
    let model = load_model(&path).unwrap();
    let graph = &model.graph;
    let samples = photos(graph, preset);
    let input = &graph.inputs[0].name;
    let shape = samples.stacked_input(input).unwrap().shape().to_vec();
    assert_eq!(shape[0], 5);
    assert_eq!(if nhwc { shape[3] } else { shape[1] }, 3, "{shape:?}");
    let Some(plan) = must_run(model_path, Plan::new(graph)) else {
        return;
    };
    let batch = choose_batch(&plan, &samples, None, RunOptions::default()).unwrap();
    assert_eq!(batch.size, 1, "{batch:?}");
    assert!(batch.reason.contains(input), "{batch:?}");
    let started = Instant::now();
    let Some(calibration) = must_run(model_path, calibrate(graph, &samples, None, &control()))
    else {
        return;
    };
    println!(
        "{model_path}: calibrated 5 images in {:.2} s ({})",
        started.elapsed().as_secs_f64(),
        calibration.batch.describe()
    );
    assert_calibration_matches_one_by_one(graph, &samples, true);
    let e = evaluate(
        graph,
        graph,
        &int8(),
        &calibration.stats,
        &samples,
        None,
        &EvalOptions::full(None),
        &control(),
    )
    .unwrap();
    println!("{model_path}: {}", describe(&e));
    assert_eq!(e.outputs.len(), graph.outputs.len());
    assert!(e.classification.is_none(), "not a classifier");
    for o in &e.outputs {
        assert!(
            o.sqnr_db.is_finite() && o.sqnr_db > 5.0,
            "{}: {}",
            o.name,
            o.sqnr_db
        );
        assert!(
            o.cosine > 0.9 && o.cosine <= 1.0 + 1e-9,
            "{}: {}",
            o.name,
            o.cosine
        );
        assert!(o.max_abs_error > 0.0);
    }
    assert!(!e.layers.is_empty());
    assert_outputs_match(
        &e,
        &one_by_one_sqnr(graph, &calibration.stats, &samples),
        1e-9,
    );
    // Costs are per inference: one sample or five give the same figures.
    let one = evaluate(
        graph,
        graph,
        &int8(),
        &calibration.stats,
        &samples.first(1),
        None,
        &EvalOptions::full(None),
        &control(),
    )
    .unwrap();
    assert_eq!(one.cost, e.cost);
    assert!(e.cost.unwrap().bitops < e.cost.unwrap().float_bitops);
}

#[test]
fn yunet_640_declares_batch_one_and_runs_in_chunks_of_one() {
    declared_batch_one("yunet/yunet_s_640_640.onnx", "bgr,0..255", false);
}

#[test]
fn deeplab_nhwc_declares_batch_one_and_runs_in_chunks_of_one() {
    declared_batch_one(
        "deeplabv3-mnv2-tflite/deeplab_v3_1_default_1.onnx",
        "rgb,-1..1",
        true,
    );
}

/// A symbolic batch runs in chunks of several samples; statistics and figures agree with one
/// sample at a time.
fn symbolic_batch(model_path: &str, preset: &str) {
    let Some(path) = real(model_path) else {
        return;
    };
    let model = load_model(&path).unwrap();
    let graph = &model.graph;
    let samples = photos(graph, preset);
    let plan = Plan::new(graph).unwrap();
    let batch = choose_batch(&plan, &samples, None, RunOptions::default()).unwrap();
    println!("{model_path}: {}", batch.describe());
    assert_eq!(batch.size, 5, "{batch:?}");
    let calibration = calibrate(graph, &samples, None, &control()).unwrap();
    assert_eq!(calibration.batch.size, 5);
    assert_calibration_matches_one_by_one(graph, &samples, false);
    let evaluator = Evaluator::new(graph, &samples, None, &control()).unwrap();
    let e = evaluator
        .evaluate(
            graph,
            &int8(),
            &calibration.stats,
            &EvalOptions::full(None),
            &control(),
        )
        .unwrap();
    println!("{model_path}: {}", describe(&e));
    assert!(e.classification.is_none());
    assert!(e.outputs.iter().all(|o| o.kl.is_none() && o.sqnr_db > 5.0));
    assert_outputs_match(
        &e,
        &one_by_one_sqnr(graph, &calibration.stats, &samples),
        1e-3,
    );
    let one = evaluate(
        graph,
        graph,
        &int8(),
        &calibration.stats,
        &samples.first(1),
        None,
        &EvalOptions::full(None),
        &control(),
    )
    .unwrap();
    assert_eq!(one.cost, e.cost, "costs per inference");
}

#[test]
fn yunet_dynamic_batches_several_images_per_chunk() {
    symbolic_batch("yunet/yunet_n_dynamic.onnx", "bgr,0..255,320x320");
}

#[test]
fn espcn_super_resolution_batches_luma_images() {
    symbolic_batch("superres-espcn/super_resolution.onnx", "luma,0..1");
}

/// The text lines of the text photo (x0, y0, x1, y1): three Japanese, three English.
const TEXT_LINES: [(u32, u32, u32, u32); 6] = [
    (290, 205, 760, 268),
    (290, 260, 755, 292),
    (505, 295, 752, 332),
    (505, 325, 700, 354),
    (505, 355, 752, 392),
    (505, 385, 675, 412),
];

/// Text-line crops, upright (label 0) and turned 180° (label 1), as PNGs in `dir`.
fn text_crops(dir: &Path) -> Vec<i64> {
    let photo = image::open(real("images/text.jpg").unwrap())
        .unwrap()
        .to_rgb8();
    let mut labels = Vec::new();
    for (k, (x0, y0, x1, y1)) in TEXT_LINES.into_iter().enumerate() {
        let crop = image::imageops::crop_imm(&photo, x0, y0, x1 - x0, y1 - y0).to_image();
        crop.save(dir.join(format!("{k}a.png"))).unwrap();
        image::imageops::rotate180(&crop)
            .save(dir.join(format!("{k}b.png")))
            .unwrap();
        labels.extend([0, 1]);
    }
    labels
}

#[test]
fn ppocr_classifier_gets_agreement_kl_and_checked_labels() {
    let Some(path) = real("ppocr-cls/ch_ppocr_mobile_v2.0_cls_infer.onnx") else {
        return;
    };
    let model = load_model(&path).unwrap();
    let graph = &model.graph;
    let dir = tempfile::tempdir().unwrap();
    let labels = text_crops(dir.path());
    let source = DataSource::ImageFolder {
        dir: dir.path().to_path_buf(),
        preset: "-1..1,48x192".parse::<ImagePreset>().unwrap(),
    };
    let samples = read_samples(graph, &source)
        .unwrap()
        .with_labels(Some(labels.clone().into()))
        .unwrap();
    assert_eq!(
        samples.stacked_input("x").unwrap().shape(),
        &[12, 3, 48, 192]
    );
    let calibration = calibrate(graph, &samples, None, &control()).unwrap();
    assert!(calibration.batch.size > 1);
    let e = evaluate(
        graph,
        graph,
        &int8(),
        &calibration.stats,
        &samples,
        None,
        &EvalOptions::full(None),
        &control(),
    )
    .unwrap();
    let c = e.classification.clone().expect("a [N, 2] softmax output");
    println!("PP-OCR cls: {c:?}; {}", describe(&e));
    assert_eq!((c.output.as_str(), c.classes), ("softmax_0.tmp_0", 2));
    assert!((0.0..=1.0).contains(&c.agreement));
    assert!(c.output_kl.is_finite() && c.output_kl >= 0.0);
    assert_eq!(
        e.outputs[0].kl,
        Some(c.output_kl),
        "KL of the probabilities"
    );
    let (f, q) = (c.float_accuracy.unwrap(), c.quant_accuracy.unwrap());
    assert!(
        f >= 0.75,
        "float accuracy {f} on upright and turned text lines"
    );
    assert!((0.0..=1.0).contains(&q));

    // A label outside 0..2 is one line naming the sample and the output.
    let mut bad = labels;
    bad[5] = 2;
    let wrong = samples.clone().with_labels(Some(bad.into())).unwrap();
    let err = evaluate(
        graph,
        graph,
        &int8(),
        &calibration.stats,
        &wrong,
        None,
        &EvalOptions::default(),
        &control(),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "input 'labels': label 2 of sample 5 is not a class of output 'softmax_0.tmp_0' (0..1)"
    );
}

#[test]
fn labels_for_a_model_without_classes_are_an_error() {
    let Some(path) = real("superres-espcn/super_resolution.onnx") else {
        return;
    };
    let model = load_model(&path).unwrap();
    let samples = photos(&model.graph, "luma,0..1")
        .first(2)
        .with_labels(Some(vec![0, 1].into()))
        .unwrap();
    let err = evaluate(
        &model.graph,
        &model.graph,
        &QuantConfig::uniform(None, None),
        &BTreeMap::new(),
        &samples,
        None,
        &EvalOptions::default(),
        &control(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("no output is [N, classes]") && err.contains("'output'"),
        "{err}"
    );
}

fn floats(shape: &[usize], seed: u64) -> TensorData {
    // A small seeded generator (xorshift) for values in [-1, 1).
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let n = shape.iter().product();
    let values = (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect();
    TensorData::F32(ArrayD::from_shape_vec(IxDyn(shape), values).unwrap())
}

/// Writes `count` sample files made by `sample(i)` into a new folder.
fn npz_folder(
    count: usize,
    sample: impl Fn(u64) -> Vec<(&'static str, TensorData)>,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..count {
        let arrays = sample(i as u64);
        let named: Vec<(&str, &TensorData)> = arrays.iter().map(|(n, d)| (*n, d)).collect();
        write_npz(&dir.path().join(format!("{i:03}.npz")), &named).unwrap();
    }
    dir
}

/// A multi-input model read from an .npz folder: the data fits; calibration and evaluation
/// give per-output figures, or the clear error of an op the engine lacks today.
fn multi_input(model_path: &str, sample: impl Fn(u64) -> Vec<(&'static str, TensorData)>) {
    let Some(path) = real(model_path) else {
        return;
    };
    let model = load_model(&path).unwrap();
    let graph = &model.graph;
    let dir = npz_folder(4, sample);
    let samples = read_samples(graph, &DataSource::NpzFolder(dir.path().to_path_buf())).unwrap();
    assert_eq!(samples.count(), 4);
    assert!(samples.is_per_sample());
    let Some(calibration) = must_run(model_path, calibrate(graph, &samples, None, &control()))
    else {
        return;
    };
    assert_eq!(calibration.batch.size, 1);
    let e = evaluate(
        graph,
        graph,
        &int8(),
        &calibration.stats,
        &samples,
        None,
        &EvalOptions::full(None),
        &control(),
    )
    .unwrap();
    println!("{model_path}: {}", describe(&e));
    assert_eq!(e.outputs.len(), graph.outputs.len());
    assert!(e.outputs.iter().all(|o| !o.sqnr_db.is_nan()));
}

#[test]
fn gtcrn_four_inputs_from_an_npz_folder() {
    multi_input("gtcrn/gtcrn_simple.onnx", |i| {
        vec![
            ("mix", floats(&[1, 257, 1, 2], i)),
            ("conv_cache", floats(&[2, 1, 16, 16, 33], i + 100)),
            ("tra_cache", floats(&[2, 3, 1, 1, 16], i + 200)),
            ("inter_cache", floats(&[2, 1, 33, 16], i + 300)),
        ]
    });
}

#[test]
fn dtln_two_inputs_from_an_npz_folder() {
    multi_input("dtln/dtln_stage1.onnx", |i| {
        vec![
            ("input_2", floats(&[1, 1, 257], i)),
            ("input_3", floats(&[1, 2, 128, 2], i + 100)),
        ]
    });
}

fn sample_rate() -> TensorData {
    TensorData::I64(ArrayD::from_elem(IxDyn(&[]), 16000))
}

#[test]
fn silero_three_inputs_with_an_int64_rate_from_an_npz_folder() {
    multi_input("silero-vad/silero_vad.onnx", |i| {
        vec![
            ("input", floats(&[1, 576], i)),
            ("state", floats(&[2, 1, 128], i + 100)),
            ("sr", sample_rate()),
        ]
    });
}

#[test]
fn bert_takes_int64_token_ids() {
    let Some(path) = real("g2p-id/bert_mlm.onnx") else {
        return;
    };
    let model = load_model(&path).unwrap();
    let graph = &model.graph;
    let ids: Vec<i64> = (0..4 * 32).map(|i| (i * 7 % 29) as i64).collect();
    let tokens = TensorData::I64(ArrayD::from_shape_vec(IxDyn(&[4, 32]), ids).unwrap());
    let samples = Samples::single("input_1", tokens, "token ids").unwrap();
    samples.check(graph).unwrap();
    let floats = Samples::single("input_1", floats(&[4, 32], 1), "floats").unwrap();
    assert_eq!(
        floats.check(graph).unwrap_err().to_string(),
        "input 'input_1': expects int64 [unk__543, 32], samples on axis 0, got float [4, 32]"
    );
    let Some(calibration) = must_run("BERT", calibrate(graph, &samples, None, &control())) else {
        return;
    };
    assert!(
        !calibration.stats.contains_key("input_1"),
        "integers are never observed"
    );
}

#[test]
fn data_that_does_not_fit_gets_one_line_naming_the_input() {
    let Some(path) = real("yunet/yunet_s_640_640.onnx") else {
        return;
    };
    let model = load_model(&path).unwrap();
    let graph = &model.graph;
    let check = |name: &str, data: TensorData| {
        Samples::single(name, data, "t")
            .unwrap()
            .check(graph)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        check("input", floats(&[2, 3, 320, 320], 0)),
        "input 'input': expects float [1, 3, 640, 640], samples on axis 0, got float [2, 3, 320, 320]"
    );
    assert_eq!(
        check("input", floats(&[2, 3, 640], 0)),
        "input 'input': expects float [1, 3, 640, 640], samples on axis 0, got float [2, 3, 640]"
    );
    assert!(
        check("image", floats(&[2, 3, 640, 640], 0))
            .starts_with("input 'image': the model has no such input")
    );
    let ints = TensorData::I64(ArrayD::zeros(IxDyn(&[1, 3, 640, 640])));
    assert!(check("input", ints).contains("got int64 [1, 3, 640, 640]"));
    // An image folder needs the size of a model without one.
    let dynamic = load_model(&real("yunet/yunet_n_dynamic.onnx").unwrap()).unwrap();
    let source = DataSource::ImageFolder {
        dir: real("images").unwrap(),
        preset: "bgr,0..255".parse().unwrap(),
    };
    let err = read_samples(&dynamic.graph, &source)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("input 'input': expects float [batch, 3, height, width]"),
        "{err}"
    );
    assert!(err.contains("give the size in the preset"), "{err}");
}

/// x [1, 4] (declared batch 1) · W, times the int64 rate `sr`; a state [2, 4] plus a bias.
fn crafted_multi_input() -> Graph {
    let info = |name: &str, dtype, dims: &[usize]| ValueInfo {
        name: name.into(),
        dtype: Some(dtype),
        shape: Some(dims.iter().map(|&d| Dim::Fixed(d)).collect()),
    };
    let node = |op: &str, inputs: &[&str], output: &str| Node {
        name: format!("{op}_{output}"),
        op_type: op.into(),
        domain: String::new(),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        outputs: vec![output.into()],
        attributes: BTreeMap::new(),
    };
    let mut cast = node("Cast", &["sr"], "rate");
    cast.attributes.insert("to".into(), Attribute::Int(1));
    let mut graph = Graph {
        name: "crafted".into(),
        nodes: vec![
            node("MatMul", &["x", "w"], "h"),
            cast,
            node("Mul", &["h", "rate"], "y"),
            node("Add", &["state", "b"], "state_out"),
        ],
        inputs: vec![
            info("x", DType::F32, &[1, 4]),
            info("state", DType::F32, &[2, 4]),
            info("sr", DType::I64, &[]),
        ],
        outputs: vec![
            info("y", DType::F32, &[1, 3]),
            info("state_out", DType::F32, &[2, 4]),
        ],
        initializers: BTreeMap::new(),
        opset: 17,
    };
    for (name, data) in [("w", floats(&[4, 3], 9)), ("b", floats(&[4], 10))] {
        graph
            .initializers
            .insert(name.into(), Tensor::new(name, data, DType::F32));
    }
    assign_roles(&mut graph);
    graph
}

#[test]
fn a_three_input_model_calibrates_and_evaluates_from_an_npz_folder() {
    let graph = crafted_multi_input();
    let dir = npz_folder(6, |i| {
        vec![
            ("x", floats(&[1, 4], i)),
            ("state", floats(&[2, 4], i + 50)),
            ("sr", TensorData::I64(ArrayD::from_elem(IxDyn(&[]), 2))),
        ]
    });
    let samples = read_samples(&graph, &DataSource::NpzFolder(dir.path().to_path_buf())).unwrap();
    assert_eq!(samples.count(), 6);
    let calibration = calibrate(&graph, &samples, None, &control()).unwrap();
    assert_eq!(calibration.samples, 6);
    assert_eq!(calibration.batch.size, 1);
    assert!(calibration.stats.contains_key("x") && calibration.stats.contains_key("state"));
    assert!(
        !calibration.stats.contains_key("sr"),
        "int64 inputs are not observed"
    );
    // x's range is the range of the six files' values.
    let (lo, hi) = calibration.stats["x"].min_max().unwrap();
    let mut all = Vec::new();
    for i in 0..6 {
        all.extend(floats(&[1, 4], i).as_f32().unwrap().iter().copied());
    }
    let (min, max) = all
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    assert_eq!((lo, hi), (min, max));
    let e = evaluate(
        &graph,
        &graph,
        &int8(),
        &calibration.stats,
        &samples,
        None,
        &EvalOptions::full(None),
        &control(),
    )
    .unwrap();
    assert_eq!(e.outputs.len(), 2);
    let (y, state) = (&e.outputs[0], &e.outputs[1]);
    assert!(y.sqnr_db.is_finite() && y.sqnr_db > 20.0, "{y:?}");
    assert_eq!(
        state.sqnr_db,
        f64::INFINITY,
        "the state path is not quantized"
    );
    assert_eq!(e.classification.as_ref().map(|c| c.classes), Some(3));
    assert_eq!(e.layers.len(), 1);
    assert_eq!(e.samples, 6);

    // One file with the rate as a float, one without the state: one line each.
    let bad = npz_folder(2, |i| {
        let mut arrays = vec![("x", floats(&[1, 4], i)), ("state", floats(&[2, 4], i))];
        arrays.push(("sr", TensorData::F32(ArrayD::zeros(IxDyn(&[])))));
        arrays
    });
    let err = read_samples(&graph, &DataSource::NpzFolder(bad.path().to_path_buf()))
        .unwrap_err()
        .to_string();
    assert_eq!(err, "input 'sr': expects int64 [], got float [] (000.npz)");
    let missing = npz_folder(1, |i| {
        vec![("x", floats(&[1, 4], i)), ("sr", sample_rate())]
    });
    let err = read_samples(&graph, &DataSource::NpzFolder(missing.path().to_path_buf()))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("input 'state': expects float [2, 4], but the data in 000.npz"),
        "{err}"
    );
}

#[test]
fn synthetic_data_respects_a_declared_batch_and_several_inputs() {
    let graph = crafted_multi_input();
    let samples = read_samples(&graph, &DataSource::Synthetic).unwrap();
    assert!(
        samples.synthetic && samples.is_per_sample(),
        "state [2, 4] has no sample axis"
    );
    assert!(samples.count() >= 8);
    let calibration = calibrate(&graph, &samples, None, &control()).unwrap();
    assert_eq!(calibration.samples, samples.count());
    let Some(path) = real("yunet/yunet_s_640_640.onnx") else {
        return;
    };
    let model = load_model(&path).unwrap();
    let synthetic = read_samples(&model.graph, &DataSource::Synthetic).unwrap();
    assert!(!synthetic.is_per_sample());
    assert_eq!(
        synthetic.stacked_input("input").unwrap().shape()[1..],
        [3, 640, 640]
    );
    let plan = Plan::new(&model.graph).unwrap();
    assert_eq!(
        choose_batch(&plan, &synthetic, None, RunOptions::default())
            .unwrap()
            .size,
        1
    );
}

#[test]
fn synthetic_data_gives_free_image_sizes_a_default_and_says_so() {
    let Some(path) = real("yunet/yunet_n_dynamic.onnx") else {
        return;
    };
    let model = load_model(&path).unwrap();
    let synthetic = read_samples(&model.graph, &DataSource::Synthetic).unwrap();
    assert_eq!(
        synthetic.stacked_input("input").unwrap().shape()[1..],
        [3, 224, 224],
        "[batch, 3, height, width] with height and width free"
    );
    assert!(
        synthetic
            .description
            .contains("free image sizes at 224x224"),
        "{}",
        synthetic.description
    );
    let few = synthetic.first(4);
    let calibration = calibrate(&model.graph, &few, None, &control()).unwrap();
    assert_eq!(calibration.samples, 4);
    assert!(calibration.stats.contains_key("input"));
}
