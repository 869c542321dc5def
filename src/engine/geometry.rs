//! The sliding-window geometry of ONNX Conv, ConvTranspose and pooling nodes.
//!
//! A node's window attributes (`kernel_shape`, `strides`, `dilations`, `pads`, `auto_pad`,
//! `group`, and `ceil_mode` for pools, `output_padding` and `output_shape` for ConvTranspose)
//! are read and checked once into a [`WindowSpec`]. [`WindowSpec::axes`] (Conv, pools) and
//! [`WindowSpec::transposed_axes`] (ConvTranspose) resolve it for an input size into one
//! [`Axis`] per spatial dim with the ONNX output-size rules. The engine's kernels, the integer
//! path, the cost model and the transforms all read windows through it, so a bad attribute
//! gives the same error, naming the node, wherever it is read.

use std::collections::BTreeMap;

use crate::ir::{Attribute, Node};

/// Upper bound on sizes, strides, pads and dilations given as attributes (anything larger is
/// certainly a corrupt file, and would overflow size arithmetic).
const MAX_ATTR: i64 = 1 << 30;

/// A window attribute that is missing, malformed or does not fit the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op} '{node}': {msg}")]
pub struct WindowError {
    pub node: String,
    pub op: String,
    pub msg: String,
}

impl From<WindowError> for crate::error::Error {
    fn from(e: WindowError) -> Self {
        crate::error::Error::Op {
            node: e.node,
            op: e.op,
            msg: e.msg,
        }
    }
}

/// How a window is padded (`auto_pad`, and `pads` when it is NOTSET).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Padding {
    /// The begin pad of every spatial axis, then the end pads (ONNX order); zeros when `pads`
    /// is absent.
    Explicit(Vec<usize>),
    /// No padding.
    Valid,
    /// Output size ⌈input / stride⌉; an odd total pad puts the extra one at the end.
    SameUpper,
    /// As [`Padding::SameUpper`], with the extra pad at the beginning.
    SameLower,
}

/// Geometry of a sliding window along one spatial axis, resolved for an input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Axis {
    pub input: usize,
    pub kernel: usize,
    pub stride: usize,
    pub dilation: usize,
    /// Padding before the first element (negative for a ConvTranspose whose `output_shape` is
    /// larger than the natural one).
    pub pad_begin: isize,
    pub pad_end: isize,
    pub output: usize,
}

impl Axis {
    /// A size-1 axis that changes nothing (used to embed 1-D and 2-D cases in 3-D loops).
    pub const TRIVIAL: Axis = Axis {
        input: 1,
        kernel: 1,
        stride: 1,
        dilation: 1,
        pad_begin: 0,
        pad_end: 0,
        output: 1,
    };

    /// Extent of the dilated kernel.
    pub fn span(&self) -> usize {
        self.dilation * (self.kernel - 1) + 1
    }

    /// Offset of kernel tap `k` relative to `output index · stride`.
    pub fn tap_offset(&self, k: usize) -> isize {
        (k * self.dilation) as isize - self.pad_begin
    }
}

/// The indices `j` in `0..count` with `0 ≤ j·stride + off < limit`, as a half-open range
/// (empty ranges come back as `(x, x)`).
pub(crate) fn valid_range(off: isize, stride: usize, limit: usize, count: usize) -> (usize, usize) {
    let s = stride as isize;
    let lo = if off >= 0 {
        0
    } else {
        ((-off + s - 1) / s) as usize
    };
    let last = limit as isize - 1 - off;
    let hi = if last < 0 {
        0
    } else {
        ((last / s) as usize + 1).min(count)
    };
    (lo.min(hi), hi)
}

/// Every index of a 3-D grid of `extent` in row-major order.
pub(crate) fn indices3(extent: [usize; 3]) -> impl Iterator<Item = [usize; 3]> {
    let [d, h, w] = extent;
    (0..d).flat_map(move |i| (0..h).flat_map(move |j| (0..w).map(move |k| [i, j, k])))
}

/// Pads `axes` (1 to 3 of them) to exactly 3 by prepending trivial axes.
pub(crate) fn to3(axes: &[Axis]) -> [Axis; 3] {
    let mut out = [Axis::TRIVIAL; 3];
    out[3 - axes.len()..].copy_from_slice(axes);
    out
}

