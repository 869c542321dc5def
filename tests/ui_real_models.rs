//! Every public model of `../shared/real_models/` in the app, driven headless as a user would:
//! open it, choose its data (the photos through the model's image preset, or the feeds built by
//! `make_feeds.py`), set int8 per-channel weights and uint8 min-max activations, and wait for
//! the workers. The calibration must see every sample, the Results must list every output, the
//! app's worst-output SQNR must be the one `quantscope quantize` prints for the same model, data
//! and settings (the app wires the same data, chunks and config), and it must stay near what
//! onnxruntime measures running the QDQ file `quantscope export` writes with those settings
//! (`ours_sqnr_db` in the fixture manifest, measured by `scripts/real_models.py`).

#![cfg(feature = "ui-tests")]

#[path = "common/app.rs"]
mod app;
mod common;

use app::{opened_at_1280x800, wait_until};
use std::path::Path;
use std::process::Command;

use egui_kittest::kittest::Queryable;
use quantscope::calib::Method;
use quantscope::quant::{ActivationQuant, QuantConfig, WeightQuant, WeightScheme};
use quantscope::ui::AppCommand;
use quantscope::workflow::DataSource;
use serde_json::Value;

/// How far the app's fake-quantized simulation may be from onnxruntime running the exported
/// QDQ file. Where onnxruntime keeps the QDQ pairs around float kernels the two agree to 0.01 dB
/// (5 of the 9 models); elsewhere the simulation measured higher: the PP-OCR classifier's
/// softmax output by 2.6 dB, YuNet-n's worst head by 1.75 dB (2026-12-07). The likely cause,
/// not yet confirmed per node, is onnxruntime fusing QDQ pairs into integer kernels
/// (QLinearConv and friends, fixed-point requantization with its own rounding).
const SIMULATION_VS_ONNXRUNTIME_DB: f64 = 3.0;

/// The worst-output SQNR `quantscope quantize` prints for a manifest entry with the export's
/// settings.
fn cli_worst_sqnr(model: &Path, entry: &Value) -> f64 {
    let data: Vec<&str> = entry["data"]
        .as_array()
        .expect("data in the manifest")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let output = Command::new(env!("CARGO_BIN_EXE_quantscope"))
        .current_dir(crate_root())
        .arg("quantize")
        .arg(model)
        .args(&data)
        .args([
            "--weights",
            "int8",
            "--granularity",
            "channel",
            "--calib",
            "minmax",
        ])
        .output()
        .expect("quantscope runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "quantize failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    common::printed_worst_sqnr(&text)
}

fn crate_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The data a manifest entry names (`--data PATH [--preset P]`) as the app's data source.
fn source_of(entry: &Value) -> DataSource {
    let args: Vec<&str> = entry["data"]
        .as_array()
        .expect("data in the manifest")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let path = crate_root().join(args[1]);
    match args.get(2..4) {
        Some(["--preset", preset]) => DataSource::ImageFolder {
            dir: path,
            preset: preset.parse().expect("the manifest's preset parses"),
        },
        _ if path.is_dir() => DataSource::NpzFolder(path),
        _ => DataSource::File(path),
    }
}

/// The settings of the manifest's QDQ export: int8 per-channel weights, uint8 min-max
/// activations.
fn export_settings() -> QuantConfig {
    QuantConfig::uniform(
        Some(WeightQuant {
            scheme: "int8".parse::<WeightScheme>().expect("int8"),
            per_channel: true,
        }),
        Some(ActivationQuant {
            bits: 8,
            symmetric: false,
            method: Method::MinMax,
        }),
    )
}

#[test]
fn every_real_model_calibrates_and_evaluates_in_the_app() {
    let root = crate_root().join("../shared/real_models");
    if !root.is_dir() {
        println!("skipped: {} is absent", root.display());
        return;
    }
    let manifest_path = crate_root().join("tests/fixtures/real_models/manifest.json");
    let text = std::fs::read_to_string(&manifest_path).expect("the manifest");
    let manifest: Value = serde_json::from_str(&text).expect("the manifest is JSON");
    let models = manifest["models"].as_object().expect("models");
    assert_eq!(models.len(), 9);
    let mut table = Vec::new();
    for (name, entry) in models {
        let model = root.join(entry["model"].as_str().expect("model path"));
        let mut harness = opened_at_1280x800(model.clone());
        assert_eq!(harness.state().error(), None, "{name}: opening");
        let config = export_settings();
        let source = source_of(entry);
        let ctx = harness.ctx.clone();
        harness
            .state_mut()
            .apply(&ctx, AppCommand::SetConfig(Box::new(config.clone())));
        harness
            .state_mut()
            .apply(&ctx, AppCommand::SetSource(source.clone()));
        wait_until(&mut harness, name, |app| {
            app.session().is_some_and(|s| {
                s.source == source
                    && s.config == config
                    && (s.job_message.is_some()
                        || (s.current_evaluation().is_some()
                            && !s.is_busy()
                            && !s.is_preparing_view()))
            })
        });
        let session = harness.state().session().expect("a session");
        assert_eq!(session.job_message, None, "{name}");
        let calibration = session.calibration.as_ref().expect("calibrated");
        assert_eq!(
            calibration.samples as u64,
            entry["samples"].as_u64().expect("samples"),
            "{name}: calibration samples"
        );
        let evaluation = session.current_evaluation().expect("evaluated");
        let outputs = entry["outputs"].as_object().expect("outputs").len();
        assert_eq!(evaluation.outputs.len(), outputs, "{name}: outputs");
        let ours = evaluation.worst_output_sqnr_db().expect("an SQNR");
        let onnxruntime = entry["ours_sqnr_db"].as_f64().expect("ours_sqnr_db");
        let cli = cli_worst_sqnr(&model, entry);
        table.push(format!(
            "{name}: app {ours:.2} dB, quantize {cli:.2} dB, QDQ in onnxruntime {onnxruntime:.2} dB"
        ));
        assert!(
            (ours - cli).abs() <= 0.01,
            "{name}: the app gives {ours:.2} dB where quantscope quantize gives {cli:.2} dB"
        );
        assert!(
            (ours - onnxruntime).abs() <= SIMULATION_VS_ONNXRUNTIME_DB,
            "{name}: the app's simulation gives {ours:.2} dB where onnxruntime running the \
             exported QDQ file gives {onnxruntime:.2} dB"
        );
        assert!(harness.query_by_label_contains("worst output").is_some());
    }
    println!("{}", table.join("\n"));
}
