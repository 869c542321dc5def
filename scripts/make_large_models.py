#!/usr/bin/env python3
"""Write the two "models engineers bring" for benchmarks: ResNet-50 and BERT-base, as ONNX.

Usage:
    python scripts/make_large_models.py [OUTDIR] [--only resnet50|bert_base] [--force]

OUTDIR defaults to bench_models/ (git-ignored; nothing here is committed).  Writes

    OUTDIR/resnet50.onnx   ResNet-50 in torchvision's configuration (Bottleneck blocks
                           [3, 4, 6, 3], stride on the 3x3 conv, widths 64..512 x4, 1000
                           classes), random weights from a fixed seed, BatchNorm running
                           statistics calibrated on the input photos, exported in eval mode at
                           opset 17 by the TorchScript exporter (which folds BatchNormalization
                           into Conv, as a user's plain `torch.onnx.export` does); input `input`
                           [N, 3, 224, 224] (symbolic N), output `logits` [N, 1000]
    OUTDIR/resnet50.npz    `input`: 32 samples [32, 3, 224, 224] float32: random crops and
                           flips of the photos in ../shared/real_models/images/ (ImageNet
                           normalization), standard-normal noise where that folder is absent
    OUTDIR/bert_base.onnx  BERT-base encoder: transformers `BertModel(BertConfig())` (12 layers,
                           hidden 768, 12 heads, vocabulary 30522), random weights from a fixed
                           seed, eager attention, exported at opset 17; inputs `input_ids`,
                           `attention_mask`, `token_type_ids` [N, S] int64 (symbolic N and S),
                           outputs `last_hidden_state` [N, S, 768] and `pooler_output` [N, 768]
    OUTDIR/bert_base.npz   32 sequences of length 128: random token ids with [CLS]/[SEP], a
                           random real length in 16..128 padded with [PAD] (attention_mask 0
                           there), token_type_ids 0 then 1 for a second segment

Both exports are checked with onnx.checker and run once in onnxruntime against torch
(max abs difference printed).  Needs torch, onnx, onnxruntime, numpy, pillow and, for BERT,
transformers (`pip install transformers`).  Existing files are kept unless --force.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from resnets import resnet50

REPO = Path(__file__).resolve().parent.parent
# ../shared/real_models beside the crate (a checkout under /work/wt/<name> has it two levels up).
PHOTOS = next((d / "shared" / "real_models" / "images" for d in (REPO.parent, REPO.parent.parent)
               if (d / "shared" / "real_models" / "images").is_dir()),
              REPO.parent / "shared" / "real_models" / "images")
SAMPLES = 32
SEQ_LEN = 128
SEED = 50

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


# ---------------------------------------------------------------------------
# ResNet-50 (torchvision's resnet50 configuration, from resnets.py)
# ---------------------------------------------------------------------------


def photo_batch(n, rng):
    """`n` ImageNet-normalized 224x224 crops of the shared photos (noise if they are absent)."""
    paths = sorted(PHOTOS.glob("*.jpg")) if PHOTOS.is_dir() else []
    if not paths:
        print(f"note: {PHOTOS} not found; ResNet-50 inputs are standard-normal noise")
        return rng.standard_normal((n, 3, 224, 224)).astype(np.float32)
    from PIL import Image

    images = [Image.open(p).convert("RGB") for p in paths]
    out = np.empty((n, 3, 224, 224), np.float32)
    for i in range(n):
        im = images[i % len(images)]
        side = int(min(im.size) * rng.uniform(0.4, 1.0))
        x0 = int(rng.integers(0, im.width - side + 1))
        y0 = int(rng.integers(0, im.height - side + 1))
        crop = im.crop((x0, y0, x0 + side, y0 + side)).resize((224, 224), Image.BILINEAR)
        a = np.asarray(crop, np.float32) / 255.0
        if rng.random() < 0.5:
            a = a[:, ::-1]
        out[i] = ((a - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)
    return out


def build_resnet50(calib: np.ndarray):
    torch.manual_seed(SEED)
    model = resnet50()
    with torch.no_grad():
        # Non-trivial BatchNorm affine parameters, then running statistics from the data
        # (cumulative average), so activations stay well scaled through all 50 layers.
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.momentum = None
                m.reset_running_stats()
        model.train()
        for start in range(0, len(calib), 8):
            model(torch.from_numpy(calib[start:start + 8]))
    model.eval()
    return model


def torchscript_export(model, args, path, **kwargs):
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated but gives a plain, constant-folded graph
        # (BatchNormalization folded into Conv), which is what users' exports look like.
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, args, str(path), dynamo=False, opset_version=17,
                              do_constant_folding=True, **kwargs)
        except TypeError:  # older torch without the dynamo keyword
            torch.onnx.export(model, args, str(path), opset_version=17,
                              do_constant_folding=True, **kwargs)


def check_against_ort(path: Path, feeds: dict, reference: dict):
    import onnxruntime as ort

    onnx.checker.check_model(str(path), full_check=True)
    m = onnx.load(str(path), load_external_data=False)
    ops = sorted({n.op_type for n in m.graph.node})
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    diffs = {k: float(np.max(np.abs(got[k] - v))) for k, v in reference.items()}
    print(f"{path.name}: {path.stat().st_size / 1e6:.1f} MB, {len(m.graph.node)} nodes, "
          f"ops {ops}; onnxruntime vs torch max |diff| {diffs}")


def make_resnet50(outdir: Path, force: bool):
    onnx_path, npz_path = outdir / "resnet50.onnx", outdir / "resnet50.npz"
    if onnx_path.exists() and npz_path.exists() and not force:
        print(f"{onnx_path} exists (use --force to rebuild)")
        return
    rng = np.random.default_rng(SEED)
    x = photo_batch(SAMPLES, rng)
    model = build_resnet50(x)
    torchscript_export(model, (torch.from_numpy(x[:1]),), onnx_path,
                       input_names=["input"], output_names=["logits"],
                       dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    np.savez(npz_path, input=x)
    with torch.no_grad():
        ref = model(torch.from_numpy(x[:2])).numpy()
    print(f"{npz_path.name}: input {x.shape}; logits std {ref.std():.3f}")
    check_against_ort(onnx_path, {"input": x[:2]}, {"logits": ref})


# ---------------------------------------------------------------------------
# BERT-base (transformers' BertConfig() defaults)
# ---------------------------------------------------------------------------


class BertEncoder(nn.Module):
    """BertModel with positional inputs and a plain tuple output, for the exporter."""

    def __init__(self, bert):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask, token_type_ids):
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                        token_type_ids=token_type_ids, return_dict=True)
        return out.last_hidden_state, out.pooler_output


def bert_feeds(rng, vocab_size):
    cls_id, sep_id, pad_id = 101, 102, 0  # bert-base-uncased's special ids
    ids = np.full((SAMPLES, SEQ_LEN), pad_id, np.int64)
    mask = np.zeros((SAMPLES, SEQ_LEN), np.int64)
    types = np.zeros((SAMPLES, SEQ_LEN), np.int64)
    for i in range(SAMPLES):
        length = int(rng.integers(16, SEQ_LEN + 1))
        body = rng.integers(1000, vocab_size, length)
        body[0], body[-1] = cls_id, sep_id
        split = int(rng.integers(length // 3, length - 1))
        body[split] = sep_id
        ids[i, :length] = body
        mask[i, :length] = 1
        types[i, split + 1:length] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def make_bert(outdir: Path, force: bool):
    onnx_path, npz_path = outdir / "bert_base.onnx", outdir / "bert_base.npz"
    if onnx_path.exists() and npz_path.exists() and not force:
        print(f"{onnx_path} exists (use --force to rebuild)")
        return
    try:
        from transformers import BertConfig, BertModel
    except ImportError:
        raise SystemExit("BERT-base needs transformers: /work/venv/bin/pip install transformers")
    torch.manual_seed(SEED)
    config = BertConfig()
    try:
        bert = BertModel(config, add_pooling_layer=True, attn_implementation="eager")
    except TypeError:  # older transformers
        config._attn_implementation = "eager"
        bert = BertModel(config, add_pooling_layer=True)
    model = BertEncoder(bert).eval()
    feeds = bert_feeds(np.random.default_rng(SEED), config.vocab_size)
    example = tuple(torch.from_numpy(feeds[k][:2]) for k in
                    ("input_ids", "attention_mask", "token_type_ids"))
    torchscript_export(
        model, example, onnx_path,
        input_names=["input_ids", "attention_mask", "token_type_ids"],
        output_names=["last_hidden_state", "pooler_output"],
        dynamic_axes={
            "input_ids": {0: "N", 1: "S"}, "attention_mask": {0: "N", 1: "S"},
            "token_type_ids": {0: "N", 1: "S"}, "last_hidden_state": {0: "N", 1: "S"},
            "pooler_output": {0: "N"},
        },
    )
    np.savez(npz_path, **feeds)
    with torch.no_grad():
        hidden, pooled = model(*example)
    print(f"{npz_path.name}: {', '.join(f'{k} {v.shape}' for k, v in feeds.items())}")
    check_against_ort(onnx_path, {k: v[:2] for k, v in feeds.items()},
                      {"last_hidden_state": hidden.numpy(), "pooler_output": pooled.numpy()})


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("outdir", nargs="?", type=Path, default=REPO / "bench_models")
    p.add_argument("--only", choices=("resnet50", "bert_base"))
    p.add_argument("--force", action="store_true", help="rebuild even if the files exist")
    args = p.parse_args(argv)
    args.outdir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)  # the machine is shared
    if args.only in (None, "resnet50"):
        make_resnet50(args.outdir, args.force)
    if args.only in (None, "bert_base"):
        make_bert(args.outdir, args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
