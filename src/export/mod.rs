//! Export of what was tuned: ONNX QDQ and baked models, AIMET encodings, the TensorRT
//! calibration cache, range tables, reports, and the versioned session file; import of
//! encodings tuned elsewhere.
//!
//! [`export_to`] is the one entry point the CLI and the app call; every file goes through
//! [`write_atomic`] (temporary file + rename, never over the source model).

mod atomic;
pub mod encodings;
pub mod onnx_writer;
pub mod opset;
pub mod qdq;
pub mod ranges;
pub mod report;
pub mod session;

use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use atomic::{write_atomic, write_atomic_file, write_bytes_atomic, write_files_atomic};
pub use encodings::{AimetSchema, ImportReport, import_encodings};
pub use onnx_writer::{onnx_model_proto, write_onnx_model};
pub use qdq::{QdqModel, qdq_model};
pub use report::Evaluation;
pub use session::{CalibrationSource, Session, SessionLoadReport};

use crate::error::{Error, Result};
use crate::ir::Model;
use crate::quant::{QuantConfig, QuantizedModel};

/// TensorRT version written in the calibration cache header (8.6.1).
pub const TRT_CACHE_VERSION: u32 = 8601;

/// What to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// ONNX with QuantizeLinear/DequantizeLinear.
    Qdq,
    /// ONNX with de-quantized weights (every scheme).
    Baked,
    /// AIMET encodings, legacy 0.6.1 schema.
    Aimet,
    /// AIMET encodings, 1.0.0 schema.
    Aimet1,
    /// TensorRT calibration cache.
    TrtCache,
    /// Per-tensor ranges: CSV when the path ends in `.csv`, JSON otherwise.
    Ranges,
    /// Markdown summary plus `<stem>.tensors.csv`, `<stem>.layers.csv` and `<stem>.json`.
    Report,
}

impl ExportFormat {
    /// Every format with its command-line name.
    pub const ALL: [(ExportFormat, &'static str); 7] = [
        (ExportFormat::Qdq, "qdq"),
        (ExportFormat::Baked, "baked"),
        (ExportFormat::Aimet, "aimet"),
        (ExportFormat::Aimet1, "aimet-1.0"),
        (ExportFormat::TrtCache, "trt-cache"),
        (ExportFormat::Ranges, "ranges"),
        (ExportFormat::Report, "report"),
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(f, _)| *f == self)
            .map_or("?", |(_, n)| n)
    }
}

impl FromStr for ExportFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Self::ALL
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(f, _)| *f)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|(_, n)| *n).collect();
                format!(
                    "unknown export format '{s}' (expected one of {})",
                    names.join(", ")
                )
            })
    }
}

/// What an export reads: the float model, the config, and the model prepared under it
/// ([`QuantizedModel::prepare`]); `evaluation` fills the report's accuracy and size.
pub struct ExportInputs<'a> {
    pub model: &'a Model,
    pub config: &'a QuantConfig,
    pub quantized: &'a QuantizedModel,
    pub evaluation: Option<&'a Evaluation>,
}

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExportSummary {
    pub files: Vec<PathBuf>,
    /// Things the format could not express (e.g. non-linear weights in a QDQ model).
    pub warnings: Vec<String>,
}

/// The files `--format report` writes for `path`: the Markdown summary itself, then
/// `<stem>.tensors.csv`, `<stem>.layers.csv` and `<stem>.json` beside it.
pub fn report_paths(path: &Path) -> [PathBuf; 4] {
    let stem = path
        .file_stem()
        .map_or("report".into(), |s| s.to_string_lossy().into_owned());
    let sibling = |suffix: &str| path.with_file_name(format!("{stem}{suffix}"));
    [
        path.to_path_buf(),
        sibling(".tensors.csv"),
        sibling(".layers.csv"),
        sibling(".json"),
    ]
}

/// Exports `inputs` as `format` to `path` (atomically; never over the source model).
pub fn export_to(
    format: ExportFormat,
    inputs: &ExportInputs<'_>,
    path: &Path,
) -> Result<ExportSummary> {
    let source = inputs.model.path.as_path();
    let mut summary = ExportSummary::default();
    let mut write = |p: PathBuf, bytes: &[u8]| -> Result<()> {
        write_bytes_atomic(&p, &[source], bytes)?;
        summary.files.push(p);
        Ok(())
    };
    let json = |v: &serde_json::Value| {
        serde_json::to_string_pretty(v)
            .map_err(|e| Error::format(path, format!("cannot serialize: {e}")))
    };
    match format {
        ExportFormat::Qdq => {
            let qdq = qdq_model(&inputs.model.graph, inputs.quantized)?;
            onnx_writer::write_model_proto(&qdq.model_proto()?, path, &[source])?;
            summary.files.push(path.to_path_buf());
            summary.warnings = qdq.warnings;
        }
        ExportFormat::Baked => {
            onnx_writer::write_model_proto(
                &onnx_model_proto(&inputs.quantized.graph)?,
                path,
                &[source],
            )?;
            summary.files.push(path.to_path_buf());
        }
        ExportFormat::Aimet | ExportFormat::Aimet1 => {
            encodings::refuse_activation_channels(inputs.quantized, format.name())?;
            let schema = if format == ExportFormat::Aimet {
                AimetSchema::Legacy
            } else {
                AimetSchema::V1
            };
            let text = json(&encodings::aimet_encodings(inputs.quantized, schema))?;
            write(path.to_path_buf(), text.as_bytes())?;
        }
        ExportFormat::TrtCache => {
            encodings::refuse_activation_channels(inputs.quantized, format.name())?;
            let text = encodings::trt_calibration_cache(inputs.quantized, TRT_CACHE_VERSION);
            write(path.to_path_buf(), text.as_bytes())?;
        }
        ExportFormat::Ranges => {
            let rows = ranges::range_rows(inputs.quantized);
            let is_csv = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
            let text = if is_csv {
                ranges::ranges_csv(&rows)
            } else {
                json(&serde_json::json!({ "tensors": rows }))?
            };
            write(path.to_path_buf(), text.as_bytes())?;
        }
        ExportFormat::Report => {
            let model_name = inputs.model.path.display().to_string();
            let layers = report::layer_rows(&inputs.model.graph, inputs.config, inputs.quantized);
            let [md_path, tensors_path, layers_path, json_path] = report_paths(path);
            let md =
                report::markdown_summary(&model_name, inputs.quantized, &layers, inputs.evaluation);
            let all = report::report_json(
                &model_name,
                inputs.config,
                inputs.quantized,
                &layers,
                inputs.evaluation,
            );
            let files = vec![
                (md_path, md.into_bytes()),
                (
                    tensors_path,
                    report::tensor_csv(inputs.quantized).into_bytes(),
                ),
                (layers_path, report::layer_csv(&layers).into_bytes()),
                (json_path, json(&all)?.into_bytes()),
            ];
            // The four files appear together or not at all.
            write_files_atomic(&files, &[source])?;
            summary.files.extend(files.into_iter().map(|(p, _)| p));
        }
    }
    Ok(summary)
}
