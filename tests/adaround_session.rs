//! AdaRound in the session: `export --adaround` on the sample CNN at int5 per tensor (stored as
//! int8 codes, which the loader reads back; int4 would be ONNX INT4) writes the learned codes
//! into the QDQ file and the learned rounding into the saved session; reopening the session
//! applies it through the config and beats round-to-nearest on the held-out digits; a config
//! with another grid drops it with a message, and changed weights are never rounded with it.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use common::{digit_labels, float_array, repo_path};
use ndarray::Ix2;
use quantscope::engine::{Plan, RunOptions};
use quantscope::export::Session;
use quantscope::ir::{Graph, TensorData};
use quantscope::load::load_model;
use quantscope::metrics::top1_accuracy;
use quantscope::quant::fake::linear_weight_grid;
use quantscope::quant::linear::{self, Rounding};
use quantscope::quant::{QuantConfig, QuantizedModel, WeightQuant, WeightScheme};

const MODEL: &str = "sample_models/digits_cnn.onnx";

fn quantscope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quantscope"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs")
}

/// `export` of the sample CNN at int5 per tensor, weights only, as QDQ to `out`, saving the
/// session to `session`; `extra` flags appended.
fn export(out: &Path, session: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "export",
        MODEL,
        "--data",
        "sample_models/data/digits_calib_x.npy",
        "--format",
        "qdq",
        "--weights",
        "int5",
        "--granularity",
        "tensor",
        "--float-activations",
        "--out",
        out.to_str().unwrap(),
        "--save-session",
        session.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    quantscope(&args)
}

/// The logits of `graph` on the digits test split.
fn logits(graph: &Graph) -> ndarray::Array2<f32> {
    let plan = Plan::new(graph).unwrap();
    let feeds = [(
        "input".to_string(),
        TensorData::F32(float_array("sample_models/data/digits_test_x.npy")),
    )]
    .into();
    let outputs = plan.run(feeds, None, RunOptions::default()).unwrap();
    let logits = outputs[0].1.as_f32().unwrap().view();
    logits.into_dimensionality::<Ix2>().unwrap().to_owned()
}

/// Held-out top-1 accuracy (%) and logit SQNR (dB) against `float` of a prepared model.
fn held_out(model: &QuantizedModel, float: &ndarray::Array2<f32>) -> (f64, f64) {
    let logits = logits(&model.graph);
    let accuracy = 100.0 * top1_accuracy(logits.view(), digit_labels().view()).unwrap();
    let signal: f64 = float.iter().map(|&f| f64::from(f).powi(2)).sum();
    let noise: f64 = float
        .iter()
        .zip(&logits)
        .map(|(&f, &q)| (f64::from(f) - f64::from(q)).powi(2))
        .sum();
    (accuracy, 10.0 * (signal / noise).log10())
}

/// The integer codes of every learned weight under `config`, by tensor name, and the codes
/// round-to-nearest gives on the same grid.
fn learned_and_nearest_codes(
    graph: &Graph,
    config: &QuantConfig,
) -> BTreeMap<String, (Vec<i32>, Vec<i32>)> {
    config
        .adaround
        .iter()
        .map(|(name, learned)| {
            let tensor = &graph.initializers[name];
            let (granularity, ranges, params) = linear_weight_grid(tensor, &learned.quant, config)
                .unwrap()
                .unwrap();
            let values = tensor.data.as_f32().unwrap().view();
            let codes = learned
                .codes(values.view(), &ranges, &params, granularity)
                .unwrap();
            let nearest =
                linear::quantize(values, &params, granularity, Rounding::NearestEven).unwrap();
            (
                name.clone(),
                (
                    codes.iter().copied().collect(),
                    nearest.iter().copied().collect(),
                ),
            )
        })
        .collect()
}

