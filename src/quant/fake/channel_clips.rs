//! Activations with channels clipped by hand: such an activation is quantized per channel along
//! the axis its consuming layer defines ([`ChannelAxis`], the axis the calibration's per-channel
//! statistics and the app's channel view use), the clipped channels on their own grid and every
//! other channel on the tensor's grid. The same parameters drive the fake quantization during a
//! run and the per-axis QuantizeLinear of the QDQ export.

use std::collections::BTreeMap;

use ndarray::{ArrayD, Axis};
use serde::Serialize;

use crate::calib::ChannelAxis;
use crate::error::{Error, Result};
use crate::ir::{Graph, TensorData};
use crate::quant::grid::{IntGrid, LinearParams};

/// One channel clipped by hand.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ChannelClip {
    pub channel: usize,
    pub range: (f32, f32),
    pub params: LinearParams,
}

/// The per-channel quantization of an activation with channels clipped by hand.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActivationChannels {
    /// The channel axis as ONNX counts it: 1, or −1 for the last axis.
    pub axis: i64,
    /// Channels along the axis, when the graph tells (the consuming layer's weight, or the
    /// declared input shape); a run checks the clipped channels against the actual count.
    pub count: Option<usize>,
    /// The channels clipped by hand, by index; every other channel uses the tensor's grid.
    pub clips: Vec<ChannelClip>,
}

impl ActivationChannels {
    /// The parameters of channel `c`, given the tensor's.
    pub fn params_of(&self, c: usize, tensor: LinearParams) -> LinearParams {
        self.clips
            .iter()
            .find(|clip| clip.channel == c)
            .map_or(tensor, |clip| clip.params)
    }

    /// Every channel's parameters (the tensor's except the clipped ones); None when the channel
    /// count is unknown.
    pub fn all_params(&self, tensor: LinearParams) -> Option<Vec<LinearParams>> {
        self.count
            .map(|n| (0..n).map(|c| self.params_of(c, tensor)).collect())
    }

    /// The axis index in a tensor of `rank` dimensions (None below rank 2: no channels).
    pub fn resolve(&self, rank: usize) -> Option<usize> {
        match self.axis {
            _ if rank < 2 => None,
            -1 => Some(rank - 1),
            a => usize::try_from(a).ok().filter(|&a| a < rank),
        }
    }

    /// The clipped channels' indices.
    pub fn channels(&self) -> Vec<usize> {
        self.clips.iter().map(|c| c.channel).collect()
    }
}

fn onnx_axis(rule: ChannelAxis) -> i64 {
    match rule {
        ChannelAxis::Second => 1,
        ChannelAxis::Last => -1,
    }
}

/// The rule of `name` in `graph` as the calibration sees it: its first consumer that defines
/// one (a convolution's input: axis 1, a MatMul/Gemm input A: the last axis), else axis 1.
fn rule_of(graph: &Graph, name: &str) -> (ChannelAxis, Option<(usize, usize)>) {
    for (index, node) in graph.nodes.iter().enumerate() {
        for (i, input) in node.inputs.iter().enumerate() {
            if input == name
                && let Some(rule) = ChannelAxis::of_consumer(&node.op_type, i)
            {
                return (rule, Some((index, i)));
            }
        }
    }
    (ChannelAxis::Second, None)
}

/// Channels of `name` along its channel axis as the graph tells them: from the weight of the
/// consumer defining the axis, else from a declared fixed size of a graph input.
pub fn channel_count(graph: &Graph, name: &str) -> Option<usize> {
    let (rule, consumer) = rule_of(graph, name);
    let from_weight = consumer.and_then(|(index, _)| {
        let node = &graph.nodes[index];
        let weight = graph.initializers.get(node.input(1)?)?.shape();
        match node.op_type.as_str() {
            "Conv" => {
                let group = usize::try_from(node.attr_int("group", 1).ok()?).ok()?;
                Some(weight.get(1)? * group)
            }
            "ConvTranspose" => weight.first().copied(),
            "LSTM" | "GRU" | "RNN" => weight.get(2).copied(),
            "MatMul" => match weight.len() {
                0 => None,
                1 => Some(weight[0]),
                r => Some(weight[r - 2]),
            },
            "Gemm" if node.attr_int("transA", 0).ok()? == 0 => {
                let trans_b = node.attr_int("transB", 0).ok()? != 0;
                weight.get(usize::from(trans_b)).copied()
            }
            _ => None,
        }
    });
    from_weight.or_else(|| {
        let input = graph.inputs.iter().find(|i| i.name == name)?;
        let shape = input.shape.as_ref()?;
        let axis = match rule {
            ChannelAxis::Second => 1,
            ChannelAxis::Last => shape.len().checked_sub(1)?,
        };
        match shape.get(axis)? {
            crate::ir::Dim::Fixed(n) => Some(*n),
            _ => None,
        }
    })
}

