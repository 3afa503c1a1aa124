#!/usr/bin/env python3
"""Proxy experiment 2 (variant A only): augmentation arms + test-time augmentation (TTA).

Experiment record, not product code. It is the GPU training / TTA script behind the notes on
the TTA and augmentation arms, and a superset of the earlier exp.py (hair-inpainting
experiment). Nothing in the project imports it, and no test collects it (analyse2.py imports
it from this folder).

Needs PyTorch, which is NOT a project dependency (it is imported lazily in build_torch()).
How it was run: ``python3 exp2.py`` (driver, default env) in one call on a lent GPU machine
(NVIDIA H200, torch 2.11.0+cu130), from a copy of /work/main/.gpuexp/tta/. Before that it
was smoke-tested here on a per-class subset with a CPU torch (torch 2.13.0+cpu, outside the
project venv), using the TEST_* env variables below. Inputs are read from the script's own
folder (HERE): dataA.npz (variant A of pack.py's output), weights.npz and refs.npz (from
weights_and_refs.py). Those files lived in .gpuexp/tta/, are not in this folder, and the
paths are left as they were when it ran.
dataA.npz is derived from HAM10000 (CC BY-NC 4.0) and must never be committed.

Same proxy recipe as ../exp.py (EfficientNet-Lite0 ImageNet, 128 px JPEG q80 HAM10000
train/val, blocks 5-15 + head conv trainable, BN frozen, AdamW, 1 warm-up epoch + cosine,
CE + label smoothing + class weights, bf16, GPU augmentation), variant A only.

Arms:  base   = exactly the exp.py recipe (RRC scale (0.5, 1), ratio (3/4, 4/3), 16 epochs)
       nocrop = no random resized crop (scale fixed 1.0 and ratio fixed 1.0); rotation, flips,
                contrast, brightness unchanged
       crop25 = RRC scale (0.25, 1.0)
       ep24   = 24 epochs (cosine over 24) instead of 16
Seeds set head init/dropout (torch.manual_seed), data order and the augmentation stream; all
random draws are taken in the same order in every arm, so arms with one seed are paired.

Evaluation every epoch on val with the plain input; the trainable params at the best plain-val
BA epoch are kept on the GPU; at the end the val logits under the 8 dihedral transforms
(rot90 k=0..3 x optional horizontal flip) are computed for the final and the best epoch.
TTA = mean of the 8 logits -> softmax.

Usage:  python3 exp2.py                 driver: decode once, spawn all workers, collect into
                                        $OUT/results.json and $OUT/logits.npz
        python3 exp2.py worker ARM SEED DEADLINE
Env:    ARMS=base,nocrop,crop25,ep24  SEEDS=0,1,2  BUDGET_S=280  DEV=cuda
        TEST_NTRAIN / TEST_NVAL (per class) / TEST_EPOCHS: CPU smoke test on a subset
"""

import json
import math
import os
import subprocess
import sys
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.environ.get("OUT") or "/tmp/gpuexp2_out"
TMP = os.environ.get("EXP2_TMP") or "/tmp/exp2_tmp"
DEV = os.environ.get("DEV", "cuda")
CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
N_CLASSES = len(CLASSES)
MALIGNANT = [CLASSES.index(c) for c in ("akiec", "bcc", "mel")]
STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
CFG = dict(
    epochs=16,
    batch=64,
    lr_backbone=2e-4,
    lr_head=2e-3,
    weight_decay=1e-2,
    label_smoothing=0.1,
    dropout=0.3,
    first_trainable_block=5,
    warmup_epochs=1,
    crop_scale=(0.5, 1.0),
    crop_ratio=(3 / 4, 4 / 3),
    brightness=20.0,
    contrast=0.2,
    eval_batch=500,
)
ARM_CFG = {
    "base": {},
    "nocrop": dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0)),
    "crop25": dict(crop_scale=(0.25, 1.0)),
    "ep24": dict(epochs=24),
}
# the 8 dihedral transforms: (rot90 k, hflip); index 0 is the identity (plain input)
DIHEDRAL = [(k, f) for f in (False, True) for k in range(4)]
SEEDS = [int(s) for s in os.environ.get("SEEDS", "0,1,2").split(",")]
ARMS = os.environ.get("ARMS", "base,nocrop,crop25,ep24").split(",")
BUDGET_S = float(os.environ.get("BUDGET_S", "280"))
TTA_RESERVE_S = float(os.environ.get("TTA_RESERVE_S", "12"))


