//! A seeded generator of hostile input files: mutations of valid files (truncation, bit flips,
//! overwritten and repeated ranges) and hand-made hostile ones (shapes far beyond the bytes
//! present, header lengths of 4 GiB, zip archives with broken directories or inflating far past
//! their size, external data through links, opsets and IR versions outside ONNX, attributes
//! no input can make valid). Each case says which reader it is for.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

use prost::Message;
use quantscope::load::pb;
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64;

/// Which reader a case is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// `load_model` on an .onnx, .safetensors, .npy or .npz file.
    Model,
    /// `read_arrays` on a data file.
    Arrays,
    /// `Session::read`.
    Session,
    /// `import_encodings` against the sample CNN.
    Encodings,
}

/// One hostile file, written to disk.
#[derive(Debug, Clone)]
pub struct Case {
    /// What was done to it, for failure messages.
    pub label: String,
    pub path: PathBuf,
    pub reader: Reader,
}

/// Deterministic mutations of `bytes`.
pub struct Mutator {
    rng: Pcg64,
}

impl Mutator {
    pub fn new(seed: u64) -> Self {
        Mutator {
            rng: Pcg64::seed_from_u64(seed),
        }
    }

    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            self.rng.random_range(0..n)
        }
    }

    /// A mutated copy of `bytes` and what was done.
    pub fn mutate(&mut self, bytes: &[u8]) -> (Vec<u8>, String) {
        let mut out = bytes.to_vec();
        let len = out.len().max(1);
        match self.below(7) {
            0 => {
                let cut = self.below(len);
                out.truncate(cut);
                (out, format!("truncated to {cut} bytes"))
            }
            1 => {
                let flips = 1 + self.below(16);
                for _ in 0..flips {
                    let i = self.below(out.len());
                    if let Some(b) = out.get_mut(i) {
                        *b ^= 1 << self.below(8);
                    }
                }
                (out, format!("{flips} bits flipped"))
            }
            2 => {
                // Flips in the first 256 bytes, where headers live.
                let flips = 1 + self.below(8);
                for _ in 0..flips {
                    let i = self.below(out.len().min(256));
                    if let Some(b) = out.get_mut(i) {
                        *b ^= 1 << self.below(8);
                    }
                }
                (out, format!("{flips} header bits flipped"))
            }
            3 => {
                let start = self.below(len);
                let n = 1 + self.below(16);
                let value = [0x00, 0xFF, 0x7F, 0x80][self.below(4)];
                for b in out.iter_mut().skip(start).take(n) {
                    *b = value;
                }
                (out, format!("{n} bytes at {start} set to {value:#04x}"))
            }
            4 => {
                // The last 64 bytes (zip central directory, trailing data).
                let flips = 1 + self.below(8);
                for _ in 0..flips {
                    let back = 1 + self.below(out.len().min(64));
                    let i = out.len().saturating_sub(back);
                    if let Some(b) = out.get_mut(i) {
                        *b ^= 1 << self.below(8);
                    }
                }
                (out, format!("{flips} trailing bits flipped"))
            }
            5 => {
                let start = self.below(len);
                let n = 1 + self.below(64);
                let chunk: Vec<u8> = out.iter().skip(start).take(n).copied().collect();
                let at = self.below(len);
                let at = at.min(out.len());
                out.splice(at..at, chunk.iter().copied());
                (out, format!("{n} bytes from {start} inserted at {at}"))
            }
            _ => {
                // A little-endian 0xFFFFFFFF somewhere: a huge length or count.
                let i = self.below(len.saturating_sub(4).max(1));
                for (k, b) in out.iter_mut().skip(i).take(4).enumerate() {
                    *b = if k < 4 { 0xFF } else { *b };
                }
                (out, format!("0xFFFFFFFF written at {i}"))
            }
        }
    }
}

