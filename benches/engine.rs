//! Engine benchmarks: the sample CNN at batch 64 (with and without a no-op tensor hook), and a
//! ResNet-18-shaped model at batch 1 and 8 when `scripts/make_resnet18.py bench_models` has made
//! it. `scripts/bench_vs_ort.py` times onnxruntime on the same models in the same run.

use std::collections::HashMap;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use quantscope::calib::{ActivationCollector, Method};
use quantscope::engine::ops::{OpCtx, kernel_for};
use quantscope::engine::{Plan, RunOptions, TensorHook, TensorSite};
use quantscope::ir::{Attribute, Node, TensorData};
use quantscope::load::{load_model, read_arrays};
use quantscope::quant::{ActivationQuant, QuantConfig, QuantizedModel, WeightQuant, WeightScheme};

fn feeds(path: &Path, batch: usize) -> HashMap<String, TensorData> {
    let arrays = read_arrays(path).expect("input data");
    let TensorData::F32(images) = &arrays[0].data else {
        panic!("float images expected")
    };
    let batch = images
        .slice_axis(ndarray::Axis(0), (0..batch).into())
        .to_owned();
    [("input".to_string(), TensorData::F32(batch))].into()
}

/// Reads nothing, changes nothing: measures the cost of having a hook at all.
struct NoOpHook;

impl TensorHook for NoOpHook {
    fn on_tensor(&mut self, _: TensorSite<'_>, _: &mut TensorData) -> quantscope::Result<()> {
        Ok(())
    }
}

fn sample_cnn(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = load_model(&root.join("sample_models/digits_cnn.onnx")).expect("sample CNN");
    let plan = Plan::new(&model.graph).expect("runnable");
    let inputs = feeds(&root.join("sample_models/data/digits_test_x.npy"), 64);
    c.bench_function("digits_cnn batch 64", |b| {
        b.iter(|| plan.run(inputs.clone(), None, RunOptions::default()))
    });
    c.bench_function("digits_cnn batch 64, no-op hook", |b| {
        b.iter(|| plan.run(inputs.clone(), Some(&mut NoOpHook), RunOptions::default()))
    });

    // Fake quantization: int8 per-channel weights (baked once), uint8 activations via the hook.
    let mut collector = ActivationCollector::new();
    let calibration = feeds(&root.join("sample_models/data/digits_calib_x.npy"), 256);
    if let Some(TensorData::F32(data)) = calibration.get("input") {
        collector
            .run_batches(&plan, "input", data.view(), 64)
            .expect("calibration runs");
    }
    let config = QuantConfig::uniform(
        Some(WeightQuant {
            scheme: WeightScheme::Linear {
                bits: 8,
                symmetric: true,
            },
            per_channel: true,
        }),
        Some(ActivationQuant {
            bits: 8,
            symmetric: false,
            method: Method::MinMax,
        }),
    );
    let quantized =
        QuantizedModel::prepare(&model.graph, &config, collector.stats()).expect("quantizes");
    let quantized_plan = Plan::new(&quantized.graph).expect("runnable");
    c.bench_function("digits_cnn batch 64, fake-quant int8", |b| {
        b.iter(|| {
            let mut hook = quantized.hook();
            quantized_plan.run(inputs.clone(), Some(&mut hook), RunOptions::default())
        })
    });
}

fn resnet18(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench_models");
    let path = dir.join("resnet18.onnx");
    if !path.exists() {
        eprintln!(
            "skipping ResNet-18: run `python3 scripts/make_resnet18.py bench_models` to create {}",
            path.display()
        );
        return;
    }
    let model = load_model(&path).expect("ResNet-18 loads");
    let plan = Plan::new(&model.graph).expect("runnable");
    let mut group = c.benchmark_group("resnet18");
    group.sample_size(10);
    for batch in [1usize, 8] {
        let inputs = feeds(&dir.join(format!("resnet18_b{batch}.npy")), batch);
        group.bench_function(format!("batch {batch}"), |b| {
            b.iter(|| plan.run(inputs.clone(), None, RunOptions::default()))
        });
    }
    group.finish();
}

