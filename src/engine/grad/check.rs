//! Test support: a backward kernel against central finite differences of its forward kernel.
//!
//! For a node with inputs X and outputs Y, the loss is L = Σ_k ⟨R_k, Y_k⟩ with fixed random
//! R_k (so the upstream gradients are R_k). For each checked input element x_j the numeric
//! derivative is Σ_k ⟨R_k, Y_k(x_j + h) − Y_k(x_j − h)⟩ / 2h, accumulated in f64 from the f32
//! outputs: outputs the perturbation does not touch cancel exactly, so the f32 rounding of the
//! forward only enters through the touched ones.

use std::collections::BTreeMap;

use ndarray::{ArrayD, IxDyn};
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64;

use crate::engine::ops::{OpCtx, kernel_for};
use crate::ir::{Attribute, Node, TensorData};

use super::{GradCtx, grad_for};

/// Most elements checked per input (spread evenly over the tensor).
const MAX_CHECKED: usize = 400;

/// A node with its inputs, which of them are differentiated, and its attributes.
pub struct Case {
    node: Node,
    opset: i64,
    inputs: Vec<Option<TensorData>>,
    wanted: Vec<bool>,
    step: f32,
}

impl Case {
    /// A node of `op` with one output, opset 17.
    pub fn new(op: &str) -> Self {
        Case {
            node: Node {
                name: format!("{op}_under_test"),
                op_type: op.to_string(),
                domain: String::new(),
                inputs: Vec::new(),
                outputs: vec!["y0".into()],
                attributes: BTreeMap::new(),
            },
            opset: 17,
            inputs: Vec::new(),
            wanted: Vec::new(),
            step: 1e-2,
        }
    }

    pub fn opset(mut self, opset: i64) -> Self {
        self.opset = opset;
        self
    }

    /// The node declares `n` outputs.
    pub fn outputs(mut self, n: usize) -> Self {
        self.node.outputs = (0..n).map(|k| format!("y{k}")).collect();
        self
    }

    /// A differentiated float input.
    pub fn input(mut self, values: ArrayD<f32>) -> Self {
        self.push(Some(values.into()), true);
        self
    }

    /// An input that is not differentiated (shapes, indices, bounds, frozen statistics).
    pub fn constant(mut self, values: TensorData) -> Self {
        self.push(Some(values), false);
        self
    }

    /// An omitted optional input.
    pub fn omitted(mut self) -> Self {
        self.push(None, false);
        self
    }

    fn push(&mut self, value: Option<TensorData>, wanted: bool) {
        let name = if value.is_some() {
            format!("x{}", self.inputs.len())
        } else {
            String::new()
        };
        self.node.inputs.push(name);
        self.inputs.push(value);
        self.wanted.push(wanted);
    }

    pub fn attr_int(mut self, name: &str, v: i64) -> Self {
        self.node.attributes.insert(name.into(), Attribute::Int(v));
        self
    }

    pub fn attr_float(mut self, name: &str, v: f32) -> Self {
        self.node
            .attributes
            .insert(name.into(), Attribute::Float(v));
        self
    }

    pub fn attr_ints(mut self, name: &str, v: &[i64]) -> Self {
        self.node
            .attributes
            .insert(name.into(), Attribute::Ints(v.to_vec()));
        self
    }

    pub fn attr_str(mut self, name: &str, v: &str) -> Self {
        self.node
            .attributes
            .insert(name.into(), Attribute::String(v.into()));
        self
    }

    fn forward(&self, inputs: &[Option<TensorData>]) -> Vec<TensorData> {
        let kernel = kernel_for(&self.node).expect("a forward kernel");
        let ctx = OpCtx {
            node: &self.node,
            opset: self.opset,
        };
        let args: Vec<Option<&TensorData>> = inputs.iter().map(Option::as_ref).collect();
        kernel(&ctx, &args)
            .unwrap_or_else(|e| panic!("{}: forward failed: {}", self.node.op_type, e.0))
    }
}

/// Uniform random values in [lo, hi).
pub fn random(shape: &[usize], seed: u64, lo: f32, hi: f32) -> ArrayD<f32> {
    let mut rng = Pcg64::seed_from_u64(seed);
    ArrayD::from_shape_simple_fn(IxDyn(shape), || lo + (hi - lo) * rng.random::<f32>())
}