/// The window attributes of one Conv, ConvTranspose or pooling node, read and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSpec {
    /// The node's name and op type (named in every error).
    pub node: String,
    pub op: String,
    /// Kernel extent per spatial axis (the weight's spatial dims for convolutions).
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub padding: Padding,
    /// Convolution groups (1 for pools).
    pub group: usize,
    /// Pools: output sizes rounded up (a last window starting in the end padding is dropped).
    pub ceil_mode: bool,
    /// ConvTranspose: extra size at the end of each axis (zeros otherwise).
    pub output_padding: Vec<usize>,
    /// ConvTranspose: the requested spatial output size, pads derived from it.
    pub output_shape: Option<Vec<i64>>,
}

/// Reads attributes of one node, every error naming it.
struct Reader<'a>(&'a Node);

impl Reader<'_> {
    fn error(&self, msg: impl Into<String>) -> WindowError {
        WindowError {
            node: self.0.name.clone(),
            op: self.0.op_type.clone(),
            msg: msg.into(),
        }
    }

    /// Integer-list attribute `name` of exactly `len` values, each ≥ `min`; `default`
    /// everywhere when absent.
    fn usize_list(
        &self,
        name: &str,
        len: usize,
        min: i64,
        default: usize,
    ) -> Result<Vec<usize>, WindowError> {
        match self.0.attr_ints(name).map_err(|e| self.error(e))? {
            None => Ok(vec![default; len]),
            Some(v) => {
                if v.len() != len {
                    return Err(self.error(format!(
                        "attribute '{name}' has {} values, expected {len}",
                        v.len()
                    )));
                }
                if let Some(bad) = v.iter().find(|&&x| x < min || x > MAX_ATTR) {
                    return Err(self.error(format!(
                        "attribute '{name}' has value {bad}; values must be in {min}..={MAX_ATTR}"
                    )));
                }
                Ok(v.into_iter().map(|x| x as usize).collect())
            }
        }
    }

    /// The `kernel_shape` attribute checked against `weight` (a weight's spatial dims), or
    /// the attribute itself when `weight` is None (pools).
    fn kernel_shape(
        &self,
        spatial: usize,
        weight: Option<&[usize]>,
    ) -> Result<Vec<usize>, WindowError> {
        let attr = self
            .0
            .attr_ints("kernel_shape")
            .map_err(|e| self.error(e))?;
        let kernel: Vec<usize> = match (attr, weight) {
            (Some(a), w) => {
                if a.len() != spatial {
                    return Err(self.error(format!(
                        "kernel_shape {a:?} has {} values but the input has {spatial} spatial dims",
                        a.len()
                    )));
                }
                if a.iter().any(|&k| !(1..=MAX_ATTR).contains(&k)) {
                    return Err(self.error(format!("kernel_shape {a:?} must be positive")));
                }
                let a: Vec<usize> = a.iter().map(|&k| k as usize).collect();
                if let Some(w) = w
                    && w != a.as_slice()
                {
                    return Err(self.error(format!(
                        "kernel_shape {a:?} does not match the weight's spatial shape {w:?}"
                    )));
                }
                a
            }
            (None, Some(w)) => w.to_vec(),
            (None, None) => return Err(self.error("attribute 'kernel_shape' is required")),
        };
        if kernel.contains(&0) {
            return Err(self.error(format!("kernel shape {kernel:?} has a zero dimension")));
        }
        Ok(kernel)
    }

    /// `auto_pad`, and `pads` when it is NOTSET.
    fn padding(&self, spatial: usize) -> Result<Padding, WindowError> {
        let auto_pad = self
            .0
            .attr_string("auto_pad", "NOTSET")
            .map_err(|e| self.error(e))?;
        Ok(match auto_pad.as_str() {
            "NOTSET" | "" => Padding::Explicit(self.usize_list("pads", 2 * spatial, 0, 0)?),
            "SAME_UPPER" => Padding::SameUpper,
            "SAME_LOWER" => Padding::SameLower,
            "VALID" => Padding::Valid,
            other => {
                return Err(self.error(format!(
                    "auto_pad '{other}' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID"
                )));
            }
        })
    }

    /// Everything but the kernel: strides, dilations, padding, and the op-specific attributes.
    fn spec(&self, kernel: Vec<usize>, pool: bool) -> Result<WindowSpec, WindowError> {
        let node = self.0;
        let sp = kernel.len();
        let group = if pool {
            1
        } else {
            let group = node.attr_int("group", 1).map_err(|e| self.error(e))?;
            if group < 1 {
                return Err(self.error(format!("group must be ≥ 1, got {group}")));
            }
            group as usize
        };
        let strides = self.usize_list("strides", sp, 1, 1)?;
        let dilations = self.usize_list("dilations", sp, 1, 1)?;
        let transposed = node.op_type == "ConvTranspose";
        let output_padding = if transposed {
            self.usize_list("output_padding", sp, 0, 0)?
        } else {
            vec![0; sp]
        };
        let padding = self.padding(sp)?;
        let output_shape = if transposed {
            match node.attr_ints("output_shape").map_err(|e| self.error(e))? {
                None => None,
                Some(v) if v.len() == sp => Some(v),
                Some(v) if v.len() == sp + 2 => Some(v[2..].to_vec()),
                Some(v) => {
                    return Err(self.error(format!(
                        "output_shape {v:?} should have {sp} values (one per spatial dim)"
                    )));
                }
            }
        } else {
            None
        };
        let ceil_mode = pool && node.attr_int("ceil_mode", 0).map_err(|e| self.error(e))? != 0;
        Ok(WindowSpec {
            node: node.name.clone(),
            op: node.op_type.clone(),
            kernel,
            strides,
            dilations,
            padding,
            group,
            ceil_mode,
            output_padding,
            output_shape,
        })
    }
}

