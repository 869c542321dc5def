//! A Conv, Gemm or MatMul layer seen as the matrix product y = W·x that AdaRound reconstructs:
//! its weight as a `[out channels, K]` matrix (per group for grouped convolutions), and the
//! second moments G = Σ x·xᵀ / samples of its input patches (im2col for Conv), gathered by a
//! [`TensorHook`] during float runs. With G, the reconstruction error Σ‖(W̃ − W)·x‖² / samples
//! is tr(D·G·Dᵀ) for D = W̃ − W, whatever the number of patches.

use std::collections::HashMap;

use ndarray::{Array2, ArrayD, ArrayViewD, IxDyn, linalg::general_mat_mul};

use crate::engine::geometry::{Padding, WindowSpec};
use crate::engine::{TensorHook, TensorSite};
use crate::error::{Error, Result};
use crate::ir::{Graph, Node, TensorData};

/// Rows gathered before they are folded into the Gram matrix.
const ROW_CHUNK: usize = 1024;

/// How input activations become rows x of y = W·x.
#[derive(Debug, Clone, PartialEq, Eq)]
enum InputLayout {
    /// Conv (2-D, explicit padding): one row per output position (im2col of the receptive
    /// field).
    Patches(Box<WindowSpec>),
    /// Gemm / MatMul: the last axis is K, every other axis indexes rows.
    Rows,
}

/// Where the output channels sit in the stored weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WeightLayout {
    /// `[Cout, ...]` (Conv, Gemm with transB = 1).
    OutFirst,
    /// `[K, Cout]` (Gemm with transB = 0, MatMul).
    OutLast,
}

/// One quantizable layer as a (grouped) matrix product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinearLayer {
    pub node: String,
    pub op_type: String,
    /// Name of the activation tensor read as x.
    pub input: String,
    /// Name of the weight initializer.
    pub weight: String,
    pub out_channels: usize,
    /// Inputs per output (per group): Cin/group·kh·kw for Conv, in features otherwise.
    pub k: usize,
    pub groups: usize,
    input_layout: InputLayout,
    weight_layout: WeightLayout,
}

fn op_error(node: &Node, msg: impl Into<String>) -> Error {
    Error::Op {
        node: node.name.clone(),
        op: node.op_type.clone(),
        msg: msg.into(),
    }
}

impl LinearLayer {
    /// The matrix view of `node` (Conv 2-D, Gemm with transA = 0, MatMul with a 2-D weight).
    pub fn of(graph: &Graph, node: &Node) -> Result<Self> {
        let input = node
            .input(0)
            .ok_or_else(|| op_error(node, "has no data input"))?;
        let weight_name = node
            .input(1)
            .ok_or_else(|| op_error(node, "has no weight input"))?;
        let weight = graph.initializers.get(weight_name).ok_or_else(|| {
            op_error(
                node,
                format!("input '{weight_name}' is not a stored weight (nothing to round)"),
            )
        })?;
        let shape = weight.shape();
        let (out_channels, k, groups, input_layout, weight_layout) = match node.op_type.as_str() {
            "Conv" => {
                if shape.len() != 4 {
                    return Err(op_error(
                        node,
                        format!("AdaRound needs 2-D convolutions; weight shape is {shape:?}"),
                    ));
                }
                let window = WindowSpec::conv(node, &shape[2..])?;
                let same = match window.padding {
                    Padding::SameUpper => Some("SAME_UPPER"),
                    Padding::SameLower => Some("SAME_LOWER"),
                    Padding::Explicit(_) | Padding::Valid => None,
                };
                if let Some(auto_pad) = same {
                    return Err(op_error(
                        node,
                        format!("auto_pad {auto_pad} is not supported by AdaRound (use pads)"),
                    ));
                }
                let group = window.group;
                if !shape[0].is_multiple_of(group) {
                    return Err(op_error(
                        node,
                        format!("group {group} does not divide {} outputs", shape[0]),
                    ));
                }
                (
                    shape[0],
                    shape[1] * shape[2] * shape[3],
                    group,
                    InputLayout::Patches(Box::new(window)),
                    WeightLayout::OutFirst,
                )
            }
            "Gemm" | "MatMul" => {
                if shape.len() != 2 {
                    return Err(op_error(
                        node,
                        format!("AdaRound needs a 2-D weight; shape is {shape:?}"),
                    ));
                }
                let gemm = node.op_type == "Gemm";
                if gemm && node.attr_int("transA", 0).map_err(|e| op_error(node, e))? != 0 {
                    return Err(op_error(node, "transA = 1 is not supported by AdaRound"));
                }
                let out_first =
                    gemm && node.attr_int("transB", 0).map_err(|e| op_error(node, e))? != 0;
                let (out, k, layout) = if out_first {
                    (shape[0], shape[1], WeightLayout::OutFirst)
                } else {
                    (shape[1], shape[0], WeightLayout::OutLast)
                };
                (out, k, 1, InputLayout::Rows, layout)
            }
            other => {
                return Err(op_error(
                    node,
                    format!("AdaRound applies to Conv, Gemm and MatMul, not {other}"),
                ));
            }
        };
        Ok(LinearLayer {
            node: node.name.clone(),
            op_type: node.op_type.clone(),
            input: input.to_string(),
            weight: weight_name.to_string(),
            out_channels,
            k,
            groups,
            input_layout,
            weight_layout,
        })
    }

