//! A folder of images as model input: every PNG/JPEG/BMP file (in name order), resized to the
//! model's H×W (bilinear, on the 8-bit pixels), turned into channels (RGB, BGR or BT.601 luma)
//! and scaled by an [`ImagePreset`], stacked as `[N, C, H, W]` or `[N, H, W, C]`.
//!
//! A preset is written as comma-separated words, in any order (`bgr,0..255,nchw,640x640`):
//! channel order `rgb` / `bgr` / `luma`; scaling `0..255`, `0..1`, `-1..1`, `127`
//! ((x − 127) / 128), `imagenet`, or `mean:a/b/c` with `std:a/b/c` (on x / 255); layout
//! `nchw` / `nhwc` / `auto` (from the model's declared shape); and a size `HxW` for models that
//! declare no fixed height and width.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use image::imageops::FilterType;
use ndarray::{ArrayD, IxDyn};
use serde::{Deserialize, Serialize};

use crate::budget::MemoryBudget;
use crate::error::{Error, Result};

/// Images read at most from one folder.
pub const MAX_IMAGES: usize = 512;

/// Which channels the model reads, in its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ChannelOrder {
    #[default]
    Rgb,
    Bgr,
    /// One channel: Y = 0.299 R + 0.587 G + 0.114 B (BT.601, the Y of YCbCr).
    Luma,
}

/// How a pixel value v in 0..255 becomes the model's input.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub enum PixelScale {
    /// v as it is.
    Byte,
    /// v / 255, in [0, 1].
    #[default]
    Unit,
    /// v / 127.5 − 1, in [−1, 1] (the same as (v / 255 − 0.5) / 0.5).
    Signed,
    /// (v − 127) / 128.
    Centered127,
    /// (v / 255 − mean[c]) / std[c] (a one-channel input uses the averages).
    MeanStd { mean: [f32; 3], std: [f32; 3] },
}

impl PixelScale {
    /// ImageNet's mean and std on [0, 1] pixels.
    pub const IMAGENET: PixelScale = PixelScale::MeanStd {
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
    };

    /// The scalings offered in menus.
    pub const ALL: [PixelScale; 5] = [
        PixelScale::Unit,
        PixelScale::Byte,
        PixelScale::Signed,
        PixelScale::Centered127,
        PixelScale::IMAGENET,
    ];

    /// A short name for menus.
    pub fn label(self) -> String {
        match self {
            PixelScale::Byte => "0..255".into(),
            PixelScale::Unit => "[0, 1]".into(),
            PixelScale::Signed => "[-1, 1]".into(),
            PixelScale::Centered127 => "(x - 127) / 128".into(),
            s if s == PixelScale::IMAGENET => "ImageNet mean/std".into(),
            PixelScale::MeanStd { mean, std } => format!("mean {mean:?}, std {std:?}"),
        }
    }

    /// The input value of pixel value `v` (0..255) in channel `c` of `channels`.
    pub fn apply(self, v: f32, c: usize, channels: usize) -> f32 {
        match self {
            PixelScale::Byte => v,
            PixelScale::Unit => v / 255.0,
            PixelScale::Signed => v / 127.5 - 1.0,
            PixelScale::Centered127 => (v - 127.0) / 128.0,
            PixelScale::MeanStd { mean, std } => {
                let (m, s) = if channels == 3 {
                    (mean[c.min(2)], std[c.min(2)])
                } else {
                    (
                        mean.iter().sum::<f32>() / 3.0,
                        std.iter().sum::<f32>() / 3.0,
                    )
                };
                (v / 255.0 - m) / s
            }
        }
    }
}

/// Where the channel axis is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Layout {
    /// From the model's declared input shape.
    #[default]
    Auto,
    Nchw,
    Nhwc,
}

/// How the images of a folder become a model input.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ImagePreset {
    pub channels: ChannelOrder,
    pub scale: PixelScale,
    pub layout: Layout,
    /// (height, width) for inputs that declare no fixed size.
    pub size: Option<(usize, usize)>,
}

impl ImagePreset {
    /// A preset from its channel order and scaling (layout from the model, size declared).
    pub fn new(channels: ChannelOrder, scale: PixelScale) -> Self {
        ImagePreset {
            channels,
            scale,
            ..Default::default()
        }
    }