impl WindowSpec {
    /// The window of a Conv or ConvTranspose node whose weight has the spatial dims `kernel`
    /// (checked against `kernel_shape` when the node gives it).
    pub fn conv(node: &Node, kernel: &[usize]) -> Result<Self, WindowError> {
        let reader = Reader(node);
        let kernel = reader.kernel_shape(kernel.len(), Some(kernel))?;
        reader.spec(kernel, false)
    }

    /// The window of a MaxPool or AveragePool node over `spatial` dims (the kernel from its
    /// required `kernel_shape`).
    pub fn pool(node: &Node, spatial: usize) -> Result<Self, WindowError> {
        let reader = Reader(node);
        let kernel = reader.kernel_shape(spatial, None)?;
        reader.spec(kernel, true)
    }

    /// The window a Conv node named `name` with `attributes` would have over a weight with
    /// spatial dims `kernel`.
    pub fn conv_with(
        name: &str,
        kernel: &[usize],
        attributes: BTreeMap<String, Attribute>,
    ) -> Result<Self, WindowError> {
        let node = Node {
            name: name.to_string(),
            op_type: "Conv".to_string(),
            domain: String::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            attributes,
        };
        Self::conv(&node, kernel)
    }

    /// The attributes that describe this window (`conv_with` of them gives it back).
    pub fn attributes(&self) -> BTreeMap<String, Attribute> {
        let ints = |v: &[usize]| Attribute::Ints(v.iter().map(|&x| x as i64).collect());
        let mut attributes = BTreeMap::from([
            ("kernel_shape".to_string(), ints(&self.kernel)),
            ("strides".to_string(), ints(&self.strides)),
            ("dilations".to_string(), ints(&self.dilations)),
        ]);
        let auto_pad = match &self.padding {
            Padding::Explicit(pads) => {
                attributes.insert("pads".to_string(), ints(pads));
                "NOTSET"
            }
            Padding::Valid => "VALID",
            Padding::SameUpper => "SAME_UPPER",
            Padding::SameLower => "SAME_LOWER",
        };
        attributes.insert("auto_pad".to_string(), Attribute::String(auto_pad.into()));
        if self.group != 1 {
            attributes.insert("group".to_string(), Attribute::Int(self.group as i64));
        }
        if self.ceil_mode {
            attributes.insert("ceil_mode".to_string(), Attribute::Int(1));
        }
        if self.output_padding.iter().any(|&p| p != 0) {
            attributes.insert("output_padding".to_string(), ints(&self.output_padding));
        }
        if let Some(shape) = &self.output_shape {
            attributes.insert("output_shape".to_string(), Attribute::Ints(shape.clone()));
        }
        attributes
    }