    /// The axis of the stored weight that indexes output channels.
    pub fn out_axis(&self) -> usize {
        match self.weight_layout {
            WeightLayout::OutFirst => 0,
            WeightLayout::OutLast => 1,
        }
    }

    /// Output channels per group.
    pub fn channels_per_group(&self) -> usize {
        self.out_channels / self.groups
    }

    /// The stored weight as a `[Cout, K]` matrix.
    pub fn to_matrix(&self, weight: ArrayViewD<'_, f32>) -> Result<Array2<f64>> {
        let expected = self.out_channels * self.k;
        if weight.len() != expected {
            return Err(Error::Quant {
                tensor: self.weight.clone(),
                msg: format!("expected {expected} weights, found {}", weight.len()),
            });
        }
        let standard: Vec<f64> = weight.iter().map(|&w| f64::from(w)).collect();
        let matrix = match self.weight_layout {
            WeightLayout::OutFirst => Array2::from_shape_vec((self.out_channels, self.k), standard),
            WeightLayout::OutLast => Array2::from_shape_vec((self.k, self.out_channels), standard)
                .map(|m| m.reversed_axes().as_standard_layout().to_owned()),
        };
        matrix.map_err(|e| Error::Quant {
            tensor: self.weight.clone(),
            msg: e.to_string(),
        })
    }

    /// A `[Cout, K]` matrix back in the stored weight's layout and `shape`.
    pub fn from_matrix(&self, matrix: &Array2<f32>, shape: &[usize]) -> Result<ArrayD<f32>> {
        let standard: Vec<f32> = match self.weight_layout {
            WeightLayout::OutFirst => matrix.iter().copied().collect(),
            WeightLayout::OutLast => matrix.t().iter().copied().collect(),
        };
        ArrayD::from_shape_vec(IxDyn(shape), standard).map_err(|e| Error::Quant {
            tensor: self.weight.clone(),
            msg: e.to_string(),
        })
    }

    /// Rows x per sample (all groups) for an input of `shape` (samples along axis 0).
    fn rows_per_sample(&self, shape: &[usize]) -> usize {
        match &self.input_layout {
            InputLayout::Rows => shape
                .get(1..shape.len().saturating_sub(1))
                .map_or(1, |middle| middle.iter().product()),
            InputLayout::Patches(window) => match shape {
                &[_, _, h, w] => window
                    .axes(&[h, w])
                    .map_or(0, |a| a[0].output * a[1].output * self.groups),
                _ => 0,
            },
        }
    }

