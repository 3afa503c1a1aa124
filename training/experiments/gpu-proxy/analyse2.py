"""Analysis of exp2 (augmentation arms + TTA).

Experiment record, not product code. Nothing in the project imports it, and no test collects it.
It prints the markdown tables of the notes on the TTA and augmentation arms (saved as
analysis2.md): per-run and per-arm val metrics, the TTA gain, arm minus base, and paired
bootstraps over val images and over val lesions, after re-checking the workers' numbers against
the saved logits.

How it was run: here on the CPU with the project venv (needs scipy; no torch, because exp2.py
imports torch only inside functions not used here):
``nice -n 19 .venv/bin/python analyse2.py`` from /work/main/.gpuexp/tta/.
Reads out_call1/results.json + logits.npz (the GPU call's output) next to the script, and the
val lesion ids from /tmp/gpuexp/val_lesion_id.npy (raw128.npz order = data.npz order) for the
lesion-grouped bootstrap. The lesion ids were written by a short command that is not kept here:
lesion_id of raw128.npz where split == val. Those inputs are not in this folder, and the paths
(relative to the script, and /tmp/gpuexp) are left as they were when it ran.
"""

import json
import sys

import numpy as np
from scipy import stats

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from exp2 import MALIGNANT, metrics_from_logits, softmax

D = __file__.rsplit("/", 1)[0] + "/out_call1/"
with open(D + "results.json") as results_file:
    R = json.load(results_file)
Z = np.load(D + "logits.npz")
Y = Z["y_val"]
ARMS = ["base", "nocrop", "crop25", "ep24"]
SEEDS = [0, 1, 2]
N_BOOT = 1000


def ms(x):
    x = np.asarray(x)
    return f"{x.mean():.4f} ± {x.std(ddof=1):.4f}"


rows = {}
for a in ARMS:
    for s in SEEDS:
        r = R["runs"][f"{a}{s}"]
        assert r["status"] == "complete" and r["returncode"] == 0, (a, s)
        h = r["history"]
        b8, f8 = Z[f"{a}{s}_best8"], Z[f"{a}{s}_final8"]
        # recompute from the saved logits and cross-check against the worker's own numbers
        m = {
            k: metrics_from_logits(v, Y)
            for k, v in (("bp", b8[0]), ("bt", b8.mean(0)), ("fp", f8[0]), ("ft", f8.mean(0)))
        }
        assert abs(m["bp"]["val_ba"] - h[r["best_epoch"] - 1]["val_ba"]) < 1e-12
        assert abs(m["fp"]["val_ba"] - h[-1]["val_ba"]) < 1e-12
        assert abs(m["bt"]["val_mal_auc"] - r["best_tta"]["val_mal_auc"]) < 1e-12
        assert max(e["val_ba"] for e in h) == m["bp"]["val_ba"]
        rows[(a, s)] = dict(
            best_ba=m["bp"]["val_ba"],
            best_ep=r["best_epoch"],
            epochs=len(h),
            final_ba=m["fp"]["val_ba"],
            best_auc_any=max(e["val_mal_auc"] for e in h),
            best_auc=m["bp"]["val_mal_auc"],
            final_auc=m["fp"]["val_mal_auc"],
            tta_best_ba=m["bt"]["val_ba"],
            tta_best_auc=m["bt"]["val_mal_auc"],
            tta_final_ba=m["ft"]["val_ba"],
            tta_final_auc=m["ft"]["val_mal_auc"],
            rec_final=m["fp"]["val_recalls"],
            rec_final_tta=m["ft"]["val_recalls"],
            ep1_s=h[0]["epoch_s"],
            ep_s=float(np.median([e["epoch_s"] for e in h[1:]])),
            per_tf=r["per_transform_ba_best"],
        )

print(
    "## Per run (val split, 1502 images; plain = un-augmented input; "
    "TTA = mean logits of 8 dihedral transforms)\n"
)
print(
    "| arm | seed | best val BA (epoch) | final val BA | best val mal. AUC (any epoch) | "
    "mal. AUC at best-BA epoch | final mal. AUC | TTA BA @best | TTA AUC @best | "
    "TTA BA @final | TTA AUC @final |"
)
print("|---|---|---|---|---|---|---|---|---|---|---|")
for (a, s), r in rows.items():
    print(
        f"| {a} | {s} | {r['best_ba']:.4f} ({r['best_ep']}/{r['epochs']}) | "
        f"{r['final_ba']:.4f} | {r['best_auc_any']:.4f} | "
        f"{r['best_auc']:.4f} | {r['final_auc']:.4f} | "
        f"{r['tta_best_ba']:.4f} | {r['tta_best_auc']:.4f} | "
        f"{r['tta_final_ba']:.4f} | {r['tta_final_auc']:.4f} |"
    )