fn load_resnet18(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench_models/resnet18.onnx");
    if path.exists() {
        let mut group = c.benchmark_group("load");
        group.sample_size(10);
        group.bench_function("resnet18.onnx", |b| b.iter(|| load_model(&path)));
        group.finish();
    }
}

/// Deterministic data in [-0.5, 0.5).
fn random(shape: &[usize], seed: u64) -> TensorData {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let n: usize = shape.iter().product();
    let v = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    TensorData::F32(ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(shape), v).expect("shape"))
}

/// One Conv or ConvTranspose case: input and weight shapes, group, strides, symmetric pads.
struct ConvCase {
    name: &'static str,
    op: &'static str,
    x: [usize; 4],
    w: [usize; 4],
    group: i64,
    strides: [i64; 2],
    pad: i64,
}

const fn case(
    name: &'static str,
    x: [usize; 4],
    w: [usize; 4],
    group: i64,
    strides: [i64; 2],
    pad: i64,
) -> ConvCase {
    ConvCase {
        name,
        op: "Conv",
        x,
        w,
        group,
        strides,
        pad,
    }
}

/// The Conv and ConvTranspose kernels alone on the shapes of real models, at least one case
/// per strategy: depthwise (YuNet, PP-OCR), small-channel first layers (ESPCN, YuNet), 1×1 as
/// GEMM, dense 3×3 (ResNet) at large and small planes, images batched, the SIMD lane kernels
/// (dense and depthwise) and sgemm + col2im.
fn conv_kernels(c: &mut Criterion) {
    let cases = [
        case(
            "dw 3x3 16 @320 b1 (yunet)",
            [1, 16, 320, 320],
            [16, 1, 3, 3],
            16,
            [1, 1],
            1,
        ),
        case(
            "dw 3x3 64 @80 b1 (yunet)",
            [1, 64, 80, 80],
            [64, 1, 3, 3],
            64,
            [1, 1],
            1,
        ),
        case(
            "dw 5x5 88 @3x96 b4 (ppocr)",
            [4, 88, 3, 96],
            [88, 1, 5, 5],
            88,
            [1, 1],
            2,
        ),
        case(
            "dw 3x3/(2,1) 24 @12x96 b4 (ppocr)",
            [4, 24, 12, 96],
            [24, 1, 3, 3],
            24,
            [2, 1],
            1,
        ),
        case(
            "dw 3x3/2 128 @28 b8",
            [8, 128, 28, 28],
            [128, 1, 3, 3],
            128,
            [2, 2],
            1,
        ),
        case(
            "first 5x5 1->64 @224 b1 (espcn)",
            [1, 1, 224, 224],
            [64, 1, 5, 5],
            1,
            [1, 1],
            2,
        ),
        case(
            "first 3x3/2 3->16 @640 b1 (yunet)",
            [1, 3, 640, 640],
            [16, 3, 3, 3],
            1,
            [2, 2],
            1,
        ),
        case(
            "1x1 64->64 @80 b1 (yunet)",
            [1, 64, 80, 80],
            [64, 64, 1, 1],
            1,
            [1, 1],
            0,
        ),
        case(
            "1x1 256->64 @56 b1 (resnet50)",
            [1, 256, 56, 56],
            [64, 256, 1, 1],
            1,
            [1, 1],
            0,
        ),
        case(
            "3x3 64->64 @56 b1 (resnet)",
            [1, 64, 56, 56],
            [64, 64, 3, 3],
            1,
            [1, 1],
            1,
        ),
        case(
            "3x3 512->512 @7 b1 (resnet)",
            [1, 512, 7, 7],
            [512, 512, 3, 3],
            1,
            [1, 1],
            1,
        ),
        case(
            "3x3 64->32 @224 b1 (espcn)",
            [1, 64, 224, 224],
            [32, 64, 3, 3],
            1,
            [1, 1],
            1,
        ),
        case(
            "3x3 32->32 @14 b4",
            [4, 32, 14, 14],
            [32, 32, 3, 3],
            1,
            [1, 1],
            1,
        ),
        case(
            "lanes 3x3 32->32 @8 b64",
            [64, 32, 8, 8],
            [32, 32, 3, 3],
            1,
            [1, 1],
            1,
        ),
        case(
            "lanes dw 3x3 64 @8 b64",
            [64, 64, 8, 8],
            [64, 1, 3, 3],
            64,
            [1, 1],
            1,
        ),
        ConvCase {
            op: "ConvTranspose",
            ..case(
                "transpose 3x3/2 32->16 @14 b4",
                [4, 32, 14, 14],
                [32, 16, 3, 3],
                1,
                [2, 2],
                1,
            )
        },
    ];
    let mut group = c.benchmark_group("conv");
    group.sample_size(20);
    for case in cases {
        let node = Node {
            name: case.name.into(),
            op_type: case.op.into(),
            domain: String::new(),
            inputs: vec!["x".into(), "w".into(), "b".into()],
            outputs: vec!["y".into()],
            attributes: [
                ("group".to_string(), Attribute::Int(case.group)),
                (
                    "strides".to_string(),
                    Attribute::Ints(case.strides.to_vec()),
                ),
                ("pads".to_string(), Attribute::Ints(vec![case.pad; 4])),
            ]
            .into(),
        };
        let kernel = kernel_for(&node).expect("registered");
        let out_channels = if case.op == "Conv" {
            case.w[0]
        } else {
            case.w[1]
        };
        let inputs = [
            random(&case.x, 1),
            random(&case.w, 2),
            random(&[out_channels], 3),
        ];
        let args: Vec<Option<&TensorData>> = inputs.iter().map(Some).collect();
        let ctx = OpCtx {
            node: &node,
            opset: 17,
        };
        group.bench_function(case.name, |b| b.iter(|| kernel(&ctx, &args).expect("runs")));
    }
    group.finish();
}

