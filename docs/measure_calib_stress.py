"""Excerpts in loud babble on the CALIB voices, under each model's own rule (issue 12).

    python docs/measure_calib_stress.py MODEL.tflite [MODEL.tflite ...] [--fsdd DIR]
        [--snr 10 5] [--seconds 3 5] [--n 120]

Why: the one target still missed is 5 s excerpts in babble at 10 dB (TEST voices, R 0.975,
excerpts_x9.md), and the calibration's own queries cannot rank window codes on it: their babble
is 8-25 dB and every 5-6 s babble excerpt is found under every code measured
(excerpt_rule_trials.md, session 30). This builds the TEST condition on the CALIB voices instead
(FSDD's calibration speaker and the espeak-ng CALIB voices, ``model_export.excerpt_fingerprint
.calibration_data``: the same long recordings the rule is calibrated on, two thirds stored),
so a code can be judged on it before any TEST run. It only measures: nothing here feeds a
calibration, so the rule is never tuned on it.

Each condition: ``--n`` excerpts at random offsets, half of stored recordings (recall) and half
of the other third (false matches), each mixed with three talkers of the other third (never the
excerpt's own recording) at the SNR, searched through the real path (``Vault.search``,
traversal) and judged by the model's calibrated ``ExcerptRule``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hashing import cpo  # noqa: E402
from hashing.encoder import Encoder  # noqa: E402
from model_export import excerpt_calibration as ec  # noqa: E402
from model_export import long_speech as ls  # noqa: E402
from model_export.excerpt_fingerprint import calibration_data  # noqa: E402
from store import excerpt as _ex  # noqa: E402
from store.excerpt import ExcerptRule  # noqa: E402


def stress_queries(inside, outside, n: int, seconds: float, snr: float, seed: int):
    """(samples, index of the true stored recording or -1): babble of three outside talkers."""
    rng = np.random.default_rng(seed)
    sr, length = ls.SAMPLE_RATE, int(seconds * ls.SAMPLE_RATE)
    for i in range(n):
        own = i // 2 % len(outside)
        truth = i // 2 % len(inside) if i % 2 == 0 else -1
        y = inside[truth] if truth >= 0 else outside[own]
        off = int(rng.integers(max(1, y.shape[0] - length)))
        others = [j for j in range(len(outside)) if truth >= 0 or j != own]
        talkers = [outside[int(j)] for j in rng.choice(others, 3, replace=False)]
        yield cpo.babble_noise(y[off: off + length], sr, snr, int(rng.integers(1 << 30)),
                               talkers), truth


def judge(encoder, queries) -> tuple[int, int, int, int]:
    """(genuine found, genuine, outside accepted, outside) under the model's own rule."""
    rule = ExcerptRule.from_dict(encoder.excerpt_rule)
    found = genuine = false = outside = 0
    for q in queries:
        hits = _ex.decide(q.rows, encoder.K, rule)[:ec.TOP]
        if q.true_id is None:
            outside += 1
            false += any(rule.accepts(h) for h in hits)
        else:
            genuine += 1
            g = next((h for h in hits if h.recording_id == q.true_id), None)
            found += g is not None and rule.accepts(g)
    return found, genuine, false, outside


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", help="model .tflite files (fingerprint and rule beside)")
    p.add_argument("--fsdd", default=str(Path(__file__).resolve().parents[2] / "shared/data/fsdd"))
    p.add_argument("--snr", type=float, nargs="+", default=[10.0, 5.0])
    p.add_argument("--seconds", type=float, nargs="+", default=[3.0, 5.0])
    p.add_argument("--n", type=int, default=120, help="excerpts per condition (half outside)")
    a = p.parse_args()
    longs, _ = calibration_data(a.fsdd, 1)
    inside = [y for i, y in enumerate(longs) if i % 3 != 2]
    outside = [y for i, y in enumerate(longs) if i % 3 == 2]
    print("| model | excerpt | SNR dB | recall | outside accepted |\n|---|---|---|---|---|")
    for model in a.models:
        enc = Encoder.from_files(model)
        for seconds in a.seconds:
            for snr in a.snr:
                qs = stress_queries(inside, outside, a.n, seconds, snr, seed=int(seconds * 100 + snr))
                with tempfile.TemporaryDirectory() as tmp:
                    rows = ec.collect_rows(enc, inside, qs, Path(tmp), "long", "excerpt")
                f, g, x, o = judge(enc, rows)
                print(f"| {Path(model).stem} | {seconds:g} s | {snr:g} | {f}/{g} = {f / g:.3f} "
                      f"| {x}/{o} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
