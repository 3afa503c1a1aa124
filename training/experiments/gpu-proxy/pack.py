"""GPU proxy experiment, step 2: JPEG-encode the 128 px images from prep.py into one .npz.

Experiment record, not product code. Nothing in the project imports it, and no test collects it.

What it does: reads /tmp/gpuexp/raw128.npz (written by prep.py). It JPEG-encodes every image of
variant A and variant B at quality QUALITY and prints the size of each variant in MB. With
OUT_PATH it also writes an .npz that holds the bytes and offsets per variant (A_bytes, A_off,
B_bytes, B_off), the class index y (order akiec, bcc, bkl, df, mel, nv, vasc) and the is_val
flag. That file is the one exp.py / exp2.py decode on the GPU machine.

How it was run: here (CPU), with the project venv, niced:
``nice -n 19 .venv/bin/python pack.py QUALITY [OUT_PATH]``. Runs without OUT_PATH only measured
the size. The file used was written with quality 80 to /work/main/.gpuexp/data.npz (85 did not
fit the transfer limit). The dataA.npz that exp2.py reads is variant A of that file alone
(A_bytes, A_off, y, is_val), copied out by a short command that is not kept here. It needs no
torch. The input path /tmp/gpuexp/raw128.npz is left as it was when it ran.

The output is derived from HAM10000 (CC BY-NC 4.0) and must never be committed.
"""

import sys

import cv2
import numpy as np

CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
q = int(sys.argv[1])
out = sys.argv[2] if len(sys.argv) > 2 else None
d = np.load("/tmp/gpuexp/raw128.npz")
assert set(d["split"]) == {"train", "val"}
res = {}
for v in ("A", "B"):
    chunks, off = [], [0]
    for im in d[v]:
        ok, enc = cv2.imencode(
            ".jpg", cv2.cvtColor(im, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, q]
        )
        assert ok
        chunks.append(enc.ravel())
        off.append(off[-1] + enc.size)
    res[f"{v}_bytes"] = np.concatenate(chunks).astype(np.uint8)
    res[f"{v}_off"] = np.array(off, np.int64)
    print(v, "q", q, "MB", res[f"{v}_bytes"].size / 1e6)
if out:
    y = np.array([CLASSES.index(c) for c in d["dx"]], np.int64)
    np.savez(out, **res, y=y, is_val=(d["split"] == "val"))
