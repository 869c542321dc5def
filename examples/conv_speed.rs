//! Times the convolution layers of a ResNet-18 (224×224) through the Conv kernel and reports
//! GFLOP/s per layer and the estimated whole-network conv time, at batch 1 and 8.
//!
//! `cargo run --release --no-default-features --example conv_speed [batch...]`

use std::collections::BTreeMap;
use std::time::Instant;

use ndarray::{ArrayD, IxDyn};
use quantscope::engine::ops::{OpCtx, kernel_for};
use quantscope::ir::{Attribute, Node, TensorData};

struct Layer {
    name: &'static str,
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    pad: usize,
    size: usize,
    count: usize,
}

const LAYERS: &[Layer] = &[
    Layer {
        name: "conv1 7x7/2 3->64 @224",
        cin: 3,
        cout: 64,
        k: 7,
        stride: 2,
        pad: 3,
        size: 224,
        count: 1,
    },
    Layer {
        name: "l1 3x3 64->64 @56",
        cin: 64,
        cout: 64,
        k: 3,
        stride: 1,
        pad: 1,
        size: 56,
        count: 4,
    },
    Layer {
        name: "l2 3x3/2 64->128 @56",
        cin: 64,
        cout: 128,
        k: 3,
        stride: 2,
        pad: 1,
        size: 56,
        count: 1,
    },
    Layer {
        name: "l2 3x3 128->128 @28",
        cin: 128,
        cout: 128,
        k: 3,
        stride: 1,
        pad: 1,
        size: 28,
        count: 3,
    },
    Layer {
        name: "l2 ds 1x1/2 64->128 @56",
        cin: 64,
        cout: 128,
        k: 1,
        stride: 2,
        pad: 0,
        size: 56,
        count: 1,
    },
    Layer {
        name: "l3 3x3/2 128->256 @28",
        cin: 128,
        cout: 256,
        k: 3,
        stride: 2,
        pad: 1,
        size: 28,
        count: 1,
    },
    Layer {
        name: "l3 3x3 256->256 @14",
        cin: 256,
        cout: 256,
        k: 3,
        stride: 1,
        pad: 1,
        size: 14,
        count: 3,
    },
    Layer {
        name: "l3 ds 1x1/2 128->256 @28",
        cin: 128,
        cout: 256,
        k: 1,
        stride: 2,
        pad: 0,
        size: 28,
        count: 1,
    },
    Layer {
        name: "l4 3x3/2 256->512 @14",
        cin: 256,
        cout: 512,
        k: 3,
        stride: 2,
        pad: 1,
        size: 14,
        count: 1,
    },
    Layer {
        name: "l4 3x3 512->512 @7",
        cin: 512,
        cout: 512,
        k: 3,
        stride: 1,
        pad: 1,
        size: 7,
        count: 3,
    },
    Layer {
        name: "l4 ds 1x1/2 256->512 @14",
        cin: 256,
        cout: 512,
        k: 1,
        stride: 2,
        pad: 0,
        size: 14,
        count: 1,
    },
];

