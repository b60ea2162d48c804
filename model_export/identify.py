"""The "identify" training recipe (issue 7): hash codes that identify the recording, not only
its category - same architecture, same exported interface as the paper recipe.

    python -m model_export.identify /work/shared/data/fsdd --bits 384 \\
        --holdout-speaker theo --val-speaker nicolas --epochs 12 \\
        --extra-data /work/cache/sv7_espeak --extra-holdout-speaker esp-enf3 \\
        --extra-holdout-speaker esp-enm3 --fmax 4000 --out hashing/models/fsdd-cnn-identify-k384.tflite

Why: the paper recipe (``model_export.train``) trains the hash layer only through the
classification loss, so the K bits learn "which digit", not "which recording": CPO copies of
other takes of the same digit fall under tau. This recipe trains the SAME network
(``model_export.models.build_model``: the paper's CNN, native input, outputs ``hash`` (K tanh)
and ``probs`` (C softmax)) with four losses on a batch of B units seen in two views each:

* NT-Xent (normalised temperature-scaled cross entropy, SimCLR; as in neural audio
  fingerprinting, Chang et al. 2021) between the two views of a unit, all other 2B-2 views of the
  batch being negatives. A view is the clean clip or one of ``n_aug`` cached random CPO copies
  (noise 12-35 dB SNR, MP3 32-128 kbps, resampling via 8/11/12 kHz, requantisation, and
  compositions; :func:`identify_cpo`), plus a random time shift of up to ``shift_frames`` model
  frames. Batches are made of ``groups`` (speaker, category) groups of ``group_size`` takes
  each, so the negatives are mostly other takes of the same word by the same voice - exactly
  the impostors of identification.
* cross entropy of the ``probs`` head (gives h1) on both views: the category stage trained on
  CPO copies and, with ``--extra-data``, on more voices (tools/make_espeak_digits.sh);
* quantisation: mean (1 - |tanh|)^2, pushes the hash outputs to +-1 so that the bits of eq.
  11-12 (v >= mean(v)) agree with the trained real-valued geometry;
* bit balance: mean over bits of (batch mean of the bit)^2, every bit used half of the time.

Model selection: after every epoch the model is scored on the validation speaker (never
trained on): identification top-1 of CPO copies among all validation originals (Hamming on the
h2 bits) plus clip classification accuracy of the CPO copies; the best epoch's weights are kept.

After export, tau is calibrated on the validation speaker (:func:`model_export.identify_eval.
calibrate_tau`: true-copy vs impostor distances through the runtime TFLite encoder) and stored
in ``meta.tau`` and ``meta.metrics["tau_calibration"]``; ``store.vault.Vault.create`` uses
``meta.tau`` as the vault's default tau.

Needs TensorFlow (the ``train`` extra).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from speechvault import paper
from speechvault.errors import InvalidInputError, SpeechVaultError

try:
    import keras
    import tensorflow as tf
except ImportError as exc:  # pragma: no cover
    from speechvault.errors import RuntimeMissingError

    raise RuntimeMissingError("training needs TensorFlow: pip install 'speechvault[train]'") from exc

from hashing import codes
from hashing.cpo import hard_cpo as identify_cpo
from hashing.features import FeatureSpec, input_shape as feature_input_shape
from hashing.model_meta import FSDD_LICENSE, ModelMeta
from model_export import dataset as ds
from model_export.export import export_model
from model_export.models import build_model

__all__ = ["RECIPE", "IdentifyConfig", "identify_cpo", "ViewSet", "build_views", "make_losses",
           "train_identify", "main"]

RECIPE = "identify"


@dataclasses.dataclass
class IdentifyConfig:
    """Hyper-parameters of the recipe (defaults: the values chosen by measurement, see
    docs/results/identification.md)."""

    temperature: float = 0.1
    w_ntxent: float = 1.0
    w_ce: float = 1.0
    w_quant: float = 0.1
    w_balance: float = 0.1
    groups: int = 8
    group_size: int = 8
    shift_frames: int = 2
    learning_rate: float = 1e-3
    n_aug: int = 4
    p_clean_anchor: float = 0.5

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- augmentation


# --------------------------------------------------------------------------- views


@dataclasses.dataclass
class ViewSet:
    """``X[v, u]``: view v (0 = clean, 1.. = CPO copies) of unit u (one model window of a clip).

    ``label[u]`` category index, ``item[u]`` clip index, ``group[u]`` (speaker, category) group.
    """

    X: np.ndarray            # (n_views, n_units, H, W, 1) float32
    label: np.ndarray
    item: np.ndarray
    group: np.ndarray

    @property
    def n_units(self) -> int:
        return int(self.X.shape[1])


def build_views(items: Sequence[ds.Item], classes: Sequence[str], spec: FeatureSpec, *,
                n_aug: int, seed: int, cache_dir: str | Path | None, progress=None) -> ViewSet:
    """Clean + ``n_aug`` CPO copies (cached by ``model_export.dataset.compute_windows``).
    Units are the windows of the clean view; a CPO copy with fewer windows reuses its last."""
    def prog(label):
        return (lambda d, t: progress(label, d, t)) if progress else None

    clean = ds.compute_windows(items, spec, cache_dir=cache_dir, progress=prog("clean"))
    views = [clean]
    for c in range(int(n_aug)):
        views.append(ds.compute_windows(items, spec, augment_seed=int(seed), copy_index=c,
                                        cache_dir=cache_dir, cpo_factory=identify_cpo,
                                        progress=prog(f"CPO copy {c + 1}/{n_aug}")))
    n = len(items)
    c_start = np.searchsorted(clean.item_index, np.arange(n))
    c_count = np.bincount(clean.item_index, minlength=n)
    unit_item = clean.item_index
    unit_k = np.arange(len(unit_item)) - c_start[unit_item]
    X = np.empty((len(views), len(unit_item), *clean.X.shape[1:]), np.float32)
    X[0] = clean.X
    for v, w in enumerate(views[1:], start=1):
        s = np.searchsorted(w.item_index, np.arange(n))
        cnt = np.bincount(w.item_index, minlength=n)
        k = np.minimum(unit_k, np.maximum(cnt[unit_item] - 1, 0))
        X[v] = w.X[s[unit_item] + k]
    del c_count
    labels = ds.labels_of(items, classes)
    gkey = {}
    group = np.array([gkey.setdefault((items[i].speaker or f"#{i // 50}", items[i].label), len(gkey))
                      for i in unit_item], np.int64)
    return ViewSet(X, labels[unit_item], unit_item.astype(np.int64), group)


def _shift(x: np.ndarray, k: int) -> np.ndarray:
    """Shift a (H, W, 1) window by k frames (time axis 1), filling with 0 (the pad value)."""
    if k == 0:
        return x
    out = np.zeros_like(x)
    if k > 0:
        out[:, k:] = x[:, :-k]
    else:
        out[:, :k] = x[:, -k:]
    return out


class _Sampler:
    """Batches of ``groups`` x ``group_size`` units, each group one (speaker, category)."""

    def __init__(self, vs: ViewSet, cfg: IdentifyConfig, seed: int) -> None:
        self.vs, self.cfg = vs, cfg
        self.rng = np.random.default_rng(seed)
        self.by_group = [np.flatnonzero(vs.group == g) for g in range(int(vs.group.max()) + 1)]
        self.by_group = [g for g in self.by_group if len(g) >= 2]

    def steps_per_epoch(self) -> int:
        return max(1, self.vs.n_units // (self.cfg.groups * self.cfg.group_size))

    def batch(self):
        cfg, vs, rng = self.cfg, self.vs, self.rng
        gsel = rng.choice(len(self.by_group), size=min(cfg.groups, len(self.by_group)), replace=False)
        units = np.concatenate([rng.choice(self.by_group[g], size=min(cfg.group_size, len(self.by_group[g])),
                                           replace=False) for g in gsel])
        nv = vs.X.shape[0]
        xa = np.empty((len(units), *vs.X.shape[2:]), np.float32)
        xb = np.empty_like(xa)
        for j, u in enumerate(units):
            if nv == 1:
                va = vb = 0
            else:
                va = 0 if rng.random() < cfg.p_clean_anchor else int(rng.integers(1, nv))
                vb = int(rng.integers(1, nv))
                if vb == va:
                    vb = 1 + (vb % (nv - 1)) if nv > 2 else 0
            s = cfg.shift_frames
            ka = int(rng.integers(-s, s + 1)) if s else 0
            kb = int(rng.integers(-s, s + 1)) if s else 0
            xa[j] = _shift(vs.X[va, u], ka)
            xb[j] = _shift(vs.X[vb, u], kb)
        return xa, xb, vs.label[units]


# --------------------------------------------------------------------------- losses


def make_losses(cfg: IdentifyConfig):
    """``losses(h, probs, y) -> dict`` for h (2B, K) = [view A; view B], probs (2B, C), y (B,)."""
    T = float(cfg.temperature)

    def losses(h, probs, y):
        n = tf.shape(y)[0]
        z = tf.math.l2_normalize(h, axis=1)
        sim = tf.matmul(z, z, transpose_b=True) / T
        sim = sim - 1e9 * tf.eye(2 * n)
        pos = tf.concat([tf.range(n, 2 * n), tf.range(0, n)], axis=0)
        ntx = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=pos, logits=sim))
        yy = tf.concat([y, y], axis=0)
        ce = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(yy, probs))
        quant = tf.reduce_mean(tf.square(1.0 - tf.abs(h)))
        bal = tf.reduce_mean(tf.square(tf.reduce_mean(h, axis=0)))
        total = cfg.w_ntxent * ntx + cfg.w_ce * ce + cfg.w_quant * quant + cfg.w_balance * bal
        acc = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(probs, 1, output_type=yy.dtype), yy), tf.float32))
        return {"loss": total, "ntxent": ntx, "ce": ce, "quant": quant, "balance": bal, "acc": acc}

    return losses


# --------------------------------------------------------------------------- validation


def _predict(model, X: np.ndarray, bs: int = 256) -> tuple[np.ndarray, np.ndarray]:
    hs, ps = [], []
    for i in range(0, len(X), bs):
        h, p = model(X[i : i + bs], training=False)
        hs.append(np.asarray(h))
        ps.append(np.asarray(p))
    return np.concatenate(hs), np.concatenate(ps)


def score_views(model, vs: ViewSet, K: int) -> dict[str, float]:
    """Identification + classification of the CPO views of ``vs`` (validation speaker):
    each CPO copy (first window of a clip) queries all clean clips (first windows)."""
    first = np.unique(vs.item, return_index=True)[1]
    h0, p0 = _predict(model, vs.X[0, first])
    lib = codes.pack_words(codes.hash_bits(h0))
    top1, acc, margin, agree = [], [], [], []
    y = vs.label[first]
    for v in range(1, vs.X.shape[0]):
        hq, pq = _predict(model, vs.X[v, first])
        q = codes.pack_words(codes.hash_bits(hq))
        D = codes.hamming(q[:, None, :], lib[None, :, :]) / float(K)
        true = np.diag(D).copy()
        np.fill_diagonal(D, np.inf)
        top1.append(np.mean(true < D.min(axis=1)))
        margin.append(float(np.mean(D.min(axis=1) - true)))
        acc.append(np.mean(pq.argmax(1) == y))
        agree.append(np.mean(pq.argmax(1) == p0.argmax(1)))
    out = {"id_top1": float(np.mean(top1)), "cpo_clip_accuracy": float(np.mean(acc)),
           "clean_clip_accuracy": float(np.mean(p0.argmax(1) == y)),
           "category_agreement": float(np.mean(agree)), "ber_margin": float(np.mean(margin))}
    out["score"] = out["id_top1"] + out["cpo_clip_accuracy"]
    return out


# --------------------------------------------------------------------------- training


def _speaker_split(items, split):
    if split is None:
        return [], list(items)
    return ds.split_items(items, split)


def train_identify(data_dir: str | Path, out_path: str | Path, *, K: int = paper.HASH_BITS_DEFAULT,
                   epochs: int = 12, val_split: Any = None, test_split: Any = None,
                   extra_data: Sequence[str | Path] = (), extra_holdout: Sequence[str] = (),
                   cfg: IdentifyConfig | None = None, feature_overrides: dict[str, Any] | None = None,
                   cache_dir: str | Path | None = None, seed: int = 0, threads: int | None = 2,
                   max_minutes: float | None = None, steps_per_epoch: int | None = None,
                   name: str | None = None, command: str | None = None,
                   data_name: str | None = None, license: str | None = None, export: bool = True,
                   calibrate: bool = True, log=print) -> dict[str, Any]:
    """Train the identify recipe; export TFLite + meta (recipe "identify"); calibrate tau.
    Returns a summary dict (history, metrics, paths)."""
    t_start = time.perf_counter()
    cfg = cfg or IdentifyConfig()
    if int(K) not in paper.HASH_BITS_CHOICES:
        raise InvalidInputError(f"K must be one of {paper.HASH_BITS_CHOICES}, got {K}")
    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(int(threads))
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass
    keras.utils.set_random_seed(int(seed))

    items, classes = ds.list_items(data_dir)
    test_items, rest = _speaker_split(items, test_split)
    if val_split is None:
        raise InvalidInputError("the identify recipe needs a validation split (--val-speaker)")
    val_items, train_items = ds.split_items(rest, val_split)
    extra_train: list[ds.Item] = []
    extra_held: list[ds.Item] = []
    for d in extra_data:
        e_items, e_classes = ds.list_items(d)
        if e_classes != classes:
            raise InvalidInputError(f"{d}: categories {e_classes} differ from {classes}")
        for it in e_items:
            (extra_held if it.speaker in set(extra_holdout) else extra_train).append(it)
    all_train = list(train_items) + extra_train
    spec = FeatureSpec(**{**(feature_overrides or {}), "input_mode": "native"})
    shape = tuple(feature_input_shape(spec))

    def prog(stage, d, t):
        if d == t:
            log(f"  features {stage}: {t} clips")

    t0 = time.perf_counter()
    tr = build_views(all_train, classes, spec, n_aug=cfg.n_aug, seed=seed + 7000, cache_dir=cache_dir,
                     progress=prog)
    va = build_views(val_items, classes, spec, n_aug=2, seed=seed + 7100, cache_dir=cache_dir,
                     progress=prog)
    log(f"features: {tr.n_units} training units x {tr.X.shape[0]} views, {va.n_units} validation "
        f"units ({time.perf_counter() - t0:.0f} s)")

    model = build_model("cnn", shape, int(K), len(classes), input_mode="native")
    opt = keras.optimizers.Adam(cfg.learning_rate)
    loss_fn = make_losses(cfg)

    @tf.function(reduce_retracing=True)
    def step(xa, xb, y):
        with tf.GradientTape() as tape:
            h, p = model(tf.concat([xa, xb], 0), training=True)
            L = loss_fn(h, p, y)
        grads = tape.gradient(L["loss"], model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return L

    sampler = _Sampler(tr, cfg, seed)
    spe = int(steps_per_epoch or sampler.steps_per_epoch())
    history: list[dict[str, float]] = []
    best = {"score": -1.0}
    best_weights = None
    deadline = time.perf_counter() + 60.0 * max_minutes if max_minutes else None
    t_fit = time.perf_counter()
    for ep in range(1, int(epochs) + 1):
        te = time.perf_counter()
        sums: dict[str, float] = {}
        for s in range(spe):
            xa, xb, y = sampler.batch()
            L = step(tf.constant(xa), tf.constant(xb), tf.constant(y))
            for k, v in L.items():
                sums[k] = sums.get(k, 0.0) + float(v)
        row = {"epoch": ep, **{k: v / spe for k, v in sums.items()}}
        row.update({f"val_{k}": v for k, v in score_views(model, va, int(K)).items()})
        row["seconds"] = time.perf_counter() - te
        history.append(row)
        log(f"epoch {ep}: " + " ".join(f"{k}={v:.4f}" for k, v in row.items()
                                         if k not in ("epoch", "seconds")) + f" ({row['seconds']:.0f} s)")
        if row["val_score"] > best["score"]:
            best = {"score": row["val_score"], "epoch": ep}
            best_weights = model.get_weights()
        if deadline and time.perf_counter() > deadline and ep < epochs:
            log(f"stopping after epoch {ep}: --max-minutes reached")
            break
    fit_seconds = time.perf_counter() - t_fit
    if best_weights is not None:
        model.set_weights(best_weights)

    metrics: dict[str, Any] = {"validation": score_views(model, va, int(K)), "best_epoch": best.get("epoch"),
                               "train_seconds": round(fit_seconds, 1)}
    if extra_held:
        eh = build_views(extra_held, classes, spec, n_aug=1, seed=seed + 7200, cache_dir=cache_dir)
        metrics["extra_heldout"] = score_views(model, eh, int(K))
        metrics["extra_heldout"]["speakers"] = ds.iter_speakers(extra_held)
    out = Path(out_path)
    if out.suffix != ".tflite":
        out = out / f"{name or ((data_name or Path(data_dir).name).lower() + f'-cnn-identify-k{int(K)}')}.tflite"
    model_name = name or out.stem
    training = {
        "data": data_name or str(Path(data_dir).name), "data_dir": str(data_dir),
        "license": license or (FSDD_LICENSE if "fsdd" in str(data_dir).lower() else "unknown"),
        "extra_data": [str(d) for d in extra_data],
        "extra_data_note": "espeak-ng synthesised digits (tools/make_espeak_digits.sh)" if extra_data else None,
        "extra_train_speakers": ds.iter_speakers(extra_train),
        "extra_held_out_speakers": ds.iter_speakers(extra_held),
        "command": command or "",
        "recipe": RECIPE,
        "held_out_speakers": ds.iter_speakers(test_items),
        "validation_speakers": ds.iter_speakers(val_items),
        "train_speakers": ds.iter_speakers(train_items),
        "n_train_clips": len(all_train), "n_train_units": tr.n_units, "n_views": int(tr.X.shape[0]),
        "n_val_clips": len(val_items), "n_test_clips": len(test_items),
        "epochs": len(history), "max_epochs": int(epochs), "best_epoch": best.get("epoch"),
        "steps_per_epoch": spe, "batch": f"{cfg.groups} groups x {cfg.group_size} units x 2 views",
        "optimizer": f"Adam(lr={cfg.learning_rate})", "config": cfg.to_dict(),
        "augmentation": "model_export.identify.identify_cpo + time shift", "seed": int(seed),
        "selection": "max over epochs of validation id_top1 + CPO clip accuracy",
        "history": history,
    }
    res: dict[str, Any] = {"name": model_name, "history": history, "metrics": metrics,
                           "training": training, "tflite_path": None, "meta_path": None}
    if export:
        exp = export_model(model, out, name=model_name, arch="cnn", K=int(K), class_names=classes,
                           features=spec.to_dict(), input_shape=shape, input_mode="native",
                           X_verify=va.X[0], training=training, metrics=metrics, recipe=RECIPE)
        res.update(tflite_path=str(exp.tflite_path), meta_path=str(exp.meta_path))
        if calibrate:
            from hashing.encoder import Encoder
            from model_export.identify_eval import calibrate_tau

            enc = Encoder.from_files(exp.tflite_path, exp.meta_path, num_threads=threads or 1)
            cal = calibrate_tau(enc, val_items, log=log)
            meta = exp.meta
            meta.tau = float(cal["tau"])
            meta.metrics["tau_calibration"] = cal
            meta.save(exp.meta_path)
            res["tau_calibration"] = cal
        res["metrics"] = ModelMeta.load(exp.meta_path).metrics
    res["seconds"] = round(time.perf_counter() - t_start, 1)
    return res


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m model_export.identify",
                                description="Train the 'identify' recipe (contrastive + classification "
                                            "+ quantisation + bit balance) and export it.")
    p.add_argument("data_dir")
    p.add_argument("--bits", type=int, default=paper.HASH_BITS_DEFAULT, choices=paper.HASH_BITS_CHOICES)
    p.add_argument("--holdout-speaker", action="append", default=[])
    p.add_argument("--val-speaker", action="append", default=[])
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--steps-per-epoch", type=int, default=None)
    p.add_argument("--max-minutes", type=float, default=None, help="stop after the epoch that passes this")
    p.add_argument("--extra-data", action="append", default=[], help="more folder-per-category speech "
                   "(e.g. /work/cache/sv7_espeak from tools/make_espeak_digits.sh); repeatable")
    p.add_argument("--extra-holdout-speaker", action="append", default=[],
                   help="speaker of --extra-data kept out of training (measured only)")
    p.add_argument("--fmax", type=float, default=None, help="FeatureSpec.fmax (Hz); default: sr/2")
    p.add_argument("--temperature", type=float, default=IdentifyConfig.temperature)
    p.add_argument("--w-ce", type=float, default=IdentifyConfig.w_ce)
    p.add_argument("--w-quant", type=float, default=IdentifyConfig.w_quant)
    p.add_argument("--w-balance", type=float, default=IdentifyConfig.w_balance)
    p.add_argument("--n-aug", type=int, default=IdentifyConfig.n_aug)
    p.add_argument("--groups", type=int, default=IdentifyConfig.groups)
    p.add_argument("--group-size", type=int, default=IdentifyConfig.group_size)
    p.add_argument("--lr", type=float, default=IdentifyConfig.learning_rate)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--name", default=None)
    p.add_argument("--data-name", default=None)
    p.add_argument("--license", default=None)
    p.add_argument("--no-calibrate", action="store_true")
    p.add_argument("--out", required=True, help="output folder or .tflite path")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    argv_list = list(sys.argv[1:] if argv is None else argv)
    command = "python -m model_export.identify " + " ".join(shlex.quote(a) for a in argv_list)
    cfg = IdentifyConfig(temperature=args.temperature, w_ce=args.w_ce, w_quant=args.w_quant,
                         w_balance=args.w_balance, n_aug=args.n_aug, groups=args.groups,
                         group_size=args.group_size, learning_rate=args.lr)
    fo = {"fmax": args.fmax} if args.fmax else {}
    try:
        res = train_identify(
            args.data_dir, args.out, K=args.bits, epochs=args.epochs,
            val_split={"speakers": args.val_speaker} if args.val_speaker else None,
            test_split={"speakers": args.holdout_speaker} if args.holdout_speaker else None,
            extra_data=args.extra_data, extra_holdout=args.extra_holdout_speaker, cfg=cfg,
            feature_overrides=fo, cache_dir=args.cache_dir or ds.default_cache_dir(), seed=args.seed,
            threads=args.threads, max_minutes=args.max_minutes, steps_per_epoch=args.steps_per_epoch,
            name=args.name, command=command, data_name=args.data_name, license=args.license,
            calibrate=not args.no_calibrate)
    except SpeechVaultError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    res.pop("history", None)
    print(json.dumps(res, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