/// A version-1.0 .npy file with the given descriptor, shape text and payload.
pub fn npy_bytes(descr: &str, shape: &str, payload: &[u8]) -> Vec<u8> {
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

/// A version-2.0 .npy prefix whose header length field says `len`.
pub fn npy_v2_with_header_len(len: u32) -> Vec<u8> {
    let mut out = b"\x93NUMPY\x02\x00".to_vec();
    out.extend(len.to_le_bytes());
    out.extend(b"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n");
    out
}

/// A zip archive of `(name, bytes)` members, deflated or stored.
pub fn zip_bytes(members: &[(&str, Vec<u8>)], deflate: bool) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let method = if deflate {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(method)
        .large_file(true);
    for (name, bytes) in members {
        zip.start_file(*name, options).expect("zip member");
        zip.write_all(bytes).expect("zip write");
    }
    zip.finish().expect("zip finish").into_inner()
}

/// A deflated .npz whose one float32 member inflates to `len` bytes of zeros.
pub fn zip_bomb(len: usize) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    zip.start_file("x.npy", options).expect("zip member");
    zip.write_all(&npy_bytes("<f4", &format!("({},)", len / 4), &[]))
        .expect("zip write");
    let chunk = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len());
        zip.write_all(&chunk[..n]).expect("zip write");
        left -= n;
    }
    zip.finish().expect("zip finish").into_inner()
}

/// A safetensors file with a hand-written header and payload.
pub fn safetensors_raw(header: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header.as_bytes());
    out.extend(payload);
    out
}

/// A small valid safetensors file (two float32 tensors).
pub fn safetensors_valid() -> Vec<u8> {
    let header = r#"{"conv.weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"fc.bias":{"dtype":"F32","shape":[2],"data_offsets":[24,32]}}"#;
    let payload: Vec<u8> = (0..8).flat_map(|i| (i as f32).to_le_bytes()).collect();
    safetensors_raw(header, &payload)
}

fn f32_raw(name: &str, dims: &[i64], raw: Vec<u8>) -> pb::TensorProto {
    pb::TensorProto {
        name: Some(name.into()),
        data_type: Some(pb::tensor_proto::DataType::Float as i32),
        dims: dims.to_vec(),
        raw_data: Some(raw.into()),
        ..Default::default()
    }
}

fn ints_attr(name: &str, values: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: Some(name.into()),
        r#type: Some(pb::attribute_proto::AttributeType::Ints as i32),
        ints: values.to_vec(),
        ..Default::default()
    }
}