KEYS = [
    ("best_ba", "best val BA"),
    ("final_ba", "final val BA"),
    ("best_auc_any", "best val AUC (any epoch)"),
    ("best_auc", "AUC @best-BA epoch"),
    ("final_auc", "final AUC"),
    ("tta_best_ba", "TTA BA @best"),
    ("tta_best_auc", "TTA AUC @best"),
    ("tta_final_ba", "TTA BA @final"),
    ("tta_final_auc", "TTA AUC @final"),
]
print("\n## Mean ± sd over seeds 0-2\n")
print("| arm | " + " | ".join(lab for _, lab in KEYS) + " |")
print("|---|" + "---|" * len(KEYS))
for a in ARMS:
    print(f"| {a} | " + " | ".join(ms([rows[(a, s)][k] for s in SEEDS]) for k, _ in KEYS) + " |")


def paired(x, y):
    d = np.asarray(x) - np.asarray(y)
    t = stats.ttest_rel(x, y)
    return d, t


print("\n## TTA gain (TTA − plain), paired per run\n")
print("| arm | BA @best | AUC @best | BA @final | AUC @final |")
print("|---|---|---|---|---|")
for group, arms in [(a, [a]) for a in ARMS] + [("all 12 runs", ARMS)]:
    cells = []
    for tk, pk in (
        ("tta_best_ba", "best_ba"),
        ("tta_best_auc", "best_auc"),
        ("tta_final_ba", "final_ba"),
        ("tta_final_auc", "final_auc"),
    ):
        x = [rows[(a, s)][tk] for a in arms for s in SEEDS]
        y = [rows[(a, s)][pk] for a in arms for s in SEEDS]
        d, t = paired(x, y)
        cells.append(
            f"{d.mean():+.4f} ± {d.std(ddof=1):.4f} "
            f"(t={t.statistic:.2f}, p={t.pvalue:.3f}, +{int((d > 0).sum())}/{len(d)})"
        )
    print(f"| {group} | " + " | ".join(cells) + " |")

print("\n## Arm − base, paired by seed (n = 3, t-test df = 2)\n")
print("| arm | " + " | ".join(lab for _, lab in KEYS) + " |")
print("|---|" + "---|" * len(KEYS))
for a in ARMS[1:]:
    cells = []
    for k, _ in KEYS:
        d, t = paired([rows[(a, s)][k] for s in SEEDS], [rows[("base", s)][k] for s in SEEDS])
        cells.append(
            f"{d.mean():+.4f} ± {d.std(ddof=1):.4f} "
            f"(p={t.pvalue:.2f}; {' '.join(f'{v:+.3f}' for v in d)})"
        )
    print(f"| {a} | " + " | ".join(cells) + " |")

# ------------------------------------------------------------------ bootstrap over val images
CL = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
rng = np.random.default_rng(12345)
N = len(Y)
W_img = np.stack([np.bincount(rng.integers(0, N, N), minlength=N) for _ in range(N_BOOT)]).astype(
    np.float64
)
les = np.load("/tmp/gpuexp/val_lesion_id.npy", allow_pickle=True)
assert len(les) == N
_, les_idx = np.unique(les, return_inverse=True)
L = les_idx.max() + 1
W_les = np.stack(
    [np.bincount(rng.integers(0, L, L), minlength=L)[les_idx] for _ in range(N_BOOT)]
).astype(np.float64)
# SIM300: Y is the val label array (a module-level name), not a constant; no Yoda condition
onehot = np.stack([Y == c for c in range(7)], 1).astype(np.float64)  # noqa: SIM300  # (N, 7)
mal = np.isin(Y, MALIGNANT)


def boot_ba(W, logits):
    correct = (logits.argmax(1) == Y).astype(np.float64)
    return ((W @ (onehot * correct[:, None])) / (W @ onehot)).mean(1)  # (B,)


def boot_auc(W, logits):
    score = softmax(logits)[:, MALIGNANT].sum(1)
    u, inv = np.unique(score, return_inverse=True)  # tie groups, ascending
    G = len(u)
    Wn = np.zeros((W.shape[0], G))
    Wp = np.zeros((W.shape[0], G))
    np.add.at(Wn.T, inv[~mal], W[:, ~mal].T)
    np.add.at(Wp.T, inv[mal], W[:, mal].T)
    below = np.cumsum(Wn, 1) - Wn  # negative weight strictly below each group
    num = (Wp * (below + 0.5 * Wn)).sum(1)
    return num / (Wp.sum(1) * Wn.sum(1))


# checks of the weighted metrics against the plain ones with unit weights
ones = np.ones((1, N))
lg0 = Z["base0_best8"][0]
assert abs(boot_ba(ones, lg0)[0] - rows[("base", 0)]["best_ba"]) < 1e-12
assert abs(boot_auc(ones, lg0)[0] - rows[("base", 0)]["best_auc"]) < 1e-12
idx = rng.integers(0, N, N)
w1 = np.bincount(idx, minlength=N)[None].astype(float)
m1 = metrics_from_logits(lg0[idx], Y[idx])
assert (
    abs(boot_ba(w1, lg0)[0] - m1["val_ba"]) < 1e-12
    and abs(boot_auc(w1, lg0)[0] - m1["val_mal_auc"]) < 1e-12
)

