"""Evaluate an exported coding model on held-out speakers (paper Sec. V, eq. 16-21).

    python -m model_export.evaluate hashing/models/default.tflite /work/shared/data/fsdd \\
        --out docs/results/model_default

Everything runs through the runtime ``hashing.encoder.Encoder`` (the TFLite model that ships),
never Keras. The held-out speakers are read from the model metadata
(``training.held_out_speakers``; override with ``--query-speaker``).

Reported:

* classification accuracy of the held-out clips (h1 = argmax of the mean softmax over a clip's
  windows; also per window);
* mAP (eq. 17-18) with "same category" as relevant: every held-out clip queries a library
  (``--map-library``: the clips of all speakers not used for training - held-out + validation -
  or all clips), the query itself removed; ranked by the normalized Hamming distance of h2
  (eq. 16; a recording's distance is the minimum over window pairs), ties in library order.
  Also with two-stage ranking (same h1 first) and with CPO copies as queries (the paper's way:
  the original stays in the library);
* recall and precision at tau (eq. 19-21) when each query is a CPO copy (-3 dB, +3 dB, MP3,
  R.Q) of a held-out clip and the only relevant item is its original among all stored
  recordings (>= 1000, including the other takes of the same digit by the same speaker):
  retrieved = library recordings with D < tau (two-stage: among those with the query's h1;
  traversal: all). TP = original retrieved, FP = any other recording retrieved, FN = original
  missed. Also the top-1 hit rate (the nearest recording is the original) and the BER
  statistics behind Fig. 10;
* encode time per clip (decode excluded: features + inference, from ``WindowCodes.timings``).

numpy + the runtime only; no TensorFlow.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hashing import codes
from hashing.audio import load_audio
from hashing.cpo import PAPER_TEST_CPOS
from hashing.encoder import Encoder
from model_export import dataset as ds

__all__ = ["EncodedSet", "encode_items", "average_precision", "evaluate", "main"]


@dataclasses.dataclass
class EncodedSet:
    """Codes of many recordings: all windows stacked, with the owner of each window."""

    words: np.ndarray       # (total_windows, W) uint64: the indexed code (h2 or fingerprint)
    owner: np.ndarray       # (total_windows,) int64, non-decreasing
    category: np.ndarray    # (n_recordings,) int64: argmax of the mean probs
    win_category: np.ndarray  # (total_windows,)
    seconds: np.ndarray     # (n_recordings,) features + inference time
    n: int
    hash_words: np.ndarray | None = None  # (total_windows, W_h2) uint64: h2 (eq. 11-12)

    def h2(self) -> "EncodedSet":
        """The same recordings with h2 as the code (for mAP, eq. 17-18)."""
        if self.hash_words is None:
            return self
        return dataclasses.replace(self, words=self.hash_words)

    @property
    def starts(self) -> np.ndarray:
        return np.searchsorted(self.owner, np.arange(self.n))


def encode_items(enc: Encoder, signals: Sequence[np.ndarray]) -> EncodedSet:
    words, owner, cats, wcat, secs, hw = [], [], [], [], [], []
    for i, y in enumerate(signals):
        c = enc.encode_audio(y)
        words.append(c.words)
        hw.append(c.words if c.hash_words is None else c.hash_words)
        owner.append(np.full(c.n_windows, i, np.int64))
        cats.append(int(np.argmax(c.probs.mean(axis=0))))
        wcat.append(c.category)
        secs.append(c.timings.get("features", 0.0) + c.timings.get("inference", 0.0))
    return EncodedSet(np.concatenate(words), np.concatenate(owner), np.array(cats, np.int64),
                      np.concatenate(wcat), np.array(secs), len(signals), np.concatenate(hw))


def recording_distances(q: EncodedSet, lib: EncodedSet, K: int, chunk: int = 256) -> np.ndarray:
    """(n_queries, n_library) normalized Hamming distance, min over window pairs (eq. 16)."""
    out = np.empty((q.n, lib.n), np.float64)
    lib_starts = lib.starts
    q_starts = np.append(q.starts, len(q.owner))
    for a in range(0, q.n, chunk):
        b = min(q.n, a + chunk)
        w0, w1 = q_starts[a], q_starts[b]
        d = codes.hamming(q.words[w0:w1, None, :], lib.words[None, :, :]).astype(np.float64) / K
        d = np.minimum.reduceat(d, lib_starts, axis=1)          # min over library windows
        d = np.minimum.reduceat(d, q_starts[a:b] - w0, axis=0)   # min over query windows
        out[a:b] = d
    return out


def average_precision(rel_sorted: np.ndarray) -> float:
    """Eq. 17: AP = sum_k P(k) rel(k) / m over a ranked 0/1 relevance list (m relevant)."""
    rel = np.asarray(rel_sorted, dtype=np.float64)
    m = rel.sum()
    if m == 0:
        return 0.0
    prec = np.cumsum(rel) / np.arange(1, len(rel) + 1)
    return float((prec * rel).sum() / m)


def mean_ap(D: np.ndarray, q_labels: np.ndarray, lib_labels: np.ndarray,
            exclude: np.ndarray | None = None, q_cat: np.ndarray | None = None,
            lib_cat: np.ndarray | None = None) -> float:
    """Eq. 18. ``exclude[i]``: library index removed for query i (the query itself), or -1.
    With ``q_cat``/``lib_cat``: two-stage ranking (same predicted category first)."""
    aps = []
    for i in range(D.shape[0]):
        key = D[i].copy()
        if q_cat is not None:
            key = key + 2.0 * (lib_cat != q_cat[i])
        order = np.argsort(key, kind="stable")
        if exclude is not None and exclude[i] >= 0:
            order = order[order != exclude[i]]
        aps.append(average_precision(lib_labels[order] == q_labels[i]))
    return float(np.mean(aps))


def match_stats(D: np.ndarray, truth: np.ndarray, tau: float, q_cat: np.ndarray,
                lib_cat: np.ndarray) -> dict[str, Any]:
    """Recall, precision, F1 (eq. 19-21) at tau for two-stage, traversal and "auto" retrieval
    (two-stage, falling back to traversal when no recording of the category is within tau)."""
    out: dict[str, Any] = {}
    rows = np.arange(D.shape[0])
    d_true = D[rows, truth]
    same_cat = lib_cat[None, :] == q_cat[:, None]
    trav = np.ones_like(same_cat)
    # "auto" (store.vault): two-stage, and traversal for queries with no two-stage match
    auto = np.where(((D < tau) & same_cat).any(axis=1, keepdims=True), same_cat, trav)
    for mode, allowed in (("two_stage", same_cat), ("traversal", trav), ("auto", auto)):
        hit = (D < tau) & allowed
        tp = hit[rows, truth]
        fp = hit.sum(axis=1) - tp
        TP, FP, FN = int(tp.sum()), int(fp.sum()), int((~tp).sum())
        R = TP / (TP + FN) if TP + FN else 0.0
        P = TP / (TP + FP) if TP + FP else 0.0
        Dm = np.where(allowed, D, np.inf)
        nearest = np.argmin(Dm, axis=1)
        out[mode] = {"recall": R, "precision": P, "f1": 2 * P * R / (P + R) if P + R else 0.0,
                     "TP": TP, "FP": FP, "FN": FN,
                     "queries_with_false_matches": int((fp > 0).sum()),
                     "top1": float(np.mean(nearest == truth))}
    others = D.copy()
    others[rows, truth] = np.inf
    d_other = others.min(axis=1)
    d_other_same = np.where(same_cat, others, np.inf).min(axis=1)
    out["ber_true"] = {"mean": float(d_true.mean()), "p95": float(np.quantile(d_true, 0.95)),
                       "max": float(d_true.max())}
    out["ber_nearest_other"] = {"mean": float(d_other.mean()), "p05": float(np.quantile(d_other, 0.05)),
                                "min": float(d_other.min())}
    out["ber_nearest_other_same_category"] = {
        "mean": float(np.mean(d_other_same[np.isfinite(d_other_same)])) if np.isfinite(d_other_same).any() else None}
    return out


def best_tau(D: np.ndarray, truth: np.ndarray, q_cat: np.ndarray, lib_cat: np.ndarray) -> dict[str, float]:
    """The tau maximising two-stage F1 on these queries: the middle of the plateau of taus
    within 0.001 of the best F1 (grid step 0.005). A diagnostic / calibration, never applied to
    the queries it was chosen on."""
    grid = np.round(np.arange(0.005, 0.5, 0.005), 3)
    rows = []
    for tau in grid:
        st = match_stats(D, truth, float(tau), q_cat, lib_cat)["two_stage"]
        rows.append((float(tau), st["f1"], st["recall"], st["precision"]))
    top = max(r[1] for r in rows)
    plateau = [r for r in rows if r[1] >= top - 1e-3]
    tau, f1, rec, prec = plateau[len(plateau) // 2]
    return {"tau": tau, "f1": f1, "recall": rec, "precision": prec,
            "plateau": [plateau[0][0], plateau[-1][0]]}


def _timing_signals(sr: int, seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    f = 200 + 100 * np.sin(2 * np.pi * 0.7 * t)
    y = 0.3 * np.sin(2 * np.pi * np.cumsum(f) / sr) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return (y + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def time_encoder(enc: Encoder, repeats: int = 20) -> dict[str, float]:
    """Milliseconds to encode a 1 s clip and a 10 s recording (features + inference): the
    median and the minimum over repeats (the minimum is the least disturbed by other load)."""
    out = {}
    for secs in (1.0, 10.0):
        y = _timing_signals(enc.sample_rate, secs, 0)
        enc.encode_audio(y)
        ts = []
        for _ in range(repeats if secs < 5 else max(3, repeats // 4)):
            t0 = time.perf_counter()
            enc.encode_audio(y)
            ts.append(time.perf_counter() - t0)
        out[f"encode_{int(secs)}s_ms"] = 1000 * float(np.median(ts))
        out[f"encode_{int(secs)}s_ms_min"] = 1000 * float(np.min(ts))
    return out


def evaluate(model_path: str | Path, data_dir: str | Path, *, query_speakers: Sequence[str] | None = None,
             map_library: str = "heldout", tau: float | None = None, num_threads: int | None = 1,
             max_queries: int | None = None, cpos: Sequence[str] | None = None,
             calibrate_speakers: Sequence[str] | None = None, log=print) -> dict[str, Any]:
    enc = Encoder.from_files(model_path, num_threads=num_threads)
    meta = enc.meta
    tau = float(meta.tau if tau is None else tau)
    K = enc.K  # bits of the indexed code: h2, or the fingerprint (retrieval at tau)
    items, classes = ds.list_items(data_dir)
    if classes != meta.class_names:
        raise SystemExit(f"dataset classes {classes} != model classes {meta.class_names}")
    qs = list(query_speakers or meta.training.get("held_out_speakers") or [])
    if not qs:
        raise SystemExit("no held-out speakers: give --query-speaker")
    unused = set(qs) | set(meta.training.get("validation_speakers") or [])
    trained = set(meta.training.get("train_speakers") or []) - unused
    labels = ds.labels_of(items, classes)
    q_idx = np.array([i for i, it in enumerate(items) if it.speaker in qs])
    if max_queries:
        q_idx = q_idx[np.linspace(0, len(q_idx) - 1, max_queries).astype(int)]
    log(f"{meta.name}: {len(items)} clips, {len(q_idx)} queries from {qs}, tau={tau}")

    t0 = time.perf_counter()
    signals = [load_audio(it.path, enc.sample_rate) for it in items]
    log(f"  decoded in {time.perf_counter() - t0:.0f} s")
    t0 = time.perf_counter()
    lib = encode_items(enc, signals)
    log(f"  library encoded in {time.perf_counter() - t0:.0f} s")

    # --- classification of held-out clips
    win_in_q = np.isin(lib.owner, q_idx)
    res: dict[str, Any] = {
        "model": {"name": meta.name, "arch": meta.arch, "K": meta.K, "code": meta.code_name,
                  "code_bits": K, "C": meta.C, "tau": tau,
                  "input_mode": meta.features.get("input_mode"), "sha256": enc.sha256,
                  "tflite_bytes": len(enc.tflite_bytes)},
        "data": {"dir": str(data_dir), "n_clips": len(items), "query_speakers": qs,
                 "not_trained_speakers": sorted(unused), "train_speakers": sorted(trained),
                 "n_queries": int(len(q_idx))},
        "classification": {
            "clip_accuracy": float(np.mean(lib.category[q_idx] == labels[q_idx])),
            "window_accuracy": float(np.mean(lib.win_category[win_in_q] == labels[lib.owner[win_in_q]])),
        },
    }
    log(f"  held-out clip accuracy {res['classification']['clip_accuracy']:.4f}")

    # --- mAP, original queries against the library without the query
    if map_library == "all":
        m_idx = np.arange(len(items))
    else:
        m_idx = np.array([i for i, it in enumerate(items) if it.speaker in unused])
    sub = _subset(lib, m_idx)
    qset = _subset(lib, q_idx)
    D = recording_distances(qset.h2(), sub.h2(), meta.K)  # mAP is a property of h2
    pos = {int(g): j for j, g in enumerate(m_idx)}
    excl = np.array([pos.get(int(g), -1) for g in q_idx])
    res["map"] = {
        "library": map_library, "library_size": int(len(m_idx)), "relevant": "same category",
        "mAP_h2": mean_ap(D, labels[q_idx], labels[m_idx], excl),
        "mAP_two_stage": mean_ap(D, labels[q_idx], labels[m_idx], excl, qset.category, sub.category),
    }

    # --- CPO queries: recall/precision at tau against all stored recordings
    names = list(cpos or PAPER_TEST_CPOS)
    res["cpo"] = {}
    all_D, all_truth, all_qcat = [], [], []
    map_cpo = []
    for name in names:
        op = PAPER_TEST_CPOS[name]
        t0 = time.perf_counter()
        qc = encode_items(enc, [op(signals[i], enc.sample_rate) for i in q_idx])
        Dq = recording_distances(qc, lib, K)
        stats = match_stats(Dq, q_idx, tau, qc.category, lib.category)
        stats["clip_accuracy"] = float(np.mean(qc.category == labels[q_idx]))
        stats["category_same_as_original"] = float(np.mean(qc.category == lib.category[q_idx]))
        Dm = recording_distances(qc.h2(), sub.h2(), meta.K)
        stats["mAP_h2"] = mean_ap(Dm, labels[q_idx], labels[m_idx])
        map_cpo.append(stats["mAP_h2"])
        res["cpo"][name] = stats
        all_D.append(Dq), all_truth.append(q_idx), all_qcat.append(qc.category)
        ts = stats["two_stage"]
        log(f"  {name}: R={ts['recall']:.4f} P={ts['precision']:.4f} top1={ts['top1']:.4f} "
            f"({time.perf_counter() - t0:.0f} s)")
    Dall, Tall, Call = np.concatenate(all_D), np.concatenate(all_truth), np.concatenate(all_qcat)
    res["retrieval"] = {
        "library_size": len(items), "n_queries": int(len(Tall)), "cpos": names, "tau": tau,
        **match_stats(Dall, Tall, tau, Call, lib.category),
        "best_tau_two_stage": best_tau(Dall, Tall, Call, lib.category),
    }
    res["map"]["mAP_h2_cpo_queries"] = float(np.mean(map_cpo))

    # --- a tau calibrated on the validation speaker(s) (never on the test queries), applied
    # to the test queries: what a model-specific threshold would give.
    cal_spk = list(calibrate_speakers if calibrate_speakers is not None
                   else meta.training.get("validation_speakers") or [])
    cal_spk = [sp for sp in cal_spk if sp not in qs]
    if cal_spk:
        c_idx = np.array([i for i, it in enumerate(items) if it.speaker in cal_spk])
        if max_queries:
            c_idx = c_idx[np.linspace(0, len(c_idx) - 1, max_queries).astype(int)]
        cD, cT, cC = [], [], []
        for name in names:
            qc = encode_items(enc, [PAPER_TEST_CPOS[name](signals[i], enc.sample_rate) for i in c_idx])
            cD.append(recording_distances(qc, lib, K)), cT.append(c_idx), cC.append(qc.category)
        cal = best_tau(np.concatenate(cD), np.concatenate(cT), np.concatenate(cC), lib.category)
        t_cal = cal["tau"]
        res["calibrated_tau"] = {
            "speakers": cal_spk, "n_queries": int(len(c_idx) * len(names)), "tau": t_cal,
            "validation": cal,
            "test": match_stats(Dall, Tall, t_cal, Call, lib.category),
            "test_per_cpo": {n: match_stats(d, t, t_cal, c, lib.category)["two_stage"]
                             for n, d, t, c in zip(names, all_D, all_truth, all_qcat)},
        }
        ts = res["calibrated_tau"]["test"]["two_stage"]
        log(f"  calibrated tau {t_cal} on {cal_spk}: test R={ts['recall']:.4f} P={ts['precision']:.4f}")

    # --- time
    res["timing"] = {
        "fsdd_clip_encode_ms_mean": 1000 * float(np.mean(lib.seconds)),
        **time_encoder(enc),
        "num_threads": num_threads, "machine": platform.machine(),
        "python": platform.python_version(),
    }
    f1 = res["retrieval"]["two_stage"]["f1"]
    ms = res["timing"]["encode_1s_ms_min"]  # the least disturbed run on a shared machine
    res["retrieval_per_ms"] = {
        "encode_1s_ms": ms,
        "f1_two_stage": f1, "f1_per_ms": f1 / ms,
        "mAP_h2_per_ms": res["map"]["mAP_h2"] / ms,
    }
    if "calibrated_tau" in res:
        f1c = res["calibrated_tau"]["test"]["two_stage"]["f1"]
        res["retrieval_per_ms"].update({"f1_calibrated_tau": f1c, "f1_calibrated_tau_per_ms": f1c / ms})
    return res


def _subset(s: EncodedSet, idx: np.ndarray) -> EncodedSet:
    idx = np.asarray(idx, np.int64)
    remap = np.full(s.n, -1, np.int64)
    remap[idx] = np.arange(len(idx))
    order = np.argsort(remap[s.owner], kind="stable")
    keep = order[remap[s.owner][order] >= 0]
    return EncodedSet(s.words[keep], remap[s.owner[keep]], s.category[idx], s.win_category[keep],
                      s.seconds[idx], len(idx),
                      None if s.hash_words is None else s.hash_words[keep])


def to_markdown(res: dict[str, Any], command: str) -> str:
    m, r, c = res["model"], res["retrieval"], res["classification"]
    lines = [
        f"# Model `{m['name']}` on FSDD held-out speakers",
        "",
        f"arch {m['arch']}, input {m['input_mode']}, K = {m['K']}, C = {m['C']}, tau = {m['tau']}, "
        f"{m['tflite_bytes'] / 1e6:.2f} MB, sha256 `{m['sha256'][:16]}...`",
        "",
        f"Command: `{command}`",
        "",
        f"Queries: speakers {', '.join(res['data']['query_speakers'])} ({res['data']['n_queries']} clips); "
        f"speakers not used for training: {', '.join(res['data']['not_trained_speakers'])}; "
        f"trained on: {', '.join(res['data']['train_speakers'])}.",
        "",
        "## Classification (h1) of held-out clips",
        "",
        f"- clip accuracy {c['clip_accuracy']:.4f}, window accuracy {c['window_accuracy']:.4f}",
        "",
        "## mAP (eq. 17-18), relevant = same digit",
        "",
        f"- library: {res['map']['library']} ({res['map']['library_size']} clips), query removed",
        f"- mAP (h2 Hamming ranking) {res['map']['mAP_h2']:.4f}; two-stage ranking "
        f"{res['map']['mAP_two_stage']:.4f}; CPO copies as queries {res['map']['mAP_h2_cpo_queries']:.4f}",
        "",
        f"## Recall / precision at tau = {r['tau']} (CPO copy -> its original among {r['library_size']} recordings)",
        "",
        "| CPO | R (two-stage) | P (two-stage) | F1 | top-1 | R (traversal) | P (traversal) | h1 kept |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in res["cpo"].items():
        t, v = s["two_stage"], s["traversal"]
        lines.append(f"| {name} | {t['recall']:.4f} | {t['precision']:.4f} | {t['f1']:.4f} | {t['top1']:.4f} | "
                     f"{v['recall']:.4f} | {v['precision']:.4f} | {s['category_same_as_original']:.4f} |")
    t, v = r["two_stage"], r["traversal"]
    lines += [
        f"| **all** | {t['recall']:.4f} | {t['precision']:.4f} | {t['f1']:.4f} | {t['top1']:.4f} | "
        f"{v['recall']:.4f} | {v['precision']:.4f} | |",
        "",
        f"- BER to the true original: mean {r['ber_true']['mean']:.4f}, p95 {r['ber_true']['p95']:.4f}, "
        f"max {r['ber_true']['max']:.4f}",
        f"- BER to the nearest other recording: mean {r['ber_nearest_other']['mean']:.4f}, "
        f"p05 {r['ber_nearest_other']['p05']:.4f}, min {r['ber_nearest_other']['min']:.4f}",
        f"- queries with at least one false match (two-stage): {t['queries_with_false_matches']} of {r['n_queries']}",
        f"- diagnostic: the tau with the best two-stage F1 here would be {r['best_tau_two_stage']['tau']} "
        f"(F1 {r['best_tau_two_stage']['f1']:.4f}); the model keeps tau = {r['tau']}",
        "",
    ]
    if "calibrated_tau" in res:
        ct = res["calibrated_tau"]
        t, v = ct["test"]["two_stage"], ct["test"]["traversal"]
        lines += [
            f"## Recall / precision at a tau calibrated on speaker(s) {', '.join(ct['speakers'])}: "
            f"tau = {ct['tau']}",
            "",
            f"Chosen by the best two-stage F1 on {ct['n_queries']} CPO queries of the validation "
            f"speaker(s) (F1 there {ct['validation']['f1']:.4f}); applied to the test queries above.",
            "",
            "| CPO | R (two-stage) | P (two-stage) | F1 | top-1 |",
            "|---|---|---|---|---|",
        ]
        for name, s in ct["test_per_cpo"].items():
            lines.append(f"| {name} | {s['recall']:.4f} | {s['precision']:.4f} | {s['f1']:.4f} | {s['top1']:.4f} |")
        lines += [f"| **all** | {t['recall']:.4f} | {t['precision']:.4f} | {t['f1']:.4f} | {t['top1']:.4f} |",
                  f"| all, traversal | {v['recall']:.4f} | {v['precision']:.4f} | {v['f1']:.4f} | {v['top1']:.4f} |",
                  ""]
    lines += [
        "## Encode time (features + inference, decode excluded, 1 thread)",
        "",
        f"- FSDD clip (mean over the library): {res['timing']['fsdd_clip_encode_ms_mean']:.2f} ms",
        f"- 1 s clip: median {res['timing']['encode_1s_ms']:.2f} ms, min "
        f"{res['timing']['encode_1s_ms_min']:.2f} ms; 10 s recording: median "
        f"{res['timing']['encode_10s_ms']:.2f} ms, min {res['timing']['encode_10s_ms_min']:.2f} ms",
        f"- retrieval per ms (per ms of the fastest 1 s clip encode): mAP/ms "
        f"{res['retrieval_per_ms']['mAP_h2_per_ms']:.4f}, F1(tau={r['tau']})/ms "
        f"{res['retrieval_per_ms']['f1_per_ms']:.4f}"
        + (f", F1(calibrated tau)/ms {res['retrieval_per_ms']['f1_calibrated_tau_per_ms']:.4f}"
           if "f1_calibrated_tau_per_ms" in res["retrieval_per_ms"] else ""),
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model_export.evaluate")
    p.add_argument("model", help="model .tflite (its .json next to it)")
    p.add_argument("data_dir")
    p.add_argument("--query-speaker", action="append", default=None)
    p.add_argument("--map-library", choices=("heldout", "all"), default="heldout")
    p.add_argument("--tau", type=float, default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-queries", type=int, default=None)
    p.add_argument("--calibrate-speaker", action="append", default=None,
                   help="speaker(s) whose CPO queries choose a model-specific tau "
                        "(default: the model's validation speakers)")
    p.add_argument("--out", default=None, help="write <out>.json and <out>.md")
    p.add_argument("--update-meta", action="store_true",
                   help="store a summary in the model's JSON sidecar (metrics.evaluation)")
    args = p.parse_args(argv)
    argv_list = list(sys.argv[1:] if argv is None else argv)
    command = "python -m model_export.evaluate " + " ".join(shlex.quote(a) for a in argv_list)
    res = evaluate(args.model, args.data_dir, query_speakers=args.query_speaker,
                   map_library=args.map_library, tau=args.tau, num_threads=args.threads,
                   max_queries=args.max_queries, calibrate_speakers=args.calibrate_speaker,
                   log=lambda s: print(s, flush=True))
    res["command"] = command
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
        out.with_suffix(".md").write_text(to_markdown(res, command))
    else:
        print(json.dumps(res, indent=2))
    if args.update_meta:
        from hashing.model_meta import ModelMeta

        mp = Path(args.model).with_suffix(".json")
        meta = ModelMeta.load(mp)
        meta.metrics["evaluation"] = summary(res)
        meta.save(mp)
    return 0


def summary(res: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of an evaluation (for the model metadata)."""
    r2 = res["retrieval"]["two_stage"]
    out = {
        "command": res.get("command", ""),
        "query_speakers": res["data"]["query_speakers"],
        "clip_accuracy": res["classification"]["clip_accuracy"],
        "mAP_h2": res["map"]["mAP_h2"], "mAP_library": res["map"]["library"],
        "mAP_library_size": res["map"]["library_size"],
        "at_tau": {"tau": res["retrieval"]["tau"], "recall": r2["recall"], "precision": r2["precision"],
                   "f1": r2["f1"], "top1": r2["top1"], "library_size": res["retrieval"]["library_size"],
                   "n_queries": res["retrieval"]["n_queries"], "cpos": res["retrieval"]["cpos"]},
        "encode_1s_ms": res["timing"]["encode_1s_ms"],
        "encode_1s_ms_min": res["timing"]["encode_1s_ms_min"],
        "encode_10s_ms": res["timing"]["encode_10s_ms"],
        "encode_10s_ms_min": res["timing"]["encode_10s_ms_min"],
    }
    if "calibrated_tau" in res:
        ct = res["calibrated_tau"]
        t2 = ct["test"]["two_stage"]
        out["calibrated_tau"] = {"tau": ct["tau"], "speakers": ct["speakers"], "recall": t2["recall"],
                                 "precision": t2["precision"], "f1": t2["f1"]}
    return out


if __name__ == "__main__":
    sys.exit(main())
