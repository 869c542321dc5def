//! The File menu's helpers: the export formats with what each is for, their file extensions,
//! the model file dialog, and saving a region of the window as PNG (written on a worker).

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, sync_channel};

use crate::export::ExportFormat;

use super::waker::Waker;

/// The Export menu: each format with what it is for.
pub const EXPORT_MENU: [(ExportFormat, &str); 7] = [
    (
        ExportFormat::Qdq,
        "ONNX with QuantizeLinear/DequantizeLinear (ONNX Runtime, TensorRT)",
    ),
    (
        ExportFormat::Baked,
        "ONNX with de-quantized weights (every scheme; check accuracy in any runtime)",
    ),
    (
        ExportFormat::Aimet,
        "AIMET encodings, legacy 0.6.1 schema (Qualcomm QNN/SNPE overrides)",
    ),
    (ExportFormat::Aimet1, "AIMET encodings, 1.0.0 schema"),
    (
        ExportFormat::TrtCache,
        "TensorRT calibration cache (scale = amax/127 per tensor)",
    ),
    (
        ExportFormat::Ranges,
        "Per-tensor ranges (JSON, or CSV by extension)",
    ),
    (
        ExportFormat::Report,
        "Markdown summary plus per-tensor and per-layer CSV and JSON",
    ),
];

/// The file extension suggested for `format`.
pub fn export_extension(format: ExportFormat) -> &'static str {
    match format {
        ExportFormat::Qdq | ExportFormat::Baked => "onnx",
        ExportFormat::Aimet | ExportFormat::Aimet1 | ExportFormat::Ranges => "json",
        ExportFormat::TrtCache => "cache",
        ExportFormat::Report => "md",
    }
}

/// Asks for a model file.
pub fn pick_model() -> Option<PathBuf> {
    rfd::FileDialog::new()
        .add_filter("models", &["onnx", "safetensors", "npz", "npy"])
        .pick_file()
}

/// Saves `rect` of the next frame (the whole window when None) to `path` as PNG: a viewport
/// screenshot cropped on the UI thread and encoded on a named worker, which sends the outcome
/// and wakes the UI.
pub fn save_view_png(
    ctx: &egui::Context,
    rect: Option<egui::Rect>,
    path: PathBuf,
    wake: Waker,
) -> Receiver<Result<PathBuf, String>> {
    let pixels_per_point = ctx.pixels_per_point();
    let (sender, receiver) = sync_channel(1);
    ctx.request_screenshot(move |image| {
        let crop = match rect {
            Some(rect) => image.region(&rect, Some(pixels_per_point)),
            None => (*image).clone(),
        };
        let spawned = std::thread::Builder::new()
            .name("quantscope-export".into())
            .spawn(move || {
                let [w, h] = crop.size;
                let bytes: Vec<u8> = crop.pixels.iter().flat_map(|c| c.to_array()).collect();
                let result = image::RgbaImage::from_raw(w as u32, h as u32, bytes)
                    .ok_or_else(|| "the screenshot has an odd size".to_string())
                    .and_then(|img| img.save(&path).map_err(|e| e.to_string()))
                    .map(|()| path);
                let _ = sender.send(result);
                wake();
            });
        if spawned.is_err() {
            // The receiver reports a missing result.
        }
    });
    receiver
}
