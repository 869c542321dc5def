#!/usr/bin/env python3
"""Build the QAT test fixture: a small digits CNN exported the way a new user's model often
is, with the batch size fixed at 1 and the flattening Reshape's target shape baked in as a
constant, ending in Softmax (probabilities, not logits).

Output: tests/fixtures/qat/digits_batch1.onnx (trained on the UCI digits training split, the
same one make_sample_models.py uses, so the held-out digits stay unseen).

Run:  python scripts/make_qat_fixture.py
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from make_sample_models import SEED, load_data, setup_torch  # noqa: E402

OUT = ROOT / "tests" / "fixtures" / "qat" / "digits_batch1.onnx"


class Batch1Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv(x)), 2)
        x = x.reshape(1, 128)  # baked: the exported Reshape has the constant [1, 128]
        return torch.softmax(self.fc(x), dim=1)

    def logits(self, x):
        x = F.max_pool2d(F.relu(self.conv(x)), 2)
        return self.fc(x.reshape(x.shape[0], -1))


def main() -> None:
    setup_torch()
    d = load_data()
    model = Batch1Net()
    x = torch.from_numpy(d["train_x"])
    y = torch.from_numpy(d["train_y"])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(SEED)
    for _ in range(8):
        perm = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), 64):
            idx = perm[i:i + 64]
            loss = F.cross_entropy(model.logits(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 1, 8, 8),), str(OUT), dynamo=False,
                          opset_version=13, input_names=["input"], output_names=["probs"],
                          do_constant_folding=True)
    m = onnx.load(str(OUT))
    m.producer_version = ""
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, str(OUT))
    ops = [n.op_type for n in m.graph.node]
    dims = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 1, 8, 8], dims
    assert "Reshape" in ops and ops[-1] == "Softmax", ops
    sess = ort.InferenceSession(str(OUT), providers=["CPUExecutionProvider"])
    correct = sum(
        int(sess.run(None, {"input": d["test_x"][i:i + 1]})[0].argmax() == d["test_y"][i])
        for i in range(len(d["test_y"])))
    print(f"{OUT.name}: ops {ops}, held-out {correct}/{len(d['test_y'])}")


if __name__ == "__main__":
    main()
