//! Loader tests: models are built in Rust with the generated protobuf types, encoded, and
//! written to a temporary directory.

use std::path::{Path, PathBuf};

use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn};
use prost::Message;
use tempfile::TempDir;

use super::pb;
use super::pb::tensor_proto::DataType as Dt;
use super::{load_model, load_onnx, load_onnx_bytes, read_arrays, write_npz};
use crate::error::Error;
use crate::ir::{DType, Dim, Model, TensorData};

// ---------------------------------------------------------------- builders

fn raw_tensor(name: &str, dt: Dt, dims: &[i64], raw: Vec<u8>) -> pb::TensorProto {
    pb::TensorProto {
        name: Some(name.to_string()),
        data_type: Some(dt as i32),
        dims: dims.to_vec(),
        raw_data: Some(raw.into()),
        ..Default::default()
    }
}

fn typed_tensor(name: &str, dt: Dt, dims: &[i64]) -> pb::TensorProto {
    pb::TensorProto {
        name: Some(name.to_string()),
        data_type: Some(dt as i32),
        dims: dims.to_vec(),
        ..Default::default()
    }
}

fn f32_tensor(name: &str, dims: &[i64], values: &[f32]) -> pb::TensorProto {
    raw_tensor(
        name,
        Dt::Float,
        dims,
        values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    )
}