cache = {}


def boot(W, wname, a, s, which, tta, metric):
    key = (wname, a, s, which, tta, metric)
    if key not in cache:
        z = Z[f"{a}{s}_{which}8"]
        lg = z.mean(0) if tta else z[0]
        cache[key] = (boot_ba if metric == "ba" else boot_auc)(W, lg)
    return cache[key]


def summarise(obs, dist):
    lo, hi = np.percentile(dist, [2.5, 97.5])
    p = min(1.0, 2 * min((dist <= 0).mean(), (dist >= 0).mean()))
    return f"{obs:+.4f} [{lo:+.4f}, {hi:+.4f}] p≈{p:.3f}"


print(
    f"\n## Paired bootstrap over val images ({N_BOOT} draws; the same draws for every run; "
    "statistic = mean over the runs' seeds of the paired difference; 95 % percentile CI; "
    "p = 2·min(share ≤ 0, share ≥ 0)). Second value: lesion-grouped bootstrap (1141 val lesions).\n"
)
print("### TTA − plain\n")
print("| runs | BA @best | AUC @best | BA @final | AUC @final |")
print("|---|---|---|---|---|")
for group, arms in [(a, [a]) for a in ARMS] + [("all 12 runs", ARMS)]:
    cells = []
    for which, metric in (("best", "ba"), ("best", "auc"), ("final", "ba"), ("final", "auc")):
        out = []
        for W, wn in ((W_img, "img"), (W_les, "les")):
            dist = np.mean(
                [
                    boot(W, wn, a, s, which, True, metric) - boot(W, wn, a, s, which, False, metric)
                    for a in arms
                    for s in SEEDS
                ],
                0,
            )
            k = f"tta_{which}_{metric}"
            obs = np.mean(
                [rows[(a, s)][k] - rows[(a, s)][k.replace("tta_", "")] for a in arms for s in SEEDS]
            )
            out.append(summarise(obs, dist))
        cells.append(" / ".join(out))
    print(f"| {group} | " + " | ".join(cells) + " |")

print("\n### Arm − base (mean over the 3 seed pairs)\n")
print("| arm | input | BA @best | AUC @best | BA @final | AUC @final |")
print("|---|---|---|---|---|---|")
for a in ARMS[1:]:
    for tta in (False, True):
        cells = []
        for which, metric in (("best", "ba"), ("best", "auc"), ("final", "ba"), ("final", "auc")):
            out = []
            for W, wn in ((W_img, "img"), (W_les, "les")):
                dist = np.mean(
                    [
                        boot(W, wn, a, s, which, tta, metric)
                        - boot(W, wn, "base", s, which, tta, metric)
                        for s in SEEDS
                    ],
                    0,
                )
                k = ("tta_" if tta else "") + f"{which}_{metric}"
                obs = np.mean([rows[(a, s)][k] - rows[("base", s)][k] for s in SEEDS])
                out.append(summarise(obs, dist))
            cells.append(" / ".join(out))
        print(f"| {a} | {'TTA' if tta else 'plain'} | " + " | ".join(cells) + " |")

print("\n## Per-class final-epoch val recall, mean over seeds (plain / TTA)\n")
print("| class (n) | " + " | ".join(ARMS) + " |")
print("|---|" + "---|" * len(ARMS))
for c in range(7):
    print(
        f"| {CL[c]} ({int((Y == c).sum())}) | "  # noqa: SIM300 (Y is an array, as above)
        + " | ".join(
            f"{np.mean([rows[(a, s)]['rec_final'][c] for s in SEEDS]):.3f} / "
            f"{np.mean([rows[(a, s)]['rec_final_tta'][c] for s in SEEDS]):.3f}"
            for a in ARMS
        )
        + " |"
    )

print(
    "\n## Single transforms at the best epoch (BA; index 0 = identity; k = rot90 steps, f = hflip)"
)
tf = np.array([rows[(a, s)]["per_tf"] for a in ARMS for s in SEEDS])
print(
    "mean over 12 runs:",
    " ".join(
        f"k{k}{'f' if f else ''}={v:.4f}"
        for (k, f), v in zip(R["dihedral"], tf.mean(0), strict=False)
    ),
)
print(
    "identity minus mean of the 7 other single transforms: "
    f"{np.mean(tf[:, 0] - tf[:, 1:].mean(1)):+.4f} "
    "(the best epoch is chosen on the identity, so the identity is favoured by selection)"
)

print("\n## Timing (H200, 12 concurrent processes, cudnn.benchmark=False)")
print("epoch-1 s:", [round(rows[(a, s)]["ep1_s"], 1) for a in ARMS for s in SEEDS])
print("median epoch s (2..end):", [round(rows[(a, s)]["ep_s"], 2) for a in ARMS for s in SEEDS])
print(
    f"driver wall {R['elapsed_s']:.1f} s; sanity: {R['sanity']['ok']}, "
    f"cos {R['sanity']['feat_cos_vs_keras']}, {R['sanity']['device']}, "
    f"torch {R['sanity']['torch']}"
)
