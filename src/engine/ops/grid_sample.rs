//! GridSample and AffineGrid. GridSample on 4-D images: every output pixel reads the input at the location its grid entry
//! gives ((x, y) in [-1, 1], unnormalized with or without aligned corners), by nearest, bilinear
//! or bicubic interpolation, with zeros, border or reflection padding outside the image.
//!
//! Opset 16 names the modes bilinear/nearest/bicubic, opset 20 linear/nearest/cubic; both are
//! accepted. Nearest rounds halves to even and bicubic uses a = -0.75, as onnxruntime does.
//! AffineGrid (opset 20) makes the grid GridSample reads: each batch's 2x3 (or 3x4) matrix
//! applied to the normalized coordinates of every output pixel (or voxel).

use ndarray::ArrayD;

use super::gather_scatter::flat;
use super::{OpCtx, OpError, OpResult, Registry, array_from, input_f32, single};
use crate::ir::TensorData;

pub fn register(registry: &mut Registry) {
    registry.add("GridSample", grid_sample);
    registry.add("AffineGrid", affine_grid);
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Nearest,
    Linear,
    Cubic,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Padding {
    Zeros,
    Border,
    Reflection,
}

/// One input plane with the sampling rules.
struct Plane<'a> {
    data: &'a [f32],
    h: usize,
    w: usize,
    padding: Padding,
    /// Valid coordinate range [x_min, x_max], [y_min, y_max] (pixel centers or edges).
    x_range: (f32, f32),
    y_range: (f32, f32),
}

/// Reflects `v` into `[lo, hi]` as often as needed.
fn reflect(v: f32, lo: f32, hi: f32) -> f32 {
    let range = hi - lo;
    if range <= 0.0 {
        return lo;
    }
    let (distance, from_low) = if v < lo {
        (lo - v, true)
    } else if v > hi {
        (v - hi, false)
    } else {
        return v;
    };
    let folds = (distance / range).floor();
    let rest = distance - folds * range;
    let even = (folds as i64) % 2 == 0;
    match (from_low, even) {
        (true, true) | (false, false) => lo + rest,
        (true, false) | (false, true) => hi - rest,
    }
}

impl Plane<'_> {
    /// The pixel at integer (row, col), padded.
    fn pixel(&self, row: i64, col: i64) -> f32 {
        let (h, w) = (self.h as i64, self.w as i64);
        let (r, c) = match self.padding {
            Padding::Zeros => {
                if row < 0 || row >= h || col < 0 || col >= w {
                    return 0.0;
                }
                (row, col)
            }
            Padding::Border => (row.clamp(0, h - 1), col.clamp(0, w - 1)),
            Padding::Reflection => {
                let c = reflect(col as f32, self.x_range.0, self.x_range.1) as i64;
                let r = reflect(row as f32, self.y_range.0, self.y_range.1) as i64;
                (r.clamp(0, h - 1), c.clamp(0, w - 1))
            }
        };
        self.data[r as usize * self.w + c as usize]
    }

    /// Moves an outside coordinate back in for border and reflection padding.
    fn fold(&self, x: f32, y: f32) -> (f32, f32) {
        let outside =
            x < self.x_range.0 || x > self.x_range.1 || y < self.y_range.0 || y > self.y_range.1;
        match self.padding {
            _ if !outside => (x, y),
            Padding::Zeros => (x, y),
            Padding::Border => (
                x.clamp(0.0, self.w as f32 - 1.0),
                y.clamp(0.0, self.h as f32 - 1.0),
            ),
            Padding::Reflection => (
                reflect(x, self.x_range.0, self.x_range.1),
                reflect(y, self.y_range.0, self.y_range.1),
            ),
        }
    }

    fn sample(&self, mode: Mode, x: f32, y: f32) -> f32 {
        match mode {
            Mode::Nearest => {
                let (x, y) = self.fold(x.round_ties_even(), y.round_ties_even());
                self.pixel(y as i64, x as i64)
            }
            Mode::Linear => {
                let (x, y) = self.fold(x, y);
                let (x0, y0) = (x.floor(), y.floor());
                let (dx, dy) = (x - x0, y - y0);
                let (c, r) = (x0 as i64, y0 as i64);
                let top = (1.0 - dx) * self.pixel(r, c) + dx * self.pixel(r, c + 1);
                let bottom = (1.0 - dx) * self.pixel(r + 1, c) + dx * self.pixel(r + 1, c + 1);
                (1.0 - dy) * top + dy * bottom
            }
            Mode::Cubic => {
                let (x, y) = self.fold(x, y);
                let (x0, y0) = (x.floor(), y.floor());
                let (wx, wy) = (cubic_weights(x - x0), cubic_weights(y - y0));
                let (c, r) = (x0 as i64 - 1, y0 as i64 - 1);
                (0..4)
                    .map(|i| {
                        let row: f32 = (0..4)
                            .map(|j| wx[j] * self.pixel(r + i as i64, c + j as i64))
                            .sum();
                        wy[i] * row
                    })
                    .sum()
            }
        }
    }
}

/// Cubic convolution weights (a = -0.75) of the four taps around a fraction `t` in [0, 1).
fn cubic_weights(t: f32) -> [f32; 4] {
    const A: f32 = -0.75;
    let near = |d: f32| ((A + 2.0) * d - (A + 3.0)) * d * d + 1.0;
    let far = |d: f32| ((A * d - 5.0 * A) * d + 8.0 * A) * d - 4.0 * A;
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
}

/// A grid coordinate in [-1, 1] as a pixel coordinate along an axis of `len` pixels.
fn unnormalize(v: f32, len: usize, align_corners: bool) -> f32 {
    let len = len as f32;
    if align_corners {
        (v + 1.0) / 2.0 * (len - 1.0)
    } else {
        ((v + 1.0) * len - 1.0) / 2.0
    }
}

