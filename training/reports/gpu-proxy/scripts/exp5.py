#!/usr/bin/env python3
"""Proxy experiment 5: input resolution (128/224/256), logit-adjusted CE, EMA of weights.

Recipe = "base" arm of ../tta/exp2.py (EfficientNet-Lite0 ImageNet, blocks 5-15 + head conv
trainable, BN frozen, AdamW 2e-4/2e-3 wd 1e-2, 16 epochs, 1 warm-up epoch + cosine, batch 64,
label smoothing 0.1, inverse-frequency class weights, bf16, GPU augmentation RRC (0.5,1) +
rotation + flips + contrast/brightness, cudnn.benchmark False).
Data: data.npz = spec-v3 model_input (224) -> 150x150 INTER_AREA -> JPEG; train+val of the
ham10000-v3 split. Each worker resizes the decoded 150 px images once on the device to the arm's
resolution R (bilinear; antialias only when downsampling) and augments at R.

Arms: base128  base recipe at 128 px; also tracks EMA of the trainable weights (decay 0.999 per
               step, started after the warm-up epoch; plus an extra EMA with decay 0.995) and
               evaluates them every epoch -> the "ema128" arm = EMA metrics of these runs
      la128    logit-adjusted CE (train logits + tau*log(train prior), tau=1), no class weights,
               label smoothing kept; eval on plain logits
      base224, base256: base recipe at 224 / 256 px
Same seed = same random draws in every arm (head init, dropout, data order, augmentation).

Usage: python3 exp5.py                 driver -> $OUT/results.json, $OUT/logits.npz,
                                       $OUT/logits_epochs.npz
       python3 exp5.py worker ARM SEED DEADLINE
Env:   ARMS=base256,base224,base128,la128  SEEDS=0,1,2  BUDGET_S=375  DEV=cuda  MAX_CONC=12
       TEST_NTRAIN / TEST_NVAL (per class) / TEST_EPOCHS: CPU smoke test; NO_EMA=1: disable EMA
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
OUT = os.environ.get("OUT") or "/tmp/gpuexp5_out"
TMP = os.environ.get("EXP5_TMP") or "/tmp/exp5_tmp"
DEV = os.environ.get("DEV", "cuda")
DATA = os.environ.get("DATA", os.path.join(HERE, "data.npz"))
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
    eval_batch_128=500,
    res=128,
    loss="cw",
    la_tau=1.0,
    ema=(),
)
ARM_CFG = {
    "base128": dict(res=128, ema=(0.999, 0.995)),
    "la128": dict(res=128, loss="la"),
    "base224": dict(res=224),
    "base256": dict(res=256),
}
SEEDS = [int(s) for s in os.environ.get("SEEDS", "0,1,2").split(",")]
ARMS = os.environ.get("ARMS", "base256,base224,base128,la128").split(",")
BUDGET_S = float(os.environ.get("BUDGET_S", "375"))
END_RESERVE_S = float(os.environ.get("END_RESERVE_S", "3"))
MAX_CONC = int(os.environ.get("MAX_CONC", "12"))


def arm_cfg(arm):
    c = dict(CFG)
    c.update(ARM_CFG[arm])
    if os.environ.get("NO_EMA"):
        c["ema"] = ()
    if "TEST_EPOCHS" in os.environ:
        c["epochs"] = int(os.environ["TEST_EPOCHS"])
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
    d = np.load(DATA)
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
    torch, _nn, _F, Lite0 = build_torch()
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
    key = f"{arm}_{seed}"
    R = cfg["res"]
    eval_bs = max(16, int(cfg["eval_batch_128"] * (128 / R) ** 2))
    torch, nn, F, Lite0 = build_torch()
    torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "2")))
    torch.backends.cudnn.benchmark = False
    dev = torch.device(DEV)
    amp_dev = "cuda" if DEV == "cuda" else "cpu"
    images = np.load(os.path.join(TMP, "images.npy"), mmap_mode="r")
    y = np.load(os.path.join(TMP, "y.npy"))
    is_val = np.load(os.path.join(TMP, "is_val.npy"))
    tr_idx, va_idx = np.flatnonzero(~is_val), np.flatnonzero(is_val)
    if "TEST_NTRAIN" in os.environ:  # CPU smoke test only
        n_tr_c, n_va_c = int(os.environ["TEST_NTRAIN"]), int(os.environ["TEST_NVAL"])
        tr_idx = np.sort(
            np.concatenate([tr_idx[y[tr_idx] == c][: n_tr_c * (c + 1)] for c in range(7)])
        )
        va_idx = np.sort(np.concatenate([va_idx[y[va_idx] == c][:n_va_c] for c in range(7)]))
    counts = np.bincount(y[tr_idx], minlength=len(CLASSES)).astype(np.float64)
    cw = torch.tensor(class_weights(y[tr_idx]), dtype=torch.float32, device=dev)
    log_prior = torch.tensor(np.log(counts / counts.sum()), dtype=torch.float32, device=dev)

    @torch.no_grad()
    def to_res(arr):  # uint8 NHWC (150 px) -> uint8 NCHW at R, resized once before augmentation
        x = torch.from_numpy(np.ascontiguousarray(arr)).to(dev).permute(0, 3, 1, 2)
        src = x.shape[-1]
        if src == R:
            return x.contiguous()
        out = torch.empty((x.shape[0], 3, R, R), dtype=torch.uint8, device=dev)
        for i in range(0, x.shape[0], 512):
            xf = F.interpolate(
                x[i : i + 512].float(),
                size=(R, R),
                mode="bilinear",
                align_corners=False,
                antialias=src > R,
            )
            out[i : i + 512] = xf.round().clamp(0, 255).to(torch.uint8)
        return out

    x_tr = to_res(images[tr_idx])
    y_tr = torch.from_numpy(y[tr_idx]).to(dev)
    x_va = to_res(images[va_idx])
    y_va = y[va_idx]
    n_tr, src_res = x_tr.shape[0], images.shape[1]
    assert x_tr.shape[-1] == R and x_va.shape[-1] == R

    torch.manual_seed(seed)  # head init, dropout
    model = Lite0()
    n_loaded, _ = load_backbone(torch, model)
    for name, p in model.named_parameters():
        p.requires_grad = is_trainable(name)
    model = model.to(dev, memory_format=torch.channels_last)
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    tparams = [p for _, p in trainable]
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
        f"setup {key}: cfg={json.dumps({k: cfg[k] for k in ('epochs', 'res', 'loss', 'ema')})} "
        f"n_train={n_tr} n_val={len(y_va)} src_res={src_res} res={R} eval_bs={eval_bs} "
        f"loaded={n_loaded} trainable_params={sum(p.numel() for p in tparams)} "
        f"setup_s={time.time() - t_start:.1f}",
        flush=True,
    )

    lo_s, hi_s = cfg["crop_scale"]
    lo_r, hi_r = math.log(cfg["crop_ratio"][0]), math.log(cfg["crop_ratio"][1])

    def augment(xb):  # float (B,3,R,R) in [0,255]; the same draws in every arm (independent of R)
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
    def val_logits():
        model.eval()
        parts = []
        for i in range(0, x_va.shape[0], eval_bs):
            xb = x_va[i : i + eval_bs].float().contiguous(memory_format=torch.channels_last)
            with torch.autocast(amp_dev, dtype=torch.bfloat16):
                parts.append(model(xb).float())
        return torch.cat(parts).cpu().numpy()

    @torch.no_grad()
    def val_logits_with(tensors):  # evaluate with other trainable weights, then restore exactly
        backup = [p.detach().clone() for p in tparams]
        for p, t in zip(tparams, tensors, strict=False):
            p.copy_(t)
        try:
            return val_logits()
        finally:
            for p, b_ in zip(tparams, backup, strict=False):
                p.copy_(b_)

    decays = list(cfg["ema"])
    ema = {d: None for d in decays}  # started at the end of the warm-up epoch
    variants = ["raw"] + [f"ema{str(d)[2:]}" for d in decays]  # raw, ema999, ema995
    hist_logits = {v: [] for v in variants}
    best = {v: (-1.0, 0) for v in variants}
    history, status, t_train = [], "complete", time.time()
    tmp_path = os.path.join(TMP, f"logits_{key}.npz")

    def dump_logits():
        z = {f"{v}_epochs": np.stack(hist_logits[v]).astype(np.float32) for v in variants}
        z["val_index"] = va_idx
        np.savez(tmp_path + ".tmp.npz", **z)
        os.replace(tmp_path + ".tmp.npz", tmp_path)

    gstep = 0
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
            if cfg["loss"] == "la":  # Menon et al. 2021 logit adjustment, training loss only
                loss = F.cross_entropy(
                    logits.float() + cfg["la_tau"] * log_prior,
                    yb,
                    label_smoothing=cfg["label_smoothing"],
                )
            else:
                per = F.cross_entropy(
                    logits.float(), yb, reduction="none", label_smoothing=cfg["label_smoothing"]
                )
                loss = (per * cw[yb]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            gstep += 1
            if decays and gstep > steps:  # EMA updates only after the warm-up epoch
                with torch.no_grad():
                    for d in decays:
                        torch._foreach_mul_(ema[d], d)
                        torch._foreach_add_(ema[d], tparams, alpha=1.0 - d)
            loss_sum += loss.detach()
        if decays and ep == 1:
            for d in decays:
                ema[d] = [p.detach().clone() for p in tparams]
        train_loss = float(loss_sum) / steps
        if not math.isfinite(train_loss):
            raise RuntimeError(f"non-finite train loss at epoch {ep}")
        t_tr = time.time() - te0
        t_ev = time.time()
        rec = dict(
            arm=arm,
            seed=seed,
            epoch=ep,
            train_loss=train_loss,
            train_s=t_tr,
            lr_backbone=opt.param_groups[0]["lr"],
        )
        for v in variants:
            lg = val_logits() if v == "raw" else val_logits_with(ema[decays[variants.index(v) - 1]])
            hist_logits[v].append(lg)
            m = metrics_from_logits(lg, y_va)
            rec[v] = m
            if m["val_ba"] > best[v][0]:
                best[v] = (m["val_ba"], ep)
        rec["eval_s"] = time.time() - t_ev
        te = time.time() - te0
        rec["epoch_s"] = te
        if DEV == "cuda":
            rec["max_mem_alloc_gb"] = torch.cuda.max_memory_allocated() / 1e9
            rec["max_mem_reserved_gb"] = torch.cuda.max_memory_reserved() / 1e9
        history.append(rec)
        print("RESULT " + json.dumps(rec), flush=True)
        dump_logits()
        now = time.time()
        if ep < epochs and now + 1.25 * te + END_RESERVE_S > deadline:
            print(f"STOP {key}: deadline, {ep} of {epochs} epochs done", flush=True)
            status = "incomplete"
            break
    summ = dict(
        arm=arm,
        seed=seed,
        res=R,
        status=status,
        epochs_planned=epochs,
        epochs_done=ep,
        train_s=time.time() - t_train,
        steps_per_epoch=steps,
    )
    for v in variants:
        _b_ba, b_ep = best[v]
        summ[v] = dict(best_epoch=b_ep, best=history[b_ep - 1][v], final=history[-1][v])
    print("FINAL " + json.dumps(summ), flush=True)
    print("LOGITS " + tmp_path, flush=True)


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
        max_conc=MAX_CONC,
        runs={},
        smi=[],
    )
    lock = threading.Lock()
    procs = {}

    def save():
        with lock:
            box["elapsed_s"] = time.time() - t0
            tmp = os.path.join(OUT, "results.json.tmp")
            with open(tmp, "w") as f:
                json.dump(box, f, indent=1)
            os.replace(tmp, os.path.join(OUT, "results.json"))

    def reader(key, p):
        for line in p.stdout:
            line = line.rstrip("\n")
            print(f"[{key} {time.time() - t0:6.1f}s] {line}", flush=True)
            try:
                if line.startswith("RESULT "):
                    with lock:
                        box["runs"][key]["history"].append(json.loads(line[7:]))
                    save()
                elif line.startswith("FINAL "):
                    with lock:
                        box["runs"][key].update(json.loads(line[6:]))
                    save()
            except Exception as exc:
                print(f"[{key}] driver could not parse a line: {exc!r}", flush=True)
        rc = p.wait()
        with lock:
            box["runs"][key]["returncode"] = rc
            box["runs"][key]["end_s"] = time.time() - t0
            if rc != 0:
                box["runs"][key]["status"] = f"failed rc={rc}"
        save()

    stop = threading.Event()

    def smi_loop():
        while not stop.is_set():
            try:
                o = subprocess.run(
                    [
                        "nvidia-smi",
                        "--query-gpu=memory.used,utilization.gpu",
                        "--format=csv,noheader,nounits",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=5,
                ).stdout.strip()
                with lock:
                    box["smi"].append([round(time.time() - t0, 1), o])
            except Exception:
                pass
            stop.wait(5)

    if DEV == "cuda":
        threading.Thread(target=smi_loop, daemon=True).start()

    order = [(arm, seed) for arm in ARMS for seed in SEEDS]
    threads = []
    sem = threading.Semaphore(MAX_CONC)

    def launch(arm, seed):
        key = f"{arm}_{seed}"
        with lock:
            box["runs"][key] = dict(
                arm=arm, seed=seed, history=[], status="running", start_s=time.time() - t0
            )
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
        procs[key] = p
        reader(key, p)
        sem.release()

    def scheduler():
        for arm, seed in order:
            sem.acquire()
            if time.time() > deadline - 60:
                print(f"not started (deadline): {arm}_{seed}", flush=True)
                sem.release()
                continue
            t = threading.Thread(target=launch, args=(arm, seed), daemon=True)
            t.start()
            threads.append(t)
            if os.environ.get("SERIAL"):
                t.join()

    sch = threading.Thread(target=scheduler, daemon=True)
    sch.start()
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
    sch.join()
    hard = deadline + 12  # workers stop themselves before the deadline; kill leftovers after this
    for t in list(threads):
        t.join(max(0.0, hard - time.time()))
    for key, p in procs.items():
        if p.poll() is None:
            print(f"KILL {key}: past the hard deadline", flush=True)
            p.kill()
            with lock:
                box["runs"][key]["status"] = "killed"
    for t in list(threads):
        t.join(5)
    stop.set()
    # merge per-run logits written by the workers (every epoch)
    lg_final, lg_epochs = {"y_val": y[is_val], "val_index": np.flatnonzero(is_val)}, {}
    for key in box["runs"]:
        path = os.path.join(TMP, f"logits_{key}.npz")
        if not os.path.exists(path):
            continue
        z = np.load(path)
        z = {k: z[k] for k in z.files}
        if "TEST_NTRAIN" not in os.environ:
            assert np.array_equal(z["val_index"], np.flatnonzero(is_val)), key
        for k, v in z.items():
            if k.endswith("_epochs"):
                lg_final[f"{key}_{k[:-7]}_final"] = v[-1]
                lg_epochs[f"{key}_{k[:-7]}"] = v.astype(np.float16)
        lg_final[f"{key}_val_index"] = z["val_index"]
    np.savez(os.path.join(OUT, "logits.npz"), **lg_final)
    np.savez(os.path.join(OUT, "logits_epochs.npz"), **lg_epochs)
    save()
    for key, r in box["runs"].items():
        if "raw" in r:
            print(
                "ROW",
                key,
                r["status"],
                r["epochs_done"],
                *(
                    f"{v}: best {r[v]['best']['val_ba']:.4f}@{r[v]['best_epoch']} "
                    f"final {r[v]['final']['val_ba']:.4f}/{r[v]['final']['val_mal_auc']:.4f}"
                    for v in r
                    if v.startswith(("raw", "ema"))
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