    /// The channels and scaling, e.g. "BGR, 0..255".
    pub fn pixels_label(&self) -> String {
        format!(
            "{}, {}",
            match self.channels {
                ChannelOrder::Rgb => "RGB",
                ChannelOrder::Bgr => "BGR",
                ChannelOrder::Luma => "luma",
            },
            self.scale.label()
        )
    }

    /// A short description for menus and data descriptions.
    pub fn label(&self) -> String {
        let mut text = self.pixels_label();
        match self.layout {
            Layout::Auto => {}
            Layout::Nchw => text.push_str(", NCHW"),
            Layout::Nhwc => text.push_str(", NHWC"),
        }
        if let Some((h, w)) = self.size {
            text.push_str(&format!(", {h}x{w}"));
        }
        text
    }
}

fn triple(text: &str) -> Option<[f32; 3]> {
    let values: Vec<f32> = text
        .split('/')
        .map(|v| v.trim().parse::<f32>())
        .collect::<std::result::Result<_, _>>()
        .ok()?;
    match values.as_slice() {
        [a, b, c] => Some([*a, *b, *c]),
        [a] => Some([*a; 3]),
        _ => None,
    }
}

impl FromStr for ImagePreset {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let mut preset = ImagePreset::default();
        let (mut mean, mut std) = (None, None);
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let lower = word.to_ascii_lowercase();
            match lower.as_str() {
                "rgb" => preset.channels = ChannelOrder::Rgb,
                "bgr" => preset.channels = ChannelOrder::Bgr,
                "luma" | "gray" | "grey" | "y" => preset.channels = ChannelOrder::Luma,
                "0..255" | "255" | "raw" => preset.scale = PixelScale::Byte,
                "0..1" | "unit" => preset.scale = PixelScale::Unit,
                "-1..1" | "signed" => preset.scale = PixelScale::Signed,
                "127" | "(x-127)/128" => preset.scale = PixelScale::Centered127,
                "imagenet" => preset.scale = PixelScale::IMAGENET,
                "nchw" => preset.layout = Layout::Nchw,
                "nhwc" => preset.layout = Layout::Nhwc,
                "auto" => preset.layout = Layout::Auto,
                _ => {
                    if let Some(values) = lower.strip_prefix("mean:") {
                        mean = Some(triple(values).ok_or_else(|| bad_word(word))?);
                    } else if let Some(values) = lower.strip_prefix("std:") {
                        std = Some(triple(values).ok_or_else(|| bad_word(word))?);
                    } else if let Some((h, w)) = lower.split_once('x') {
                        let (Ok(h), Ok(w)) = (h.parse::<usize>(), w.parse::<usize>()) else {
                            return Err(bad_word(word));
                        };
                        if h == 0 || w == 0 {
                            return Err(bad_word(word));
                        }
                        preset.size = Some((h, w));
                    } else {
                        return Err(bad_word(word));
                    }
                }
            }
        }
        match (mean, std) {
            (None, None) => {}
            (Some(mean), Some(std)) => {
                if std.iter().any(|s| !s.is_finite() || *s == 0.0) {
                    return Err("std:… must be finite and non-zero".into());
                }
                preset.scale = PixelScale::MeanStd { mean, std };
            }
            _ => return Err("give both mean:a/b/c and std:a/b/c".into()),
        }
        Ok(preset)
    }
}

fn bad_word(word: &str) -> String {
    format!(
        "unknown image preset word '{word}' (expected rgb|bgr|luma, 0..255|0..1|-1..1|127|\
         imagenet|mean:a/b/c,std:a/b/c, nchw|nhwc|auto, HxW)"
    )
}