    /// Rows x of one batch of input activations, per group: calls `emit(group, row)` for each.
    fn for_each_row(
        &self,
        x: ArrayViewD<'_, f32>,
        mut emit: impl FnMut(usize, &mut dyn Iterator<Item = f32>),
    ) -> Result<()> {
        let bad = |msg: String| Error::Op {
            node: self.node.clone(),
            op: self.op_type.clone(),
            msg,
        };
        let x = x.as_standard_layout();
        let data = x
            .as_slice()
            .ok_or_else(|| bad("input is not contiguous".into()))?;
        match &self.input_layout {
            InputLayout::Rows => {
                let k = *x.shape().last().unwrap_or(&0);
                if k != self.k {
                    return Err(bad(format!(
                        "input shape {:?} does not end in {} features",
                        x.shape(),
                        self.k
                    )));
                }
                for row in data.chunks_exact(k) {
                    emit(0, &mut row.iter().copied());
                }
            }
            InputLayout::Patches(window) => {
                let &[n, c, h, w] = x.shape() else {
                    return Err(bad(format!("expected an NCHW input, got {:?}", x.shape())));
                };
                let cg = c / self.groups;
                let kernel = &window.kernel;
                if cg * self.groups != c || cg * kernel[0] * kernel[1] != self.k {
                    return Err(bad(format!(
                        "input with {c} channels does not fit the weight (K = {}, {} groups)",
                        self.k, self.groups
                    )));
                }
                let axes = window.axes(&[h, w])?;
                let (out_h, out_w) = (axes[0].output, axes[1].output);
                // (stride, dilation, begin pad) of each axis; Conv pads are never negative.
                let [(sy, dy, py), (sx, dx, px)] =
                    [0, 1].map(|i| (axes[i].stride, axes[i].dilation, axes[i].pad_begin));
                for image in 0..n {
                    for group in 0..self.groups {
                        for oy in 0..out_h {
                            for ox in 0..out_w {
                                let mut patch = (0..cg).flat_map(|ci| {
                                    let plane = (image * c + group * cg + ci) * h * w;
                                    (0..kernel[0]).flat_map(move |ky| {
                                        (0..kernel[1]).map(move |kx| {
                                            let y = (oy * sy + ky * dy) as isize - py;
                                            let xx = (ox * sx + kx * dx) as isize - px;
                                            if y < 0
                                                || xx < 0
                                                || y as usize >= h
                                                || xx as usize >= w
                                            {
                                                0.0
                                            } else {
                                                data[plane + y as usize * w + xx as usize]
                                            }
                                        })
                                    })
                                });
                                emit(group, &mut patch);
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// Σ x·xᵀ of a layer's input rows, per group, and the number of samples they came from.
#[derive(Debug, Clone)]
pub struct Gram {
    /// One K×K matrix per group (unnormalised sums).
    pub sums: Vec<Array2<f64>>,
    pub samples: usize,
    pub rows: usize,
    pending: Vec<Vec<f64>>,
    pending_rows: Vec<usize>,
    /// Keep one row in `row_step` (bounds the cost on large inputs); fixed at the first batch.
    row_step: Option<usize>,
    seen_rows: usize,
}

impl Gram {
    fn new(layer: &LinearLayer) -> Self {
        Gram {
            sums: vec![Array2::zeros((layer.k, layer.k)); layer.groups],
            samples: 0,
            rows: 0,
            pending: vec![Vec::with_capacity(ROW_CHUNK * layer.k); layer.groups],
            pending_rows: vec![0; layer.groups],
            row_step: None,
            seen_rows: 0,
        }
    }

    fn flush(&mut self, group: usize, k: usize) {
        let rows = self.pending_rows[group];
        if rows == 0 {
            return;
        }
        let block = std::mem::take(&mut self.pending[group]);
        if let Ok(a) = Array2::from_shape_vec((rows, k), block) {
            general_mat_mul(1.0, &a.t(), &a, 1.0, &mut self.sums[group]);
            let mut reused = a.into_raw_vec_and_offset().0;
            reused.clear();
            self.pending[group] = reused;
        }
        self.pending_rows[group] = 0;
    }

    /// Adds one batch of `layer`'s input (samples along axis 0). `expected_samples` (the whole
    /// data set) and `max_rows` fix the subsampling step at the first batch.
    fn add(
        &mut self,
        layer: &LinearLayer,
        x: ArrayViewD<'_, f32>,
        expected_samples: usize,
        max_rows: usize,
    ) -> Result<()> {
        let batch = x.shape().first().copied().unwrap_or(0);
        if batch == 0 {
            return Ok(());
        }
        let rows_per_sample = layer.rows_per_sample(x.shape());
        let step = *self.row_step.get_or_insert_with(|| {
            let total = rows_per_sample * expected_samples.max(batch);
            total.div_ceil(max_rows.max(1)).max(1)
        });
        let k = layer.k;
        layer.for_each_row(x, |group, row| {
            let keep = self.seen_rows.is_multiple_of(step);
            self.seen_rows += 1;
            if !keep {
                return;
            }
            self.pending[group].extend(row.map(f64::from));
            self.pending_rows[group] += 1;
            self.rows += 1;
            if self.pending_rows[group] == ROW_CHUNK {
                self.flush(group, k);
            }
        })?;
        for group in 0..layer.groups {
            self.flush(group, k);
        }
        self.samples += batch;
        Ok(())
    }

    /// Σ x·xᵀ per group divided by the number of samples (so that the reconstruction error is
    /// a sum over one sample's outputs, averaged over samples; subsampled rows are scaled up).
    pub fn normalized(&self) -> Vec<Array2<f64>> {
        let step = self.row_step.unwrap_or(1) as f64;
        let scale = step / self.samples.max(1) as f64;
        self.sums.iter().map(|g| g * scale).collect()
    }
}

/// A [`TensorHook`] folding the inputs of chosen layers into their [`Gram`] matrices.
pub struct GramCollector {
    pub layers: Vec<LinearLayer>,
    pub grams: Vec<Gram>,
    by_input: HashMap<String, Vec<usize>>,
    expected_samples: usize,
    max_rows: usize,
}

impl GramCollector {
    /// Collects for `layers`, expecting `expected_samples` samples in all and keeping at most
    /// about `max_rows` rows per layer.
    pub fn new(layers: Vec<LinearLayer>, expected_samples: usize, max_rows: usize) -> Self {
        let mut by_input: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, layer) in layers.iter().enumerate() {
            by_input.entry(layer.input.clone()).or_default().push(i);
        }
        let grams = layers.iter().map(Gram::new).collect();
        GramCollector {
            layers,
            grams,
            by_input,
            expected_samples,
            max_rows,
        }
    }
}

impl TensorHook for GramCollector {
    fn on_tensor(&mut self, site: TensorSite<'_>, value: &mut TensorData) -> Result<()> {
        let Some(indices) = self.by_input.get(site.name) else {
            return Ok(());
        };
        let TensorData::F32(x) = value else {
            return Ok(());
        };
        for &i in indices {
            self.grams[i].add(
                &self.layers[i],
                x.view(),
                self.expected_samples,
                self.max_rows,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Attribute, DType, Tensor};
    use std::collections::BTreeMap;

    fn conv_graph(group: i64, cin: usize, cout: usize) -> (Graph, Node) {
        let mut graph = Graph::default();
        let w = ArrayD::from_shape_fn(IxDyn(&[cout, cin / group as usize, 3, 3]), |i| {
            (i[0] * 7 + i[1] * 3 + i[2] * 2 + i[3]) as f32 * 0.01 - 0.2
        });
        graph
            .initializers
            .insert("w".into(), Tensor::new("w", TensorData::F32(w), DType::F32));
        let node = Node {
            name: "conv".into(),
            op_type: "Conv".into(),
            domain: String::new(),
            inputs: vec!["x".into(), "w".into()],
            outputs: vec!["y".into()],
            attributes: BTreeMap::from([
                ("group".to_string(), Attribute::Int(group)),
                ("pads".to_string(), Attribute::Ints(vec![1, 1, 1, 1])),
                ("strides".to_string(), Attribute::Ints(vec![2, 1])),
            ]),
        };
        (graph, node)
    }

    /// Direct convolution (reference) of x [1, C, H, W] with the graph's weight.
    fn direct_conv(layer: &LinearLayer, w: &Array2<f64>, x: &ArrayD<f32>) -> Vec<f64> {
        let mut out = Vec::new();
        layer
            .for_each_row(x.view(), |group, row| {
                let patch: Vec<f64> = row.map(f64::from).collect();
                let cpg = layer.channels_per_group();
                for o in group * cpg..(group + 1) * cpg {
                    out.push(w.row(o).iter().zip(&patch).map(|(a, b)| a * b).sum());
                }
            })
            .unwrap();
        out
    }

    #[test]
    fn conv_patches_reproduce_the_engine_output() {
        for group in [1, 2] {
            let (cin, cout) = (4, 6);
            let (mut graph, node) = conv_graph(group, cin, cout);
            graph.nodes.push(node.clone());
            graph.inputs.push(crate::ir::ValueInfo {
                name: "x".into(),
                dtype: Some(DType::F32),
                shape: None,
            });
            graph.outputs.push(crate::ir::ValueInfo {
                name: "y".into(),
                dtype: Some(DType::F32),
                shape: None,
            });
            let layer = LinearLayer::of(&graph, &node).unwrap();
            assert_eq!(layer.k, cin / group as usize * 9);
            let x = ArrayD::from_shape_fn(IxDyn(&[1, cin, 5, 4]), |i| {
                ((i[1] * 13 + i[2] * 5 + i[3]) % 7) as f32 - 3.0
            });
            let w = layer
                .to_matrix(graph.initializers["w"].data.as_f32().unwrap().view())
                .unwrap();
            let plan = crate::engine::Plan::new(&graph).unwrap();
            let feeds = [("x".to_string(), TensorData::F32(x.clone()))].into();
            let y = plan
                .run(feeds, None, crate::engine::RunOptions::default())
                .unwrap();
            let y = y[0].1.as_f32().unwrap();
            // y is [1, Cout, out_h, out_w]; the patch order is group, position, channel.
            let (out_h, out_w) = (y.shape()[2], y.shape()[3]);
            let mine = direct_conv(&layer, &w, &x);
            let cpg = layer.channels_per_group();
            let mut i = 0;
            for g in 0..layer.groups {
                for p in 0..out_h * out_w {
                    for o in g * cpg..(g + 1) * cpg {
                        let engine = y[[0, o, p / out_w, p % out_w]] as f64;
                        assert!((mine[i] - engine).abs() < 1e-4, "{} vs {engine}", mine[i]);
                        i += 1;
                    }
                }
            }
        }
    }

    #[test]
    fn gram_is_x_transpose_x_over_samples() {
        let (graph, node) = conv_graph(1, 2, 3);
        let layer = LinearLayer::of(&graph, &node).unwrap();
        let x = ArrayD::from_shape_fn(IxDyn(&[2, 2, 3, 3]), |i| {
            (i[0] + 2 * i[1] + i[2] * i[3]) as f32 * 0.5
        });
        let mut collector = GramCollector::new(vec![layer.clone()], 2, usize::MAX);
        collector.grams[0]
            .add(&layer, x.view(), 2, usize::MAX)
            .unwrap();
        let mut rows = Vec::new();
        layer
            .for_each_row(x.view(), |_, r| {
                rows.push(r.map(f64::from).collect::<Vec<_>>())
            })
            .unwrap();
        let g = &collector.grams[0].normalized()[0];
        for a in 0..layer.k {
            for b in 0..layer.k {
                let direct: f64 = rows.iter().map(|r| r[a] * r[b]).sum::<f64>() / 2.0;
                assert!((g[[a, b]] - direct).abs() < 1e-9);
            }
        }
        assert_eq!(collector.grams[0].rows, rows.len());
        assert_eq!(layer.rows_per_sample(x.shape()), rows.len() / 2);
        // Capped at 5 of the 12 rows (2 samples × 2×3 positions): every 3rd row is kept and
        // the sums are scaled by 3.
        assert_eq!(rows.len(), 12);
        let mut capped = GramCollector::new(vec![layer.clone()], 2, 5);
        capped.grams[0].add(&layer, x.view(), 2, 5).unwrap();
        assert_eq!(capped.grams[0].rows, 4);
        let direct: f64 = rows.iter().step_by(3).map(|r| r[4] * r[4]).sum::<f64>() * 3.0 / 2.0;
        let g = &capped.grams[0].normalized()[0];
        assert!((g[[4, 4]] - direct).abs() < 1e-9);
    }
}