fn value_info(name: &str, dims: &[i64]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{Dimension, dimension::Value};
    pb::ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: Some(pb::tensor_proto::DataType::Float as i32),
                shape: Some(pb::TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(Value::DimValue(d)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A one-Conv model: x [1, 1, 4, 4] → Conv(w [1, 1, 3, 3], `strides`) → y.
pub fn conv_model(strides: &[i64], opset: Option<i64>, ir: Option<i64>) -> pb::ModelProto {
    let w: Vec<u8> = (0..9).flat_map(|_| 1.0f32.to_le_bytes()).collect();
    let conv = pb::NodeProto {
        name: Some("conv".into()),
        op_type: Some("Conv".into()),
        input: vec!["x".into(), "w".into()],
        output: vec!["y".into()],
        attribute: vec![
            ints_attr("kernel_shape", &[3, 3]),
            ints_attr("strides", strides),
        ],
        ..Default::default()
    };
    pb::ModelProto {
        ir_version: ir,
        opset_import: opset
            .map(|v| pb::OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(v),
            })
            .into_iter()
            .collect(),
        graph: Some(pb::GraphProto {
            name: Some("conv".into()),
            node: vec![conv],
            initializer: vec![f32_raw("w", &[1, 1, 3, 3], w)],
            input: vec![value_info("x", &[1, 1, 4, 4])],
            output: vec![value_info("y", &[1, 1, 2, 2])],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A model with one initializer stored externally at `location`.
pub fn external_model(location: &str, offset: u64, length: Option<u64>, dims: &[i64]) -> Vec<u8> {
    let mut entries = vec![
        ("location", location.to_string()),
        ("offset", offset.to_string()),
    ];
    if let Some(l) = length {
        entries.push(("length", l.to_string()));
    }
    let t = pb::TensorProto {
        name: Some("w".into()),
        data_type: Some(pb::tensor_proto::DataType::Float as i32),
        dims: dims.to_vec(),
        data_location: Some(pb::tensor_proto::DataLocation::External as i32),
        external_data: entries
            .into_iter()
            .map(|(k, v)| pb::StringStringEntryProto {
                key: Some(k.into()),
                value: Some(v),
            })
            .collect(),
        ..Default::default()
    };
    let mut m = conv_model(&[1, 1], Some(17), Some(8));
    if let Some(g) = m.graph.as_mut() {
        g.initializer = vec![t];
    }
    m.encode_to_vec()
}

/// A model whose only initializer declares `dims` over `raw` bytes.
pub fn hostile_dims_model(dims: &[i64], raw: Vec<u8>) -> Vec<u8> {
    let mut m = conv_model(&[1, 1], Some(17), Some(8));
    if let Some(g) = m.graph.as_mut() {
        g.initializer = vec![f32_raw("w", dims, raw)];
    }
    m.encode_to_vec()
}

/// A valid session file text for the sample CNN.
pub fn session_text(model: &Path) -> String {
    format!(
        r#"{{"version": 1, "model": {{"path": {:?}, "sha256": "00"}}, "calibration": null,
"config": {}, "view": {{"selected": "conv1.weight"}}}}"#,
        model.display().to_string(),
        serde_json::to_string(&quantscope::quant::QuantConfig::int8_per_channel())
            .expect("config json")
    )
}

/// Valid encodings texts: AIMET 0.6.1, AIMET 1.0.0 and onnxruntime TensorQuantOverrides.
pub fn encodings_texts() -> Vec<(&'static str, String)> {
    vec![
        (
            "aimet061.encodings",
            r#"{"activation_encodings": {"input": [{"bitwidth": 8, "min": -1.0, "max": 1.0, "scale": 0.0078, "offset": -128}]},
"param_encodings": {"conv1.weight": [{"bitwidth": 8, "min": -0.5, "max": 0.5}]}}"#
                .to_string(),
        ),
        (
            "aimet100.encodings",
            r#"{"version": "1.0.0", "activation_encodings": [{"name": "input", "bw": 8, "dtype": "INT", "enc_type": "PER_TENSOR", "is_sym": false, "scale": [0.0078], "offset": [-128]}],
"param_encodings": [{"name": "conv1.weight", "bw": 8, "dtype": "INT", "enc_type": "PER_CHANNEL", "is_sym": true, "scale": [0.01, 0.02], "offset": [0, 0]}]}"#
                .to_string(),
        ),
        (
            "overrides.json",
            r#"{"input": [{"rmin": -1.0, "rmax": 1.0}], "conv1.weight": [{"scale": 0.01, "zero_point": 0, "quant_type": "QInt8"}]}"#
                .to_string(),
        ),
    ]
}

/// Writes `bytes` as `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write case");
    path
}

/// A model computing `Range(0, limit, 1) + x` (x of shape [1]): the output's size comes from
/// the data, so a huge `limit` must be refused by the kernel, not by the allocator.
pub fn range_model(limit: f32) -> Vec<u8> {
    let scalar = |name: &str, v: f32| f32_raw(name, &[], v.to_le_bytes().to_vec());
    let node = |name: &str, op: &str, inputs: &[&str], output: &str| pb::NodeProto {
        name: Some(name.into()),
        op_type: Some(op.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        ..Default::default()
    };
    let mut m = conv_model(&[1, 1], Some(17), Some(8));
    if let Some(g) = m.graph.as_mut() {
        g.node = vec![
            node("range", "Range", &["start", "limit", "delta"], "r"),
            node("add", "Add", &["r", "x"], "y"),
        ];
        g.initializer = vec![
            scalar("start", 0.0),
            scalar("limit", limit),
            scalar("delta", 1.0),
        ];
        g.input = vec![value_info("x", &[1])];
        g.output = vec![value_info("y", &[1])];
    }
    m.encode_to_vec()
}