fn random(shape: &[usize], seed: u64) -> ArrayD<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let n: usize = shape.iter().product();
    let v = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect();
    ArrayD::from_shape_vec(IxDyn(shape), v).unwrap()
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("sweep") {
        sweep();
        return;
    }
    if std::env::args().nth(1).as_deref() == Some("digits") {
        let reps = std::env::args()
            .nth(2)
            .and_then(|a| a.parse().ok())
            .unwrap_or(200);
        time_digits(reps);
        return;
    }
    let batches: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let batches = if batches.is_empty() {
        vec![1, 8]
    } else {
        batches
    };
    for &batch in &batches {
        println!("batch {batch}");
        let mut total_ms = 0.0;
        let mut total_flop = 0.0;
        for l in LAYERS {
            let mut attributes = BTreeMap::new();
            attributes.insert("strides".into(), Attribute::Ints(vec![l.stride as i64; 2]));
            attributes.insert("pads".into(), Attribute::Ints(vec![l.pad as i64; 4]));
            let node = Node {
                name: "conv".into(),
                op_type: "Conv".into(),
                domain: String::new(),
                inputs: vec!["x".into(), "w".into(), "b".into()],
                outputs: vec!["y".into()],
                attributes,
            };
            let kernel = kernel_for(&node).expect("Conv kernel");
            let ctx = OpCtx {
                node: &node,
                opset: 17,
            };
            let x = TensorData::F32(random(&[batch, l.cin, l.size, l.size], 1));
            let w = TensorData::F32(random(&[l.cout, l.cin, l.k, l.k], 2));
            let b = TensorData::F32(random(&[l.cout], 3));
            let args = [Some(&x), Some(&w), Some(&b)];
            let out = (l.size + 2 * l.pad - l.k) / l.stride + 1;
            let flop = 2.0 * (batch * l.cout * out * out * l.cin * l.k * l.k) as f64;
            // Warm up, then take the best of several runs.
            let reps = ((4e9 / flop) as usize).clamp(10, 100);
            kernel(&ctx, &args).unwrap();
            let mut best = f64::INFINITY;
            for _ in 0..reps {
                let t = Instant::now();
                let y = kernel(&ctx, &args).unwrap();
                best = best.min(t.elapsed().as_secs_f64());
                drop(y);
            }
            let ms = best * 1e3;
            println!(
                "  {:<28} {:>7.3} ms  {:>6.1} GFLOP/s  (×{})",
                l.name,
                ms,
                flop / best / 1e9,
                l.count
            );
            total_ms += ms * l.count as f64;
            total_flop += flop * l.count as f64;
        }
        println!(
            "  all convs: {total_ms:.2} ms ({:.1} GFLOP/s overall)",
            total_flop / (total_ms / 1e3) / 1e9
        );
        time_other(batch);
    }
}

fn node_of(op: &str, inputs: usize, attributes: Vec<(&str, Attribute)>) -> Node {
    Node {
        name: op.to_lowercase(),
        op_type: op.into(),
        domain: String::new(),
        inputs: (0..inputs).map(|i| format!("in{i}")).collect(),
        outputs: vec!["y".into()],
        attributes: attributes
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    }
}

/// Best-of-`reps` time in ms of `node` on `inputs` (after a warm-up run).
fn best_ms(node: &Node, inputs: &[TensorData], reps: usize) -> f64 {
    let kernel = kernel_for(node).expect("kernel");
    let ctx = OpCtx { node, opset: 17 };
    let args: Vec<Option<&TensorData>> = inputs.iter().map(Some).collect();
    kernel(&ctx, &args).unwrap();
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        let y = kernel(&ctx, &args).unwrap();
        best = best.min(t.elapsed().as_secs_f64());
        drop(y);
    }
    best * 1e3
}

/// `conv_speed sweep`: 3×3 pad-1 convolutions over a grid of small shapes (batch, channels,
/// plane size), best of several runs each.
fn sweep() {
    for &n in &[16usize, 64] {
        for &size in &[4usize, 7, 8, 14, 16] {
            for &(cin, cout) in &[
                (16usize, 32usize),
                (64, 64),
                (128, 128),
                (256, 256),
                (512, 512),
            ] {
                let flop = 2.0 * (n * cout * size * size * cin * 9) as f64;
                if flop > 8e9 {
                    continue;
                }
                let node = node_of(
                    "Conv",
                    3,
                    vec![
                        ("kernel_shape", Attribute::Ints(vec![3, 3])),
                        ("pads", Attribute::Ints(vec![1; 4])),
                    ],
                );
                let inputs = vec![
                    TensorData::F32(random(&[n, cin, size, size], 1)),
                    TensorData::F32(random(&[cout, cin, 3, 3], 2)),
                    TensorData::F32(random(&[cout], 3)),
                ];
                let reps = ((2e9 / flop) as usize).clamp(5, 200);
                let ms = best_ms(&node, &inputs, reps);
                println!(
                    "  n{n:<3} {cin:>3}->{cout:<3} @{size:<2} {ms:>8.3} ms {:>6.1} GFLOP/s",
                    flop / ms / 1e6
                );
            }
        }
    }
}