#[test]
fn exported_adaround_codes_reach_the_qdq_file_and_the_session_and_beat_nearest() {
    let dir = tempfile::tempdir().unwrap();
    let (qdq, session_path) = (dir.path().join("cnn.onnx"), dir.path().join("cnn.json"));
    let run = export(
        &qdq,
        &session_path,
        &["--adaround", "--adaround-iterations", "1000"],
    );
    assert!(run.status.success(), "{run:?}");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("AdaRound layer"), "{stdout}");

    // The session reopens with the learned rounding of all four layers, nothing dropped.
    let model = load_model(&repo_path(MODEL)).unwrap();
    let (session, report) = Session::load(&session_path, &model.graph).unwrap();
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let config = session.config;
    assert_eq!(config.adaround.len(), 4, "three convs and the classifier");

    // The QDQ file's weight codes are the AdaRound codes, not round-to-nearest.
    let exported = load_model(&qdq).unwrap();
    let mut flipped = 0;
    for (name, (codes, nearest)) in learned_and_nearest_codes(&model.graph, &config) {
        let stored: Vec<i32> = exported.graph.initializers[&format!("{name}_quantized")]
            .data
            .as_f32()
            .unwrap()
            .iter()
            .map(|&q| q as i32)
            .collect();
        assert_eq!(
            stored, codes,
            "{name}: exported codes are not the AdaRound codes"
        );
        let differ = codes.iter().zip(&nearest).filter(|(a, b)| a != b).count();
        assert!(differ > 0, "{name}: AdaRound changed nothing");
        flipped += differ;
    }
    eprintln!("{flipped} weights rounded the other way than nearest in the QDQ file");

    // Applied through the reopened session's config, AdaRound beats nearest on held-out data.
    let no_stats = BTreeMap::new();
    let mut plain = config.clone();
    plain.adaround.clear();
    let nearest = QuantizedModel::prepare(&model.graph, &plain, &no_stats).unwrap();
    let rounded = QuantizedModel::prepare(&model.graph, &config, &no_stats).unwrap();
    assert!(rounded.warnings.is_empty(), "{:?}", rounded.warnings);
    assert!(rounded.weights.iter().all(|w| w.adaround));
    let float = logits(&model.graph);
    let (nearest_accuracy, nearest_db) = held_out(&nearest, &float);
    let (adaround_accuracy, adaround_db) = held_out(&rounded, &float);
    eprintln!(
        "sample CNN int5 per tensor via the session, digits test split: nearest \
         {nearest_accuracy:.2}% / logit SQNR {nearest_db:.2} dB, AdaRound \
         {adaround_accuracy:.2}% / {adaround_db:.2} dB"
    );
    // (Accuracy is within a sample or two of float either way at int5: the logits tell.)
    assert!(adaround_db > nearest_db, "{adaround_db} vs {nearest_db}");

    // Without --adaround the same export rounds to nearest.
    let plain_qdq = dir.path().join("plain.onnx");
    let plain_session = dir.path().join("plain.json");
    let run = export(&plain_qdq, &plain_session, &[]);
    assert!(run.status.success(), "{run:?}");
    let plain_model = load_model(&plain_qdq).unwrap();
    for (name, (_, nearest)) in learned_and_nearest_codes(&model.graph, &config) {
        let stored: Vec<i32> = plain_model.graph.initializers[&format!("{name}_quantized")]
            .data
            .as_f32()
            .unwrap()
            .iter()
            .map(|&q| q as i32)
            .collect();
        assert_eq!(stored, nearest, "{name}");
    }
    assert!(
        Session::read(&plain_session)
            .unwrap()
            .config
            .adaround
            .is_empty()
    );

    // Another grid (int3) in the session: the rounding is dropped with a message naming both.
    let mut changed = Session::read(&session_path).unwrap();
    changed.config.default.weights = Some(WeightQuant {
        scheme: WeightScheme::Linear {
            bits: 3,
            symmetric: true,
        },
        per_channel: false,
    });
    let changed_path = dir.path().join("int3.json");
    changed.save(&changed_path).unwrap();
    let (reopened, report) = Session::load(&changed_path, &model.graph).unwrap();
    assert!(reopened.config.adaround.is_empty());
    assert_eq!(report.warnings.len(), 4, "{:?}", report.warnings);
    assert!(
        report.warnings[0].contains("dropped: learned for int5 per tensor, the layer is now int3"),
        "{:?}",
        report.warnings
    );
    let run = quantscope(&[
        "export",
        MODEL,
        "--data",
        "sample_models/data/digits_calib_x.npy",
        "--format",
        "qdq",
        "--session",
        changed_path.to_str().unwrap(),
        "--out",
        dir.path().join("int3.onnx").to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{run:?}");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("AdaRound rounding of"), "{stderr}");

    // Weights that changed under the rounding (a transform, another model) are rounded to
    // nearest with a warning: the learned bits never land on another grid.
    let mut moved = model.graph.clone();
    let (name, _) = config.adaround.iter().next().unwrap();
    if let Some(TensorData::F32(w)) = moved.initializers.get_mut(name).map(|t| &mut t.data) {
        w.mapv_inplace(|x| x * 0.999);
    }
    let skipped = QuantizedModel::prepare(&moved, &config, &no_stats).unwrap();
    assert_eq!(skipped.warnings.len(), 1, "{:?}", skipped.warnings);
    assert!(skipped.warnings[0].contains(name.as_str()));
    let report = skipped.weights.iter().find(|w| &w.tensor == name).unwrap();
    assert!(!report.adaround);
    assert_eq!(
        skipped.weights.iter().filter(|w| w.adaround).count(),
        3,
        "the other layers keep theirs"
    );
}