/// The per-channel quantization of activation `name` with `clips` set by hand, on `grid`.
/// Errors name the tensor: a channel beyond the count the graph tells, an empty or non-finite
/// range.
pub fn activation_channels(
    graph: &Graph,
    name: &str,
    clips: &BTreeMap<usize, (f32, f32)>,
    grid: IntGrid,
    symmetric: bool,
) -> Result<ActivationChannels> {
    let err = |msg: String| Error::Quant {
        tensor: name.to_string(),
        msg,
    };
    let (rule, _) = rule_of(graph, name);
    let count = channel_count(graph, name);
    let mut out = Vec::with_capacity(clips.len());
    for (&channel, &(lo, hi)) in clips {
        if let Some(n) = count
            && channel >= n
        {
            return Err(err(format!(
                "clip range for channel {channel}, but the activation has {n} channels"
            )));
        }
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            return Err(err(format!(
                "channel {channel}: invalid clip range [{lo}, {hi}]"
            )));
        }
        let params = LinearParams::from_range(lo, hi, grid, symmetric)
            .map_err(|e| err(format!("channel {channel}: {}", e.0)))?;
        out.push(ChannelClip {
            channel,
            range: (lo, hi),
            params,
        });
    }
    Ok(ActivationChannels {
        axis: onnx_axis(rule),
        count,
        clips: out,
    })
}

/// Fake-quantizes `value` (activation `name`) per channel: each channel on its grid, the
/// channels without a clip on `tensor`'s. Errors name the tensor when it has no channel axis
/// or fewer channels than a clip names.
pub fn fake_quantize_channels(
    value: &mut TensorData,
    name: &str,
    tensor: LinearParams,
    channels: &ActivationChannels,
) -> Result<()> {
    let TensorData::F32(values) = value else {
        return Ok(());
    };
    quantize_array(values, name, tensor, channels)
}

