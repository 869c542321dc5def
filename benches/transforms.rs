//! Cross-layer equalization (after BN folding) on a ResNet-18-shaped graph built in memory with
//! random weights: the stem, four stages of two basic blocks (conv→BN→ReLU→conv→BN, residual
//! Add, ReLU; 1x1 downsample convs), global pool and the classifier. Target: CLE < 100 ms.

use std::collections::BTreeMap;

use criterion::{Criterion, criterion_group, criterion_main};
use ndarray::{ArrayD, IxDyn};
use quantscope::ir::{
    Attribute, DType, Dim, Graph, Node, Tensor, TensorData, ValueInfo, assign_roles,
};
use quantscope::transform::FloatGraph;
use quantscope::transform::equalize::{EqualizeOptions, equalize};
use quantscope::transform::fold_bn::fold_batch_norm;
use rand::{RngExt, SeedableRng};

struct Builder {
    graph: Graph,
    rng: rand_pcg::Pcg64,
    count: usize,
}

impl Builder {
    fn random(&mut self, name: &str, shape: &[usize], lo: f32, hi: f32) -> String {
        let data = ArrayD::from_shape_simple_fn(IxDyn(shape), || self.rng.random_range(lo..hi));
        let t = Tensor::new(name, TensorData::F32(data), DType::F32);
        self.graph.initializers.insert(name.to_string(), t);
        name.to_string()
    }

    fn node(&mut self, op: &str, inputs: Vec<String>, attrs: Vec<(&str, Attribute)>) -> String {
        self.count += 1;
        let output = format!("{op}_{}", self.count);
        self.graph.nodes.push(Node {
            name: output.clone(),
            op_type: op.to_string(),
            domain: String::new(),
            inputs,
            outputs: vec![output.clone()],
            attributes: attrs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect::<BTreeMap<_, _>>(),
        });
        output
    }

    /// conv (k×k, stride) → BN, returning the BN output.
    fn conv_bn(&mut self, x: String, cin: usize, cout: usize, k: usize, stride: i64) -> String {
        let id = self.count;
        let w = self.random(&format!("w{id}"), &[cout, cin, k, k], -0.1, 0.1);
        let pad = (k / 2) as i64;
        let conv = self.node(
            "Conv",
            vec![x, w],
            vec![
                ("kernel_shape", Attribute::Ints(vec![k as i64, k as i64])),
                ("strides", Attribute::Ints(vec![stride, stride])),
                ("pads", Attribute::Ints(vec![pad; 4])),
            ],
        );
        let gamma = self.random(&format!("g{id}"), &[cout], 0.1, 2.0);
        let beta = self.random(&format!("b{id}"), &[cout], -1.0, 1.0);
        let mean = self.random(&format!("m{id}"), &[cout], -0.5, 0.5);
        let var = self.random(&format!("v{id}"), &[cout], 0.01, 4.0);
        self.node(
            "BatchNormalization",
            vec![conv, gamma, beta, mean, var],
            vec![],
        )
    }

    fn basic_block(&mut self, x: String, cin: usize, cout: usize, stride: i64) -> String {
        let h = self.conv_bn(x.clone(), cin, cout, 3, stride);
        let h = self.node("Relu", vec![h], vec![]);
        let h = self.conv_bn(h, cout, cout, 3, 1);
        let shortcut = if stride != 1 || cin != cout {
            self.conv_bn(x, cin, cout, 1, stride)
        } else {
            x
        };
        let sum = self.node("Add", vec![h, shortcut], vec![]);
        self.node("Relu", vec![sum], vec![])
    }
}

fn resnet18() -> Graph {
    let mut b = Builder {
        graph: Graph {
            name: "resnet18".into(),
            opset: 17,
            ..Default::default()
        },
        rng: rand_pcg::Pcg64::seed_from_u64(18),
        count: 0,
    };
    b.graph.inputs.push(ValueInfo {
        name: "x".into(),
        dtype: Some(DType::F32),
        shape: Some(vec![
            Dim::Symbolic("N".into()),
            Dim::Fixed(3),
            Dim::Fixed(224),
            Dim::Fixed(224),
        ]),
    });
    let mut x = b.conv_bn("x".into(), 3, 64, 7, 2);
    x = b.node("Relu", vec![x], vec![]);
    x = b.node(
        "MaxPool",
        vec![x],
        vec![
            ("kernel_shape", Attribute::Ints(vec![3, 3])),
            ("strides", Attribute::Ints(vec![2, 2])),
            ("pads", Attribute::Ints(vec![1; 4])),
        ],
    );
    let mut cin = 64;
    for (stage, cout) in [64, 128, 256, 512].into_iter().enumerate() {
        for block in 0..2 {
            let stride = if stage > 0 && block == 0 { 2 } else { 1 };
            x = b.basic_block(x, cin, cout, stride);
            cin = cout;
        }
    }
    x = b.node("GlobalAveragePool", vec![x], vec![]);
    x = b.node("Flatten", vec![x], vec![]);
    let w = b.random("fc.w", &[1000, 512], -0.05, 0.05);
    let bias = b.random("fc.b", &[1000], -0.05, 0.05);
    let out = b.node(
        "Gemm",
        vec![x, w, bias],
        vec![("transB", Attribute::Int(1))],
    );
    b.graph.outputs.push(ValueInfo {
        name: out,
        dtype: Some(DType::F32),
        shape: None,
    });
    assign_roles(&mut b.graph);
    b.graph
}

fn bench(c: &mut Criterion) {
    let (folded, _) = fold_batch_norm(&FloatGraph::new(resnet18())).expect("fold");
    let options = EqualizeOptions::default();
    let (_, report) = equalize(&folded, &options).expect("equalize");
    assert!(!report.nothing_applied(), "{}", report.summary());
    let mut group = c.benchmark_group("transforms");
    group.sample_size(10);
    group.bench_function("cle_resnet18", |b| {
        b.iter(|| equalize(&folded, &options).expect("equalize"))
    });
    group.bench_function("fold_bn_resnet18", |b| {
        let model = FloatGraph::new(resnet18());
        b.iter(|| fold_batch_norm(&model).expect("fold"))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