    /// Number of spatial dims.
    pub fn spatial(&self) -> usize {
        self.kernel.len()
    }

    /// Whether windows can reach into padding (non-zero pads, or SAME auto padding).
    pub fn pads_input(&self) -> bool {
        match &self.padding {
            Padding::Explicit(pads) => pads.iter().any(|&p| p != 0),
            Padding::Valid => false,
            Padding::SameUpper | Padding::SameLower => true,
        }
    }

    /// An error about this window, naming its node.
    pub fn error(&self, msg: impl Into<String>) -> WindowError {
        WindowError {
            node: self.node.clone(),
            op: self.op.clone(),
            msg: msg.into(),
        }
    }

    fn check_rank(&self, input: &[usize]) -> Result<(), WindowError> {
        if input.len() == self.spatial() {
            Ok(())
        } else {
            Err(self.error(format!(
                "the input has {} spatial dims, the kernel {:?} has {}",
                input.len(),
                self.kernel,
                self.spatial()
            )))
        }
    }

    /// The explicit (begin, end) pads of axis `i`; zeros for automatic padding.
    fn explicit_pads(&self, i: usize) -> (usize, usize) {
        match &self.padding {
            Padding::Explicit(pads) => (pads[i], pads[i + self.spatial()]),
            _ => (0, 0),
        }
    }

    /// Axis `i` over an input of `size` with the explicit pads and no output size yet.
    fn unresolved_axis(&self, i: usize, size: usize) -> Axis {
        let (begin, end) = self.explicit_pads(i);
        Axis {
            input: size,
            kernel: self.kernel[i],
            stride: self.strides[i],
            dilation: self.dilations[i],
            pad_begin: begin as isize,
            pad_end: end as isize,
            output: 0,
        }
    }

    /// The window of each spatial axis over an input of spatial dims `input` (Conv and pools).
    pub fn axes(&self, input: &[usize]) -> Result<Vec<Axis>, WindowError> {
        self.check_rank(input)?;
        let mut axes = Vec::with_capacity(input.len());
        for (i, &size) in input.iter().enumerate() {
            let (begin, end) = self.explicit_pads(i);
            let mut a = self.unresolved_axis(i, size);
            let span = a.span();
            match self.padding {
                Padding::SameUpper | Padding::SameLower => {
                    a.output = a.input.div_ceil(a.stride);
                    let total = ((a.output.max(1) - 1) * a.stride + span).saturating_sub(a.input);
                    let small = total / 2;
                    let (b, e) = if self.padding == Padding::SameUpper {
                        (small, total - small)
                    } else {
                        (total - small, small)
                    };
                    a.pad_begin = b as isize;
                    a.pad_end = e as isize;
                }
                Padding::Explicit(_) | Padding::Valid => {
                    let padded = a.input + begin + end;
                    if padded < span {
                        return Err(self.error(format!(
                            "kernel extent {span} (kernel {}, dilation {}) is larger than the \
                             padded input {padded} along spatial axis {i}",
                            a.kernel, a.dilation
                        )));
                    }
                    let room = padded - span;
                    a.output = if self.ceil_mode && matches!(self.padding, Padding::Explicit(_)) {
                        let mut o = room.div_ceil(a.stride) + 1;
                        // A last window starting in the end padding is dropped.
                        if (o - 1) * a.stride >= a.input + begin {
                            o -= 1;
                        }
                        o
                    } else {
                        room / a.stride + 1
                    };
                }
            }
            axes.push(a);
        }
        Ok(axes)
    }