/// Keeps every tensor (so the plan fuses nothing) and does nothing with them: the unfused
/// baseline of the fused chains.
struct KeepAll;

impl TensorHook for KeepAll {
    fn on_tensor(&mut self, _: TensorSite<'_>, _: &mut TensorData) -> quantscope::Result<()> {
        Ok(())
    }
}

fn chain_node(name: &str, op: &str, inputs: &[&str], output: &str) -> Node {
    Node {
        name: name.into(),
        op_type: op.into(),
        domain: String::new(),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        outputs: vec![output.into()],
        attributes: Default::default(),
    }
}

/// Elementwise chains as exporters write them, fused by the plan vs run node by node: the
/// hard-swish of MobileNetV3/PP-OCR (`x·Clip(x+3, 0, 6)/6`) and BERT's bias + GELU
/// (`(x+b)·(1 + Erf((x+b)/√2))/2`).
fn fused_chains(c: &mut Criterion) {
    use quantscope::ir::{DType, Graph, Tensor, ValueInfo};
    let scalar = |name: &str, v: f32| {
        let data = ndarray::ArrayD::from_elem(ndarray::IxDyn(&[]), v);
        (
            name.to_string(),
            Tensor::new(name, TensorData::F32(data), DType::F32),
        )
    };
    let info = |name: &str| ValueInfo {
        name: name.into(),
        dtype: None,
        shape: None,
    };
    let hard_swish = Graph {
        name: "hard-swish".into(),
        nodes: vec![
            chain_node("add", "Add", &["x", "three"], "a"),
            chain_node("clip", "Clip", &["a", "zero", "six"], "c"),
            chain_node("mul", "Mul", &["x", "c"], "m"),
            chain_node("div", "Div", &["m", "six"], "y"),
        ],
        inputs: vec![info("x")],
        outputs: vec![info("y")],
        initializers: [
            scalar("three", 3.0),
            scalar("zero", 0.0),
            scalar("six", 6.0),
        ]
        .into_iter()
        .collect(),
        opset: 17,
    };
    let bias = match random(&[768], 5) {
        TensorData::F32(a) => Tensor::new("bias", TensorData::F32(a), DType::F32),
        TensorData::I64(_) => unreachable!(),
    };
    let gelu = Graph {
        name: "bias-gelu".into(),
        nodes: vec![
            chain_node("bias", "Add", &["x", "bias"], "b"),
            chain_node("div", "Div", &["b", "sqrt2"], "d"),
            chain_node("erf", "Erf", &["d"], "e"),
            chain_node("one", "Add", &["e", "one"], "p"),
            chain_node("mul", "Mul", &["b", "p"], "m"),
            chain_node("half", "Mul", &["m", "half"], "y"),
        ],
        inputs: vec![info("x")],
        outputs: vec![info("y")],
        initializers: [
            ("bias".to_string(), bias),
            scalar("sqrt2", std::f32::consts::SQRT_2),
            scalar("one", 1.0),
            scalar("half", 0.5),
        ]
        .into_iter()
        .collect(),
        opset: 17,
    };
    let mut group = c.benchmark_group("fused chains");
    for (graph, shape) in [
        (&hard_swish, vec![8usize, 32, 56, 56]),
        (&gelu, vec![4usize, 128, 768]),
    ] {
        let plan = Plan::new(graph).expect("runnable");
        let x = random(&shape, 9);
        let feeds = || -> HashMap<String, TensorData> { [("x".to_string(), x.clone())].into() };
        group.bench_function(format!("{} fused", graph.name), |b| {
            b.iter(|| plan.run(feeds(), None, RunOptions::default()))
        });
        group.bench_function(format!("{} node by node", graph.name), |b| {
            b.iter(|| plan.run(feeds(), Some(&mut KeepAll), RunOptions::default()))
        });
    }
    group.finish();
}

