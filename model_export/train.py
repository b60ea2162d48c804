"""Train a deep hashing coding model (CNN or CRNN, paper Sec. IV-C) on a folder-per-category
speech dataset and export it to TFLite + ``ModelMeta`` JSON.

    python -m model_export.train DATA_DIR --arch cnn --bits 384 --input-mode native \\
        --epochs 40 --holdout-speaker theo --val-speaker nicolas --out hashing/models/

Library use (what ``speechvault train`` calls)::

    from model_export.train import train
    result = train("data/fsdd", "out/", arch="cnn", K=384, input_mode="native", epochs=40,
                   val_split={"speakers": ["nicolas"]}, test_split={"speakers": ["theo"]},
                   progress=my_progress)       # my_progress.on_epoch_end(epoch, logs)

Recipe ("paper"): end-to-end classification training with cross-entropy on the softmax output;
the tanh hash layer is the layer before it (eq. 9-10). Adam, early stopping on the validation
loss (best weights restored). CPO augmentation (``hashing.cpo.random_cpo``: gain, noise,
resampling, requantization, MP3 - the paper's training CPOs) as ``n_aug`` cached random copies
per training clip, all used every epoch. Per-epoch curves (accuracy and loss for train,
validation and - when a held-out test split is given - test, the paper's Fig. 8/9) are written
as CSV and PNG. The held-out test split never influences training or model selection.

Importable only with the ``train`` extra (TensorFlow, matplotlib).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from speechvault import paper
from speechvault.errors import InvalidInputError, SpeechVaultError

try:
    import keras
    import tensorflow as tf
except ImportError as exc:  # pragma: no cover
    from speechvault.errors import RuntimeMissingError

    raise RuntimeMissingError("training needs TensorFlow: pip install 'speechvault[train]'") from exc

from hashing.features import FeatureSpec, input_shape as feature_input_shape
from hashing.model_meta import FSDD_LICENSE, ModelMeta
from model_export import dataset as ds
from model_export.export import ExportResult, export_model
from model_export.models import ARCHS, INPUT_MODES, build_model

__all__ = ["TrainProgress", "TrainResult", "train", "main", "DEFAULT_EPOCHS"]

DEFAULT_EPOCHS = 40
CURVE_FIELDS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "test_loss",
                "test_accuracy", "seconds")


@runtime_checkable
class TrainProgress(Protocol):
    """Progress hook. Only ``on_epoch_end`` is required; the others are called when present:

    * ``on_stage(stage: str, done: int, total: int)`` - feature extraction / export steps;
    * ``on_train_begin(epochs: int, steps_per_epoch: int)``;
    * ``on_batch_end(step: int, logs: dict)``;
    * ``on_epoch_end(epoch: int, logs: dict)`` - epoch is 1-based; logs has loss, accuracy,
      val_loss, val_accuracy, (test_loss, test_accuracy), seconds.
    """

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None: ...


@dataclasses.dataclass
class TrainResult:
    name: str
    arch: str
    K: int
    input_mode: str
    class_names: list[str]
    spec: FeatureSpec
    history: list[dict[str, float]]
    best_epoch: int
    epochs_run: int
    metrics: dict[str, Any]
    tflite_path: Path | None
    meta_path: Path | None
    meta: ModelMeta | None
    curves_csv: Path
    curves_png: Path | None
    seconds: float
    model: Any = dataclasses.field(repr=False, default=None)
    export: ExportResult | None = dataclasses.field(repr=False, default=None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "arch": self.arch, "K": self.K, "input_mode": self.input_mode,
            "class_names": self.class_names, "best_epoch": self.best_epoch,
            "epochs_run": self.epochs_run, "metrics": self.metrics,
            "tflite_path": str(self.tflite_path) if self.tflite_path else None,
            "meta_path": str(self.meta_path) if self.meta_path else None,
            "curves_csv": str(self.curves_csv),
            "curves_png": str(self.curves_png) if self.curves_png else None,
            "seconds": self.seconds,
        }


class _Batches(keras.utils.PyDataset):
    """Mini-batches of (possibly float16, single-channel) cached windows as float32."""

    def __init__(self, X: np.ndarray, y: np.ndarray, batch_size: int, channels: int,
                 shuffle: bool, seed: int, spec_augment: bool = False) -> None:
        super().__init__()
        self.X, self.y, self.bs, self.ch, self.shuffle = X, y, int(batch_size), channels, shuffle
        self.spec_augment = spec_augment
        self.rng = np.random.default_rng(seed)
        self.order = np.arange(len(X))
        if shuffle:
            self.rng.shuffle(self.order)

    def __len__(self) -> int:
        return int(np.ceil(len(self.order) / self.bs))

    def __getitem__(self, i: int):
        sel = np.sort(self.order[i * self.bs : (i + 1) * self.bs])
        xb = ds.expand_channels(self.X[sel], self.ch)
        if self.spec_augment:
            xb = ds.spec_augment(np.array(xb, dtype=np.float32, copy=True), self.rng)
        return xb, self.y[sel]

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self.rng.shuffle(self.order)


class _EpochHooks(keras.callbacks.Callback):
    """Adds test metrics and timing to the logs, keeps the history, calls the progress hook."""

    def __init__(self, test_data, progress, history: list[dict[str, float]]) -> None:
        super().__init__()
        self.test_data = test_data
        self.progress = progress
        self.history = history
        self.t0 = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        fn = getattr(self.progress, "on_batch_end", None)
        if fn is not None:
            fn(int(batch) + 1, {k: float(v) for k, v in (logs or {}).items()})

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        if self.test_data is not None:
            loss, acc = self.model.evaluate(self.test_data, verbose=0)
            logs["test_loss"], logs["test_accuracy"] = float(loss), float(acc)
        row = {"epoch": int(epoch) + 1}
        for k in CURVE_FIELDS[1:-1]:
            if k in logs:
                row[k] = float(logs[k])
        row["seconds"] = time.perf_counter() - self.t0
        self.history.append(row)
        if self.progress is not None:
            self.progress.on_epoch_end(int(epoch) + 1, {k: v for k, v in row.items() if k != "epoch"})


def _stage(progress, stage: str, done: int, total: int) -> None:
    fn = getattr(progress, "on_stage", None)
    if fn is not None:
        fn(stage, done, total)


def write_curves(history: Sequence[dict[str, float]], csv_path: Path, png_path: Path | None,
                 title: str) -> Path | None:
    """Training curves as CSV (always) and PNG (when matplotlib is available)."""
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(CURVE_FIELDS), extrasaction="ignore")
        w.writeheader()
        for row in history:
            w.writerow({k: (f"{row[k]:.6g}" if isinstance(row.get(k), float) else row.get(k, ""))
                        for k in CURVE_FIELDS})
    if png_path is None:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:  # pragma: no cover
        return None
    ep = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("accuracy", "loss")):
        for prefix, style in (("", "-"), ("val_", "--"), ("test_", ":")):
            key = prefix + metric
            vals = [r.get(key) for r in history]
            if any(v is not None for v in vals):
                ax.plot(ep, [np.nan if v is None else v for v in vals], style, marker=".",
                        label={"": "train", "val_": "validation", "test_": "test (held out)"}[prefix])
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return png_path


def _default_val(items: list[ds.Item], seed: int, fraction: float = 0.1) -> tuple[list[ds.Item], list[ds.Item]]:
    """Stratified deterministic validation pick: ``fraction`` of each category."""
    rng = np.random.default_rng(seed)
    val, rest = [], []
    by_label: dict[str, list[ds.Item]] = {}
    for it in items:
        by_label.setdefault(it.label, []).append(it)
    for lab, group in by_label.items():
        order = rng.permutation(len(group))
        n_val = max(1, int(round(fraction * len(group)))) if len(group) > 1 else 0
        chosen = set(order[:n_val].tolist())
        for i, it in enumerate(group):
            (val if i in chosen else rest).append(it)
    return val, rest


def _subset(items: list[ds.Item], per_class: int | None, seed: int) -> list[ds.Item]:
    if not per_class:
        return items
    rng = np.random.default_rng(seed + 7)
    out = []
    for lab in sorted({it.label for it in items}):
        group = [it for it in items if it.label == lab]
        keep = sorted(rng.permutation(len(group))[:per_class].tolist())
        out.extend(group[i] for i in keep)
    return out


def train(data_dir: str | Path, out_dir: str | Path, *, arch: str = "cnn",
          K: int = paper.HASH_BITS_DEFAULT, input_mode: str = "native",
          epochs: int = DEFAULT_EPOCHS, val_split: Any = None, test_split: Any = None,
          seed: int = 0, augment: bool = True, n_aug: int = 2, batch_size: int = 32,
          learning_rate: float = 1e-3, patience: int = 6, max_train_per_class: int | None = None,
          feature_overrides: dict[str, Any] | None = None, cache_dir: str | Path | None = None,
          threads: int | None = 2, name: str | None = None, progress: TrainProgress | None = None,
          command: str | None = None, data_name: str | None = None, license: str | None = None,
          export: bool = True, report_dir: str | Path | None = None,
          cpo_factory=None, speed_perturb: tuple[float, float] | None = None,
          spec_augment: bool = False, reduce_lr: int | None = None, verbose: int = 0) -> TrainResult:
    """Train, evaluate on the held-out split, export (TFLite + JSON) and write curves.

    ``val_split``: validation for early stopping (a split spec of ``model_export.dataset``;
    None: a stratified 10 % of the training clips). ``test_split``: held out completely;
    reported only. ``out_dir``: a folder (the model is ``<name>.tflite`` in it) or a path
    ending in ``.tflite``. Curves go to ``report_dir`` (default: next to the model).

    Recipe "paper": ``augment`` with the paper's training CPOs only. Two optional extras (ours,
    recipe "paper+aug" in the metadata; the architecture is unchanged): ``speed_perturb=(lo, hi)``
    puts a random speed change before each augmented copy's CPO (speaker variation), and
    ``spec_augment`` masks one Mel band and one frame span per training window per step.
    ``reduce_lr=N`` halves the learning rate after N epochs without a better validation loss
    (the paper gives no schedule; None: constant).
    """
    t_start = time.perf_counter()
    if arch not in ARCHS:
        raise InvalidInputError(f"unknown architecture {arch!r}; choose {' or '.join(ARCHS)}")
    if input_mode not in INPUT_MODES:
        raise InvalidInputError(f"unknown input mode {input_mode!r}; choose native or paper")
    if int(K) not in paper.HASH_BITS_CHOICES:
        raise InvalidInputError(f"K must be one of {', '.join(map(str, paper.HASH_BITS_CHOICES))}, "
                                f"got {K}")
    if int(epochs) < 1:
        raise InvalidInputError("epochs must be at least 1")
    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(int(threads))
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # already initialised in this process
            pass
    keras.utils.set_random_seed(int(seed))

    items, classes = ds.list_items(data_dir)
    test_items: list[ds.Item] = []
    rest = items
    if test_split is not None:
        test_items, rest = ds.split_items(items, test_split)
    if val_split is not None:
        val_items, train_items = ds.split_items(rest, val_split)
    else:
        val_items, train_items = _default_val(rest, seed)
    train_items = _subset(train_items, max_train_per_class, seed)
    if not train_items or not val_items:
        raise InvalidInputError("the splits leave no training or no validation clips")
    missing = sorted(set(classes) - {it.label for it in train_items})
    if missing:
        raise InvalidInputError(f"no training clips for categories {', '.join(missing)}")

    spec = FeatureSpec(**{**(feature_overrides or {}), "input_mode": input_mode})
    shape = tuple(feature_input_shape(spec))
    channels = shape[-1]
    paper_mode = input_mode == "paper"
    store = dict(store_dtype="float16" if paper_mode else "float32", single_channel=paper_mode)
    cache = Path(cache_dir) if cache_dir is not None else None

    aug_name = None
    if speed_perturb is not None:
        if cpo_factory is not None:
            raise InvalidInputError("give cpo_factory or speed_perturb, not both")
        cpo_factory = ds.speed_then_cpo(tuple(speed_perturb))
        aug_name = f"speed{speed_perturb[0]:g}-{speed_perturb[1]:g}+random_cpo"
    elif cpo_factory is not None:
        aug_name = getattr(cpo_factory, "__name__", "custom") + f"@{id(cpo_factory):x}"
    recipe = "paper+aug" if (speed_perturb is not None or spec_augment) else "paper"

    def windows(part: list[ds.Item], label: str, aug_seed=None, copy=0) -> ds.WindowSet:
        return ds.compute_windows(part, spec, augment_seed=aug_seed, copy_index=copy, cache_dir=cache,
                                  progress=lambda d, t: _stage(progress, label, d, t),
                                  cpo_factory=cpo_factory, aug_name=aug_name, **store)

    y_all = {"train": ds.labels_of(train_items, classes), "val": ds.labels_of(val_items, classes),
             "test": ds.labels_of(test_items, classes)}
    tr = [windows(train_items, "features: train")]
    if augment:
        for c in range(int(n_aug)):
            tr.append(windows(train_items, f"features: train CPO copy {c + 1}/{n_aug}", seed, c))
    Xtr = np.concatenate([w.X for w in tr])
    ytr = np.concatenate([y_all["train"][w.item_index] for w in tr])
    va = windows(val_items, "features: validation")
    Xva, yva = va.X, y_all["val"][va.item_index]
    te = windows(test_items, "features: test") if test_items else None

    model = build_model(arch, shape, int(K), len(classes), input_mode=input_mode)
    clf = keras.Model(model.inputs, model.outputs[1], name=model.name + "_clf")
    clf.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy",
                metrics=["accuracy"])
    train_data = _Batches(Xtr, ytr, batch_size, channels, True, seed, spec_augment=spec_augment)
    val_data = _Batches(Xva, yva, 128, channels, False, seed)
    test_data = (_Batches(te.X, y_all["test"][te.item_index], 128, channels, False, seed)
                 if te is not None and len(te) else None)
    history: list[dict[str, float]] = []
    hooks = _EpochHooks(test_data, progress, history)
    stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=int(patience),
                                            restore_best_weights=True)
    callbacks = [hooks, stopper]
    if reduce_lr:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5,
                                                           patience=int(reduce_lr), min_lr=1e-5))
    fn = getattr(progress, "on_train_begin", None)
    if fn is not None:
        fn(int(epochs), len(train_data))
    t_fit = time.perf_counter()
    clf.fit(train_data, validation_data=val_data, epochs=int(epochs), callbacks=callbacks,
            verbose=verbose)
    fit_seconds = time.perf_counter() - t_fit
    best_epoch = int(np.argmin([h.get("val_loss", np.inf) for h in history])) + 1 if history else 0

    def acc_of(wset: ds.WindowSet, y_items: np.ndarray) -> dict[str, float]:
        probs = clf.predict(_Batches(wset.X, y_items[wset.item_index], 128, channels, False, 0),
                            verbose=0)
        pred = probs.argmax(1)
        y_win = y_items[wset.item_index]
        first = np.unique(wset.item_index, return_index=True)[1]
        return {"window_accuracy": float(np.mean(pred == y_win)),
                "clip_accuracy": float(np.mean(pred[first] == y_win[first])),
                "n_clips": int(len(first)), "n_windows": int(len(y_win))}

    metrics: dict[str, Any] = {"validation": acc_of(va, y_all["val"])}
    # the cached training windows must equal what the runtime computes today
    n_chk = min(20, len(val_items))
    fresh = ds.compute_windows(val_items[:n_chk], spec, cache_dir=None, **store)
    n_w = len(fresh)
    diff = float(np.max(np.abs(fresh.X.astype(np.float32) - va.X[:n_w].astype(np.float32)))) if n_w else 0.0
    metrics["features_check"] = {"clips": n_chk, "max_abs_diff": diff}
    if diff > 1e-3:
        raise SpeechVaultError(f"cached features differ from hashing.features today (max diff {diff:.3g})")
    if te is not None and len(te):
        metrics["test"] = acc_of(te, y_all["test"])
    metrics["best_epoch"] = best_epoch
    metrics["train_seconds"] = round(fit_seconds, 1)

    auto = f"{(data_name or Path(data_dir).name).lower()}-{arch}-k{int(K)}" + ("-paper" if paper_mode else "")
    out = Path(out_dir)
    if out.suffix == ".tflite":
        tflite_path, model_name = out, name or out.stem
    else:
        model_name = name or auto
        tflite_path = out / f"{model_name}.tflite"
    rdir = Path(report_dir) if report_dir is not None else tflite_path.parent
    curves_csv = rdir / f"{model_name}.curves.csv"
    curves_png = write_curves(history, curves_csv, rdir / f"{model_name}.curves.png",
                              f"{model_name}: accuracy and loss per epoch")

    def spk(part):
        return ds.iter_speakers(part)

    training = {
        "data": data_name or str(Path(data_dir).name),
        "data_dir": str(data_dir),
        "license": license or (FSDD_LICENSE if "fsdd" in str(data_dir).lower() else "unknown"),
        "command": command or "",
        "held_out_speakers": spk(test_items),
        "validation_speakers": spk(val_items) if val_split is not None and "speakers" in (ds.parse_split(val_split) or {}) else [],
        "train_speakers": spk(train_items),
        "test_split": ds.parse_split(test_split),
        "val_split": ds.parse_split(val_split) or {"stratified_fraction": 0.1, "seed": seed},
        "n_train_clips": len(train_items), "n_val_clips": len(val_items), "n_test_clips": len(test_items),
        "n_train_windows": int(len(Xtr)),
        "epochs": len(history), "max_epochs": int(epochs), "best_epoch": best_epoch,
        "batch_size": int(batch_size), "optimizer": f"Adam(lr={learning_rate})",
        "lr_schedule": (f"ReduceLROnPlateau(val_loss, factor=0.5, patience={int(reduce_lr)})"
                        if reduce_lr else "constant"),
        "early_stopping": {"monitor": "val_loss", "patience": int(patience), "restore_best_weights": True},
        "augment": bool(augment), "n_aug": int(n_aug) if augment else 0,
        "augmentation": (("speed change %g-%g, then " % tuple(speed_perturb) if speed_perturb else "")
                         + "hashing.cpo.random_cpo (gain, noise, resample, requantize, mp3)") if augment else None,
        "spec_augment": {"max_freq": 16, "max_time": 4} if spec_augment else None,
        "recipe": recipe,
        "max_train_per_class": max_train_per_class, "seed": int(seed), "input_mode": input_mode,
    }
    exp = None
    if export:
        _stage(progress, "export", 0, 1)
        exp = export_model(model, tflite_path, name=model_name, arch=arch, K=int(K), class_names=classes,
                           features=spec.to_dict(), input_shape=shape, input_mode=input_mode,
                           X_verify=ds.expand_channels(Xva, channels), training=training, metrics=metrics,
                           recipe=recipe)
        _stage(progress, "export", 1, 1)
        metrics = exp.meta.metrics
    return TrainResult(
        name=model_name, arch=arch, K=int(K), input_mode=input_mode, class_names=classes, spec=spec,
        history=history, best_epoch=best_epoch, epochs_run=len(history), metrics=metrics,
        tflite_path=exp.tflite_path if exp else None, meta_path=exp.meta_path if exp else None,
        meta=exp.meta if exp else None, curves_csv=curves_csv, curves_png=curves_png,
        seconds=time.perf_counter() - t_start, model=model, export=exp)


# --------------------------------------------------------------------------- CLI


class _PrintProgress:
    def __init__(self) -> None:
        self._last_stage = None

    def on_stage(self, stage: str, done: int, total: int) -> None:
        if done == total or (done % 500 == 0):
            print(f"  {stage}: {done}/{total}", flush=True)

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        parts = [f"{k}={v:.4f}" for k, v in logs.items() if k != "seconds"]
        print(f"epoch {epoch}: " + " ".join(parts) + f" ({logs.get('seconds', 0):.0f} s)", flush=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m model_export.train",
                                description="Train and export a speechvault deep hashing model.")
    p.add_argument("data_dir", help="folder with one sub-folder of audio files per category")
    p.add_argument("--arch", choices=ARCHS, default="cnn")
    p.add_argument("--bits", type=int, default=paper.HASH_BITS_DEFAULT, choices=paper.HASH_BITS_CHOICES,
                   help=f"hash length K (paper: {', '.join(map(str, paper.HASH_BITS_CHOICES))})")
    p.add_argument("--input-mode", choices=INPUT_MODES, default="native")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    p.add_argument("--holdout-speaker", action="append", default=[],
                   help="speaker held out of training and validation (test); repeatable")
    p.add_argument("--val-speaker", action="append", default=[],
                   help="speaker used for validation / early stopping; repeatable")
    p.add_argument("--val-pattern", default=None,
                   help="validation by file name: a glob, or 're:<regex>' on category/name")
    p.add_argument("--test-pattern", default=None, help="held-out test split by file name")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--n-aug", type=int, default=2, help="random CPO copies per training clip")
    p.add_argument("--speed-perturb", type=float, nargs=2, metavar=("LO", "HI"), default=None,
                   help="random speed change before each augmented copy's CPO (ours, e.g. 0.85 1.15)")
    p.add_argument("--spec-augment", action="store_true", help="mask a Mel band and a frame span "
                   "per training window (ours)")
    p.add_argument("--reduce-lr", type=int, default=None, metavar="N",
                   help="halve the learning rate after N epochs without a better val loss")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--patience", type=int, default=6)
    p.add_argument("--max-train-per-class", type=int, default=None,
                   help="train on a subset (e.g. for the slow paper input mode)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache-dir", default=None, help="feature cache (default $SPEECHVAULT_CACHE "
                   "or ~/.cache/speechvault)")
    p.add_argument("--name", default=None)
    p.add_argument("--data-name", default=None, help="dataset name for the metadata")
    p.add_argument("--license", default=None, help="licence credit of the data")
    p.add_argument("--report-dir", default=None, help="where curves go (default: next to the model)")
    p.add_argument("--out", required=True, help="output folder or .tflite path")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    argv_list = list(sys.argv[1:] if argv is None else argv)
    command = "python -m model_export.train " + " ".join(shlex.quote(a) for a in argv_list)
    if args.holdout_speaker and args.test_pattern:
        print("error: give --holdout-speaker or --test-pattern, not both", file=sys.stderr)
        return 2
    if args.val_speaker and args.val_pattern:
        print("error: give --val-speaker or --val-pattern, not both", file=sys.stderr)
        return 2
    test_split = ({"speakers": args.holdout_speaker} if args.holdout_speaker
                  else (args.test_pattern or None))
    val_split = {"speakers": args.val_speaker} if args.val_speaker else (args.val_pattern or None)
    try:
        res = train(args.data_dir, args.out, arch=args.arch, K=args.bits, input_mode=args.input_mode,
                    epochs=args.epochs, val_split=val_split, test_split=test_split, seed=args.seed,
                    augment=not args.no_augment, n_aug=args.n_aug, batch_size=args.batch_size,
                    learning_rate=args.lr, patience=args.patience,
                    max_train_per_class=args.max_train_per_class,
                    cache_dir=args.cache_dir or ds.default_cache_dir(), threads=args.threads,
                    name=args.name, progress=_PrintProgress(), command=command,
                    data_name=args.data_name, license=args.license, report_dir=args.report_dir,
                    speed_perturb=tuple(args.speed_perturb) if args.speed_perturb else None,
                    spec_augment=args.spec_augment, reduce_lr=args.reduce_lr)
    except SpeechVaultError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(res.to_dict(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