    /// The window of each spatial axis of a ConvTranspose over an input of spatial dims
    /// `input`: `output` is the result's size and the pads are what is cropped from the full
    /// scatter (negative when `output_shape` asks for more than it covers).
    pub fn transposed_axes(&self, input: &[usize]) -> Result<Vec<Axis>, WindowError> {
        self.check_rank(input)?;
        let mut axes = Vec::with_capacity(input.len());
        for (i, &size) in input.iter().enumerate() {
            let mut a = self.unresolved_axis(i, size);
            // Length of the un-cropped result.
            let full =
                (a.stride * a.input.saturating_sub(1) + self.output_padding[i] + a.span()) as isize;
            let same = matches!(self.padding, Padding::SameUpper | Padding::SameLower);
            let (out, total) = if let Some(os) = &self.output_shape {
                if !(1..=MAX_ATTR).contains(&os[i]) {
                    return Err(self.error(format!("output_shape {os:?} must be positive")));
                }
                (os[i] as isize, full - os[i] as isize)
            } else if same {
                let out = (a.input * a.stride) as isize;
                (out, (full - out).max(0))
            } else if self.padding == Padding::Valid {
                (full, 0)
            } else {
                (full - a.pad_begin - a.pad_end, a.pad_begin + a.pad_end)
            };
            if self.output_shape.is_some() || same {
                let small = total.div_euclid(2);
                a.pad_begin = if self.padding == Padding::SameUpper {
                    small
                } else {
                    total - small
                };
                a.pad_end = total - a.pad_begin;
            }
            if out < 1 {
                return Err(self.error(format!(
                    "output size along spatial axis {i} would be {out} (input {}, stride {}, \
                     kernel {}, pads {}+{})",
                    a.input, a.stride, a.kernel, a.pad_begin, a.pad_end
                )));
            }
            a.output = out as usize;
            axes.push(a);
        }
        Ok(axes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv_node(op: &str, attrs: &[(&str, Attribute)]) -> Node {
        Node::new("c", op, &["x", "w"], &["y"])
            .with_attributes(attrs.iter().map(|(k, v)| (*k, v.clone())))
    }

    fn ints(v: &[i64]) -> Attribute {
        Attribute::Ints(v.to_vec())
    }

    fn outputs(axes: &[Axis]) -> Vec<usize> {
        axes.iter().map(|a| a.output).collect()
    }

    fn begin_pads(axes: &[Axis]) -> Vec<isize> {
        axes.iter().map(|a| a.pad_begin).collect()
    }

    #[test]
    fn conv_attributes_resolve_with_onnx_rules() {
        let same = conv_node(
            "Conv",
            &[
                ("strides", ints(&[2, 2])),
                ("auto_pad", Attribute::String("SAME_UPPER".into())),
                ("group", Attribute::Int(4)),
            ],
        );
        let spec = WindowSpec::conv(&same, &[3, 3]).unwrap();
        assert_eq!((spec.group, &spec.padding), (4, &Padding::SameUpper));
        let axes = spec.axes(&[7, 8]).unwrap();
        // ⌈7/2⌉ = 4: total pad (3·2 + 3) − 7 = 2 → 1 + 1; ⌈8/2⌉ = 4: total 1 → 0 + 1.
        assert_eq!(outputs(&axes), [4, 4]);
        assert_eq!(begin_pads(&axes), [1, 0]);
        assert_eq!(axes[1].pad_end, 1);
        let lower = conv_node(
            "Conv",
            &[
                ("strides", ints(&[2, 2])),
                ("auto_pad", Attribute::String("SAME_LOWER".into())),
            ],
        );
        let axes = WindowSpec::conv(&lower, &[3, 3])
            .unwrap()
            .axes(&[7, 8])
            .unwrap();
        assert_eq!(begin_pads(&axes), [1, 1]);
        let explicit = conv_node(
            "Conv",
            &[
                ("strides", ints(&[2, 2])),
                ("pads", ints(&[0, 1, 2, 3])),
                ("dilations", ints(&[2, 1])),
            ],
        );
        let spec = WindowSpec::conv(&explicit, &[3, 3]).unwrap();
        assert!(spec.pads_input());
        // (7 + 2 − 5) / 2 + 1 = 3 and (8 + 4 − 3) / 2 + 1 = 5.
        assert_eq!(outputs(&spec.axes(&[7, 8]).unwrap()), [3, 5]);
        let valid = conv_node("Conv", &[("auto_pad", Attribute::String("VALID".into()))]);
        let spec = WindowSpec::conv(&valid, &[3]).unwrap();
        assert!(!spec.pads_input());
        assert_eq!(outputs(&spec.axes(&[10]).unwrap()), [8]);
    }

    #[test]
    fn ceil_mode_drops_windows_starting_in_the_end_padding() {
        let pool = |pads: &[i64]| {
            conv_node(
                "MaxPool",
                &[
                    ("kernel_shape", ints(&[2])),
                    ("strides", ints(&[2])),
                    ("pads", ints(pads)),
                    ("ceil_mode", Attribute::Int(1)),
                ],
            )
        };
        // 5 → ⌈3/2⌉ + 1 = 3 windows at 0, 2, 4 (the last one half outside).
        let spec = WindowSpec::pool(&pool(&[0, 0]), 1).unwrap();
        assert_eq!(outputs(&spec.axes(&[5]).unwrap()), [3]);
        // 4 + end pad 1: ⌈3/2⌉ + 1 = 3, but the third window would start in the padding.
        let spec = WindowSpec::pool(&pool(&[0, 1]), 1).unwrap();
        assert_eq!(outputs(&spec.axes(&[4]).unwrap()), [2]);
    }

    #[test]
    fn conv_transpose_output_sizes() {
        let node = conv_node(
            "ConvTranspose",
            &[
                ("strides", ints(&[2, 2])),
                ("output_padding", ints(&[1, 0])),
                ("pads", ints(&[1, 0, 1, 0])),
            ],
        );
        let spec = WindowSpec::conv(&node, &[3, 3]).unwrap();
        // full = 2·(3 − 1) + op + 3 = 8 and 7; cropped by the pads.
        assert_eq!(outputs(&spec.transposed_axes(&[3, 3]).unwrap()), [6, 7]);
        let node = conv_node(
            "ConvTranspose",
            &[
                ("strides", ints(&[2, 2])),
                ("output_shape", ints(&[1, 3, 10, 8])),
            ],
        );
        let axes = WindowSpec::conv(&node, &[3, 3])
            .unwrap()
            .transposed_axes(&[3, 3])
            .unwrap();
        assert_eq!(outputs(&axes), [10, 8]);
        // Totals −3 and −1: NOTSET puts the larger half first.
        assert_eq!(begin_pads(&axes), [-1, 0]);
    }

    #[test]
    fn attributes_round_trip() {
        let node = conv_node(
            "Conv",
            &[
                ("strides", ints(&[2, 1])),
                ("pads", ints(&[0, 1, 2, 3])),
                ("dilations", ints(&[2, 1])),
                ("group", Attribute::Int(3)),
            ],
        );
        let spec = WindowSpec::conv(&node, &[3, 2]).unwrap();
        let back = WindowSpec::conv_with("c", &[3, 2], spec.attributes()).unwrap();
        assert_eq!(back, spec);
        let same = conv_node(
            "Conv",
            &[("auto_pad", Attribute::String("SAME_LOWER".into()))],
        );
        let spec = WindowSpec::conv(&same, &[3]).unwrap();
        assert_eq!(
            WindowSpec::conv_with("c", &[3], spec.attributes()).unwrap(),
            spec
        );
    }

    #[test]
    fn bad_attributes_name_the_node() {
        let check = |attrs: &[(&str, Attribute)], kernel: &[usize], input: &[usize], want: &str| {
            let node = conv_node("Conv", attrs);
            let err = WindowSpec::conv(&node, kernel)
                .and_then(|s| s.axes(input))
                .unwrap_err();
            let text = err.to_string();
            assert!(text.starts_with("Conv 'c': "), "{text}");
            assert!(text.contains(want), "{text} lacks {want}");
        };
        check(&[("strides", ints(&[0, 1]))], &[3, 3], &[8, 8], "strides");
        check(&[("strides", ints(&[1]))], &[3, 3], &[8, 8], "expected 2");
        check(&[("pads", ints(&[1, 1, -1, 1]))], &[3, 3], &[8, 8], "pads");
        check(
            &[("dilations", ints(&[4, 4]))],
            &[3, 3],
            &[8, 8],
            "larger than the padded input",
        );
        check(
            &[("kernel_shape", ints(&[5, 5]))],
            &[3, 3],
            &[8, 8],
            "kernel_shape",
        );
        check(
            &[("auto_pad", Attribute::String("SAME".into()))],
            &[3, 3],
            &[8, 8],
            "auto_pad",
        );
        check(&[("group", Attribute::Int(0))], &[3, 3], &[8, 8], "group");
        check(&[], &[0, 3], &[8, 8], "zero");
        check(&[], &[3, 3], &[8], "spatial dims");
        let pool = conv_node("MaxPool", &[]);
        assert!(
            WindowSpec::pool(&pool, 2)
                .unwrap_err()
                .to_string()
                .contains("kernel_shape")
        );
    }
}
