# exp5 pack: spec v3 default model_input (224) -> 150x150 cv2.INTER_AREA -> JPEG q90
# (and q85 as fallback);
# train+val rows of runs/ham10000-v3/split.csv only (no test images read).
import csv
import sys
import time

import cv2
import numpy as np

sys.path.insert(0, "/work/main")
from device.imaging.io import read_image
from device.imaging.pipeline import PreprocessSpec, preprocess

cv2.setNumThreads(1)
RES = 150
CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
with open("/work/main/runs/ham10000-v3/split.csv") as _fh:
    rows = [r for r in csv.DictReader(_fh) if r["split"] in ("train", "val")]
spec = PreprocessSpec()
assert spec.version == 3 and spec.input_size == 224
n = len(rows)
assert n == 8512, n
raw = np.zeros((n, RES, RES, 3), np.uint8)
enc = {90: [], 85: []}
t0 = time.time()
for i, r in enumerate(rows):
    im = read_image(f"/work/shared/data/ham10000/images/{r['image_id']}.jpg")
    m = preprocess(im, spec).model_input
    assert m.shape == (224, 224, 3) and m.dtype == np.uint8
    raw[i] = cv2.resize(m, (RES, RES), interpolation=cv2.INTER_AREA)
    bgr = cv2.cvtColor(raw[i], cv2.COLOR_RGB2BGR)
    for q in enc:
        ok, e = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, q])
        assert ok
        enc[q].append(e.ravel())
    if i % 1000 == 0:
        print(i, n, round(time.time() - t0, 1), flush=True)
y = np.array([CLASSES.index(r["dx"]) for r in rows], np.int64)
is_val = np.array([r["split"] == "val" for r in rows])
lesion = np.array([r["lesion_id"] for r in rows])
ids = np.array([r["image_id"] for r in rows])
np.save("/tmp/gpuexp5/raw150.npy", raw)
np.savez("/tmp/gpuexp5/meta.npz", y=y, is_val=is_val, lesion_id=lesion, image_id=ids)
for q, chunks in enc.items():
    off = np.concatenate([[0], np.cumsum([c.size for c in chunks])]).astype(np.int64)
    np.savez(
        f"/tmp/gpuexp5/data_q{q}.npz",
        A_bytes=np.concatenate(chunks).astype(np.uint8),
        A_off=off,
        y=y,
        is_val=is_val,
    )
    print("q", q, "MB", off[-1] / 1e6, flush=True)
print(
    "done", n, round(time.time() - t0, 1), "train", int((~is_val).sum()), "val", int(is_val.sum())
)