fn grid_sample(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let x = input_f32(inputs, 0)?;
    let grid = input_f32(inputs, 1)?;
    let (&[n, c, h, w], &[gn, oh, ow, two]) = (x.shape(), grid.shape()) else {
        return Err(OpError(format!(
            "GridSample takes a 4-D input [N, C, H, W] and a grid [N, H_out, W_out, 2], got {:?} and {:?}",
            x.shape(),
            grid.shape()
        )));
    };
    if gn != n || two != 2 {
        return Err(OpError(format!(
            "grid {:?} does not fit input {:?}: expected [{n}, H_out, W_out, 2]",
            grid.shape(),
            x.shape()
        )));
    }
    let mode = match ctx.node.attr_string("mode", "linear")?.as_str() {
        "bilinear" | "linear" => Mode::Linear,
        "nearest" => Mode::Nearest,
        "bicubic" | "cubic" => Mode::Cubic,
        other => return Err(OpError(format!("unknown mode '{other}'"))),
    };
    let padding = match ctx.node.attr_string("padding_mode", "zeros")?.as_str() {
        "zeros" => Padding::Zeros,
        "border" => Padding::Border,
        "reflection" => Padding::Reflection,
        other => return Err(OpError(format!("unknown padding_mode '{other}'"))),
    };
    let align_corners = ctx.node.attr_int("align_corners", 0)? != 0;
    let range = |len: usize| {
        if align_corners {
            (0.0, len as f32 - 1.0)
        } else {
            (-0.5, len as f32 - 0.5)
        }
    };
    let data = flat(x);
    let grid = flat(grid);
    let mut out = Vec::with_capacity(n * c * oh * ow);
    for b in 0..n {
        let cells = &grid[b * oh * ow * 2..(b + 1) * oh * ow * 2];
        for ch in 0..c {
            let plane = Plane {
                data: &data[(b * c + ch) * h * w..(b * c + ch + 1) * h * w],
                h,
                w,
                padding,
                x_range: range(w),
                y_range: range(h),
            };
            out.extend(cells.chunks_exact(2).map(|xy| {
                let px = unnormalize(xy[0], w, align_corners);
                let py = unnormalize(xy[1], h, align_corners);
                if h == 0 || w == 0 {
                    0.0
                } else {
                    plane.sample(mode, px, py)
                }
            }));
        }
    }
    let out: ArrayD<f32> = array_from(&[n, c, oh, ow], out)?;
    single(out)
}

/// The normalized coordinates of `len` pixels along an axis: pixel centers spread over
/// [-1, 1], or the first and last pixel on -1 and 1 with aligned corners.
fn base_coordinates(len: usize, align_corners: bool) -> Vec<f32> {
    let n = len as f32;
    (0..len)
        .map(|i| {
            let i = i as f32;
            if align_corners {
                if len == 1 {
                    -1.0
                } else {
                    -1.0 + 2.0 * i / (n - 1.0)
                }
            } else {
                (2.0 * i + 1.0) / n - 1.0
            }
        })
        .collect()
}

fn affine_grid(ctx: &OpCtx<'_>, inputs: &[Option<&TensorData>]) -> OpResult {
    let theta = input_f32(inputs, 0)?;
    let size: Vec<i64> = match super::input(inputs, 1)? {
        TensorData::I64(a) => a.iter().copied().collect(),
        TensorData::F32(_) => return Err(OpError("size must be an int64 tensor".into())),
    };
    let align_corners = ctx.node.attr_int("align_corners", 0)? != 0;
    let dims: Vec<usize> = size
        .iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| OpError(format!("size {size:?} has a negative entry")))
        })
        .collect::<Result<_, _>>()?;
    // spatial axes: [H, W] or [D, H, W]
    let spatial = match dims.as_slice() {
        [_, _, rest @ ..] if rest.len() == 2 || rest.len() == 3 => rest.to_vec(),
        _ => {
            return Err(OpError(format!(
                "size must be [N, C, H, W] or [N, C, D, H, W], got {size:?}"
            )));
        }
    };
    let k = spatial.len();
    let n = dims[0];
    if theta.shape() != [n, k, k + 1] {
        return Err(OpError(format!(
            "theta must be [{n}, {k}, {}] for size {size:?}, got {:?}",
            k + 1,
            theta.shape()
        )));
    }
    // coordinates per axis, in output order (x over the last axis first)
    let axes: Vec<Vec<f32>> = spatial
        .iter()
        .rev()
        .map(|&len| base_coordinates(len, align_corners))
        .collect();
    let points: usize = spatial.iter().product();
    super::checked_len(&[n, points, k])?;
    let theta = flat(theta);
    let mut out: Vec<f32> = Vec::with_capacity(n * points * k);
    let mut v = vec![0f32; k + 1];
    v[k] = 1.0;
    for b in 0..n {
        let m = &theta[b * k * (k + 1)..(b + 1) * k * (k + 1)];
        for p in 0..points {
            // p runs over the spatial axes row-major: the last axis (x) fastest
            let mut rest = p;
            for (a, coords) in axes.iter().enumerate() {
                let len = coords.len();
                v[a] = coords[rest % len];
                rest /= len;
            }
            for row in m.chunks_exact(k + 1) {
                out.push(row.iter().zip(&v).map(|(t, x)| t * x).sum());
            }
        }
    }
    let mut shape = vec![n];
    shape.extend(&spatial);
    shape.push(k);
    single(array_from(&shape, out)?)
}

#[cfg(test)]
mod tests;