/// `conv_speed digits [reps]`: the layers of the bundled digits CNN at batch 64 (8×8 inputs),
/// best of `reps` runs each, plus the sum.
fn time_digits(reps: usize) {
    let n = 64;
    let conv = |cin: usize, cout: usize, size: usize, seed: u64| {
        (
            node_of(
                "Conv",
                3,
                vec![
                    ("kernel_shape", Attribute::Ints(vec![3, 3])),
                    ("pads", Attribute::Ints(vec![1; 4])),
                ],
            ),
            vec![
                TensorData::F32(random(&[n, cin, size, size], seed)),
                TensorData::F32(random(&[cout, cin, 3, 3], seed + 1)),
                TensorData::F32(random(&[cout], seed + 2)),
            ],
            2.0 * (n * cout * size * size * cin * 9) as f64,
        )
    };
    let bn = |c: usize, size: usize| {
        let stats = |seed| TensorData::F32(random(&[c], seed).mapv(|v| v + 1.0));
        (
            node_of("BatchNormalization", 5, vec![]),
            vec![
                TensorData::F32(random(&[n, c, size, size], 30)),
                stats(31),
                stats(32),
                stats(33),
                stats(34),
            ],
            0.0,
        )
    };
    let relu = |c: usize, size: usize| {
        (
            node_of("Relu", 1, vec![]),
            vec![TensorData::F32(random(&[n, c, size, size], 40))],
            0.0,
        )
    };
    let cases = [
        ("conv 1->16 @8", conv(1, 16, 8, 20)),
        ("bn 16 @8", bn(16, 8)),
        ("relu 16 @8", relu(16, 8)),
        ("conv 16->32 @8", conv(16, 32, 8, 23)),
        ("bn 32 @8", bn(32, 8)),
        ("relu 32 @8", relu(32, 8)),
        (
            "maxpool 2x2/2 32 @8",
            (
                node_of(
                    "MaxPool",
                    1,
                    vec![
                        ("kernel_shape", Attribute::Ints(vec![2, 2])),
                        ("strides", Attribute::Ints(vec![2, 2])),
                    ],
                ),
                vec![TensorData::F32(random(&[n, 32, 8, 8], 50))],
                0.0,
            ),
        ),
        ("conv 32->64 @4", conv(32, 64, 4, 26)),
        ("bn 64 @4", bn(64, 4)),
        ("relu 64 @4", relu(64, 4)),
        (
            "globalavgpool 64 @4",
            (
                node_of("GlobalAveragePool", 1, vec![]),
                vec![TensorData::F32(random(&[n, 64, 4, 4], 60))],
                0.0,
            ),
        ),
    ];
    println!("digits_cnn layers, batch {n}, best of {reps}");
    let mut total = 0.0;
    for (name, (node, inputs, flop)) in &cases {
        let ms = best_ms(node, inputs, reps);
        total += ms;
        if *flop > 0.0 {
            println!(
                "  {name:<24} {ms:>7.4} ms  {:>6.1} GFLOP/s",
                flop / ms / 1e6
            );
        } else {
            println!("  {name:<24} {ms:>7.4} ms");
        }
    }
    println!("  sum                      {total:>7.4} ms");
}