fn value_info(name: &str, elem: Dt, dims: &[Option<&str>]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{Dimension, dimension::Value};
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: d.map(|s| match s.parse::<i64>() {
                Ok(n) => Value::DimValue(n),
                Err(_) => Value::DimParam(s.to_string()),
            }),
            ..Default::default()
        })
        .collect();
    pb::ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: Some(elem as i32),
                shape: Some(pb::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn node(name: &str, op: &str, inputs: &[&str], outputs: &[&str]) -> pb::NodeProto {
    pb::NodeProto {
        name: Some(name.to_string()),
        op_type: Some(op.to_string()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn attr(name: &str) -> pb::AttributeProto {
    pb::AttributeProto {
        name: Some(name.to_string()),
        ..Default::default()
    }
}

fn model(graph: pb::GraphProto) -> pb::ModelProto {
    pb::ModelProto {
        ir_version: Some(8),
        opset_import: vec![pb::OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        producer_name: Some("quantscope-tests".to_string()),
        graph: Some(graph),
        ..Default::default()
    }
}

fn graph_with(initializers: Vec<pb::TensorProto>) -> pb::GraphProto {
    pb::GraphProto {
        name: Some("g".to_string()),
        initializer: initializers,
        ..Default::default()
    }
}

fn write_bytes(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn write_model(dir: &Path, name: &str, m: &pb::ModelProto) -> PathBuf {
    write_bytes(dir, name, &m.encode_to_vec())
}

fn load_graph_of(initializers: Vec<pb::TensorProto>) -> Result<Model, Error> {
    let dir = TempDir::new().unwrap();
    let path = write_model(dir.path(), "m.onnx", &model(graph_with(initializers)));
    load_model(&path)
}

fn err_text(r: Result<impl std::fmt::Debug, Error>) -> String {
    r.expect_err("expected an error").to_string()
}

fn values_f64(d: &TensorData) -> Vec<f64> {
    match d {
        TensorData::F32(a) => a.iter().map(|&v| f64::from(v)).collect(),
        TensorData::I64(a) => a.iter().map(|&v| v as f64).collect(),
    }
}

// ---------------------------------------------------------------- dtypes

/// (dtype, raw little-endian bytes, typed-field setter, expected values, held as f32)
struct Case {
    dt: Dt,
    dtype: DType,
    raw: Vec<u8>,
    typed: fn(&mut pb::TensorProto),
    expected: Vec<f64>,
}

fn cases() -> Vec<Case> {
    let f16_bits: [u16; 4] = [0x3C00, 0xC500, 0x7BFF, 0x0001]; // 1, -5, 65504, smallest subnormal
    let bf16_bits: [u16; 4] = [0x3F80, 0xC0A0, 0x7F7F, 0x0001];
    vec![
        Case {
            dt: Dt::Float,
            dtype: DType::F32,
            raw: [1.5f32, -2.25, 0.0, 3e-7]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            typed: |t| t.float_data = vec![1.5, -2.25, 0.0, 3e-7],
            expected: [1.5f32, -2.25, 0.0, 3e-7].map(f64::from).to_vec(),
        },
        Case {
            dt: Dt::Float16,
            dtype: DType::F16,
            raw: f16_bits.iter().flat_map(|v| v.to_le_bytes()).collect(),
            typed: |t| t.int32_data = vec![0x3C00, 0xC500, 0x7BFF, 0x0001],
            expected: f16_bits
                .map(|b| f64::from(f16::from_bits(b).to_f32()))
                .to_vec(),
        },
        Case {
            dt: Dt::Bfloat16,
            dtype: DType::BF16,
            raw: bf16_bits.iter().flat_map(|v| v.to_le_bytes()).collect(),
            typed: |t| t.int32_data = vec![0x3F80, 0xC0A0, 0x7F7F, 0x0001],
            expected: bf16_bits
                .map(|b| f64::from(bf16::from_bits(b).to_f32()))
                .to_vec(),
        },
        Case {
            dt: Dt::Double,
            dtype: DType::F64,
            raw: [0.5f64, -4.0, 1e10, 2.0]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            typed: |t| t.double_data = vec![0.5, -4.0, 1e10, 2.0],
            expected: [0.5f64, -4.0, 1e10, 2.0]
                .map(|v| f64::from(v as f32))
                .to_vec(),
        },
        Case {
            dt: Dt::Int8,
            dtype: DType::I8,
            raw: [-128i8, -1, 0, 127]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            typed: |t| t.int32_data = vec![-128, -1, 0, 127],
            expected: vec![-128.0, -1.0, 0.0, 127.0],
        },
        Case {
            dt: Dt::Uint8,
            dtype: DType::U8,
            raw: vec![0, 1, 128, 255],
            typed: |t| t.int32_data = vec![0, 1, 128, 255],
            expected: vec![0.0, 1.0, 128.0, 255.0],
        },
        Case {
            dt: Dt::Int16,
            dtype: DType::I16,
            raw: [-32768i16, -2, 7, 32767]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            typed: |t| t.int32_data = vec![-32768, -2, 7, 32767],
            expected: vec![-32768.0, -2.0, 7.0, 32767.0],
        },
        Case {
            dt: Dt::Uint16,
            dtype: DType::U16,
            raw: [0u16, 1, 40000, 65535]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            typed: |t| t.int32_data = vec![0, 1, 40000, 65535],
            expected: vec![0.0, 1.0, 40000.0, 65535.0],
        },
        Case {
            dt: Dt::Int32,
            dtype: DType::I32,
            raw: [i32::MIN, -1, 0, i32::MAX]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            typed: |t| t.int32_data = vec![i32::MIN, -1, 0, i32::MAX],
            expected: [i32::MIN, -1, 0, i32::MAX].map(f64::from).to_vec(),
        },
        Case {
            dt: Dt::Int64,
            dtype: DType::I64,
            raw: [-5i64, 0, 1 << 40, 9]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            typed: |t| t.int64_data = vec![-5, 0, 1 << 40, 9],
            expected: [-5i64, 0, 1 << 40, 9].map(|v| v as f64).to_vec(),
        },
        Case {
            dt: Dt::Uint32,
            dtype: DType::U32,
            raw: [0u32, 1, 3_000_000_000, u32::MAX]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            typed: |t| t.uint64_data = vec![0, 1, 3_000_000_000, u64::from(u32::MAX)],
            expected: [0u32, 1, 3_000_000_000, u32::MAX].map(f64::from).to_vec(),
        },
        Case {
            dt: Dt::Uint64,
            dtype: DType::U64,
            raw: [0u64, 2, 1 << 50, 7]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            typed: |t| t.uint64_data = vec![0, 2, 1 << 50, 7],
            expected: [0u64, 2, 1 << 50, 7].map(|v| v as f64).to_vec(),
        },
        Case {
            dt: Dt::Bool,
            dtype: DType::Bool,
            raw: vec![1, 0, 0, 1],
            typed: |t| t.int32_data = vec![1, 0, 0, 1],
            expected: vec![1.0, 0.0, 0.0, 1.0],
        },
    ]
}

#[test]
fn raw_and_typed_data_for_every_dtype() {
    for case in cases() {
        let raw = raw_tensor("raw", case.dt, &[2, 2], case.raw.clone());
        let mut typed = typed_tensor("typed", case.dt, &[2, 2]);
        (case.typed)(&mut typed);
        let m = load_graph_of(vec![raw, typed]).unwrap();
        for name in ["raw", "typed"] {
            let t = &m.graph.initializers[name];
            assert_eq!(t.origin_dtype, case.dtype, "{name} {:?}", case.dt);
            assert_eq!(t.shape(), &[2, 2], "{name} {:?}", case.dt);
            assert_eq!(
                t.data.as_f32().is_some(),
                case.dtype.is_held_as_f32(),
                "{name} {:?}",
                case.dt
            );
            assert_eq!(values_f64(&t.data), case.expected, "{name} {:?}", case.dt);
        }
    }
}

#[test]
fn float16_values_are_exact() {
    // Every finite float16 bit pattern round-trips exactly through f32.
    let bits: Vec<u16> = (0..=u16::MAX)
        .filter(|&b| f16::from_bits(b).is_finite())
        .collect();
    let raw: Vec<u8> = bits.iter().flat_map(|b| b.to_le_bytes()).collect();
    let n = bits.len() as i64;
    let m = load_graph_of(vec![raw_tensor("h", Dt::Float16, &[n], raw)]).unwrap();
    let got = m.graph.initializers["h"].data.as_f32().unwrap().clone();
    for (b, v) in bits.iter().zip(got.iter()) {
        assert_eq!(f16::from_f32(*v).to_bits(), *b, "bits {b:#06x}");
        assert_eq!(*v, f16::from_bits(*b).to_f32());
    }
}

#[test]
fn scalars_are_zero_dimensional() {
    let m = load_graph_of(vec![
        f32_tensor("s", &[], &[4.5]),
        {
            let mut t = typed_tensor("i", Dt::Int64, &[]);
            t.int64_data = vec![-3];
            t
        },
        typed_tensor("empty", Dt::Float, &[0, 3]),
    ])
    .unwrap();
    let s = m.graph.initializers["s"].data.as_f32().unwrap();
    assert_eq!(s.ndim(), 0);
    assert_eq!(s[[]], 4.5);
    assert_eq!(m.graph.initializers["i"].data.as_i64().unwrap()[[]], -3);
    assert_eq!(m.graph.initializers["empty"].shape(), &[0, 3]);
}

// ---------------------------------------------------------------- external data

fn external_tensor(
    name: &str,
    location: &str,
    offset: u64,
    length: Option<u64>,
) -> pb::TensorProto {
    let mut t = typed_tensor(name, Dt::Float, &[2, 3]);
    t.data_location = Some(pb::tensor_proto::DataLocation::External as i32);
    let mut entries = vec![
        ("location", location.to_string()),
        ("offset", offset.to_string()),
    ];
    if let Some(l) = length {
        entries.push(("length", l.to_string()));
    }
    t.external_data = entries
        .into_iter()
        .map(|(k, v)| pb::StringStringEntryProto {
            key: Some(k.to_string()),
            value: Some(v),
        })
        .collect();
    t
}

fn external_payload() -> Vec<u8> {
    let mut bytes = vec![0xAAu8; 16]; // padding before the tensor
    bytes.extend((0..6).flat_map(|i| (i as f32 * 0.5).to_le_bytes()));
    bytes
}

#[test]
fn external_data_is_read_relative_to_the_model() {
    let dir = TempDir::new().unwrap();
    std::fs::create_dir(dir.path().join("weights")).unwrap();
    write_bytes(dir.path(), "weights/w.bin", &external_payload());
    let m = model(graph_with(vec![
        external_tensor("w", "weights/w.bin", 16, Some(24)),
        external_tensor("w2", "./weights/w.bin", 16, None),
    ]));
    let path = write_model(dir.path(), "m.onnx", &m);
    let loaded = load_model(&path).unwrap();
    for name in ["w", "w2"] {
        let w = &loaded.graph.initializers[name];
        assert_eq!(w.shape(), &[2, 3]);
        assert_eq!(
            w.data.as_f32().unwrap().iter().copied().collect::<Vec<_>>(),
            vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
        );
    }
    // The same bytes through load_onnx_bytes with an explicit base directory.
    let g = load_onnx_bytes(m.encode_to_vec().into(), Path::new("mem.onnx"), dir.path()).unwrap();
    assert_eq!(g.initializers["w"].shape(), &[2, 3]);
}

#[test]
fn external_data_missing_file_names_tensor_and_file() {
    let e = err_text(load_graph_of(vec![external_tensor(
        "w", "nope.bin", 0, None,
    )]));
    assert!(
        e.contains("initializer 'w'") && e.contains("nope.bin"),
        "{e}"
    );
}

#[test]
fn external_data_outside_the_model_directory_is_rejected() {
    let dir = TempDir::new().unwrap();
    let inner = dir.path().join("model");
    std::fs::create_dir(&inner).unwrap();
    write_bytes(dir.path(), "w.bin", &external_payload());
    let abs = dir.path().join("w.bin").to_string_lossy().into_owned();
    for location in ["../w.bin", "sub/../../w.bin", abs.as_str()] {
        let m = model(graph_with(vec![external_tensor("w", location, 16, None)]));
        let path = write_model(&inner, "m.onnx", &m);
        let e = err_text(load_model(&path));
        assert!(
            e.contains("initializer 'w'") && e.contains("not a path inside the model's directory"),
            "{location}: {e}"
        );
    }
}

#[test]
fn external_data_short_file_is_an_error() {
    let dir = TempDir::new().unwrap();
    write_bytes(dir.path(), "w.bin", &external_payload()[..30]);
    let m = model(graph_with(vec![external_tensor("w", "w.bin", 16, None)]));
    let e = err_text(load_model(&write_model(dir.path(), "m.onnx", &m)));
    assert!(
        e.contains("initializer 'w'") && e.contains("w.bin") && e.contains("too short"),
        "{e}"
    );
    // A declared length that disagrees with the dims.
    write_bytes(dir.path(), "w.bin", &external_payload());
    let m = model(graph_with(vec![external_tensor(
        "w",
        "w.bin",
        16,
        Some(20),
    )]));
    let e = err_text(load_model(&write_model(dir.path(), "m.onnx", &m)));
    assert!(
        e.contains("initializer 'w'") && e.contains("length 20"),
        "{e}"
    );
}

// ---------------------------------------------------------------- graph structure

fn small_graph() -> pb::GraphProto {
    let mut c1 = node("", "Constant", &[], &["shape"]);
    c1.attribute = vec![pb::AttributeProto {
        t: Some({
            let mut t = typed_tensor("", Dt::Int64, &[2]);
            t.int64_data = vec![1, -1];
            t
        }),
        r#type: Some(pb::attribute_proto::AttributeType::Tensor as i32),
        ..attr("value")
    }];
    let mut c2 = node("c2", "Constant", &[], &["alpha"]);
    c2.attribute = vec![pb::AttributeProto {
        f: Some(0.25),
        r#type: Some(pb::attribute_proto::AttributeType::Float as i32),
        ..attr("value_float")
    }];
    let mut c3 = node("", "Constant", &[], &["axes"]);
    c3.attribute = vec![pb::AttributeProto {
        ints: vec![0, 2],
        r#type: Some(pb::attribute_proto::AttributeType::Ints as i32),
        ..attr("value_ints")
    }];
    let mut conv = node("", "Conv", &["x", "w", ""], &["y"]);
    conv.attribute = vec![
        pb::AttributeProto {
            ints: vec![1, 1],
            r#type: Some(pb::attribute_proto::AttributeType::Ints as i32),
            ..attr("strides")
        },
        // Old files leave `type` unset.
        pb::AttributeProto {
            i: Some(1),
            ..attr("group")
        },
        pb::AttributeProto {
            s: Some(b"NOTSET".to_vec().into()),
            ..attr("auto_pad")
        },
        pb::AttributeProto {
            g: Some(pb::GraphProto::default()),
            r#type: Some(pb::attribute_proto::AttributeType::Graph as i32),
            ..attr("body")
        },
    ];
    pb::GraphProto {
        name: Some("small".to_string()),
        node: vec![
            c1,
            c2,
            c3,
            conv,
            node("", "Reshape", &["y", "shape"], &["r"]),
            node("dup", "Relu", &["r"], &["a"]),
            node("dup", "Relu", &["a"], &["b"]),
            node("", "Relu", &["b"], &["out"]),
        ],
        initializer: vec![f32_tensor("w", &[1, 1, 1, 1], &[2.0])],
        input: vec![
            value_info("x", Dt::Float, &[Some("N"), Some("1"), None, Some("8")]),
            // Listed as an input too, as IR < 4 exporters did.
            value_info(
                "w",
                Dt::Float,
                &[Some("1"), Some("1"), Some("1"), Some("1")],
            ),
        ],
        output: vec![value_info("out", Dt::Float, &[Some("batch"), Some("1")])],
        ..Default::default()
    }
}

#[test]
fn graph_structure_is_converted() {
    let dir = TempDir::new().unwrap();
    let path = write_model(dir.path(), "small.onnx", &model(small_graph()));
    let m = load_model(&path).unwrap();
    let g = &m.graph;
    assert_eq!(g.opset, 17);
    assert_eq!(g.name, "small");

    // Constant nodes were folded into initializers and removed from the node list.
    assert!(g.nodes.iter().all(|n| n.op_type != "Constant"));
    let shape = &g.initializers["shape"];
    assert_eq!(shape.origin_dtype, DType::I64);
    assert_eq!(shape.data.as_i64().unwrap().as_slice().unwrap(), &[1, -1]);
    let alpha = &g.initializers["alpha"];
    assert_eq!(alpha.data.as_f32().unwrap().ndim(), 0);
    assert_eq!(alpha.data.as_f32().unwrap()[[]], 0.25);
    let axes = &g.initializers["axes"];
    assert_eq!(axes.data.as_i64().unwrap().as_slice().unwrap(), &[0, 2]);

    // Generated and de-duplicated names, indexed by position in the file.
    let names: Vec<&str> = g.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["Conv_3", "Reshape_4", "dup", "dup_6", "Relu_7"]);

    // The initializer listed as an input is not an input.
    let inputs: Vec<&str> = g.inputs.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(inputs, ["x"]);
    let x = &g.inputs[0];
    assert_eq!(x.dtype, Some(DType::F32));
    assert_eq!(
        x.shape.as_deref().unwrap(),
        &[
            Dim::Symbolic("N".into()),
            Dim::Fixed(1),
            Dim::Unknown,
            Dim::Fixed(8)
        ]
    );
    assert_eq!(x.shape_text(), "[N, 1, ?, 8]");
    assert_eq!(g.outputs[0].shape_text(), "[batch, 1]");

    // Attributes, including untyped ones from old files.
    let conv = &g.nodes[0];
    assert_eq!(conv.inputs, ["x", "w", ""]);
    assert_eq!(conv.attr_ints("strides").unwrap(), Some(vec![1, 1]));
    assert_eq!(conv.attr_int("group", 0).unwrap(), 1);
    assert_eq!(conv.attr_string("auto_pad", "").unwrap(), "NOTSET");
    // A graph attribute is kept as a subgraph (here an empty one that reads nothing).
    let body = conv
        .attr_graph("body")
        .unwrap()
        .expect("the body subgraph is kept");
    assert!(body.graph.nodes.is_empty() && body.captured().is_empty());
}

#[test]
fn opset_is_zero_without_default_domain_import() {
    let mut m = model(graph_with(vec![]));
    m.opset_import = vec![pb::OperatorSetIdProto {
        domain: Some("com.microsoft".into()),
        version: Some(1),
    }];
    let g = load_onnx_bytes(
        m.encode_to_vec().into(),
        Path::new("m.onnx"),
        Path::new("."),
    )
    .unwrap();
    assert_eq!(g.opset, 0);
    assert!(!g.is_runnable());
}

// ---------------------------------------------------------------- bad input

fn big_model_bytes() -> Vec<u8> {
    let values: Vec<f32> = (0..4096).map(|i| i as f32).collect();
    model(pb::GraphProto {
        initializer: vec![f32_tensor("w", &[4096], &values)],
        ..small_graph()
    })
    .encode_to_vec()
}

#[test]
fn truncated_onnx_is_an_error() {
    let dir = TempDir::new().unwrap();
    let bytes = big_model_bytes();
    let path = write_bytes(dir.path(), "cut.onnx", &bytes[..bytes.len() / 2]);
    let e = err_text(load_model(&path));
    assert!(
        e.contains("cut.onnx") && e.contains("not a valid ONNX model") && e.contains("truncated"),
        "{e}"
    );
}

#[test]
fn random_bytes_are_an_error() {
    let dir = TempDir::new().unwrap();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let bytes: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    let path = write_bytes(dir.path(), "noise.onnx", &bytes);
    let e = err_text(load_model(&path));
    assert!(e.contains("noise.onnx") && e.contains("ONNX"), "{e}");
}

#[test]
fn empty_file_is_an_error() {
    let dir = TempDir::new().unwrap();
    for name in ["e.onnx", "e.npy", "e.npz", "e.safetensors"] {
        let path = write_bytes(dir.path(), name, &[]);
        let e = err_text(load_model(&path));
        assert!(e.contains(name) && e.contains("empty"), "{e}");
    }
    let e = err_text(load_onnx(&dir.path().join("e.onnx")));
    assert!(e.contains("empty"), "{e}");
}

#[test]
fn unknown_extension_is_unsupported() {
    let dir = TempDir::new().unwrap();
    let path = write_bytes(dir.path(), "model.txt", &big_model_bytes());
    let r = load_model(&path);
    assert!(matches!(r, Err(Error::UnsupportedFormat { .. })), "{r:?}");
    assert!(err_text(r).contains("unsupported file type"));
    let e = err_text(load_model(&dir.path().join("missing.onnx")));
    assert!(e.contains("missing.onnx"), "{e}");
}

#[test]
fn model_without_graph_is_an_error() {
    let mut m = model(graph_with(vec![]));
    m.graph = None;
    let dir = TempDir::new().unwrap();
    let e = err_text(load_model(&write_model(dir.path(), "ng.onnx", &m)));
    assert!(e.contains("ng.onnx") && e.contains("no graph"), "{e}");
}

#[test]
fn data_length_mismatch_names_the_tensor() {
    let e = err_text(load_graph_of(vec![raw_tensor(
        "conv.w",
        Dt::Float,
        &[2, 3],
        vec![0; 20],
    )]));
    assert!(
        e.contains("initializer 'conv.w'") && e.contains("raw_data") && e.contains("[2, 3]"),
        "{e}"
    );
    let mut t = typed_tensor("fc.b", Dt::Float, &[4]);
    t.float_data = vec![1.0, 2.0, 3.0];
    let e = err_text(load_graph_of(vec![t]));
    assert!(
        e.contains("initializer 'fc.b'") && e.contains("float_data holds 3 values"),
        "{e}"
    );
    let e = err_text(load_graph_of(vec![typed_tensor("nodata", Dt::Int64, &[2])]));
    assert!(
        e.contains("initializer 'nodata'") && e.contains("int64_data holds 0"),
        "{e}"
    );
}

#[test]
fn negative_and_huge_dims_are_errors() {
    let e = err_text(load_graph_of(vec![f32_tensor("neg", &[2, -3], &[0.0; 6])]));
    assert!(
        e.contains("initializer 'neg'") && e.contains("negative dimension"),
        "{e}"
    );
    let e = err_text(load_graph_of(vec![f32_tensor(
        "huge",
        &[i64::MAX, i64::MAX],
        &[0.0],
    )]));
    assert!(
        e.contains("initializer 'huge'") && e.contains("too large"),
        "{e}"
    );
}

#[test]
fn unsupported_and_missing_dtypes_are_errors() {
    let mut t = typed_tensor("names", Dt::String, &[1]);
    t.string_data = vec![b"cat".to_vec().into()];
    let e = err_text(load_graph_of(vec![t]));
    assert!(
        e.contains("initializer 'names'") && e.contains("unsupported data type STRING"),
        "{e}"
    );
    let mut t = f32_tensor("untyped", &[1], &[1.0]);
    t.data_type = None;
    let e = err_text(load_graph_of(vec![t]));
    assert!(
        e.contains("initializer 'untyped'") && e.contains("no data_type"),
        "{e}"
    );
}

#[test]
fn missing_required_fields_are_errors() {
    let mut g = graph_with(vec![f32_tensor("", &[1], &[1.0])]);
    let e = err_text(load_onnx_bytes(
        model(g.clone()).encode_to_vec().into(),
        Path::new("x.onnx"),
        Path::new("."),
    ));
    assert!(e.contains("initializer #0 has no name"), "{e}");
    g.initializer.clear();
    g.node = vec![node("n1", "", &[], &["y"])];
    let e = err_text(load_onnx_bytes(
        model(g).encode_to_vec().into(),
        Path::new("x.onnx"),
        Path::new("."),
    ));
    assert!(e.contains("node #0 ('n1') has no op_type"), "{e}");
    let mut c = node("c", "Constant", &[], &["k"]);
    c.attribute = vec![pb::AttributeProto {
        r#type: Some(pb::attribute_proto::AttributeType::Tensor as i32),
        ..attr("value")
    }];
    let e = err_text(load_onnx_bytes(
        model(pb::GraphProto {
            node: vec![c],
            ..Default::default()
        })
        .encode_to_vec()
        .into(),
        Path::new("x.onnx"),
        Path::new("."),
    ));
    assert!(
        e.contains("Constant node 'c'") && e.contains("no tensor"),
        "{e}"
    );
}

// ---------------------------------------------------------------- content sniffing

#[test]
fn mismatched_extension_says_what_the_file_is() {
    let dir = TempDir::new().unwrap();
    let npz = dir.path().join("a.npz");
    let data = TensorData::F32(ArrayD::zeros(IxDyn(&[2])));
    write_npz(&npz, &[("a", &data)]).unwrap();
    let as_onnx = write_bytes(dir.path(), "zip.onnx", &std::fs::read(&npz).unwrap());
    let e = err_text(load_model(&as_onnx));
    assert!(
        e.contains("zip archive") && e.contains("not an ONNX model"),
        "{e}"
    );

    let npy = write_bytes(dir.path(), "arr.onnx", &npy_bytes("<f4", "(1,)", &[0; 4]));
    let e = err_text(load_model(&npy));
    assert!(
        e.contains(".npy array") && e.contains("not an ONNX model"),
        "{e}"
    );

    let onnx_as_npz = write_bytes(dir.path(), "m.npz", &big_model_bytes());
    let e = err_text(load_model(&onnx_as_npz));
    assert!(e.contains("not a .npz archive"), "{e}");

    let onnx_as_st = write_bytes(dir.path(), "m.safetensors", &big_model_bytes());
    let e = err_text(load_model(&onnx_as_st));
    assert!(e.contains("not a safetensors file"), "{e}");
}

// ---------------------------------------------------------------- safetensors

fn safetensors_bytes() -> Vec<u8> {
    use ::safetensors::{Dtype, serialize, tensor::TensorView};
    let w: Vec<u8> = [1.0f32, -2.0, 3.5, 0.0, 5.0, 6.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let h: Vec<u8> = [0.5f32, -1.5]
        .iter()
        .flat_map(|v| f16::from_f32(*v).to_le_bytes())
        .collect();
    let idx: Vec<u8> = [3i64, 4].iter().flat_map(|v| v.to_le_bytes()).collect();
    let q = vec![0xFFu8, 0x01];
    let tensors = vec![
        (
            "layer.weight",
            TensorView::new(Dtype::F32, vec![2, 3], &w).unwrap(),
        ),
        (
            "layer.bias",
            TensorView::new(Dtype::F16, vec![2], &h).unwrap(),
        ),
        ("ids", TensorView::new(Dtype::I64, vec![2], &idx).unwrap()),
        ("q", TensorView::new(Dtype::I8, vec![2], &q).unwrap()),
    ];
    serialize(tensors, None).unwrap()
}

#[test]
fn safetensors_weights_load() {
    let dir = TempDir::new().unwrap();
    let path = write_bytes(dir.path(), "w.safetensors", &safetensors_bytes());
    let m = load_model(&path).unwrap();
    assert_eq!(m.format, crate::ir::ModelFormat::Safetensors);
    let g = &m.graph;
    assert!(g.nodes.is_empty());
    assert_eq!(g.initializers.len(), 4);
    let w = &g.initializers["layer.weight"];
    assert_eq!(w.shape(), &[2, 3]);
    assert_eq!(values_f64(&w.data), vec![1.0, -2.0, 3.5, 0.0, 5.0, 6.0]);
    let b = &g.initializers["layer.bias"];
    assert_eq!(b.origin_dtype, DType::F16);
    assert_eq!(values_f64(&b.data), vec![0.5, -1.5]);
    assert_eq!(
        g.initializers["ids"]
            .data
            .as_i64()
            .unwrap()
            .as_slice()
            .unwrap(),
        &[3, 4]
    );
    assert_eq!(values_f64(&g.initializers["q"].data), vec![-1.0, 1.0]);
}

#[test]
fn truncated_safetensors_is_an_error() {
    let dir = TempDir::new().unwrap();
    let bytes = safetensors_bytes();
    let path = write_bytes(dir.path(), "cut.safetensors", &bytes[..bytes.len() - 10]);
    let e = err_text(load_model(&path));
    assert!(
        e.contains("cut.safetensors") && e.contains("not a valid safetensors file"),
        "{e}"
    );
}

// ---------------------------------------------------------------- numpy

/// A minimal version-1.0 .npy file with the given descriptor, shape text and payload.
fn npy_bytes(descr: &str, shape: &str, payload: &[u8]) -> Vec<u8> {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(payload);
    out
}

#[test]
fn npz_round_trip() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("acts.npz");
    let a = TensorData::F32(
        ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![1.0, 2.0, 3.0, 4.0, 5.0, -6.5]).unwrap(),
    );
    let b = TensorData::I64(ArrayD::from_shape_vec(IxDyn(&[3]), vec![-1, 0, 1 << 40]).unwrap());
    let s = TensorData::F32(ArrayD::from_elem(IxDyn(&[]), 7.0));
    write_npz(&path, &[("z_first", &a), ("ids", &b), ("scalar", &s)]).unwrap();
    let arrays = read_arrays(&path).unwrap();
    let names: Vec<&str> = arrays.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["z_first", "ids", "scalar"]);
    assert_eq!(arrays[0].data, a);
    assert_eq!(arrays[0].dtype, DType::F32);
    assert_eq!(arrays[1].data, b);
    assert_eq!(arrays[1].dtype, DType::I64);
    assert_eq!(arrays[2].data, s);

    let m = load_model(&path).unwrap();
    assert_eq!(m.format, crate::ir::ModelFormat::Npz);
    assert_eq!(m.graph.initializers.len(), 3);
}

#[test]
fn npy_and_npz_element_types() {
    use ndarray_npy::{NpzWriter, WriteNpyExt};
    let dir = TempDir::new().unwrap();
    let npy = dir.path().join("calib.npy");
    ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![1.0f64, 2.0, 3.0, 4.5])
        .unwrap()
        .write_npy(std::fs::File::create(&npy).unwrap())
        .unwrap();
    let arrays = read_arrays(&npy).unwrap();
    assert_eq!(arrays.len(), 1);
    assert_eq!(arrays[0].name, "calib");
    assert_eq!(arrays[0].dtype, DType::F64);
    assert_eq!(values_f64(&arrays[0].data), vec![1.0, 2.0, 3.0, 4.5]);
    assert_eq!(
        load_model(&npy).unwrap().format,
        crate::ir::ModelFormat::Npy
    );

    let npz = dir.path().join("mixed.npz");
    let mut w = NpzWriter::new_compressed(std::fs::File::create(&npz).unwrap());
    w.add_array("u8", &ndarray::arr1(&[0u8, 255])).unwrap();
    w.add_array("i32", &ndarray::arr1(&[-7i32, 9])).unwrap();
    w.add_array("i16", &ndarray::arr1(&[-300i16, 2])).unwrap();
    w.add_array("u32", &ndarray::arr1(&[4_000_000_000u32, 1]))
        .unwrap();
    w.add_array("flag", &ndarray::arr1(&[true, false])).unwrap();
    w.finish().unwrap();
    let arrays = read_arrays(&npz).unwrap();
    let got: Vec<(&str, DType, Vec<f64>)> = arrays
        .iter()
        .map(|a| (a.name.as_str(), a.dtype, values_f64(&a.data)))
        .collect();
    assert_eq!(
        got,
        vec![
            ("u8", DType::U8, vec![0.0, 255.0]),
            ("i32", DType::I32, vec![-7.0, 9.0]),
            ("i16", DType::I16, vec![-300.0, 2.0]),
            ("u32", DType::U32, vec![4e9, 1.0]),
            ("flag", DType::Bool, vec![1.0, 0.0]),
        ]
    );
}

#[test]
fn npy_with_unsupported_dtype_is_an_error() {
    let dir = TempDir::new().unwrap();
    let path = write_bytes(dir.path(), "c.npy", &npy_bytes("<c8", "(2,)", &[0; 16]));
    let e = err_text(read_arrays(&path));
    assert!(
        e.contains("c.npy") && e.contains("unsupported dtype") && e.contains("<c8"),
        "{e}"
    );
    let e = err_text(load_model(&path));
    assert!(e.contains("unsupported dtype"), "{e}");
}

#[test]
fn truncated_npy_and_npz_are_errors() {
    let dir = TempDir::new().unwrap();
    let full = npy_bytes("<f4", "(4,)", &[0; 16]);
    let path = write_bytes(dir.path(), "t.npy", &full[..full.len() - 5]);
    let e = err_text(read_arrays(&path));
    assert!(
        e.contains("t.npy") && e.contains("not a readable .npy array"),
        "{e}"
    );

    let npz = dir.path().join("full.npz");
    let data = TensorData::F32(ArrayD::zeros(IxDyn(&[64])));
    write_npz(&npz, &[("a", &data), ("b", &data)]).unwrap();
    let bytes = std::fs::read(&npz).unwrap();
    let cut = write_bytes(dir.path(), "cut.npz", &bytes[..bytes.len() / 2]);
    let e = err_text(read_arrays(&cut));
    assert!(e.contains("cut.npz") && e.contains(".npz archive"), "{e}");
    let e = err_text(load_model(&cut));
    assert!(e.contains("cut.npz"), "{e}");
}

mod hostile;
