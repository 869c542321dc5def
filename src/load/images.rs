//! A folder of images as calibration data: every PNG/JPEG/BMP file, resized to the model's
//! input H×W, grayscale or RGB by the input's channel count, normalised by a preset, stacked
//! into one `[N, C, H, W]` array (files in name order).

use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use ndarray::{Array4, ArrayD};
use serde::{Deserialize, Serialize};

use crate::budget::MemoryBudget;
use crate::error::{Error, Result};

/// Images read at most from one folder.
pub const MAX_IMAGES: usize = 512;

/// How pixel values in [0, 1] are normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ImagePreset {
    /// Pixels as they are, in [0, 1].
    #[default]
    ZeroOne,
    /// 2·x − 1, in [−1, 1].
    MinusOneOne,
    /// (x − mean) / std per channel with ImageNet's mean and std (grayscale: their averages).
    ImageNet,
}

const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

impl ImagePreset {
    pub const ALL: [ImagePreset; 3] = [
        ImagePreset::ZeroOne,
        ImagePreset::MinusOneOne,
        ImagePreset::ImageNet,
    ];

    /// A short name for menus.
    pub fn label(self) -> &'static str {
        match self {
            ImagePreset::ZeroOne => "[0, 1]",
            ImagePreset::MinusOneOne => "[-1, 1]",
            ImagePreset::ImageNet => "ImageNet mean/std",
        }
    }

    /// Normalises pixel value `x` in [0, 1] of channel `c` out of `channels`.
    pub fn apply(self, x: f32, c: usize, channels: usize) -> f32 {
        match self {
            ImagePreset::ZeroOne => x,
            ImagePreset::MinusOneOne => 2.0 * x - 1.0,
            ImagePreset::ImageNet => {
                let (mean, std) = if channels == 3 {
                    (IMAGENET_MEAN[c.min(2)], IMAGENET_STD[c.min(2)])
                } else {
                    (
                        IMAGENET_MEAN.iter().sum::<f32>() / 3.0,
                        IMAGENET_STD.iter().sum::<f32>() / 3.0,
                    )
                };
                (x - mean) / std
            }
        }
    }
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .is_some_and(|e| matches!(e.as_str(), "png" | "jpg" | "jpeg" | "bmp"))
}

/// Reads the images of `dir` as `[N, channels, height, width]` (channels 1 or 3).
pub fn read_image_folder(
    dir: &Path,
    channels: usize,
    height: usize,
    width: usize,
    preset: ImagePreset,
) -> Result<ArrayD<f32>> {
    if !matches!(channels, 1 | 3) {
        return Err(Error::format(
            dir,
            format!("image folders feed 1- or 3-channel inputs; this model wants {channels}"),
        ));
    }
    let (Ok(h), Ok(w)) = (u32::try_from(height), u32::try_from(width)) else {
        return Err(Error::format(
            dir,
            "the model's input is too large for images",
        ));
    };
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
    let mut out = Array4::<f32>::zeros((files.len(), channels, height, width));
    for (i, file) in files.iter().enumerate() {
        let img = image::open(file)
            .map_err(|e| Error::format(file, e.to_string()))?
            .resize_exact(w, h, FilterType::Triangle);
        if channels == 1 {
            let gray = img.to_luma32f();
            for (x, y, p) in gray.enumerate_pixels() {
                out[[i, 0, y as usize, x as usize]] = preset.apply(p.0[0], 0, 1);
            }
        } else {
            let rgb = img.to_rgb32f();
            for (x, y, p) in rgb.enumerate_pixels() {
                for c in 0..3 {
                    out[[i, c, y as usize, x as usize]] = preset.apply(p.0[c], c, 3);
                }
            }
        }
    }
    Ok(out.into_dyn())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_png(path: &Path, w: u32, h: u32, rgb: [u8; 3]) {
        image::RgbImage::from_pixel(w, h, image::Rgb(rgb))
            .save(path)
            .unwrap();
    }

    #[test]
    fn images_are_resized_and_normalised() {
        let dir = tempfile::tempdir().unwrap();
        write_png(&dir.path().join("a.png"), 20, 10, [255, 0, 0]);
        write_png(&dir.path().join("b.png"), 5, 5, [255, 255, 255]);
        std::fs::write(dir.path().join("notes.txt"), "not an image").unwrap();
        let rgb = read_image_folder(dir.path(), 3, 8, 6, ImagePreset::ZeroOne).unwrap();
        assert_eq!(rgb.shape(), &[2, 3, 8, 6]);
        assert_eq!(rgb[[0, 0, 3, 3]], 1.0);
        assert_eq!(rgb[[0, 1, 3, 3]], 0.0);
        let pm = read_image_folder(dir.path(), 3, 8, 6, ImagePreset::MinusOneOne).unwrap();
        assert_eq!(pm[[0, 1, 0, 0]], -1.0);
        assert_eq!(pm[[1, 2, 7, 5]], 1.0);
        let net = read_image_folder(dir.path(), 3, 8, 6, ImagePreset::ImageNet).unwrap();
        assert!((net[[1, 0, 0, 0]] - (1.0 - 0.485) / 0.229).abs() < 1e-5);
        let gray = read_image_folder(dir.path(), 1, 4, 4, ImagePreset::ZeroOne).unwrap();
        assert_eq!(gray.shape(), &[2, 1, 4, 4]);
        assert!((gray[[1, 0, 2, 2]] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn empty_folders_and_odd_channel_counts_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_image_folder(dir.path(), 3, 8, 8, ImagePreset::ZeroOne).unwrap_err();
        assert!(err.to_string().contains("no .png"), "{err}");
        let err = read_image_folder(dir.path(), 4, 8, 8, ImagePreset::ZeroOne).unwrap_err();
        assert!(err.to_string().contains("1- or 3-channel"), "{err}");
    }
}
