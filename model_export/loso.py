"""Leave-one-speaker-out evaluation of the category stage and h2 (issue 16, paper Table 1).

    python -m model_export.loso /work/shared/data/fsdd --out docs/results --epochs 6
    speechvault eval-loso --out docs/results

Each FSDD speaker is held out in turn: a model is trained on the other five (a stratified 10 %
of their clips validates: the best epoch by validation loss is kept) and judged only on the
held-out speaker, plus on espeak-ng TEST voices (``model_export.long_speech``) that no model
ever trains on. Two recipes, same architecture (CRNN, K bits, h1 || h2), same epochs:

* ``baseline`` - the shipped recipe: clean clips + 2 random paper CPO copies
  (``hashing.cpo.random_cpo``) per clip;
* ``diverse`` - clean + 2 copies through ``model_export.augment.speaker_chain`` (VTLP, pitch,
  tempo, synthetic rooms, coloured noise, then the paper CPO), plus espeak-ng digits in the
  FIT voices (clean + 1 chained copy), plus SpecAugment masking per batch.

The shipped default model is judged on the same clips (it was trained on four of the speakers:
those rows are marked "seen"). Per held-out speaker:

* h1 accuracy (argmax of the mean softmax over a clip's windows);
* mAP of h2 (eq. 17-18, relevant = same digit): the speaker's clips query the speaker's other
  clips (Table 1 layout for the K trained);
* recall / precision of h2 at tau (eq. 19-21) for CPO copies (-3 dB, +3 dB, MP3, R.Q) of the
  speaker's clips against every FSDD clip and every espeak TEST clip; tau calibrated per model
  on CPO copies of its validation clips (``evaluate.best_tau``), never on the test queries;
* the share of those queries ``auto`` sends to traversal (no recording of the query's h1 within
  tau: the rule of ``store.vault``), and the share whose h1 differs from the stored original's
  (with the shipped fingerprint code, whose precision at tau is 1.0, this is the fallback share).

Everything runs on windows computed once (``hashing.features.model_windows``); a model's
outputs come from Keras (the export check guarantees the TFLite bytes give the same bits), the
default's from its TFLite file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from model_export.loso_variants import (Variant, band_normalise_bank, learning_rate, optimizer_text,
                                        soft_batches)
from model_export.test_time_warp import warped_h1, warped_posteriors
from speechvault.errors import InvalidInputError

__all__ = ["Fold", "loso_folds", "split_fold", "RECIPES", "PAPER_TABLE1_MAP", "run_loso", "main"]

RECIPES = ("baseline", "diverse")
#: Paper Table 1 mAP, CRNN, by K (the paper's own data set).
PAPER_TABLE1_MAP = {64: 0.9216, 128: 0.9336, 256: 0.9489, 384: 0.9556, 512: 0.9502}
TEST_CPOS = ("-3dB", "+3dB", "MP3", "R.Q")


@dataclasses.dataclass(frozen=True)
class Fold:
    held_out: str
    train_speakers: tuple[str, ...]


def loso_folds(speakers: Sequence[str]) -> list[Fold]:
    """One fold per speaker: it is held out, all others train."""
    sp = sorted(set(speakers))
    if len(sp) < 2:
        raise InvalidInputError("leave-one-speaker-out needs at least two speakers")
    return [Fold(s, tuple(o for o in sp if o != s)) for s in sp]


def split_fold(speakers: Sequence[str], labels: Sequence[int], held_out: str,
               val_fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, validation, test) clip indices of a fold: test = every clip of ``held_out``;
    validation = a stratified ``val_fraction`` of each digit among the other speakers' clips;
    train = the rest. A held-out clip can never reach train or validation."""
    spk = np.asarray(speakers)
    lab = np.asarray(labels)
    if held_out not in set(spk.tolist()):
        raise InvalidInputError(f"unknown speaker {held_out!r}")
    test = np.flatnonzero(spk == held_out)
    rest = np.flatnonzero(spk != held_out)
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(lab[rest]):
        group = rest[lab[rest] == c]
        n = max(1, int(round(val_fraction * len(group))))
        val.extend(rng.permutation(group)[:n].tolist())
    val = np.sort(np.array(val, dtype=np.int64))
    train = np.setdiff1d(rest, val)
    return train, val, test


# ----------------------------------------------------------------------------- windows