def arm_cfg(arm):
    c = dict(CFG)
    c.update(ARM_CFG[arm])
    if "TEST_EPOCHS" in os.environ:
        c["epochs"] = int(os.environ["TEST_EPOCHS"]) + (1 if arm == "ep24" else 0)
    return c


# ----------------------------------------------------------------------------- numpy parts
def balanced_accuracy(y, pred, k=N_CLASSES):
    recalls = []
    for c in range(k):
        m = y == c
        recalls.append(float(np.mean(pred[m] == c)) if m.any() else float("nan"))
    present = [r for r in recalls if not math.isnan(r)]
    return float(np.mean(present)), recalls


def roc_auc(y_bin, score):
    """Mann-Whitney AUC with average ranks for ties."""
    y_bin = np.asarray(y_bin, bool)
    score = np.asarray(score, np.float64)
    n_pos, n_neg = int(y_bin.sum()), int((~y_bin).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    _, inverse, counts = np.unique(score[order], return_inverse=True, return_counts=True)
    end = np.cumsum(counts)
    start = end - counts
    avg_rank = (start + 1 + end) / 2.0
    ranks = np.empty(len(score))
    ranks[order] = avg_rank[inverse]
    return float((ranks[y_bin].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def softmax(logits):
    z = np.asarray(logits, np.float64)
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def metrics_from_logits(logits, y):
    probs = softmax(logits)
    pred = probs.argmax(1)
    ba, recalls = balanced_accuracy(y, pred)
    mal_true = np.isin(y, MALIGNANT)
    mal_score = probs[:, MALIGNANT].sum(1)
    return dict(
        val_ba=ba,
        val_recalls=recalls,
        val_acc=float(np.mean(pred == y)),
        val_mal_auc=roc_auc(mal_true, mal_score),
    )


def decode_data(threads=8):
    from concurrent.futures import ThreadPoolExecutor

    import cv2

    cv2.setNumThreads(1)
    d = np.load(os.path.join(HERE, "dataA.npz"))
    buf, off = d["A_bytes"], d["A_off"]

    def dec(i):
        im = cv2.imdecode(buf[off[i] : off[i + 1]], cv2.IMREAD_COLOR)
        if im is None:
            raise RuntimeError(f"cannot decode image {i}")
        return cv2.cvtColor(im, cv2.COLOR_BGR2RGB)

    with ThreadPoolExecutor(threads) as ex:
        images = np.stack(list(ex.map(dec, range(len(off) - 1))))
    y = d["y"].astype(np.int64)
    is_val = d["is_val"].astype(bool)
    assert images.ndim == 4 and images.shape[3] == 3 and images.dtype == np.uint8
    assert len(images) == len(y) == len(is_val)
    return images, y, is_val


def class_weights(y_train):
    counts = np.bincount(y_train, minlength=len(CLASSES)).astype(np.float64)
    assert (counts > 0).all(), counts
    return len(y_train) / (len(CLASSES) * counts)


def is_trainable(name, first_block=CFG["first_trainable_block"]):
    if name.startswith("head."):
        return True
    if name == "_conv_head.weight":
        return True
    if name.startswith("_blocks."):
        parts = name.split(".")
        return int(parts[1]) >= first_block and parts[2].endswith("_conv")
    return False


def lr_factor(step, steps_per_epoch, epochs, warmup_epochs):
    warm = steps_per_epoch * warmup_epochs
    total = steps_per_epoch * epochs
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))


# ----------------------------------------------------------------------------- torch parts
def build_torch():
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class Conv2dSame(nn.Conv2d):
        def forward(self, x):
            ih, iw = x.shape[-2:]
            kh, kw = self.kernel_size
            sh, sw = self.stride
            ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
            pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
            if ph or pw:
                x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
            return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)

    class Block(nn.Module):
        def __init__(self, cin, cout, expand, k, stride):
            super().__init__()
            mid = cin * expand
            self.has_expand = expand != 1
            if self.has_expand:
                self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
                self._bn0 = nn.BatchNorm2d(mid, eps=1e-3)
            self._depthwise_conv = Conv2dSame(mid, mid, k, stride=stride, groups=mid, bias=False)
            self._bn1 = nn.BatchNorm2d(mid, eps=1e-3)
            self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
            self._bn2 = nn.BatchNorm2d(cout, eps=1e-3)
            self.skip = stride == 1 and cin == cout

        def forward(self, x):
            h = x
            if self.has_expand:
                h = F.relu6(self._bn0(self._expand_conv(h)))
            h = F.relu6(self._bn1(self._depthwise_conv(h)))
            h = self._bn2(self._project_conv(h))
            return h + x if self.skip else h

    class Lite0(nn.Module):
        def __init__(self, n_classes=N_CLASSES, dropout=CFG["dropout"]):
            super().__init__()
            self._conv_stem = Conv2dSame(3, 32, 3, stride=2, bias=False)
            self._bn0 = nn.BatchNorm2d(32, eps=1e-3)
            blocks, cin = [], 32
            for e, k, s, c, r in STAGES:
                for i in range(r):
                    blocks.append(Block(cin, c, e, k, s if i == 0 else 1))
                    cin = c
            self._blocks = nn.ModuleList(blocks)
            self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
            self._bn1 = nn.BatchNorm2d(1280, eps=1e-3)
            self.dropout = nn.Dropout(dropout)
            self.head = nn.Linear(1280, n_classes)

        def features(self, x):  # float RGB in [0, 255], NCHW
            x = (x - 127.0) / 128.0
            x = F.relu6(self._bn0(self._conv_stem(x)))
            for b in self._blocks:
                x = b(x)
            x = F.relu6(self._bn1(self._conv_head(x)))
            return x.mean((2, 3))

        def forward(self, x):
            return self.head(self.dropout(self.features(x)))

    return torch, nn, F, Lite0


