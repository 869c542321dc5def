#!/usr/bin/env bash
# Fills corpus/<target>/ with seeds: the sample models, the op-conformance models and their
# .npz files, and small valid .npy/.npz/.safetensors/session/encodings files written here.
# Needs only bash and Python 3's standard library. Run from anywhere; idempotent.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
corpus="$here/corpus"
mkdir -p "$corpus"/{onnx,numpy,safetensors,session,encodings}

cp "$repo"/sample_models/*.onnx "$corpus/onnx/"
cp "$repo"/tests/fixtures/conformance/*.onnx "$corpus/onnx/"

# numpy: the first byte picks the reader (0 = .npy, anything else = .npz).
for f in "$repo"/sample_models/data/*.npy; do
  { printf '\x00'; cat "$f"; } > "$corpus/numpy/$(basename "$f")"
done
for f in "$repo"/sample_models/data/*.npz $(ls "$repo"/tests/fixtures/conformance/*.npz | head -40); do
  { printf '\x01'; cat "$f"; } > "$corpus/numpy/$(basename "$f")"
done

python3 - "$corpus" <<'PY'
import io, json, struct, sys, zipfile
corpus = sys.argv[1]

def npy(descr, shape, payload):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shape)
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + payload

arrays = {
    "f4": npy("<f4", "(2, 3)", struct.pack("<6f", *range(6))),
    "f8": npy("<f8", "(3,)", struct.pack("<3d", 1.5, -2, 3)),
    "i8": npy("<i8", "(2,)", struct.pack("<2q", -1, 7)),
    "u1": npy("|u1", "(4,)", bytes([0, 1, 2, 255])),
    "b1": npy("|b1", "(2,)", bytes([0, 1])),
    "be": npy(">f4", "(1,)", struct.pack(">f", 2.5)),
    "scalar": npy("<f4", "()", struct.pack("<f", 7)),
}
for name, data in arrays.items():
    open(f"{corpus}/numpy/small_{name}.npy", "wb").write(b"\x00" + data)
for method, tag in [(zipfile.ZIP_STORED, "stored"), (zipfile.ZIP_DEFLATED, "deflated")]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, data in arrays.items():
            z.writestr(name + ".npy", data)
    open(f"{corpus}/numpy/small_{tag}.npz", "wb").write(b"\x01" + buf.getvalue())

def safetensors(tensors):
    header, payload = {}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(payload), len(payload) + len(raw)]}
        payload += raw
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + payload

open(f"{corpus}/safetensors/small.safetensors", "wb").write(safetensors({
    "conv1.weight": ("F32", [2, 1, 3, 3], struct.pack("<18f", *range(18))),
    "conv1.bias": ("F16", [2], bytes(4)),
    "fc.weight": ("BF16", [2, 2], bytes(8)),
    "ids": ("I64", [3], struct.pack("<3q", 1, 2, 3)),
    "mask": ("BOOL", [2], bytes([0, 1])),
}))

session = {
    "version": 1,
    "model": {"path": "sample_models/digits_cnn.onnx", "sha256": "00" * 32},
    "calibration": {"path": "sample_models/data/digits_calib_x.npy", "batch_size": 32},
    "config": {
        "default": {"weights": {"scheme": "int8", "per_channel": True},
                    "activations": {"bits": 8, "symmetric": False, "method": "minmax"}},
        "layers": {"conv1": {"weights": {"scheme": "int4", "per_channel": False}, "activations": None}},
        "activation_ranges": {"input": [-1.0, 1.0]},
        "weight_ranges": {"conv1.weight": [-0.5, 0.5]},
    },
    "view": {"selected": "conv1.weight", "explain": True},
}
open(f"{corpus}/session/session.json", "w").write(json.dumps(session, indent=1))

encodings = {
    "aimet061.json": {"activation_encodings": {"input": [{"bitwidth": 8, "min": -1.0, "max": 1.0, "scale": 0.0078, "offset": -128}]},
                      "param_encodings": {"conv1.weight": [{"bitwidth": 8, "scale": 0.01, "offset": -128}]}},
    "aimet100.json": {"version": "1.0.0",
                      "activation_encodings": [{"name": "input", "bw": 8, "dtype": "INT", "enc_type": "PER_TENSOR", "is_sym": False, "scale": [0.0078], "offset": [-128]}],
                      "param_encodings": [{"name": "conv1.weight", "bw": 4, "dtype": "INT", "enc_type": "PER_CHANNEL", "is_sym": True, "scale": [0.01, 0.02], "offset": [0, 0]}]},
    "overrides.json": {"input": [{"rmin": -1.0, "rmax": 1.0}],
                       "conv1.weight": [{"scale": 0.01, "zero_point": 0, "quant_type": "QInt8"}]},
}
for name, value in encodings.items():
    open(f"{corpus}/encodings/{name}", "w").write(json.dumps(value))
open(f"{corpus}/encodings/trt.cache", "w").write("TRT-8601-EntropyCalibration2\ninput: 3c010a14\nconv1: 3d4ccccd\n")
PY
echo "seeded $(find "$corpus" -type f | wc -l) files under $corpus"