/// `x` with every value closer than `margin` to one of `points` moved `margin` away from it
/// (so finite differences do not straddle a kink).
pub fn away_from(x: ArrayD<f32>, points: &[f32], margin: f32) -> ArrayD<f32> {
    x.mapv(|mut v| {
        for &p in points {
            if (v - p).abs() < margin {
                v = if v >= p { p + margin } else { p - margin };
            }
        }
        v
    })
}

/// A float scalar constant (rank 0).
pub fn scalar(v: f32) -> TensorData {
    TensorData::F32(ArrayD::from_elem(IxDyn(&[]), v))
}

/// A 1-D integer constant.
pub fn ints(v: &[i64]) -> TensorData {
    TensorData::I64(ArrayD::from_shape_vec(IxDyn(&[v.len()]), v.to_vec()).expect("1-D"))
}

/// Checks every differentiated input's gradient against central differences: each checked
/// element must satisfy |analytic − numeric| ≤ tol·max(|numeric|, 0.05·M), with M the largest
/// numeric derivative of that input (which must not be 0).
pub fn check(case: &Case, tol: f64) {
    let op = &case.node.op_type;
    let outputs = case.forward(&case.inputs);
    let weights: Vec<Option<ArrayD<f32>>> = outputs
        .iter()
        .enumerate()
        .map(|(k, y)| {
            y.as_f32()
                .map(|y| random(y.shape(), 1000 + k as u64, -1.0, 1.0))
        })
        .collect();
    let backward = grad_for(&case.node).unwrap_or_else(|| panic!("{op}: no backward kernel"));
    let ctx = GradCtx {
        node: &case.node,
        opset: case.opset,
        wanted: &case.wanted,
    };
    let args: Vec<Option<&TensorData>> = case.inputs.iter().map(Option::as_ref).collect();
    let outs: Vec<&TensorData> = outputs.iter().collect();
    let upstream: Vec<Option<&ArrayD<f32>>> = weights.iter().map(Option::as_ref).collect();
    let grads = backward(&ctx, &args, &outs, &upstream)
        .unwrap_or_else(|e| panic!("{op}: backward failed: {}", e.0));

    for (i, wanted) in case.wanted.iter().enumerate() {
        if !wanted {
            continue;
        }
        let Some(TensorData::F32(x)) = &case.inputs[i] else {
            panic!("{op}: differentiated input {i} is not a float tensor");
        };
        let analytic = grads
            .get(i)
            .and_then(Option::as_ref)
            .unwrap_or_else(|| panic!("{op}: no gradient for input {i}"));
        assert_eq!(
            analytic.shape(),
            x.shape(),
            "{op}: gradient shape of input {i}"
        );
        let n = x.len();
        let stride = n.div_ceil(MAX_CHECKED).max(1);
        let mut numeric = Vec::new();
        for j in (0..n).step_by(stride) {
            let delta = |sign: f32| {
                let mut inputs = case.inputs.clone();
                if let Some(TensorData::F32(xi)) = &mut inputs[i] {
                    let v = xi.as_slice_mut().expect("standard layout");
                    v[j] += sign * case.step;
                }
                case.forward(&inputs)
            };
            let (plus, minus) = (delta(1.0), delta(-1.0));
            let mut d = 0.0f64;
            for ((p, m), w) in plus.iter().zip(&minus).zip(&weights) {
                let (Some(p), Some(m), Some(w)) = (p.as_f32(), m.as_f32(), w) else {
                    continue;
                };
                for ((&p, &m), &w) in p.iter().zip(m.iter()).zip(w.iter()) {
                    d += f64::from(w) * (f64::from(p) - f64::from(m));
                }
            }
            numeric.push((j, d / (2.0 * f64::from(case.step))));
        }
        let largest = numeric.iter().fold(0.0f64, |m, (_, d)| m.max(d.abs()));
        assert!(
            largest > 0.0,
            "{op}: input {i} has an all-zero numeric gradient"
        );
        let flat = analytic.as_standard_layout();
        let flat = flat.as_slice().expect("standard layout");
        for (j, d) in numeric {
            let a = f64::from(flat[j]);
            let bound = tol * d.abs().max(0.05 * largest);
            assert!(
                (a - d).abs() <= bound,
                "{op}: input {i} element {j}: analytic {a}, numeric {d} (largest {largest})"
            );
        }
    }
}

/// A 1-D float constant.
pub fn floats(v: &[f32]) -> TensorData {
    TensorData::F32(ArrayD::from_shape_vec(IxDyn(&[v.len()]), v.to_vec()).expect("1-D"))
}