def load_backbone(torch, model):
    w = np.load(os.path.join(HERE, "weights.npz"))
    sd = {k: torch.from_numpy(w[k].astype(np.float32)) for k in w.files if not k.startswith("_fc.")}
    own = model.state_dict()
    expected = {
        k for k in own if not k.startswith("head.") and not k.endswith("num_batches_tracked")
    }
    missing = sorted(expected - set(sd))
    unexpected = sorted(set(sd) - expected)
    bad = sorted(k for k in expected & set(sd) if tuple(own[k].shape) != tuple(sd[k].shape))
    if missing or unexpected or bad:
        raise SystemExit(
            f"WEIGHT KEY MAPPING FAILED: missing={missing} unexpected={unexpected} "
            f"shape_mismatch={bad}"
        )
    res = model.load_state_dict(sd, strict=False)
    allowed = {k for k in own if k.startswith("head.") or k.endswith("num_batches_tracked")}
    if set(res.missing_keys) - allowed or res.unexpected_keys:
        raise SystemExit(f"WEIGHT LOAD FAILED: {res}")
    return len(sd), w


def sanity_check(results_box):
    torch, _, _, Lite0 = build_torch()
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    model = Lite0()
    n_loaded, w = load_backbone(torch, model)
    model = model.to(DEV).eval()
    r = np.load(os.path.join(HERE, "refs.npz"))
    x = torch.from_numpy(r["images"]).to(DEV).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        feat = model.features(x).double().cpu().numpy()
    fc_w = w["_fc.weight"].astype(np.float64)
    fc_b = w["_fc.bias"].astype(np.float64)
    logits = feat @ fc_w.T + fc_b
    kf, kl = r["keras_feat"].astype(np.float64), r["keras_logits"].astype(np.float64)
    cos = [
        float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))
        for a, b in zip(feat, kf, strict=False)
    ]
    out = dict(
        loaded_tensors=n_loaded,
        feat_cos_vs_keras=cos,
        top5_torch=np.argsort(-logits, 1)[:, :5].tolist(),
        top5_keras=np.argsort(-kl, 1)[:, :5].tolist(),
        logit_max_abs_diff=float(np.abs(logits - kl).max()),
        ok=bool(min(cos) > 0.999),
        torch=torch.__version__,
        device=torch.cuda.get_device_name(0) if DEV == "cuda" else DEV,
    )
    print("SANITY", json.dumps(out), flush=True)
    results_box["sanity"] = out
    return out["ok"]