@dataclasses.dataclass
class Bank:
    """Model windows of many clips: X (n_windows, H, W, 1) float16 and each window's clip."""

    X: np.ndarray
    owner: np.ndarray
    n: int

    def select(self, clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(windows, clip position in ``clips``) of the given clips."""
        pos = np.full(self.n, -1, np.int64)
        pos[np.asarray(clips)] = np.arange(len(clips))
        keep = pos[self.owner] >= 0
        return self.X[keep], pos[self.owner[keep]]


def make_bank(signals: Sequence[np.ndarray], spec, sr: int, op: Callable | None = None,
              cache: Path | None = None, log=print, label: str = "") -> Bank:
    """Windows of ``signals`` (after ``op(i, y, sr)`` when given); cached as .npz by ``cache``."""
    from hashing.features import model_windows

    if cache is not None and cache.is_file():
        z = np.load(cache)
        return Bank(z["X"], z["owner"], int(z["n"]))
    t0 = time.perf_counter()
    xs, owner = [], []
    for i, y in enumerate(signals):
        if op is not None:
            y = op(i, y, sr)
        w = model_windows(np.asarray(y, np.float32), spec)
        xs.append(w.astype(np.float16))
        owner.append(np.full(len(w), i, np.int64))
    bank = Bank(np.concatenate(xs), np.concatenate(owner), len(signals))
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + ".tmp.npz")
        np.savez(tmp, X=bank.X, owner=bank.owner, n=bank.n)
        tmp.replace(cache)
    log(f"  windows {label}: {bank.n} clips, {len(bank.X)} windows ({time.perf_counter() - t0:.0f} s)")
    return bank


def _seeded(factory, seed: int, copy: int):
    """op(i, y, sr) applying ``factory(rng)`` with rng = default_rng([seed, copy, i])."""
    def op(i, y, sr):
        return np.asarray(factory(np.random.default_rng([seed, copy, i]))(y, sr), np.float32)
    return op


def _fixed_cpo(name: str):
    from hashing.cpo import PAPER_TEST_CPOS

    cpo = PAPER_TEST_CPOS[name]
    return lambda i, y, sr: np.asarray(cpo(y, sr), np.float32)


@dataclasses.dataclass
class Corpus:
    """Every window bank a LOSO run needs, computed once."""

    labels: np.ndarray            # FSDD clip digit
    speakers: np.ndarray          # FSDD clip speaker
    clean: Bank                   # FSDD clean
    cpo: dict[str, Bank]          # FSDD test-CPO copies (queries)
    baseline_aug: list[Bank]      # FSDD random_cpo copies
    diverse_aug: list[Bank]       # FSDD speaker_chain copies
    esp_fit: Bank                 # espeak FIT digits, clean
    esp_fit_aug: Bank             # espeak FIT digits, one speaker_chain copy
    esp_fit_labels: np.ndarray
    esp_test: Bank                # espeak TEST digits, clean
    esp_test_cpo: dict[str, Bank]
    esp_test_labels: np.ndarray
    esp_test_voices: list[str]
    esp_fit_voices: list[str]
    esp_extra: Bank | None = None         # espeak EXTRA FIT voices, clean (Variant.extra_takes)
    esp_extra_aug: Bank | None = None     # ... one speaker_chain copy
    esp_extra_labels: np.ndarray | None = None


def build_corpus(data_dir: Path, spec, cache_dir: Path, *, seed: int = 0, fit_takes: int = 6,
                 test_takes: int = 3, extra_takes: int = 0, log=print) -> Corpus:
    """Every bank of a LOSO run (cached in ``cache_dir``). ``extra_takes`` > 0 adds that many
    takes per digit in each of ``espeak_digits.ESPEAK_EXTRA_FIT_VOICES`` (clean + 1 chained
    copy), which the diverse recipe then trains on too."""
    from hashing.audio import load_audio
    from hashing.cpo import random_cpo
    from model_export import dataset as ds
    from model_export.augment import speaker_chain
    from model_export.espeak_digits import ESPEAK_EXTRA_FIT_VOICES, espeak_digit_clips
    from model_export.long_speech import (ESPEAK_FIT_VOICES, ESPEAK_PITCH, ESPEAK_SPEED_WPM,
                                          ESPEAK_TEST_VOICES)

    sr = int(spec.sample_rate)
    items, classes = ds.list_items(data_dir)
    if classes != [str(d) for d in range(10)]:
        raise InvalidInputError(f"{data_dir}: expected the digit folders 0-9, found {classes}")
    labels = ds.labels_of(items, classes)
    speakers = np.array([it.speaker or "" for it in items])
    t0 = time.perf_counter()
    signals = [load_audio(it.path, sr) for it in items]
    log(f"  decoded {len(signals)} FSDD clips ({time.perf_counter() - t0:.0f} s)")
    c = cache_dir
    tag = f"s{seed}"
    clean = make_bank(signals, spec, sr, None, c / "fsdd-clean.npz", log, "FSDD clean")
    cpo = {n: make_bank(signals, spec, sr, _fixed_cpo(n), c / f"fsdd-cpo-{n}.npz", log, f"FSDD {n}")
           for n in TEST_CPOS}
    base = [make_bank(signals, spec, sr, _seeded(random_cpo, seed, k), c / f"fsdd-randcpo-{tag}-{k}.npz",
                      log, f"FSDD random CPO copy {k + 1}") for k in range(2)]
    chain = speaker_chain()
    div = [make_bank(signals, spec, sr, _seeded(chain, seed, k), c / f"fsdd-chain-{tag}-{k}.npz",
                     log, f"FSDD speaker chain copy {k + 1}") for k in range(2)]

    def esp(voices, takes, s, srange, prange, name):
        path = c / f"espeak-{name}.npz"
        if path.is_file():
            z = np.load(path, allow_pickle=False)
            return list(z["audio_lens"]), z["labels"], z["flat"]
        t1 = time.perf_counter()
        clips = espeak_digit_clips(voices, takes, seed=s, speed_range=srange, pitch_range=prange)
        lens = np.array([len(x.audio) for x in clips])
        flat = np.concatenate([x.audio for x in clips]).astype(np.float32)
        labs = np.array([x.digit for x in clips], np.int64)
        c.mkdir(parents=True, exist_ok=True)
        np.savez(path, audio_lens=lens, labels=labs, flat=flat)
        log(f"  espeak-ng {name}: {len(clips)} clips ({time.perf_counter() - t1:.0f} s)")
        return list(lens), labs, flat

    def split(lens, flat):
        return np.split(flat, np.cumsum(lens)[:-1])

    fl, f_lab, f_flat = esp(ESPEAK_FIT_VOICES, fit_takes, 1000 + seed, (110, 200), (10, 90), f"fit-{fit_takes}-{tag}")
    fit_sig = split(fl, f_flat)
    tl, t_lab, t_flat = esp(ESPEAK_TEST_VOICES, test_takes, 2000, ESPEAK_SPEED_WPM, ESPEAK_PITCH, f"test-{test_takes}")
    test_sig = split(tl, t_flat)
    esp_fit = make_bank(fit_sig, spec, sr, None, c / f"esp-fit-{fit_takes}-{tag}.npz", log, "espeak FIT")
    esp_fit_aug = make_bank(fit_sig, spec, sr, _seeded(chain, seed + 1, 0),
                            c / f"esp-fit-{fit_takes}-{tag}-chain.npz", log, "espeak FIT chain")
    esp_test = make_bank(test_sig, spec, sr, None, c / f"esp-test-{test_takes}.npz", log, "espeak TEST")
    esp_test_cpo = {n: make_bank(test_sig, spec, sr, _fixed_cpo(n), c / f"esp-test-{test_takes}-{n}.npz",
                                 log, f"espeak TEST {n}") for n in TEST_CPOS}
    corpus = Corpus(labels, speakers, clean, cpo, base, div, esp_fit, esp_fit_aug, f_lab, esp_test,
                    esp_test_cpo, t_lab, list(ESPEAK_TEST_VOICES), list(ESPEAK_FIT_VOICES))
    if extra_takes > 0:
        name = f"extra-{extra_takes}-{tag}"
        xl, x_lab, x_flat = esp(ESPEAK_EXTRA_FIT_VOICES, extra_takes, 3000 + seed, (110, 200), (10, 90), name)
        x_sig = split(xl, x_flat)
        corpus = dataclasses.replace(
            corpus, esp_extra=make_bank(x_sig, spec, sr, None, c / f"esp-{name}.npz", log, "espeak EXTRA"),
            esp_extra_aug=make_bank(x_sig, spec, sr, _seeded(chain, seed + 2, 0), c / f"esp-{name}-chain.npz",
                                    log, "espeak EXTRA chain"),
            esp_extra_labels=x_lab, esp_fit_voices=corpus.esp_fit_voices + list(ESPEAK_EXTRA_FIT_VOICES))
    return corpus


def band_normalised(corpus: Corpus, mode: str) -> Corpus:
    """The corpus with every window bank per-band normalised (``FeatureSpec.band_norm``)."""
    if mode == "none":
        return corpus

    def nb(b: Bank) -> Bank:
        return Bank(band_normalise_bank(b.X, mode), b.owner, b.n)

    return dataclasses.replace(
        corpus, clean=nb(corpus.clean), cpo={k: nb(v) for k, v in corpus.cpo.items()},
        baseline_aug=[nb(b) for b in corpus.baseline_aug], diverse_aug=[nb(b) for b in corpus.diverse_aug],
        esp_fit=nb(corpus.esp_fit), esp_fit_aug=nb(corpus.esp_fit_aug), esp_test=nb(corpus.esp_test),
        esp_test_cpo={k: nb(v) for k, v in corpus.esp_test_cpo.items()})


# ----------------------------------------------------------------------------- training


def fsdd_banks(corpus: Corpus, recipe: str) -> list[Bank]:
    """The FSDD banks a recipe trains on: the clean windows and the recipe's two copies."""
    return [corpus.clean] + (corpus.baseline_aug if recipe == "baseline" else corpus.diverse_aug)


def training_set(corpus: Corpus, recipe: str, train_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(windows, labels) a recipe trains on for the given FSDD clips."""
    if recipe not in RECIPES:
        raise InvalidInputError(f"unknown recipe {recipe!r}; choose {', '.join(RECIPES)}")
    xs, ys = [], []
    for b in fsdd_banks(corpus, recipe):
        X, pos = b.select(train_idx)
        xs.append(X)
        ys.append(corpus.labels[train_idx][pos])
    if recipe == "diverse":
        for b in (corpus.esp_fit, corpus.esp_fit_aug):
            xs.append(b.X)
            ys.append(corpus.esp_fit_labels[b.owner])
        for b in (corpus.esp_extra, corpus.esp_extra_aug):
            if b is not None:
                xs.append(b.X)
                ys.append(corpus.esp_extra_labels[b.owner])
    return np.concatenate(xs), np.concatenate(ys)


def fit(X: np.ndarray, y: np.ndarray, Xv: np.ndarray, yv: np.ndarray, *, K: int, epochs: int,
        seed: int, spec_augment: bool, variant: Variant = Variant(), spec=None, patience: int = 0,
        watch: Callable[[Any], dict] | None = None, average_last: int = 0,
        speakers: np.ndarray | None = None, log=print):
    """Train the CRNN (classification, Adam 1e-3, batch 32); keep the epoch with the lowest
    validation loss. ``variant``: label smoothing / mixup (soft targets), Mel warp (of windows
    of ``spec``, default the native FeatureSpec). ``patience``: stop
    after that many epochs without a lower validation loss (0: run every epoch). ``watch``:
    figures of the model after each epoch, recorded in the history only (a diagnostic of how
    the held-out speaker moves with epochs; never used to choose the epoch). Returns (model with
    outputs [hash, probs], history); with ``average_last`` = N > 0 also the mean of the weights
    after each of the last N epochs run (stochastic weight averaging, Izmailov et al. 2018: one
    epoch's h1 on a new speaker swings by several points, an average of epochs less; batch-norm
    statistics are averaged alike, not recomputed). ``speakers``: each training window's
    speaker index (``speaker_adversarial.training_speakers``), needed when
    ``variant.speaker_adversarial`` > 0: the network then trains through
    ``speaker_adversarial.adversarial_trainer`` (the exported model is unchanged)."""
    import keras

    from model_export.models import build_model
    from model_export.train import _Batches

    keras.utils.set_random_seed(int(seed))
    model = build_model("crnn", X.shape[1:], int(K), 10, input_mode="native")
    clf = keras.Model(model.inputs, model.outputs[1])
    loss = ("categorical_crossentropy" if variant.soft else "sparse_categorical_crossentropy")
    metric = "categorical_accuracy" if variant.soft else "accuracy"
    n_spk = 0
    if variant.speaker_adversarial > 0:
        if speakers is None or len(speakers) != len(y):
            raise InvalidInputError("speaker-adversarial training needs one speaker per window")
        n_spk = int(speakers.max()) + 1
    tr = _Batches(X, y + 10 * speakers if n_spk else y, 32, 1, True, seed, spec_augment=spec_augment)
    clf.compile(optimizer=keras.optimizers.Adam(learning_rate(variant, int(epochs) * len(tr))),
                loss=loss, metrics=[metric])
    trainer, grl = clf, None
    if n_spk:
        from model_export.models import PROBS_LAYER
        from model_export.speaker_adversarial import SPEAKER_HEAD, adversarial_trainer

        trainer, grl = adversarial_trainer(model, n_spk)
        cce = "categorical_crossentropy"
        trainer.compile(optimizer=keras.optimizers.Adam(learning_rate(variant, int(epochs) * len(tr))),
                        loss={PROBS_LAYER: cce, SPEAKER_HEAD: cce},
                        metrics={PROBS_LAYER: ["categorical_accuracy"],
                                 SPEAKER_HEAD: ["categorical_accuracy"]})
    va = _Batches(Xv, yv, 128, 1, False, seed)
    if variant.per_batch:
        tr = soft_batches(tr, 10, variant, True, spec, n_speakers=n_spk)
    if variant.soft:
        va = soft_batches(va, 10, Variant(), False)
    best, best_w, best_ep, hist, last = np.inf, None, 0, [], []
    for ep in range(int(epochs)):
        t0 = time.perf_counter()
        if grl is not None:
            from model_export.speaker_adversarial import reversal_weight

            grl.weight.assign(reversal_weight(variant.speaker_adversarial, ep / int(epochs)))
        h = trainer.fit(tr, epochs=1, verbose=0).history
        vl, vacc = clf.evaluate(va, verbose=0)
        hist.append({"epoch": ep + 1, "loss": float(h["loss"][0]),
                     "accuracy": float(_history_value(h, metric, "probs")),
                     "val_loss": float(vl), "val_accuracy": float(vacc),
                     "learning_rate": float(np.asarray(trainer.optimizer.learning_rate)),
                     "seconds": round(time.perf_counter() - t0, 1)})
        if grl is not None:  # the adversary's accuracy: near chance when the code hides who speaks
            hist[-1]["speaker_accuracy"] = float(_history_value(h, "accuracy", "speaker"))
            hist[-1]["reversal_weight"] = float(np.asarray(grl.weight))
        seen = watch(model) if watch is not None else {}
        hist[-1].update(seen)
        log(f"    epoch {ep + 1}: loss {h['loss'][0]:.3f} acc {hist[-1]['accuracy']:.3f} val_loss {vl:.3f} val_acc {vacc:.3f} "
            + "".join(f"{k} {v:.3f} " for k, v in seen.items()) + f"({hist[-1]['seconds']:.0f} s)")
        if average_last:
            last = (last + [model.get_weights()])[-int(average_last):]
        if vl < best:
            best, best_w, best_ep = vl, model.get_weights(), ep
        elif patience and ep - best_ep >= patience:
            log(f"    stopped: no lower validation loss for {patience} epochs")
            break
        tr.on_epoch_end()
    model.set_weights(best_w)
    if average_last:
        return model, hist, [np.mean(ws, axis=0) for ws in zip(*last)]
    return model, hist


def _history_value(h: dict, metric: str, output: str) -> float:
    """The last value of ``metric`` in a Keras history: its plain name (one output), else the
    ``<output>_...`` key of a model with several outputs."""
    if metric in h:
        return h[metric][-1]
    key = next(k for k in h if k.startswith(output) and k.endswith("accuracy"))
    return h[key][-1]


# ----------------------------------------------------------------------------- judging


def _keras_outputs(model) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    def run(X):
        hs, ps = [], []
        for i in range(0, len(X), 256):
            h, p = model(np.asarray(X[i : i + 256], np.float32), training=False)
            hs.append(np.asarray(h, np.float32)), ps.append(np.asarray(p, np.float32))
        return np.concatenate(hs), np.concatenate(ps)
    return run


def _tflite_outputs(tflite: Path) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    from hashing.encoder import Encoder

    enc = Encoder.from_files(tflite, num_threads=1)
    return lambda X: enc.run_windows(np.asarray(X, np.float32))


def _encoded(run, X: np.ndarray, owner: np.ndarray, n: int):
    """An ``evaluate.EncodedSet`` (h2 as the code) of windows grouped by clip."""
    from hashing import codes
    from model_export.evaluate import EncodedSet

    h, p = run(X)
    order = np.argsort(owner, kind="stable")
    h, p, owner = h[order], p[order], owner[order]
    words = codes.pack_words(codes.hash_bits(h))
    sums = np.zeros((n, p.shape[1]))
    np.add.at(sums, owner, p)
    return EncodedSet(words, owner, sums.argmax(1).astype(np.int64), p.argmax(1), np.zeros(n), n, words)


def _concat(a, b):
    from model_export.evaluate import EncodedSet

    return EncodedSet(np.concatenate([a.words, b.words]), np.concatenate([a.owner, b.owner + a.n]),
                      np.concatenate([a.category, b.category]), np.concatenate([a.win_category, b.win_category]),
                      np.zeros(a.n + b.n), a.n + b.n, np.concatenate([a.hash_words, b.hash_words]))


def _retrieval(run, K, qbanks: dict, q_clips: np.ndarray, q_offset: int, lib, tau: float) -> dict:
    """Recall/precision at tau over the test CPOs; auto's traversal share; h1 consistency."""
    from model_export.evaluate import match_stats, recording_distances

    Ds, Ts, Cs = [], [], []
    for name in TEST_CPOS:
        Xq, posq = qbanks[name].select(q_clips)
        qc = _encoded(run, Xq, posq, len(q_clips))
        Ds.append(recording_distances(qc, lib, K))
        Ts.append(q_clips + q_offset)
        Cs.append(qc.category)
    D, T, C = np.concatenate(Ds), np.concatenate(Ts), np.concatenate(Cs)
    st = match_stats(D, T, tau, C, lib.category)
    same_cat = lib.category[None, :] == C[:, None]
    fallback = ~((D < tau) & same_cat).any(axis=1)
    return {"tau": tau, "n_queries": int(len(T)),
            "two_stage": _short(st["two_stage"]), "auto": _short(st["auto"]),
            "traversal": _short(st["traversal"]),
            "auto_traversal_share": float(fallback.mean()),
            "h1_differs_from_original": float(np.mean(C != lib.category[T]))}


def _short(s: dict) -> dict:
    return {k: s[k] for k in ("recall", "precision", "f1", "top1")}


def _map(enc, labels, K) -> float:
    from model_export.evaluate import mean_ap, recording_distances

    D = recording_distances(enc.h2(), enc.h2(), K)
    return mean_ap(D, labels, labels, np.arange(enc.n))


def judge(run, K: int, corpus: Corpus, test_idx: np.ndarray, cal_idx: np.ndarray,
          tau: float | None = None) -> dict[str, Any]:
    """Every figure of one model on one held-out speaker (and on the espeak TEST voices)."""
    from model_export.evaluate import best_tau, recording_distances

    lib_f = _encoded(run, corpus.clean.X, corpus.clean.owner, corpus.clean.n)
    lib_e = _encoded(run, corpus.esp_test.X, corpus.esp_test.owner, corpus.esp_test.n)
    lib = _concat(lib_f, lib_e)
    out: dict[str, Any] = {}
    if tau is None:  # calibrate on CPO copies of the calibration clips (never the test clips)
        Ds, Ts, Cs = [], [], []
        for name in TEST_CPOS:
            Xq, posq = corpus.cpo[name].select(cal_idx)
            qc = _encoded(run, Xq, posq, len(cal_idx))
            Ds.append(recording_distances(qc, lib, K)), Ts.append(cal_idx), Cs.append(qc.category)
        cal = best_tau(np.concatenate(Ds), np.concatenate(Ts), np.concatenate(Cs), lib.category)
        tau = float(cal["tau"])
    out["tau"] = tau
    y = corpus.labels
    spk = _subset_enc(lib_f, test_idx)
    Xt, post = corpus.clean.select(test_idx)  # h1 read from warped windows too (a measurement)
    warped = warped_h1(warped_posteriors(run, Xt, post, len(test_idx)))
    out["fsdd"] = {
        "n_clips": int(len(test_idx)),
        "h1_accuracy": float(np.mean(lib_f.category[test_idx] == y[test_idx])),
        "h1_accuracy_warps": {k: float(np.mean(v == y[test_idx])) for k, v in warped.items()},
        "mAP_h2": _map(spk, y[test_idx], K),
        "retrieval": _retrieval(run, K, corpus.cpo, test_idx, 0, lib, tau),
    }
    ey = corpus.esp_test_labels
    out["espeak_test"] = {
        "n_clips": int(lib_e.n),
        "h1_accuracy": float(np.mean(lib_e.category == ey)),
        "mAP_h2": _map(lib_e, ey, K),
        "retrieval": _retrieval(run, K, corpus.esp_test_cpo, np.arange(lib_e.n), lib_f.n, lib, tau),
    }
    return out


def held_out_watch(corpus: Corpus, test_idx: np.ndarray, K: int) -> Callable[[Any], dict]:
    """``fit``'s per-epoch diagnostic: h1 accuracy and mAP of h2 on the held-out speaker's
    clean clips (the ``judge`` figures without retrieval). Recorded to show how many epochs
    the held-out speaker would want; choosing the epoch by it would be testing on the test set."""
    X, pos = corpus.clean.select(test_idx)
    y = corpus.labels[test_idx]

    def watch(model) -> dict:
        enc = _encoded(_keras_outputs(model), X, pos, len(test_idx))
        return {"held_out_h1": float(np.mean(enc.category == y)), "held_out_mAP": _map(enc, y, K)}

    return watch


def _subset_enc(s, idx):
    from model_export.evaluate import _subset

    return _subset(s, np.asarray(idx))


# ----------------------------------------------------------------------------- report


def _fig(rows: list[dict], path: tuple[str, ...]) -> list[float]:
    vals = []
    for r in rows:
        v: Any = r
        for k in path:
            v = v[k]
        vals.append(float(v))
    return vals


FIGURES = (("h1 acc", ("fsdd", "h1_accuracy")), ("mAP@K h2", ("fsdd", "mAP_h2")),
           ("R@tau 2-stage", ("fsdd", "retrieval", "two_stage", "recall")),
           ("P@tau 2-stage", ("fsdd", "retrieval", "two_stage", "precision")),
           ("R@tau auto", ("fsdd", "retrieval", "auto", "recall")),
           ("auto -> traversal", ("fsdd", "retrieval", "auto_traversal_share")),
           ("h1 != original's", ("fsdd", "retrieval", "h1_differs_from_original")),
           ("espeak h1", ("espeak_test", "h1_accuracy")), ("espeak mAP", ("espeak_test", "mAP_h2")),
           ("espeak auto -> trav.", ("espeak_test", "retrieval", "auto_traversal_share")),
           ("espeak h1 != orig.", ("espeak_test", "retrieval", "h1_differs_from_original")))


def summarize(rows: list[dict]) -> dict[str, dict[str, float]]:
    out = {}
    for name, path in FIGURES:
        v = _fig(rows, path)
        out[name] = {"mean": float(np.mean(v)), "std": float(np.std(v)), "min": float(np.min(v)),
                     "max": float(np.max(v)), "n": len(v)}
    return out


def to_markdown(res: dict[str, Any]) -> str:
    K = res["K"]
    L = ["# Leave-one-speaker-out: the category stage (h1) and h2 on voices never heard (issue 16)",
         "", f"Command: `{res['command']}`", "",
         f"Machine load while it ran (`/proc/loadavg` at start / end): {res['load_start']} / "
         f"{res.get('load_end', '(running)')}; wall time {res.get('seconds', 0):.0f} s.", "",
         f"Protocol ({'reduced: ' if res['epochs'] < 20 else ''}{res['epochs']} epochs per model, "
         "best epoch by validation loss; the same epochs for every recipe): each FSDD speaker is "
         "held out in turn, the model trains on the other five (a stratified 10 % of their clips "
         "validates). Figures are on the held-out speaker's 500 clips; espeak TEST = "
         f"{res['espeak_test_clips']} clips of the digits in {len(res['espeak_test_voices'])} espeak-ng "
         "voices no model trains on. mAP: each clip queries the same speaker's other clips (h2, "
         "relevant = same digit). R/P at tau: CPO copies (-3 dB, +3 dB, MP3, R.Q) of the speaker's "
         "clips against all 3,000 FSDD + the espeak TEST clips, h2 code, tau calibrated per model "
         "on CPO copies of its validation clips. auto -> traversal: queries with no recording of "
         "their h1 within tau (`store.vault` falls back to traversal). h1 != original's: the query "
         "copy's h1 differs from the stored original's (the fallback share under the shipped "
         "fingerprint code, whose precision at tau is 1.0).", ""]
    L += ["Recipes (same CRNN, K, optimiser, batch 32, epochs): **baseline** = clean + 2 random "
          "paper CPO copies per clip (the shipped recipe); **diverse** = clean + 2 copies through "
          "`model_export.augment.speaker_chain` (VTLP alpha 0.85-1.18; pitch +-3 semitones p=0.5; "
          "tempo 0.8-1.25 p=0.5; synthetic room RT60 0.1-0.6 s p=0.4; white/pink/brown noise "
          "10-30 dB p=0.3; then the paper CPO) + espeak-ng digits in the "
          f"{len(res.get('espeak_fit_voices', []))} FIT voices ({res.get('espeak_fit_clips', 0)} clips, "
          "random speed 110-200 wpm and pitch 10-90, clean + 1 chained copy) + SpecAugment (one "
          "Mel band <= 16 and one frame span <= 4 masked per window). **default** = the shipped "
          "model, judged on the same clips (its mean is over the speakers it never trained on).", ""]
    L += [f"## Mean ± spread over held-out speakers (K = {K})", "",
          "| model | folds | " + " | ".join(n for n, _ in FIGURES) + " |",
          "|---|---|" + "---|" * len(FIGURES)]
    for label, rows in res["summary_rows"]:
        s = summarize(rows)
        L.append(f"| {label} | {len(rows)} | " + " | ".join(
            f"{s[n]['mean']:.3f} ± {s[n]['std']:.3f}" for n, _ in FIGURES) + " |")
    L += ["", "± is the standard deviation over held-out speakers (population).", "",
          "## Table 1 layout: mAP of h2 on held-out speakers (CRNN)", "",
          "| K | paper (own data) | " + " | ".join(lbl for lbl, _ in res["summary_rows"]) + " |",
          "|---|---|" + "---|" * len(res["summary_rows"]),
          f"| {K} | {PAPER_TABLE1_MAP.get(K, float('nan')):.4f} | " + " | ".join(
              f"{np.mean(_fig(rows, ('fsdd', 'mAP_h2'))):.4f}" for _, rows in res["summary_rows"]) + " |",
          "", "Other K (64, 128, 256, 512) were not trained: one LOSO run per K did not fit the "
          "time budget of this machine.", "", "## Per held-out speaker", "",
          "| held out | model | h1 acc | mAP h2 | tau | R 2-stage | P 2-stage | R auto | auto -> trav. "
          "| h1 != orig. | espeak h1 | espeak mAP | espeak auto -> trav. |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        f, e = r["fsdd"], r["espeak_test"]
        L.append(f"| {r['held_out']}{' (seen)' if r.get('seen') else ''} | {r['model']} | "
                 f"{f['h1_accuracy']:.3f} | {f['mAP_h2']:.3f} | {r['tau']:.3f} | "
                 f"{f['retrieval']['two_stage']['recall']:.4f} | {f['retrieval']['two_stage']['precision']:.4f} | "
                 f"{f['retrieval']['auto']['recall']:.4f} | {f['retrieval']['auto_traversal_share']:.4f} | "
                 f"{f['retrieval']['h1_differs_from_original']:.4f} | {e['h1_accuracy']:.3f} | {e['mAP_h2']:.3f} | "
                 f"{e['retrieval']['auto_traversal_share']:.4f} |")
    L += ["", "(seen) = the shipped default was trained on that speaker: not a held-out figure.", ""]
    if res.get("notes"):
        L += ["## Notes", ""] + [f"- {n}" for n in res["notes"]] + [""]
    return "\n".join(L)


def _write(res: dict, out: Path) -> None:
    rows_by = {}
    for r in res["rows"]:
        if r["model"] == "default" and r.get("seen"):
            continue
        rows_by.setdefault(r["model"], []).append(r)
    res["summary_rows"] = [(k, v) for k, v in rows_by.items()]
    out.mkdir(parents=True, exist_ok=True)
    (out / "loso.json").write_text(json.dumps({k: v for k, v in res.items() if k != "summary_rows"}
                                              | {"summary": {k: summarize(v) for k, v in rows_by.items()}},
                                              indent=1))
    (out / "loso.md").write_text(to_markdown(res))


def default_model_path() -> Path:
    """The shipped default model (``hashing/models/default.tflite``)."""
    from model_export.ship import MODELS_DIR

    return MODELS_DIR / "default.tflite"


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def run_loso(data_dir: str | Path, out: str | Path, *, epochs: int = 6, K: int = 384,
             recipes: Sequence[str] = RECIPES, speakers: Sequence[str] | None = None,
             cache_dir: str | Path | None = None, seed: int = 0, threads: int = 2,
             default_model: str | Path | None = None, export_dir: str | Path | None = None,
             export_fold: str | None = None, resume: bool = False, command: str = "",
             variant: Variant = Variant(), train_seed: int | None = None, patience: int = 0,
             watch_held_out: bool = False, average_last: int = 0, log=print) -> dict[str, Any]:
    """Run LOSO for the recipes (and judge the shipped default); write loso.md / loso.json into
    ``out`` after every fold. ``export_fold``: the diverse model of that fold is exported
    (TFLite + JSON, tau calibrated) into ``export_dir``. ``resume``: keep the rows of an earlier
    ``out/loso.json`` (same epochs and K) and run only the missing (speaker, model) pairs.
    ``variant``: one lever on top of each recipe (``model_export.loso_variants``); its rows are
    named after it (``diverse+cmvn``). ``train_seed``: the seed of weight initialisation and
    batch order only (default ``seed``; splits and augmented copies stay those of ``seed``), to
    measure how much one fold's figures move between trainings alone. ``patience``: early
    stopping on the validation loss (``fit``). ``watch_held_out``: record the held-out speaker's
    h1 and mAP after every epoch in the histories (diagnostic only, see ``held_out_watch``).
    ``average_last``: also judge each training with the mean weights of its last N epochs
    (``fit``), as a second row named ``<label>+swaN``."""
    import tensorflow as tf

    from hashing.features import FeatureSpec
    from model_export import dataset as ds

    for r in recipes:
        if r not in RECIPES:
            raise InvalidInputError(f"unknown recipe {r!r}; choose {', '.join(RECIPES)}")
    if default_model is not None and variant.band_norm != "none":
        raise InvalidInputError("judge the default model in a run without band normalisation "
                                "(its input has none)")
    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass
    t_start = time.perf_counter()
    out = Path(out)
    cache = Path(cache_dir) if cache_dir else ds.default_cache_dir() / "loso"
    spec = FeatureSpec(input_mode="native")
    res: dict[str, Any] = {"command": command, "load_start": _load(), "epochs": int(epochs), "K": int(K),
                           "recipes": list(recipes), "rows": [], "notes": [], "histories": {}}
    prev = out / "loso.json"
    if resume and prev.is_file():  # keep the rows of an earlier run with the same settings
        old = json.loads(prev.read_text())
        if (old.get("epochs"), old.get("K")) != (int(epochs), int(K)):
            raise InvalidInputError(f"{prev} was made with other epochs/K; resume needs the same")
        for key in ("rows", "notes", "histories"):
            res[key] = old.get(key, res[key])
        res["load_start"] = old.get("load_start", res["load_start"])
        res["command"] = old.get("command", "") + (f" ; resumed: {command}" if command else "")
        t_start -= float(old.get("seconds", 0.0))
    done = {(r["held_out"], r["model"]) for r in res["rows"]}
    corpus = band_normalised(build_corpus(Path(data_dir), spec, cache, seed=seed,
                                          extra_takes=variant.extra_takes, log=log), variant.band_norm)
    spec = spec.replace(band_norm=variant.band_norm)
    res["espeak_test_voices"] = corpus.esp_test_voices
    res["espeak_fit_voices"] = corpus.esp_fit_voices
    res["espeak_test_clips"] = int(corpus.esp_test.n)
    res["espeak_fit_clips"] = int(corpus.esp_fit.n + (corpus.esp_extra.n if corpus.esp_extra is not None else 0))
    folds = loso_folds(corpus.speakers.tolist())
    if speakers:  # in the order given (a run cut short by the clock keeps the first ones)
        by = {f.held_out: f for f in folds}
        unknown = [s for s in speakers if s not in by]
        if unknown:
            raise InvalidInputError(f"unknown speaker(s) {', '.join(unknown)}")
        folds = [by[s] for s in dict.fromkeys(speakers)]
    if default_model is not None:
        from hashing.model_meta import ModelMeta

        dpath = Path(default_model)
        meta = ModelMeta.load(dpath.with_suffix(".json"))
        seen = set(meta.training.get("train_speakers") or [])
        cal = set(meta.training.get("validation_speakers") or [])
        run = _tflite_outputs(dpath)
        cal_idx = np.flatnonzero(np.isin(corpus.speakers, sorted(cal)))
        for f in folds:
            if (f.held_out, "default") in done:
                continue
            t0 = time.perf_counter()
            test_idx = np.flatnonzero(corpus.speakers == f.held_out)
            ci = cal_idx if f.held_out not in cal else np.flatnonzero(np.isin(corpus.speakers, sorted(seen)))[::8]
            row = judge(run, meta.K, corpus, test_idx, ci)
            res["rows"].append({"held_out": f.held_out, "model": "default", "seen": f.held_out in seen,
                                "model_name": meta.name, **row})
            log(f"  default on {f.held_out}: h1 {row['fsdd']['h1_accuracy']:.3f} mAP {row['fsdd']['mAP_h2']:.3f} "
                f"({time.perf_counter() - t0:.0f} s)")
        res["notes"] = [n for n in res["notes"] if not n.startswith("default = ")]
        res["notes"].append(f"default = hashing/models/default.tflite ({meta.name}), trained on "
                            f"{', '.join(sorted(seen))}, validated on {', '.join(sorted(cal))}; its tau "
                            "calibrated the same way on its validation speaker's CPO copies.")
        _write(res, out)
    for f in folds:
        train_idx, val_idx, test_idx = split_fold(corpus.speakers, corpus.labels, f.held_out, seed=seed)
        assert not np.isin(corpus.speakers[np.concatenate([train_idx, val_idx])], [f.held_out]).any()
        Xv, pv = corpus.clean.select(val_idx)
        yv = corpus.labels[val_idx][pv]
        for recipe in recipes:
            label = variant.label(recipe) + ("" if train_seed is None else f"@seed{train_seed}")
            if (f.held_out, label) in done:
                continue
            t0 = time.perf_counter()
            X, y = training_set(corpus, recipe, train_idx)
            spk = None
            if variant.speaker_adversarial > 0:
                from model_export.speaker_adversarial import training_speakers

                spk, names = training_speakers(corpus, recipe, train_idx)
                log(f"  speaker-adversarial: {len(names)} training speakers and voices")
            log(f"fold {f.held_out} / {label}: {len(X)} training windows")
            fitted = fit(X, y, Xv, yv, K=K, epochs=epochs, seed=seed if train_seed is None else train_seed,
                         spec_augment=(recipe == "diverse"), variant=variant, spec=spec, patience=patience,
                         watch=held_out_watch(corpus, test_idx, K) if watch_held_out else None,
                         average_last=average_last, speakers=spk, log=log)
            model, hist = fitted[:2]
            t_fit = time.perf_counter() - t0
            row = judge(_keras_outputs(model), K, corpus, test_idx, val_idx)
            res["rows"].append({"held_out": f.held_out, "model": label, "recipe": recipe,
                                "variant": dataclasses.asdict(variant), "train_windows": int(len(X)),
                                "fit_seconds": round(t_fit, 1), **row})
            res["histories"][f"{f.held_out}/{label}"] = hist
            hw = row["fsdd"]["h1_accuracy_warps"]
            log(f"  {label} on {f.held_out}: h1 {row['fsdd']['h1_accuracy']:.3f} (warps: mean "
                f"{hw['mean']:.3f}, most confident {hw['confident']:.3f}) mAP {row['fsdd']['mAP_h2']:.3f} "
                f"espeak h1 {row['espeak_test']['h1_accuracy']:.3f} ({time.perf_counter() - t0:.0f} s)")
            if average_last:  # the same training, judged with its last epochs' mean weights
                best_weights = model.get_weights()
                model.set_weights(fitted[2])
                swa = judge(_keras_outputs(model), K, corpus, test_idx, val_idx)
                model.set_weights(best_weights)
                res["rows"].append({"held_out": f.held_out, "model": f"{label}+swa{average_last}",
                                    "recipe": recipe, "variant": dataclasses.asdict(variant),
                                    "average_last": int(average_last), "train_windows": int(len(X)),
                                    "fit_seconds": round(t_fit, 1), **swa})
                log(f"  {label}+swa{average_last} on {f.held_out}: h1 {swa['fsdd']['h1_accuracy']:.3f} "
                    f"mAP {swa['fsdd']['mAP_h2']:.3f} espeak h1 {swa['espeak_test']['h1_accuracy']:.3f}")
            if recipe == "diverse" and export_fold == f.held_out and export_dir is not None:
                try:  # a failed export must not cost the LOSO figures
                    _export(model, Path(export_dir), K, spec, f, train_idx, val_idx, corpus, Xv, row,
                            epochs, hist, command, variant)
                    log(f"  exported the {f.held_out} fold's diverse model to {export_dir}")
                except Exception as exc:  # noqa: BLE001 - reported, the run goes on
                    res["notes"].append(f"export of the {f.held_out} fold failed: {exc}")
                    log(f"  export failed: {exc}")
            res["load_end"] = _load()
            res["seconds"] = time.perf_counter() - t_start
            _write(res, out)
    return res


def _export(model, export_dir: Path, K: int, spec, fold: Fold, train_idx, val_idx, corpus: Corpus,
            Xv, row: dict, epochs: int, hist: list, command: str, variant: Variant = Variant()) -> None:
    from hashing.model_meta import FSDD_LICENSE
    from model_export.export import export_model

    name = f"fsdd-crnn-k{K}-" + variant.label("diverse").replace("+", "-")
    best = int(np.argmin([h["val_loss"] for h in hist])) + 1
    training = {
        "data": "fsdd", "license": FSDD_LICENSE + "; espeak-ng synthesis (GPL-3 program, output free)",
        "command": command, "held_out_speakers": [fold.held_out],
        "train_speakers": list(fold.train_speakers), "validation_speakers": [],
        "val_split": {"stratified_fraction": 0.1, "of": "train speakers"},
        "espeak_voices": corpus.esp_fit_voices, "n_train_clips": int(len(train_idx)),
        "n_espeak_clips": int(corpus.esp_fit.n + (corpus.esp_extra.n if corpus.esp_extra is not None else 0)), "epochs": int(epochs), "best_epoch": best,
        "batch_size": 32, "optimizer": optimizer_text(variant),
        "augmentation": "clean + 2 x model_export.augment.speaker_chain (VTLP, pitch, tempo, "
                        "synthetic RIR, coloured noise, then hashing.cpo.random_cpo); espeak-ng FIT "
                        "digits clean + 1 chained copy; SpecAugment (dataset.spec_augment)",
        "recipe": "diverse", "variant": dataclasses.asdict(variant), "input_mode": "native",
    }
    metrics = {"test": {"clip_accuracy": row["fsdd"]["h1_accuracy"], "n_clips": row["fsdd"]["n_clips"]},
               "loso_fold": row}
    export_model(model, export_dir / f"{name}.tflite", name=name, arch="crnn", K=K,
                 class_names=[str(d) for d in range(10)], features=spec.to_dict(),
                 input_shape=list(Xv.shape[1:]), input_mode="native",
                 X_verify=np.asarray(Xv, np.float32), training=training, metrics=metrics,
                 tau=row["tau"], recipe="diverse")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model_export.loso", description=__doc__.split("\n")[0])
    p.add_argument("data_dir")
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--bits", type=int, default=384)
    p.add_argument("--recipes", default=",".join(RECIPES))
    p.add_argument("--speakers", default=None, help="held-out speakers (default: all six)")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--default-model", default=None, help="also judge this .tflite (e.g. the default)")
    p.add_argument("--export-fold", default=None, help="export the diverse model of this fold")
    p.add_argument("--export-dir", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="keep the rows of OUT/loso.json")
    p.add_argument("--band-norm", default="none", help="per-Mel-band normalisation: none, cmn, cmvn")
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--mixup", type=float, default=0.0, help="mixup Beta(a, a) alpha (0: off)")
    p.add_argument("--mel-warp", type=float, default=0.0, help="VTLP of each training window's "
                   "Mel axis, alpha drawn per batch in 1 -+ this (0: off)")
    p.add_argument("--extra-voices", type=int, default=0, help="takes per digit in each of the "
                   "espeak EXTRA FIT voices added to the diverse recipe (0: off)")
    p.add_argument("--swa", type=int, default=0, help="also judge the mean weights of the last "
                   "N epochs of each training (a second row, <label>+swaN; 0: off)")
    p.add_argument("--lr-decay", default="none", help="learning-rate schedule over the epoch budget: "
                   "none (Adam 1e-3 throughout) or cosine (to 2 %% of it)")
    p.add_argument("--train-seed", type=int, default=None, help="seed of the training only "
                   "(initialisation, batch order); default --seed")
    p.add_argument("--patience", type=int, default=0,
                   help="stop after this many epochs without a lower validation loss (0: off)")
    p.add_argument("--speaker-adversarial", type=float, default=0.0, help="weight of a speaker "
                   "classifier's reversed gradient on the code layer (speaker-invariant training; "
                   "0: off)")
    p.add_argument("--watch-held-out", action="store_true", help="record the held-out speaker's "
                   "h1 and mAP after every epoch (diagnostic; never chooses the epoch)")
    a = p.parse_args(argv)
    cmd = "python -m model_export.loso " + " ".join(shlex.quote(x) for x in (argv or sys.argv[1:]))
    try:
        variant = Variant(a.band_norm, a.label_smoothing, a.mixup, a.mel_warp, a.extra_voices, a.lr_decay,
                          a.speaker_adversarial)
        run_loso(a.data_dir, a.out, epochs=a.epochs, K=a.bits, recipes=a.recipes.split(","),
                 speakers=a.speakers.split(",") if a.speakers else None, cache_dir=a.cache_dir,
                 seed=a.seed, threads=a.threads, default_model=a.default_model,
                 export_dir=a.export_dir, export_fold=a.export_fold, resume=a.resume, command=cmd,
                 variant=variant, train_seed=a.train_seed, patience=a.patience,
                 watch_held_out=a.watch_held_out, average_last=a.swa, log=lambda s: print(s, flush=True))
    except InvalidInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
