"""Identification vs category evaluation of exported models, side by side (issue 7), and the
data-driven tau calibration used by the "identify" recipe.

    python -m model_export.identify_eval PAPER.tflite IDENTIFY.tflite /work/shared/data/fsdd \\
        --query-speaker theo --calib-speaker nicolas \\
        --extra-dir /work/cache/sv7_espeak --extra-speaker esp-enf3 --extra-speaker esp-enm3 \\
        --out docs/results/identification

Two meanings of "relevant":

* the paper's (eq. 17-18): same category -> mAP (``model_export.evaluate.mean_ap``; library =
  clips of the speakers not used for training, the query removed - as model_export.evaluate);
* identification: a query is a CPO copy of a held-out recording; the only relevant item is its
  own original among ALL stored recordings (every FSDD clip, including the other takes of the
  same digit by the same speaker). Recall / precision (eq. 19-21) at tau for two-stage (same h1
  first) and traversal retrieval (``model_export.evaluate.match_stats``).

Tau calibration (:func:`calibrate_tau`, rule documented there) runs on speakers that neither
trained the model nor are queried in the test, through the runtime TFLite encoder.

numpy + the runtime only; no TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hashing.audio import load_audio
from hashing.cpo import ALL_TEST_CPOS
from hashing.encoder import Encoder
from model_export import dataset as ds
from model_export.evaluate import _subset, encode_items, match_stats, mean_ap, recording_distances
from speechvault import paper

__all__ = ["TEST_CPOS", "calibrate_tau", "tau_from_distances", "evaluate_identification", "main"]

#: the CPOs of the identification test: the paper's four plus white noise at 20 dB SNR.
TEST_CPOS = ("-3dB", "+3dB", "MP3", "R.Q", "noise20dB")


def tau_from_distances(d_true: np.ndarray, d_imp: np.ndarray, K: int,
                       far_target: float = 0.0) -> dict[str, Any]:
    """The calibration rule.

    Candidate thresholds are the half-bit points t = (m + 0.5)/K (a match is D < t). Feasible:
    false-accept rate FAR(t) = share of impostor distances < t at most ``far_target`` (default
    0: no impostor pair of the calibration set accepted). Among the feasible t, those with the
    highest true-accept rate TAR(t); tau is the middle of that range (the middle of the gap
    between the true copies and the nearest impostor when the two are separated: the largest
    margin on both sides). Also reported: the EER point.
    """
    d_true = np.sort(np.asarray(d_true, np.float64))
    d_imp = np.sort(np.asarray(d_imp, np.float64))
    ts = (np.arange(0, K // 2) + 0.5) / K
    far = np.searchsorted(d_imp, ts, side="left") / max(1, len(d_imp))
    tar = np.searchsorted(d_true, ts, side="left") / max(1, len(d_true))
    feas = far <= far_target
    if not feas.any():
        feas = ts == ts[0]
    best = tar[feas].max()
    sel = ts[feas & (tar == best)]
    tau = float((sel.min() + sel.max()) / 2.0)
    tau = min(max(tau, 0.5 / K), 0.5 - 0.5 / K)
    eer_i = int(np.argmin(np.abs(far - (1.0 - tar))))
    return {
        "tau": round(tau, 6),
        "rule": (f"middle of the range of half-bit thresholds with the highest true-accept rate "
                 f"among those with false-accept rate <= {far_target:g} (D < tau is a match)"),
        "far_target": far_target, "tar_at_tau": float(np.mean(d_true < tau)),
        "far_at_tau": float(np.mean(d_imp < tau)),
        "n_true": int(len(d_true)), "n_impostor_pairs": int(len(d_imp)),
        "true_max": float(d_true.max()), "true_p999": float(np.quantile(d_true, 0.999)),
        "impostor_min": float(d_imp.min()), "impostor_p1e-5": float(np.quantile(d_imp, 1e-5)),
        "gap": float(d_imp.min() - d_true.max()),
        "eer": {"tau": float(ts[eer_i]), "far": float(far[eer_i]), "frr": float(1 - tar[eer_i])},
    }


def calibrate_tau(enc: Encoder, items: Sequence[ds.Item], *, cpos: Sequence[str] = TEST_CPOS,
                  far_target: float = 0.0, log=print) -> dict[str, Any]:
    """Tau from true-copy and impostor distances on ``items`` (speakers not used for training
    and not queried in the test): true = each CPO copy (``cpos``) vs its original; impostors =
    each CPO copy vs every other original, and every original vs every other original (traversal:
    no category stage, the harder case). Rule: :func:`tau_from_distances`."""
    K = enc.K  # the indexed code (h2, or the fingerprint)
    sig = [load_audio(it.path, enc.sample_rate) for it in items]
    lib = encode_items(enc, sig)
    Dll = recording_distances(lib, lib, K)
    n = lib.n
    off = ~np.eye(n, dtype=bool)
    d_true, d_imp = [], [Dll[np.triu(off, 1)]]
    for name in cpos:
        op = ALL_TEST_CPOS[name]
        q = encode_items(enc, [op(y, enc.sample_rate) for y in sig])
        D = recording_distances(q, lib, K)
        d_true.append(np.diag(D))
        d_imp.append(D[off])
    out = tau_from_distances(np.concatenate(d_true), np.concatenate(d_imp), K, far_target)
    out.update({"speakers": ds.iter_speakers(items), "n_recordings": n, "cpos": list(cpos)})
    log(f"  tau calibration on {out['speakers']}: tau={out['tau']} TAR={out['tar_at_tau']:.4f} "
        f"FAR={out['far_at_tau']:.2e} true max {out['true_max']:.4f} impostor min {out['impostor_min']:.4f}")
    return out


def _cat_block(enc: Encoder, signals, labels, cpos) -> dict[str, Any]:
    base = encode_items(enc, signals)
    out = {"n": len(signals), "clip_accuracy": float(np.mean(base.category == labels)), "cpo": {}}
    for name in cpos:
        op = ALL_TEST_CPOS[name]
        q = encode_items(enc, [op(y, enc.sample_rate) for y in signals])
        out["cpo"][name] = {"clip_accuracy": float(np.mean(q.category == labels)),
                            "category_same_as_original": float(np.mean(q.category == base.category))}
    out["category_same_as_original_mean"] = float(np.mean(
        [v["category_same_as_original"] for v in out["cpo"].values()]))
    return out


def evaluate_identification(model_path: str | Path, data_dir: str | Path, *,
                            query_speakers: Sequence[str], calib_speakers: Sequence[str] = (),
                            cpos: Sequence[str] = TEST_CPOS, extra_dir: str | Path | None = None,
                            extra_speakers: Sequence[str] = (), examples_dir: str | Path | None = None,
                            num_threads: int | None = 1, log=print) -> dict[str, Any]:
    enc = Encoder.from_files(model_path, num_threads=num_threads)
    meta, K = enc.meta, enc.K  # K: bits of the indexed code; mAP uses h2 (meta.K bits)
    items, classes = ds.list_items(data_dir)
    if classes != meta.class_names:
        raise SystemExit(f"dataset classes {classes} != model classes {meta.class_names}")
    labels = ds.labels_of(items, classes)
    q_idx = np.array([i for i, it in enumerate(items) if it.speaker in set(query_speakers)])
    unused = set(query_speakers) | set(meta.training.get("validation_speakers") or [])
    log(f"{meta.name} (recipe {meta.recipe}): {len(items)} stored recordings, {len(q_idx)} queries")
    t0 = time.perf_counter()
    signals = [load_audio(it.path, enc.sample_rate) for it in items]
    lib = encode_items(enc, signals)
    res: dict[str, Any] = {
        "model": {"path": str(model_path), "name": meta.name, "recipe": meta.recipe, "arch": meta.arch,
                  "K": meta.K, "code": meta.code_name, "code_bits": K, "C": meta.C, "tau_meta": float(meta.tau), "sha256": enc.sha256,
                  "tflite_bytes": len(enc.tflite_bytes), "fmax": meta.features.get("fmax"),
                  "training_command": meta.training.get("command"),
                  "train_speakers": meta.training.get("train_speakers"),
                  "validation_speakers": meta.training.get("validation_speakers"),
                  "held_out_speakers": meta.training.get("held_out_speakers"),
                  "tau_calibration_meta": meta.metrics.get("tau_calibration")},
        "data": {"dir": str(data_dir), "library_size": len(items), "query_speakers": list(query_speakers),
                 "n_queries_per_cpo": int(len(q_idx)), "cpos": list(cpos)},
        "classification": {"clip_accuracy": float(np.mean(lib.category[q_idx] == labels[q_idx]))},
    }
    trained = set(meta.training.get("train_speakers") or [])
    leak = trained & set(query_speakers)
    if leak:
        res["warning"] = f"query speakers {sorted(leak)} were used for training"
    # calibrated tau for this model on calib speakers (same rule for every model)
    if calib_speakers:
        citems = [it for it in items if it.speaker in set(calib_speakers)]
        res["tau_calibrated"] = calibrate_tau(enc, citems, cpos=cpos, log=log)
    taus = {"meta": float(meta.tau), "paper_0.26": paper.TAU_DEFAULT}
    if "tau_calibrated" in res:
        taus["calibrated"] = float(res["tau_calibrated"]["tau"])
    res["taus"] = taus
    # mAP, same category relevant (as model_export.evaluate: library = speakers not trained on)
    m_idx = np.array([i for i, it in enumerate(items) if it.speaker in unused])
    sub, qset = _subset(lib, m_idx), _subset(lib, q_idx)
    Dm = recording_distances(qset.h2(), sub.h2(), meta.K)
    pos = {int(g): j for j, g in enumerate(m_idx)}
    excl = np.array([pos.get(int(g), -1) for g in q_idx])
    res["map"] = {"relevant": "same category", "library_size": int(len(m_idx)),
                  "library_speakers": sorted(unused),
                  "mAP_h2": mean_ap(Dm, labels[q_idx], labels[m_idx], excl),
                  "mAP_two_stage": mean_ap(Dm, labels[q_idx], labels[m_idx], excl, qset.category, sub.category)}
    # identification
    res["cpo"] = {}
    allD, allT, allC = [], [], []
    for name in cpos:
        op = ALL_TEST_CPOS[name]
        t1 = time.perf_counter()
        qc = encode_items(enc, [op(signals[i], enc.sample_rate) for i in q_idx])
        D = recording_distances(qc, lib, K)
        st = {"clip_accuracy": float(np.mean(qc.category == labels[q_idx])),
              "category_same_as_original": float(np.mean(qc.category == lib.category[q_idx])),
              "at_tau": {k: match_stats(D, q_idx, t, qc.category, lib.category) for k, t in taus.items()}}
        res["cpo"][name] = st
        allD.append(D), allT.append(q_idx), allC.append(qc.category)
        s = st["at_tau"]["calibrated" if "calibrated" in taus else "meta"]
        log(f"  {name}: R={s['traversal']['recall']:.4f} P={s['traversal']['precision']:.4f} (traversal) "
            f"R={s['two_stage']['recall']:.4f} P={s['two_stage']['precision']:.4f} (two-stage) "
            f"h1 kept {st['category_same_as_original']:.4f} ({time.perf_counter() - t1:.0f} s)")
    D, T, C = np.concatenate(allD), np.concatenate(allT), np.concatenate(allC)
    res["all_cpos"] = {k: match_stats(D, T, t, C, lib.category) for k, t in taus.items()}
    res["category_same_as_original_mean"] = float(np.mean(
        [v["category_same_as_original"] for v in res["cpo"].values()]))
    # category stage on voices outside FSDD
    if extra_dir:
        e_items, e_classes = ds.list_items(extra_dir)
        sel = [it for it in e_items if not extra_speakers or it.speaker in set(extra_speakers)]
        res["extra_voices"] = _cat_block(enc, [load_audio(it.path, enc.sample_rate) for it in sel],
                                         ds.labels_of(sel, classes), cpos)
        res["extra_voices"]["speakers"] = ds.iter_speakers(sel)
        res["extra_voices"]["dir"] = str(extra_dir)
    if examples_dir:
        ex = sorted(p for p in Path(examples_dir).glob("*.wav") if p.name[0].isdigit())
        res["examples"] = _cat_block(enc, [load_audio(p, enc.sample_rate) for p in ex],
                                     np.array([classes.index(p.name.split("_")[0]) for p in ex]), cpos)
        res["examples"]["dir"] = str(examples_dir)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    return res


# --------------------------------------------------------------------------- report


def _f(x) -> str:
    return "-" if x is None else f"{x:.4f}"


def to_markdown(results: list[dict[str, Any]], command: str) -> str:
    L = ["# Identification vs category retrieval on FSDD speakers never seen in training (issue 7)", "",
         f"Command: `{command}`", ""]
    for r in results:
        m = r["model"]
        code = ("h2" if m.get("code", "h2") == "h2"
                else f"DDA fingerprint of {m.get('code_bits')} bits (h2 kept for mAP)")
        L += [f"- **{m['name']}** (recipe `{m['recipe']}`, {m['arch']}, K={m['K']}, searched code: {code}, fmax={m['fmax']}, "
              f"{m['tflite_bytes'] / 1e6:.2f} MB, sha256 `{m['sha256'][:12]}`): trained with "
              f"`{m['training_command']}`; train speakers {m['train_speakers']}, validation "
              f"{m['validation_speakers']}, held out {m['held_out_speakers']}; evaluated with "
              f"`{r.get('command', command)}`"]
    r0 = results[0]
    L += ["", f"Library: all {r0['data']['library_size']} FSDD recordings (6 speakers x 10 digits x 50 takes); "
          f"queries: CPO copies of the {r0['data']['n_queries_per_cpo']} clips of speaker(s) "
          f"{', '.join(r0['data']['query_speakers'])} per CPO. Relevant for identification: the query's "
          "own original only (the other 49 takes of the same digit by the same speaker are impostors).", ""]
    L += ["## Summary", "",
          "| | " + " | ".join(r["model"]["name"] for r in results) + " |",
          "|---|" + "---|" * len(results)]

    def row(label, fn):
        vals = []
        for r in results:
            try:
                vals.append(fn(r))
            except (KeyError, TypeError):
                vals.append("-")
        L.append(f"| {label} | " + " | ".join(vals) + " |")

    row("recipe", lambda r: r["model"]["recipe"])
    row("tau stored in meta", lambda r: f"{r['taus']['meta']:.4f}")
    row("tau calibrated (same rule, calibration speaker)", lambda r: f"{r['taus']['calibrated']:.4f}")
    row("held-out clip accuracy (h1)", lambda r: _f(r["classification"]["clip_accuracy"]))
    row("mAP K=384, h2 ranking (eq. 17-18)", lambda r: _f(r["map"]["mAP_h2"]))
    row("mAP K=384, two-stage ranking", lambda r: _f(r["map"]["mAP_two_stage"]))
    for tk in ("calibrated", "meta", "paper_0.26"):
        for mode in ("traversal", "two_stage", "auto"):
            row(f"identification R / P, all CPOs, {mode}, tau={tk}",
                lambda r, tk=tk, mode=mode: f"{r['all_cpos'][tk][mode]['recall']:.4f} / "
                                            f"{r['all_cpos'][tk][mode]['precision']:.4f}")
    row("top-1 = own original (traversal)", lambda r: _f(r["all_cpos"]["meta"]["traversal"]["top1"]))
    row("category of CPO copy = original's (mean over CPOs)", lambda r: _f(r["category_same_as_original_mean"]))
    row("espeak held-out voices: clip accuracy", lambda r: _f(r["extra_voices"]["clip_accuracy"]))
    row("espeak held-out voices: h1 kept under CPOs", lambda r: _f(r["extra_voices"]["category_same_as_original_mean"]))
    row("speechvault/examples digits: clip accuracy", lambda r: _f(r["examples"]["clip_accuracy"]))
    row("speechvault/examples: h1 kept under CPOs", lambda r: _f(r["examples"]["category_same_as_original_mean"]))
    for tk in ("calibrated", "meta"):
        L += ["", f"## Identification per CPO at tau = {tk}", "",
              "| CPO | model | tau | R trav. | P trav. | R two-stage | P two-stage | R auto | P auto | "
              "top-1 | h1 kept | queries with false matches (trav.) |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for name in r0["cpo"]:
            for r in results:
                if tk not in r["taus"]:
                    continue
                s = r["cpo"][name]["at_tau"][tk]
                L.append(f"| {name} | {r['model']['name']} | {r['taus'][tk]:.4f} | {s['traversal']['recall']:.4f} | "
                         f"{s['traversal']['precision']:.4f} | {s['two_stage']['recall']:.4f} | "
                         f"{s['two_stage']['precision']:.4f} | "
                         f"{s.get('auto', {}).get('recall', float('nan')):.4f} | "
                         f"{s.get('auto', {}).get('precision', float('nan')):.4f} | {s['traversal']['top1']:.4f} | "
                         f"{r['cpo'][name]['category_same_as_original']:.4f} | "
                         f"{s['traversal']['queries_with_false_matches']} |")
    L += ["", "## Distances (all CPO queries, against the full library)", ""]
    for r in results:
        a = r["all_cpos"]["meta"]
        L.append(f"- {r['model']['name']}: BER to own original mean {a['ber_true']['mean']:.4f}, "
                 f"p95 {a['ber_true']['p95']:.4f}, max {a['ber_true']['max']:.4f}; BER to nearest other "
                 f"recording mean {a['ber_nearest_other']['mean']:.4f}, p05 {a['ber_nearest_other']['p05']:.4f}, "
                 f"min {a['ber_nearest_other']['min']:.4f}")
    L += ["", "## Tau calibration", ""]
    for r in results:
        c = r.get("tau_calibrated")
        if c:
            L.append(f"- {r['model']['name']}: calibration speakers {c['speakers']} ({c['n_recordings']} "
                     f"recordings, CPOs {', '.join(c['cpos'])}): {c['n_true']} true copies, "
                     f"{c['n_impostor_pairs']} impostor pairs; true max {c['true_max']:.4f}, impostor min "
                     f"{c['impostor_min']:.4f} (gap {c['gap']:+.4f}); tau = {c['tau']} "
                     f"(TAR {c['tar_at_tau']:.4f}, FAR {c['far_at_tau']:.2e}); EER point tau "
                     f"{c['eer']['tau']:.4f} (FAR {c['eer']['far']:.2e}, FRR {c['eer']['frr']:.2e}). "
                     f"Rule: {c['rule']}.")
    L.append("")
    return "\n".join(L)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m model_export.identify_eval")
    p.add_argument("paths", nargs="+", help="MODEL.tflite [MODEL.tflite ...] DATA_DIR; a MODEL may also "
                   "be the .json written by an earlier run (its results are reused, not recomputed)")
    p.add_argument("--query-speaker", action="append", default=[])
    p.add_argument("--calib-speaker", action="append", default=[])
    p.add_argument("--cpo", action="append", default=[], help=f"default: {', '.join(TEST_CPOS)}")
    p.add_argument("--extra-dir", default=None)
    p.add_argument("--extra-speaker", action="append", default=[])
    p.add_argument("--examples-dir", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, help="output stem: writes OUT.md and OUT.json")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    argv_list = list(sys.argv[1:] if argv is None else argv)
    command = "python -m model_export.identify_eval " + " ".join(shlex.quote(a) for a in argv_list)
    *models, data_dir = args.paths
    if not models or not args.query_speaker:
        print("error: give at least one model, the data folder and --query-speaker", file=sys.stderr)
        return 2
    results = []
    for m in models:
        if m.endswith(".json"):
            prev = json.loads(Path(m).read_text())
            for r in prev["results"]:
                r.setdefault("command", prev["command"])
            results.extend(prev["results"])
            continue
        r = evaluate_identification(m, data_dir, query_speakers=args.query_speaker,
                                    calib_speakers=args.calib_speaker, cpos=args.cpo or TEST_CPOS,
                                    extra_dir=args.extra_dir, extra_speakers=args.extra_speaker,
                                    examples_dir=args.examples_dir, num_threads=args.threads)
        r["command"] = command
        results.append(r)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"command": command, "results": results}, indent=2,
                                                   default=float) + "\n")
    out.with_suffix(".md").write_text(to_markdown(results, command))
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
