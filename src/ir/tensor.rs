//! Tensors: data as ndarray (f32 for real values, i64 for integer shapes and indices), the dtype
//! the file stored, and for parameters their role and channel axis.

use ndarray::ArrayD;
use serde::Serialize;

/// Element type as stored in the source file. Computation happens in f32 (or i64 for integer
/// tensors); this records what the exporter wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum DType {
    F32,
    F16,
    BF16,
    F64,
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    Bool,
}

impl DType {
    /// ONNX `TensorProto.DataType` code → dtype (None for types Quantscope does not read).
    pub fn from_onnx(code: i32) -> Option<DType> {
        Some(match code {
            1 => DType::F32,
            2 => DType::U8,
            3 => DType::I8,
            4 => DType::U16,
            5 => DType::I16,
            6 => DType::I32,
            7 => DType::I64,
            9 => DType::Bool,
            10 => DType::F16,
            11 => DType::F64,
            12 => DType::U32,
            13 => DType::U64,
            16 => DType::BF16,
            _ => return None,
        })
    }

    /// The ONNX `TensorProto.DataType` code (the inverse of [`DType::from_onnx`]).
    pub fn onnx_code(self) -> i32 {
        match self {
            DType::F32 => 1,
            DType::U8 => 2,
            DType::I8 => 3,
            DType::U16 => 4,
            DType::I16 => 5,
            DType::I32 => 6,
            DType::I64 => 7,
            DType::Bool => 9,
            DType::F16 => 10,
            DType::F64 => 11,
            DType::U32 => 12,
            DType::U64 => 13,
            DType::BF16 => 16,
        }
    }

    /// Whether values of this dtype are held as f32 ([`TensorData::F32`]) in memory; otherwise
    /// they are integers held as i64 ([`TensorData::I64`]). Small integer types are weights in
    /// quantized models and become f32; wide integers are shapes and indices.
    pub fn is_held_as_f32(self) -> bool {
        matches!(
            self,
            DType::F32
                | DType::F16
                | DType::BF16
                | DType::F64
                | DType::I8
                | DType::U8
                | DType::I16
                | DType::U16
        )
    }

    /// Short lowercase name, as numpy spells it.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::F64 => "float64",
            DType::I8 => "int8",
            DType::U8 => "uint8",
            DType::I16 => "int16",
            DType::U16 => "uint16",
            DType::I32 => "int32",
            DType::U32 => "uint32",
            DType::I64 => "int64",
            DType::U64 => "uint64",
            DType::Bool => "bool",
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The values of a tensor: real values as f32, integer values (shapes, indices) as i64.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    F32(ArrayD<f32>),
    I64(ArrayD<i64>),
}

impl TensorData {
    /// The tensor's shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            TensorData::F32(a) => a.shape(),
            TensorData::I64(a) => a.shape(),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(a) => a.len(),
            TensorData::I64(a) => a.len(),
        }
    }

    /// True when the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The f32 array, if this is a real-valued tensor.
    pub fn as_f32(&self) -> Option<&ArrayD<f32>> {
        match self {
            TensorData::F32(a) => Some(a),
            TensorData::I64(_) => None,
        }
    }

    /// The i64 array, if this is an integer tensor.
    pub fn as_i64(&self) -> Option<&ArrayD<i64>> {
        match self {
            TensorData::I64(a) => Some(a),
            TensorData::F32(_) => None,
        }
    }

    /// The values converted to f32 (integers cast), owned.
    pub fn to_f32(&self) -> ArrayD<f32> {
        match self {
            TensorData::F32(a) => a.clone(),
            TensorData::I64(a) => a.mapv(|v| v as f32),
        }
    }

    /// The values as f32: the float array borrowed, integers cast into an owned one.
    pub fn to_f32_cow(&self) -> std::borrow::Cow<'_, ArrayD<f32>> {
        match self {
            TensorData::F32(a) => std::borrow::Cow::Borrowed(a),
            TensorData::I64(a) => std::borrow::Cow::Owned(a.mapv(|v| v as f32)),
        }
    }

    /// "float" or "int", for messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            TensorData::F32(_) => "float",
            TensorData::I64(_) => "int",
        }
    }
}

impl From<ArrayD<f32>> for TensorData {
    fn from(a: ArrayD<f32>) -> Self {
        TensorData::F32(a)
    }
}

impl From<ArrayD<i64>> for TensorData {
    fn from(a: ArrayD<i64>) -> Self {
        TensorData::I64(a)
    }
}

/// What a parameter tensor is for. Assigned from the graph (which input of which op consumes
/// it) or, for weights-only files, from its name and shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Default)]
pub enum ParamRole {
    /// Weight of a Conv, ConvTranspose, Gemm or MatMul.
    Weight,
    /// Bias of a Conv, ConvTranspose or Gemm (or an Add after a MatMul).
    Bias,
    /// BatchNormalization scale (γ).
    BnScale,
    /// BatchNormalization shift (β).
    BnBias,
    /// BatchNormalization running mean.
    BnMean,
    /// BatchNormalization running variance.
    BnVar,
    /// LayerNormalization scale or bias.
    NormParam,
    /// Embedding table read by Gather.
    Embedding,
    /// Integer shape/axes/index constants and other non-parameter data.
    Constant,
    /// A float tensor whose role could not be told.
    #[default]
    Other,
}

impl ParamRole {
    /// Human-readable name.
    pub fn name(self) -> &'static str {
        match self {
            ParamRole::Weight => "weight",
            ParamRole::Bias => "bias",
            ParamRole::BnScale => "bn scale",
            ParamRole::BnBias => "bn bias",
            ParamRole::BnMean => "bn mean",
            ParamRole::BnVar => "bn var",
            ParamRole::NormParam => "norm param",
            ParamRole::Embedding => "embedding",
            ParamRole::Constant => "constant",
            ParamRole::Other => "other",
        }
    }

    /// Whether this is a learned parameter worth showing in weight views.
    pub fn is_parameter(self) -> bool {
        !matches!(self, ParamRole::Constant)
    }
}

/// A named tensor with its data, source dtype and (for parameters) role and channel axis.
#[derive(Debug, Clone)]
pub struct Tensor {
    pub name: String,
    pub data: TensorData,
    /// The dtype the file stored (data is converted to f32 or i64).
    pub origin_dtype: DType,
    pub role: ParamRole,
    /// The output-channel axis for per-channel views (e.g. 0 for Conv weights `[Cout,Cin,kh,kw]`,
    /// 1 for ConvTranspose weights `[Cin,Cout/g,kh,kw]`, 1 for MatMul weights `[K,N]`).
    pub channel_axis: Option<usize>,
}

impl Tensor {
    /// A tensor with no role assigned yet.
    pub fn new(name: impl Into<String>, data: TensorData, origin_dtype: DType) -> Self {
        Tensor {
            name: name.into(),
            data,
            origin_dtype,
            role: ParamRole::Other,
            channel_axis: None,
        }
    }

    /// Shape of the tensor.
    pub fn shape(&self) -> &[usize] {
        self.data.shape()
    }

    /// Number of channels along the channel axis, if it has one.
    pub fn channel_count(&self) -> Option<usize> {
        self.channel_axis
            .and_then(|axis| self.shape().get(axis).copied())
    }
}