fn quantize_array(
    values: &mut ArrayD<f32>,
    name: &str,
    tensor: LinearParams,
    channels: &ActivationChannels,
) -> Result<()> {
    let err = |msg: String| Error::Quant {
        tensor: name.to_string(),
        msg,
    };
    let axis = channels.resolve(values.ndim()).ok_or_else(|| {
        err(format!(
            "channel clip ranges set, but the activation has shape {:?} (no channel axis {})",
            values.shape(),
            channels.axis
        ))
    })?;
    let n = values.shape()[axis];
    if let Some(c) = channels.clips.iter().map(|c| c.channel).find(|&c| c >= n) {
        return Err(err(format!(
            "clip range for channel {c}, but the activation has {n} channels along axis {axis}"
        )));
    }
    for (c, mut lane) in values.axis_iter_mut(Axis(axis)).enumerate() {
        let params = channels.params_of(c, tensor);
        lane.par_mapv_inplace(|x| params.fake_quantize(x));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use ndarray::IxDyn;

    use super::*;
    use crate::ir::{DType, Node, Tensor, ValueInfo};

    fn conv_graph(group: i64) -> Graph {
        let conv = Node::new("conv", "Conv", &["x", "w"], &["y"])
            .with_attributes([("group", crate::ir::Attribute::Int(group))]);
        let w = Tensor::new(
            "w",
            TensorData::F32(ArrayD::zeros(IxDyn(&[4, 3, 1, 1]))),
            DType::F32,
        );
        Graph {
            name: "g".into(),
            nodes: vec![conv],
            inputs: vec![ValueInfo {
                name: "x".into(),
                dtype: Some(DType::F32),
                shape: None,
            }],
            outputs: vec![],
            initializers: BTreeMap::from([("w".into(), w)]),
            opset: 13,
        }
    }

    fn uint8() -> IntGrid {
        IntGrid::new(8, false, false).unwrap()
    }

    #[test]
    fn the_channel_count_comes_from_the_consuming_convolution() {
        assert_eq!(channel_count(&conv_graph(1), "x"), Some(3));
        assert_eq!(channel_count(&conv_graph(2), "x"), Some(6));
        assert_eq!(channel_count(&conv_graph(1), "y"), None);
    }

    #[test]
    fn a_clipped_channel_gets_its_own_grid_and_the_others_the_tensors() {
        let graph = conv_graph(1);
        let tensor = LinearParams::from_range(-1.0, 3.0, uint8(), false).unwrap();
        let clips = BTreeMap::from([(1, (0.0, 0.5))]);
        let ch = activation_channels(&graph, "x", &clips, uint8(), false).unwrap();
        assert_eq!((ch.axis, ch.count), (1, Some(3)));
        let all = ch.all_params(tensor).unwrap();
        assert_eq!(all[0], tensor);
        assert_eq!(all[2], tensor);
        // Asymmetric uint8 over [0, 0.5]: S = 0.5 / 255, Z = 0.
        assert_eq!(all[1].scale, 0.5 / 255.0);
        assert_eq!(all[1].zero_point, 0);
        // Values: channel 1 is clipped at 0.5 and finely resolved, the others on the coarse grid.
        let mut x = TensorData::F32(
            ArrayD::from_shape_vec(IxDyn(&[1, 3, 1, 2]), vec![0.3, 2.0, 0.3, 2.0, 0.3, 2.0])
                .unwrap(),
        );
        fake_quantize_channels(&mut x, "x", tensor, &ch).unwrap();
        let got: Vec<f32> = x.as_f32().unwrap().iter().copied().collect();
        let coarse = |v: f32| tensor.fake_quantize(v);
        let fine = |v: f32| all[1].fake_quantize(v);
        assert_eq!(
            got,
            vec![
                coarse(0.3),
                coarse(2.0),
                fine(0.3),
                fine(2.0),
                coarse(0.3),
                coarse(2.0)
            ]
        );
        assert_eq!(fine(2.0), 0.5);
        assert!((fine(0.3) - 0.3).abs() <= all[1].scale / 2.0);
        // The other channels keep the tensor's range: 2.0 is not clipped there.
        assert!((coarse(2.0) - 2.0).abs() <= tensor.scale / 2.0);
    }

    #[test]
    fn the_last_axis_is_the_channel_axis_of_a_matmul_input() {
        let mut graph = conv_graph(1);
        graph.nodes[0] = Node::new("mm", "MatMul", &["x", "w"], &["y"]);
        graph.initializers.insert(
            "w".into(),
            Tensor::new(
                "w",
                TensorData::F32(ArrayD::zeros(IxDyn(&[5, 2]))),
                DType::F32,
            ),
        );
        let clips = BTreeMap::from([(4, (-0.25, 0.25))]);
        let ch = activation_channels(&graph, "x", &clips, uint8(), false).unwrap();
        assert_eq!((ch.axis, ch.count), (-1, Some(5)));
        assert_eq!(ch.resolve(3), Some(2));
        let tensor = LinearParams::from_range(-4.0, 4.0, uint8(), false).unwrap();
        let mut x = TensorData::F32(ArrayD::from_elem(IxDyn(&[2, 3, 5]), 1.0));
        fake_quantize_channels(&mut x, "x", tensor, &ch).unwrap();
        let x = x.as_f32().unwrap();
        for ((_, _, c), v) in x.indexed_iter().map(|(i, v)| ((i[0], i[1], i[2]), *v)) {
            let want = if c == 4 {
                ch.clips[0].params.fake_quantize(1.0)
            } else {
                tensor.fake_quantize(1.0)
            };
            assert_eq!(v, want, "channel {c}");
        }
    }

    #[test]
    fn bad_clips_are_errors_naming_the_tensor() {
        let graph = conv_graph(1);
        let e = activation_channels(
            &graph,
            "x",
            &BTreeMap::from([(3, (0.0, 1.0))]),
            uint8(),
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("tensor 'x': ") && e.contains("channel 3") && e.contains("3 channels"),
            "{e}"
        );
        let e = activation_channels(
            &graph,
            "x",
            &BTreeMap::from([(0, (1.0, 1.0))]),
            uint8(),
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("channel 0: invalid clip range"), "{e}");
        // At run time: fewer channels than a clip names, or no channel axis at all.
        let mut unknown = conv_graph(1);
        unknown.initializers.clear();
        let ch = activation_channels(
            &unknown,
            "x",
            &BTreeMap::from([(7, (0.0, 1.0))]),
            uint8(),
            false,
        )
        .unwrap();
        assert_eq!(ch.count, None);
        let tensor = LinearParams::from_range(0.0, 1.0, uint8(), false).unwrap();
        let mut x = TensorData::F32(ArrayD::zeros(IxDyn(&[1, 3, 2, 2])));
        let e = fake_quantize_channels(&mut x, "x", tensor, &ch)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'x'") && e.contains("channel 7") && e.contains("3 channels"),
            "{e}"
        );
        let mut flat = TensorData::F32(ArrayD::zeros(IxDyn(&[4])));
        let e = fake_quantize_channels(&mut flat, "x", tensor, &ch)
            .unwrap_err()
            .to_string();
        assert!(e.contains("'x'") && e.contains("no channel axis"), "{e}");
    }
}
