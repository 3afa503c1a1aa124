"""GPU proxy experiment, step 1: preprocess the train+val images of the v2 split at 128 px.

Experiment record, not product code. Kept here so the numbers in the GPU proxy notes
(hair inpainting, and TTA / augmentation arms) can be traced to the code that made them.
Nothing in the project imports it, and no test collects it.

What it does: for every row of runs/ham10000-v2/split.csv with split == train or val (never
test), it runs the project pipeline twice on the image: variant A with ``PreprocessSpec()``
(spec v3, no hair inpainting in the model input) and variant B with the same spec at version 2
(same crop, hair inpainted). Both 224 px model inputs are shrunk to 128 px with
cv2.INTER_AREA and stored as raw uint8 in /tmp/gpuexp/raw128.npz, with the v3 hair fraction,
the mean |A - B| per image and the image_id / lesion_id / dx / split columns.

How it was run: here (CPU), with the project venv, niced:
``nice -n 19 .venv/bin/python prep.py`` (from /work/main/.gpuexp/, where it first lived).
It needs no torch. The paths are absolute (/work/main, /work/shared/data/ham10000,
/tmp/gpuexp) and are left as they were when it ran. The next step is pack.py.

The output is derived from HAM10000 (CC BY-NC 4.0) and must never be committed.
"""

import csv
import sys
import time

import cv2
import numpy as np

sys.path.insert(0, "/work/main")
from device.imaging.io import read_image
from device.imaging.pipeline import PreprocessSpec, preprocess

RES = 128
with open("/work/main/runs/ham10000-v2/split.csv") as split_file:
    rows = [r for r in csv.DictReader(split_file) if r["split"] in ("train", "val")]
s3 = PreprocessSpec()
s2 = PreprocessSpec.from_dict({**s3.to_dict(), "version": 2})
assert s3.version == 3 and s2.version == 2 and s2.crop == s3.crop and s2.input_size == 224
n = len(rows)
A = np.zeros((n, RES, RES, 3), np.uint8)
B = np.zeros_like(A)
hair = np.zeros(n, np.float32)
diff = np.zeros(n, np.float32)
t0 = time.time()
for i, r in enumerate(rows):
    im = read_image(f"/work/shared/data/ham10000/images/{r['image_id']}.jpg")
    a = preprocess(im, s3)
    b = preprocess(im, s2)
    assert a.roi_box == b.roi_box, r["image_id"]
    assert a.model_input.shape == (224, 224, 3) and a.model_input.dtype == np.uint8
    A[i] = cv2.resize(a.model_input, (RES, RES), interpolation=cv2.INTER_AREA)
    B[i] = cv2.resize(b.model_input, (RES, RES), interpolation=cv2.INTER_AREA)
    hair[i] = a.hair_fraction
    diff[i] = np.abs(a.model_input.astype(np.int16) - b.model_input).mean()
    if i % 500 == 0:
        print(i, n, round(time.time() - t0, 1), flush=True)
np.savez(
    "/tmp/gpuexp/raw128.npz",
    A=A,
    B=B,
    hair=hair,
    diff=diff,
    image_id=np.array([r["image_id"] for r in rows]),
    lesion_id=np.array([r["lesion_id"] for r in rows]),
    dx=np.array([r["dx"] for r in rows]),
    split=np.array([r["split"] for r in rows]),
)
print("done", n, round(time.time() - t0, 1))
