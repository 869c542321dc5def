//! Building nodes and running kernels in the kernel tests.

use ndarray::{ArrayD, IxDyn};

use super::{OpCtx, OpFn, OpResult, kernel_for};
use crate::ir::{Attribute, Node, TensorData};

/// A small deterministic generator (LCG) for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u32(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as u32
    }
    /// Uniform in [-1, 1).
    pub fn f32(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 / (1u32 << 23) as f32 - 1.0
    }
    /// Uniform in lo..=hi.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.next_u32() as usize % (hi - lo + 1)
    }
    pub fn array(&mut self, shape: &[usize]) -> ArrayD<f32> {
        let n = shape.iter().product();
        let v = (0..n).map(|_| self.f32()).collect();
        ArrayD::from_shape_vec(IxDyn(shape), v).unwrap()
    }
}

pub fn ints(v: &[i64]) -> Attribute {
    Attribute::Ints(v.to_vec())
}

pub fn node(op: &str, n_in: usize, n_out: usize, attrs: Vec<(&str, Attribute)>) -> Node {
    let mut node = Node::new(format!("{op}_test"), op, &[], &[]).with_attributes(attrs);
    node.inputs = (0..n_in).map(|i| format!("in{i}")).collect();
    node.outputs = (0..n_out).map(|i| format!("out{i}")).collect();
    node
}

/// Runs the registered kernel for `op`.
pub fn run_node(node: &Node, opset: i64, inputs: &[Option<&TensorData>]) -> OpResult {
    let kernel: OpFn = kernel_for(node).expect("kernel registered");
    kernel(&OpCtx { node, opset }, inputs)
}

/// Runs `op` with attributes and all-present inputs, one output.
pub fn run(
    op: &str,
    opset: i64,
    attrs: Vec<(&str, Attribute)>,
    inputs: &[&TensorData],
) -> OpResult {
    let n = node(op, inputs.len(), 1, attrs);
    let args: Vec<Option<&TensorData>> = inputs.iter().map(|t| Some(*t)).collect();
    run_node(&n, opset, &args)
}

pub fn f(shape: &[usize], data: &[f32]) -> TensorData {
    TensorData::F32(ArrayD::from_shape_vec(IxDyn(shape), data.to_vec()).expect("shape"))
}

pub fn i(shape: &[usize], data: &[i64]) -> TensorData {
    TensorData::I64(ArrayD::from_shape_vec(IxDyn(shape), data.to_vec()).expect("shape"))
}

/// The f32 values and shape of an output.
pub fn fvals(t: &TensorData) -> (Vec<usize>, Vec<f32>) {
    let a = t.as_f32().expect("float output");
    (a.shape().to_vec(), a.iter().copied().collect())
}

pub fn ivals(t: &TensorData) -> (Vec<usize>, Vec<i64>) {
    let a = t.as_i64().expect("int output");
    (a.shape().to_vec(), a.iter().copied().collect())
}

pub fn assert_close(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "length: got {got:?}, want {want:?}");
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = (g - w).abs() <= tol * (1.0 + w.abs()) || (g.is_nan() && w.is_nan()) || g == w;
        assert!(
            ok,
            "element {k}: got {g}, want {w} (got {got:?}, want {want:?})"
        );
    }
}

/// Runs and checks a float result.
pub fn check_f(
    op: &str,
    opset: i64,
    attrs: Vec<(&str, Attribute)>,
    inputs: &[&TensorData],
    shape: &[usize],
    want: &[f32],
) {
    let out = run(op, opset, attrs, inputs).expect("kernel ok");
    let (s, v) = fvals(&out[0]);
    assert_eq!(s, shape, "{op} shape");
    assert_close(&v, want, 1e-6);
}

// ---- float arrays in, float arrays out ------------------------------------------------------

/// Runs the registered kernel of `node` on `inputs`.
pub fn run_arrays(node: &Node, inputs: &[Option<&ArrayD<f32>>]) -> OpResult {
    let owned: Vec<Option<TensorData>> = inputs
        .iter()
        .map(|a| a.map(|a| TensorData::F32(a.clone())))
        .collect();
    let refs: Vec<Option<&TensorData>> = owned.iter().map(|t| t.as_ref()).collect();
    run_node(node, 19, &refs)
}

/// The single float output of a successful run.
pub fn run1(node: &Node, inputs: &[Option<&ArrayD<f32>>]) -> ArrayD<f32> {
    let out = run_arrays(node, inputs).unwrap_or_else(|e| panic!("{}: {}", node.op_type, e.0));
    out[0].as_f32().expect("float output").clone()
}

/// Asserts equal shapes and |got − want| ≤ tol·(1 + |want|) everywhere.
pub fn assert_arrays_close(got: &ArrayD<f32>, want: &ArrayD<f32>, tol: f32, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}: element {i}: got {g}, want {w}"
        );
    }
}

/// The error message of a failing run.
pub fn err(node: &Node, inputs: &[Option<&ArrayD<f32>>]) -> String {
    match run_arrays(node, inputs) {
        Ok(_) => panic!("{} should have failed", node.op_type),
        Err(e) => e.0,
    }
}