impl fmt::Display for ImagePreset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let channels = match self.channels {
            ChannelOrder::Rgb => "rgb",
            ChannelOrder::Bgr => "bgr",
            ChannelOrder::Luma => "luma",
        };
        let scale = match self.scale {
            PixelScale::Byte => "0..255".to_string(),
            PixelScale::Unit => "0..1".to_string(),
            PixelScale::Signed => "-1..1".to_string(),
            PixelScale::Centered127 => "127".to_string(),
            PixelScale::MeanStd { mean, std } => format!(
                "mean:{}/{}/{},std:{}/{}/{}",
                mean[0], mean[1], mean[2], std[0], std[1], std[2]
            ),
        };
        let layout = match self.layout {
            Layout::Auto => "auto",
            Layout::Nchw => "nchw",
            Layout::Nhwc => "nhwc",
        };
        write!(f, "{channels},{scale},{layout}")?;
        if let Some((h, w)) = self.size {
            write!(f, ",{h}x{w}")?;
        }
        Ok(())
    }
}

/// The input an image folder is read into: channel count, size and a resolved layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageTarget {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// Channels last (`[N, H, W, C]`) instead of first.
    pub channels_last: bool,
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .is_some_and(|e| matches!(e.as_str(), "png" | "jpg" | "jpeg" | "bmp"))
}

/// The image files of `dir`, in name order (at most [`MAX_IMAGES`]).
pub fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| is_image(p) && std::fs::metadata(p).is_ok_and(|m| m.is_file()))
        .collect();
    files.sort();
    files.truncate(MAX_IMAGES);
    if files.is_empty() {
        return Err(Error::format(dir, "holds no .png, .jpg or .bmp images"));
    }
    Ok(files)
}