/// Times the other ResNet-18 kernels of this family (the stem MaxPool, the global average pool,
/// the final Gemm) and two MobileNet-style depthwise convolutions.
fn time_other(batch: usize) {
    let cases: Vec<(&str, Node, Vec<TensorData>)> = vec![
        (
            "MaxPool 3x3/2 64 @112",
            Node {
                name: "pool".into(),
                op_type: "MaxPool".into(),
                domain: String::new(),
                inputs: vec!["x".into()],
                outputs: vec!["y".into()],
                attributes: BTreeMap::from([
                    ("kernel_shape".to_string(), Attribute::Ints(vec![3, 3])),
                    ("strides".to_string(), Attribute::Ints(vec![2, 2])),
                    ("pads".to_string(), Attribute::Ints(vec![1, 1, 1, 1])),
                ]),
            },
            vec![TensorData::F32(random(&[batch, 64, 112, 112], 4))],
        ),
        (
            "GlobalAveragePool 512 @7",
            Node {
                name: "gap".into(),
                op_type: "GlobalAveragePool".into(),
                domain: String::new(),
                inputs: vec!["x".into()],
                outputs: vec!["y".into()],
                attributes: BTreeMap::new(),
            },
            vec![TensorData::F32(random(&[batch, 512, 7, 7], 5))],
        ),
        (
            "Gemm 512->1000 (transB)",
            Node {
                name: "fc".into(),
                op_type: "Gemm".into(),
                domain: String::new(),
                inputs: vec!["x".into(), "w".into(), "b".into()],
                outputs: vec!["y".into()],
                attributes: BTreeMap::from([("transB".to_string(), Attribute::Int(1))]),
            },
            vec![
                TensorData::F32(random(&[batch, 512], 6)),
                TensorData::F32(random(&[1000, 512], 7)),
                TensorData::F32(random(&[1000], 8)),
            ],
        ),
    ];
    let mut cases = cases;
    for (name, ch, size, stride) in [
        ("depthwise 3x3 144 @56", 144usize, 56usize, 1i64),
        ("depthwise 3x3/2 96 @112", 96, 112, 2),
    ] {
        cases.push((
            name,
            Node {
                name: "dw".into(),
                op_type: "Conv".into(),
                domain: String::new(),
                inputs: vec!["x".into(), "w".into(), "b".into()],
                outputs: vec!["y".into()],
                attributes: BTreeMap::from([
                    ("group".to_string(), Attribute::Int(ch as i64)),
                    ("strides".to_string(), Attribute::Ints(vec![stride; 2])),
                    ("pads".to_string(), Attribute::Ints(vec![1; 4])),
                ]),
            },
            vec![
                TensorData::F32(random(&[batch, ch, size, size], 9)),
                TensorData::F32(random(&[ch, 1, 3, 3], 10)),
                TensorData::F32(random(&[ch], 11)),
            ],
        ));
    }
    cases.push((
        "ConvTranspose 4x4/2 256->128 @32",
        Node {
            name: "up".into(),
            op_type: "ConvTranspose".into(),
            domain: String::new(),
            inputs: vec!["x".into(), "w".into(), "b".into()],
            outputs: vec!["y".into()],
            attributes: BTreeMap::from([
                ("strides".to_string(), Attribute::Ints(vec![2, 2])),
                ("pads".to_string(), Attribute::Ints(vec![1; 4])),
            ]),
        },
        vec![
            TensorData::F32(random(&[batch, 256, 32, 32], 12)),
            TensorData::F32(random(&[256, 128, 4, 4], 13)),
            TensorData::F32(random(&[128], 14)),
        ],
    ));
    for (name, node, inputs) in &cases {
        let kernel = kernel_for(node).expect("kernel");
        let ctx = OpCtx { node, opset: 17 };
        let args: Vec<Option<&TensorData>> = inputs.iter().map(Some).collect();
        kernel(&ctx, &args).unwrap();
        let mut best = f64::INFINITY;
        for _ in 0..20 {
            let t = Instant::now();
            let y = kernel(&ctx, &args).unwrap();
            best = best.min(t.elapsed().as_secs_f64());
            drop(y);
        }
        println!("  {name:<28} {:>7.3} ms", best * 1e3);
    }
}