def worker(arm, seed, deadline):
    t_start = time.time()
    cfg = arm_cfg(arm)
    key = f"{arm}{seed}"
    torch, nn, F, Lite0 = build_torch()
    torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "2")))
    # no cuDNN autotuning: in exp.py it made epoch 1 take 38-58 s with 6 processes
    torch.backends.cudnn.benchmark = False
    dev = torch.device(DEV)
    amp_dev = "cuda" if DEV == "cuda" else "cpu"
    images = np.load(os.path.join(TMP, "images.npy"), mmap_mode="r")
    y = np.load(os.path.join(TMP, "y.npy"))
    is_val = np.load(os.path.join(TMP, "is_val.npy"))
    tr_idx, va_idx = np.flatnonzero(~is_val), np.flatnonzero(is_val)
    if "TEST_NTRAIN" in os.environ:  # CPU smoke test only
        n_tr_c, n_va_c = int(os.environ["TEST_NTRAIN"]), int(os.environ["TEST_NVAL"])
        tr_idx = np.sort(np.concatenate([tr_idx[y[tr_idx] == c][:n_tr_c] for c in range(7)]))
        va_idx = np.sort(np.concatenate([va_idx[y[va_idx] == c][:n_va_c] for c in range(7)]))
    cw = torch.tensor(class_weights(y[tr_idx]), dtype=torch.float32, device=dev)
    x_tr = torch.from_numpy(np.ascontiguousarray(images[tr_idx])).to(dev).permute(0, 3, 1, 2)
    y_tr = torch.from_numpy(y[tr_idx]).to(dev)
    x_va = torch.from_numpy(np.ascontiguousarray(images[va_idx])).to(dev).permute(0, 3, 1, 2)
    y_va = y[va_idx]
    n_tr, res = x_tr.shape[0], x_tr.shape[-1]

    torch.manual_seed(seed)  # head init, dropout
    model = Lite0()
    n_loaded, _ = load_backbone(torch, model)
    for name, p in model.named_parameters():
        p.requires_grad = is_trainable(name)
    model = model.to(dev, memory_format=torch.channels_last)
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    backbone_params = [p for n, p in trainable if not n.startswith("head.")]
    head_params = [p for n, p in model.named_parameters() if n.startswith("head.")]
    assert len(head_params) == 2 and len(backbone_params) == len(trainable) - 2
    opt = torch.optim.AdamW(
        [
            {"params": backbone_params, "lr": cfg["lr_backbone"]},
            {"params": head_params, "lr": cfg["lr_head"]},
        ],
        weight_decay=cfg["weight_decay"],
    )
    bs, epochs = cfg["batch"], cfg["epochs"]
    steps = math.ceil(n_tr / bs)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, steps, epochs, cfg["warmup_epochs"])
    )
    g_order = torch.Generator().manual_seed(1000 + seed)
    g_aug = torch.Generator(device=dev).manual_seed(2000 + seed)
    print(
        f"setup {key}: "
        f"cfg={json.dumps({k: cfg[k] for k in ('epochs', 'crop_scale', 'crop_ratio')})} "
        f"n_train={n_tr} n_val={len(y_va)} res={res} loaded={n_loaded} "
        f"trainable_params={sum(p.numel() for p in backbone_params + head_params)} "
        f"setup_s={time.time() - t_start:.1f}",
        flush=True,
    )

    lo_s, hi_s = cfg["crop_scale"]
    lo_r, hi_r = math.log(cfg["crop_ratio"][0]), math.log(cfg["crop_ratio"][1])

    def augment(xb):  # float (B,3,H,W) in [0,255]; the same draws in every arm
        b = xb.shape[0]

        def u(*shape):
            return torch.rand(*shape, device=dev, generator=g_aug)

        area = lo_s + (hi_s - lo_s) * u(b)
        ratio = torch.exp(lo_r + (hi_r - lo_r) * u(b))
        cw_ = torch.sqrt(area * ratio).clamp(max=1.0)  # half-extent in normalised coords
        ch_ = torch.sqrt(area / ratio).clamp(max=1.0)
        cx = (2 * u(b) - 1) * (1 - cw_)
        cy = (2 * u(b) - 1) * (1 - ch_)
        th = 2 * math.pi * u(b)
        fx = 1 - 2 * (u(b) < 0.5).float()
        fy = 1 - 2 * (u(b) < 0.5).float()
        c, s = torch.cos(th), torch.sin(th)
        sx, sy = cw_ * fx, ch_ * fy
        theta = torch.stack(
            [torch.stack([c * sx, -s * sy, cx], 1), torch.stack([s * sx, c * sy, cy], 1)], 1
        )  # (B,2,3)
        grid = F.affine_grid(theta, list(xb.shape), align_corners=False)
        xb = F.grid_sample(
            xb, grid, mode="bilinear", padding_mode="reflection", align_corners=False
        )
        mean = xb.mean((1, 2, 3), keepdim=True)
        con = 1 + cfg["contrast"] * (2 * u(b, 1, 1, 1) - 1)
        bri = cfg["brightness"] * (2 * u(b, 1, 1, 1) - 1)
        return ((xb - mean) * con + mean + bri).clamp(0, 255)

    def set_train():
        model.train()
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()

    @torch.no_grad()
    def val_logits(transforms):
        """(len(transforms), N, 7) float32 logits of the val images."""
        model.eval()
        out = []
        for k, flip in transforms:
            parts = []
            for i in range(0, x_va.shape[0], cfg["eval_batch"]):
                xb = x_va[i : i + cfg["eval_batch"]].float()
                if flip:
                    xb = xb.flip(-1)
                if k:
                    xb = torch.rot90(xb, k, (2, 3))
                xb = xb.contiguous(memory_format=torch.channels_last)
                with torch.autocast(amp_dev, dtype=torch.bfloat16):
                    lg = model(xb)
                parts.append(lg.float())
            out.append(torch.cat(parts))
        return torch.stack(out).cpu().numpy()

    def snapshot():
        return [p.detach().clone() for _, p in trainable]

    history, best_ba, best_ep, best_state = [], -1.0, 0, None
    status, t_train = "complete", time.time()
    for ep in range(1, epochs + 1):
        te0 = time.time()
        set_train()
        perm = torch.randperm(n_tr, generator=g_order).to(dev)
        loss_sum = torch.zeros((), device=dev)
        for st in range(steps):
            idx = perm[st * bs : (st + 1) * bs]
            xb = augment(x_tr[idx].float()).contiguous(memory_format=torch.channels_last)
            yb = y_tr[idx]
            with torch.autocast(amp_dev, dtype=torch.bfloat16):
                logits = model(xb)
            per = F.cross_entropy(
                logits.float(), yb, reduction="none", label_smoothing=cfg["label_smoothing"]
            )
            loss = (per * cw[yb]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.detach()
        train_loss = float(loss_sum) / steps
        if not math.isfinite(train_loss):
            raise RuntimeError(f"non-finite train loss at epoch {ep}")
        t_ev = time.time()
        lg = val_logits(DIHEDRAL[:1])[0]
        m = metrics_from_logits(lg, y_va)
        if m["val_ba"] > best_ba:  # first epoch reaching the max, as max() in exp.py
            best_ba, best_ep, best_state = m["val_ba"], ep, snapshot()
        te = time.time() - te0
        rec = dict(
            arm=arm,
            seed=seed,
            epoch=ep,
            train_loss=train_loss,
            epoch_s=te,
            eval_s=time.time() - t_ev,
            lr_backbone=opt.param_groups[0]["lr"],
            **m,
        )
        history.append(rec)
        print("RESULT " + json.dumps(rec), flush=True)
        now = time.time()
        if ep < epochs and now + 1.3 * te + TTA_RESERVE_S > deadline:  # no skip rule: keep what ran
            print(f"STOP {key}: deadline, {ep} of {epochs} epochs done", flush=True)
            status = "incomplete"
            break
    train_s = time.time() - t_train

    # TTA at the final (last run) epoch, then at the best plain-val epoch
    t_tta = time.time()
    final8 = val_logits(DIHEDRAL)
    with torch.no_grad():
        for (_, p), v in zip(trainable, best_state, strict=False):
            p.copy_(v)
    best8 = val_logits(DIHEDRAL)
    tta_s = time.time() - t_tta
    plain_check = float(np.abs(final8[0] - lg).max())  # re-evaluated vs per-epoch plain logits
    summ = dict(
        arm=arm,
        seed=seed,
        status=status,
        epochs_planned=epochs,
        epochs_done=ep,
        best_epoch=best_ep,
        train_s=train_s,
        tta_s=tta_s,
        best_plain=metrics_from_logits(best8[0], y_va),
        best_tta=metrics_from_logits(best8.mean(0), y_va),
        final_plain=metrics_from_logits(final8[0], y_va),
        final_tta=metrics_from_logits(final8.mean(0), y_va),
        best_plain_vs_history_ba=history[best_ep - 1]["val_ba"],
        final_plain_vs_history_ba=history[-1]["val_ba"],
        final_plain_recheck_maxabs=plain_check,
        per_transform_ba_best=[metrics_from_logits(b, y_va)["val_ba"] for b in best8],
    )
    os.makedirs(TMP, exist_ok=True)
    path = os.path.join(TMP, f"logits_{key}.npz")
    np.savez(
        path, best8=best8.astype(np.float32), final8=final8.astype(np.float32), val_index=va_idx
    )
    print("FINAL " + json.dumps(summ), flush=True)
    print("LOGITS " + path, flush=True)


# ----------------------------------------------------------------------------- driver
def driver():
    os.makedirs(OUT, exist_ok=True)
    os.makedirs(TMP, exist_ok=True)
    t0 = time.time()
    deadline = t0 + BUDGET_S
    images, y, is_val = decode_data()
    np.save(os.path.join(TMP, "images.npy"), images)
    np.save(os.path.join(TMP, "y.npy"), y)
    np.save(os.path.join(TMP, "is_val.npy"), is_val)
    print(f"decoded {images.shape} in {time.time() - t0:.1f}s; val {int(is_val.sum())}", flush=True)
    del images
    box = dict(
        config=CFG,
        arm_cfg=ARM_CFG,
        seeds=SEEDS,
        arms=ARMS,
        budget_s=BUDGET_S,
        dihedral=DIHEDRAL,
        runs={},
    )
    logits = {"y_val": y[is_val]}
    lock = threading.Lock()

    def save(with_logits=False):
        with lock:
            box["elapsed_s"] = time.time() - t0
            tmp = os.path.join(OUT, "results.json.tmp")
            with open(tmp, "w") as f:
                json.dump(box, f, indent=1)
            os.replace(tmp, os.path.join(OUT, "results.json"))
            if with_logits:
                tmp = os.path.join(OUT, "logits.tmp.npz")
                np.savez(tmp, **logits)
                os.replace(tmp, os.path.join(OUT, "logits.npz"))

    def reader(key, p):
        for line in p.stdout:
            line = line.rstrip("\n")
            print(f"[{key} {time.time() - t0:6.1f}s] {line}", flush=True)
            try:
                if line.startswith("RESULT "):
                    rec = json.loads(line[7:])
                    with lock:
                        box["runs"][key]["history"].append(rec)
                elif line.startswith("FINAL "):
                    with lock:
                        box["runs"][key].update(json.loads(line[6:]))
                elif line.startswith("LOGITS "):
                    z = np.load(line[7:].strip())
                    with lock:
                        logits[f"{key}_best8"] = z["best8"]
                        logits[f"{key}_final8"] = z["final8"]
                        logits[f"{key}_val_index"] = z["val_index"]
                    save(with_logits=True)
            except Exception as exc:
                print(f"[{key}] driver could not parse a line: {exc!r}", flush=True)
        rc = p.wait()
        with lock:
            box["runs"][key]["returncode"] = rc
            if rc != 0:
                box["runs"][key]["status"] = f"failed rc={rc}"
        save()

    threads = []
    for seed in SEEDS:
        for arm in ARMS:
            key = f"{arm}{seed}"
            box["runs"][key] = dict(arm=arm, seed=seed, history=[], status="running")
            p = subprocess.Popen(
                [
                    sys.executable,
                    "-u",
                    os.path.abspath(__file__),
                    "worker",
                    arm,
                    str(seed),
                    str(deadline),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
            )
            t = threading.Thread(target=reader, args=(key, p), daemon=True)
            t.start()
            threads.append(t)
            if os.environ.get("SERIAL"):  # CPU smoke test: one worker at a time
                t.join()

    try:
        ok = sanity_check(box)
    except BaseException as exc:
        import traceback

        traceback.print_exc()
        box["sanity"] = dict(ok=False, error=repr(exc))
        ok = False
    save()
    if not ok:
        print("SANITY CHECK FAILED; training results are suspect", flush=True)
    for t in threads:
        t.join()
    save(with_logits=True)
    for key, r in box["runs"].items():
        if "best_plain" in r:
            print(
                "ROW",
                key,
                r["status"],
                r["epochs_done"],
                r["best_epoch"],
                *(
                    f"{r[s]['val_ba']:.4f}/{r[s]['val_mal_auc']:.4f}"
                    for s in ("best_plain", "best_tta", "final_plain", "final_tta")
                ),
                flush=True,
            )
        else:
            print("ROW", key, r.get("status"), "no final summary", flush=True)
    print(f"driver done in {time.time() - t0:.1f}s", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    else:
        driver()