/// Reads the images of `dir` into `target`'s shape, with `preset`'s channels and scaling.
pub fn read_image_folder(
    dir: &Path,
    target: ImageTarget,
    preset: &ImagePreset,
) -> Result<ArrayD<f32>> {
    let ImageTarget {
        channels,
        height,
        width,
        channels_last,
    } = target;
    match (channels, preset.channels) {
        (1, _) | (3, ChannelOrder::Rgb | ChannelOrder::Bgr) => {}
        (3, ChannelOrder::Luma) => {
            return Err(Error::format(
                dir,
                "the model reads 3 channels but the preset asks for luma (one channel)",
            ));
        }
        _ => {
            return Err(Error::format(
                dir,
                format!("image folders feed 1- or 3-channel inputs; this model wants {channels}"),
            ));
        }
    }
    let (Ok(h), Ok(w)) = (u32::try_from(height), u32::try_from(width)) else {
        return Err(Error::format(
            dir,
            "the model's input is too large for images",
        ));
    };
    if h == 0 || w == 0 {
        return Err(Error::format(dir, "the image size must not be zero"));
    }
    let files = image_files(dir)?;
    let bytes = [files.len(), channels, height, width, 4]
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .unwrap_or(u64::MAX);
    MemoryBudget::current().check(bytes, || {
        format!(
            "{}: {} images of {channels}×{height}×{width} as float32",
            crate::error::shown_path(dir),
            files.len()
        )
    })?;
    let shape = if channels_last {
        [files.len(), height, width, channels]
    } else {
        [files.len(), channels, height, width]
    };
    let mut out = ArrayD::<f32>::zeros(IxDyn(&shape));
    for (i, file) in files.iter().enumerate() {
        let rgb = image::open(file)
            .map_err(|e| Error::format(file, e.to_string()))?
            .resize_exact(w, h, FilterType::Triangle)
            .to_rgb8();
        for (x, y, p) in rgb.enumerate_pixels() {
            let [r, g, b] = p.0.map(f32::from);
            let values = match (channels, preset.channels) {
                (1, _) => [0.299 * r + 0.587 * g + 0.114 * b, 0.0, 0.0],
                (_, ChannelOrder::Bgr) => [b, g, r],
                _ => [r, g, b],
            };
            let (x, y) = (x as usize, y as usize);
            for (c, &v) in values.iter().enumerate().take(channels) {
                let value = preset.scale.apply(v, c, channels);
                if channels_last {
                    out[[i, y, x, c]] = value;
                } else {
                    out[[i, c, y, x]] = value;
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_png(path: &Path, w: u32, h: u32, rgb: [u8; 3]) {
        image::RgbImage::from_pixel(w, h, image::Rgb(rgb))
            .save(path)
            .unwrap();
    }

    fn target(channels: usize, height: usize, width: usize, channels_last: bool) -> ImageTarget {
        ImageTarget {
            channels,
            height,
            width,
            channels_last,
        }
    }

    #[test]
    fn images_are_resized_ordered_and_scaled() {
        let dir = tempfile::tempdir().unwrap();
        write_png(&dir.path().join("a.png"), 20, 10, [255, 0, 0]);
        write_png(&dir.path().join("b.png"), 5, 5, [255, 255, 255]);
        write_png(&dir.path().join("c.png"), 7, 3, [10, 20, 30]);
        std::fs::write(dir.path().join("notes.txt"), "not an image").unwrap();
        let rgb = read_image_folder(dir.path(), target(3, 8, 6, false), &"0..1".parse().unwrap())
            .unwrap();
        assert_eq!(rgb.shape(), &[3, 3, 8, 6]);
        assert_eq!(rgb[[0, 0, 3, 3]], 1.0);
        assert_eq!(rgb[[0, 1, 3, 3]], 0.0);
        let bgr = read_image_folder(
            dir.path(),
            target(3, 4, 4, true),
            &"bgr,0..255".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(bgr.shape(), &[3, 4, 4, 3]);
        assert_eq!(
            [bgr[[2, 1, 1, 0]], bgr[[2, 1, 1, 1]], bgr[[2, 1, 1, 2]]],
            [30.0, 20.0, 10.0]
        );
        let signed = read_image_folder(
            dir.path(),
            target(3, 8, 6, false),
            &"-1..1".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(signed[[0, 1, 0, 0]], -1.0);
        assert_eq!(signed[[1, 2, 7, 5]], 1.0);
        let centred =
            read_image_folder(dir.path(), target(3, 2, 2, false), &"127".parse().unwrap()).unwrap();
        assert_eq!(centred[[2, 0, 0, 0]], (10.0 - 127.0) / 128.0);
        let net = read_image_folder(
            dir.path(),
            target(3, 8, 6, false),
            &"imagenet".parse().unwrap(),
        )
        .unwrap();
        assert!((net[[1, 0, 0, 0]] - (1.0 - 0.485) / 0.229).abs() < 1e-5);
        let luma = read_image_folder(dir.path(), target(1, 4, 4, false), &"luma".parse().unwrap())
            .unwrap();
        assert_eq!(luma.shape(), &[3, 1, 4, 4]);
        let y = (0.299 * 10.0 + 0.587 * 20.0 + 0.114 * 30.0) / 255.0;
        assert!((luma[[2, 0, 2, 2]] - y).abs() < 1e-6);
    }

    #[test]
    fn presets_parse_and_print_back() {
        let p: ImagePreset = "bgr, 0..255, nchw, 640x480".parse().unwrap();
        assert_eq!(p.channels, ChannelOrder::Bgr);
        assert_eq!(p.scale, PixelScale::Byte);
        assert_eq!(p.layout, Layout::Nchw);
        assert_eq!(p.size, Some((640, 480)));
        assert_eq!(p.to_string().parse::<ImagePreset>().unwrap(), p);
        let m: ImagePreset = "mean:0.5/0.5/0.5,std:0.25".parse().unwrap();
        assert_eq!(
            m.scale,
            PixelScale::MeanStd {
                mean: [0.5; 3],
                std: [0.25; 3]
            }
        );
        assert_eq!(m.to_string().parse::<ImagePreset>().unwrap(), m);
        assert!(
            "rgb,purple"
                .parse::<ImagePreset>()
                .unwrap_err()
                .contains("purple")
        );
        assert!("mean:1/2/3".parse::<ImagePreset>().is_err());
        assert!("0x5".parse::<ImagePreset>().is_err());
    }

    #[test]
    fn empty_folders_and_odd_channel_counts_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let preset = ImagePreset::default();
        let err = read_image_folder(dir.path(), target(3, 8, 8, false), &preset).unwrap_err();
        assert!(err.to_string().contains("no .png"), "{err}");
        let err = read_image_folder(dir.path(), target(4, 8, 8, false), &preset).unwrap_err();
        assert!(err.to_string().contains("1- or 3-channel"), "{err}");
        let luma = ImagePreset::new(ChannelOrder::Luma, PixelScale::Unit);
        let err = read_image_folder(dir.path(), target(3, 8, 8, false), &luma).unwrap_err();
        assert!(err.to_string().contains("luma"), "{err}");
    }
}
