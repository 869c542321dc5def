#!/usr/bin/env python3
"""Checks that onnxruntime runs the models `quantscope transform` writes, with the outputs of
the original models, and stores what onnxruntime computed as fixtures for tests/transforms.rs:

  tests/fixtures/transform/<model>_<flags>.npz   logits of the first 64 held-out digits and the
                                                 argmax of all 540, computed by onnxruntime on
                                                 the transformed file

The Rust test transforms the sample model in process, writes it, reloads it and compares its
engine outputs with these fixtures (so the Rust tests need no Python).

Usage: scripts/check_transform.py [--quantscope target/debug/quantscope]
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
CASES = [
    ("mobilenet", ["--fold-bn", "--cle"], "fold_cle"),
    ("cnn", ["--fold-bn", "--cle", "--absorb-bias"], "fold_cle_absorb"),
    ("mlp", ["--cle"], "cle"),
]


def ort_logits(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return session.run(None, {name: x})[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quantscope", default=str(ROOT / "target/debug/quantscope"))
    args = parser.parse_args()
    x = np.load(ROOT / "sample_models/data/digits_test_x.npy")
    out_dir = ROOT / "tests/fixtures/transform"
    out_dir.mkdir(parents=True, exist_ok=True)
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for model, flags, tag in CASES:
            source = ROOT / f"sample_models/digits_{model}.onnx"
            target = Path(tmp) / f"{model}_{tag}.onnx"
            subprocess.run(
                [args.quantscope, "transform", str(source), *flags, "--out", str(target)],
                check=True, capture_output=True,
            )
            onnx.checker.check_model(onnx.load(str(target)), full_check=True)
            ops = sorted({n.op_type for n in onnx.load(str(target)).graph.node})
            original = ort_logits(source, x)
            transformed = ort_logits(target, x)
            diff = float(np.abs(transformed - original).max() / max(1.0, np.abs(original).max()))
            same = float((transformed.argmax(1) == original.argmax(1)).mean())
            print(f"{model} {' '.join(flags)}: ops {ops}; max |diff| / max|logit| {diff:.2e}; "
                  f"top-1 agreement {same:.4f}")
            if diff > 1e-4:
                failed = True
            np.savez_compressed(
                out_dir / f"{model}_{tag}.npz",
                logits=transformed[:64].astype(np.float32),
                argmax=transformed.argmax(1).astype(np.int64),
            )
    if failed:
        sys.exit("onnxruntime outputs of a transformed model differ from the original")


if __name__ == "__main__":
    main()