/// What a hook costs on a real model (the sample MobileNet, batch 256): the plain float pass,
/// a calibration run collecting every float tensor's statistics (all methods' inputs), and a
/// fake-quantized int8 run.
fn hook_overhead(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let model =
        load_model(&root.join("sample_models/digits_mobilenet.onnx")).expect("sample MobileNet");
    let plan = Plan::new(&model.graph).expect("runnable");
    let inputs = feeds(&root.join("sample_models/data/digits_test_x.npy"), 256);
    let mut collector = ActivationCollector::new();
    plan.run(inputs.clone(), Some(&mut collector), RunOptions::default())
        .expect("calibration run");
    let config = QuantConfig::uniform(
        Some(WeightQuant {
            scheme: WeightScheme::Linear {
                bits: 8,
                symmetric: true,
            },
            per_channel: true,
        }),
        Some(ActivationQuant {
            bits: 8,
            symmetric: false,
            method: Method::MinMax,
        }),
    );
    let quantized =
        QuantizedModel::prepare(&model.graph, &config, collector.stats()).expect("quantizes");
    let quantized_plan = Plan::new(&quantized.graph).expect("runnable");
    let mut group = c.benchmark_group("hook overhead, digits_mobilenet batch 256");
    group.sample_size(20);
    group.bench_function("float pass", |b| {
        b.iter(|| plan.run(inputs.clone(), None, RunOptions::default()))
    });
    group.bench_function("calibration run (every tensor)", |b| {
        b.iter(|| {
            let mut collector = ActivationCollector::new();
            plan.run(inputs.clone(), Some(&mut collector), RunOptions::default())
                .map(|_| collector.stats().len())
        })
    });
    group.bench_function("fake-quant int8 run", |b| {
        b.iter(|| {
            let mut hook = quantized.hook();
            quantized_plan.run(inputs.clone(), Some(&mut hook), RunOptions::default())
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    sample_cnn,
    conv_kernels,
    fused_chains,
    hook_overhead,
    resnet18,
    load_resnet18
);
criterion_main!(benches);
