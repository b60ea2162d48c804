"""One 384-bit code for both meanings of "relevant", or two codes? (issue 7)

    python docs/measure_code_split.py /work/cache/sv8_models/fsdd-crnn-k384.tflite \\
        /work/shared/data/fsdd --extra-data /work/cache/sv7_espeak

Splits K = 384 bits between the paper model's h2 (its first kc bits: category) and a DDA
fingerprint (384 - kc bits: identification, ``hashing.fingerprint``) and measures, for each kc:

* mAP (eq. 17-18, same category relevant) of the concatenated code: queries = clean clips of
  speaker theo, library = theo + nicolas (never trained on), the query itself removed;
* identification on theo (CPO copies vs all 3,000 FSDD recordings; only the own original is
  relevant), tau from nicolas by ``tau_from_distances`` (no impostor accepted there): recall
  under each CPO and the share of queries with a false match.

The last row is the design speechvault ships: h2 (384 bits, for mAP) and a separate fingerprint
(384 bits, for identification). Numpy + the runtime; about 4 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hashing import codes  # noqa: E402
from hashing.audio import load_audio  # noqa: E402
from hashing.cpo import ALL_TEST_CPOS  # noqa: E402
from hashing.encoder import Encoder  # noqa: E402
from hashing.features import model_windows  # noqa: E402
from hashing.fingerprint import fit_dda  # noqa: E402
from model_export import dataset as ds  # noqa: E402
from model_export.evaluate import mean_ap  # noqa: E402
from model_export.fingerprint import distortion_pairs  # noqa: E402
from model_export.identify_eval import TEST_CPOS, tau_from_distances  # noqa: E402


def _first_window(enc, y):
    return model_windows(y, enc.feature_spec)[:1]


def _ham(a, b):
    return (a[:, None, :] != b[None, :, :]).mean(-1)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("data_dir")
    p.add_argument("--extra-data", action="append", default=[])
    a = p.parse_args()
    enc = Encoder.from_files(a.model, num_threads=1)
    assert enc.meta.fingerprint is None, "give the paper-recipe model (h2 only)"
    items, _ = ds.list_items(a.data_dir)
    spk = np.array([it.speaker for it in items])
    lab = ds.labels_of(items, enc.meta.class_names)
    sig = [load_audio(it.path, enc.sample_rate) for it in items]
    W = np.concatenate([_first_window(enc, y) for y in sig])
    H, _ = enc.run_windows(W)
    train = set(enc.meta.training["train_speakers"])
    extra = []
    for d in a.extra_data:
        e, _ = ds.list_items(d)
        extra += [load_audio(it.path, enc.sample_rate) for it in e if it.speaker not in ("esp-enf3", "esp-enm3")]
    clean, orig, dist = distortion_pairs([y for y, s in zip(sig, spk) if s in train] + extra,
                                         enc.feature_spec, views=3)
    Q = {}
    for s in ("theo", "nicolas"):
        idx = np.where(spk == s)[0]
        for c in TEST_CPOS:
            Wq = np.concatenate([_first_window(enc, ALL_TEST_CPOS[c](sig[i], enc.sample_rate)) for i in idx])
            Q[(s, c)] = (idx, Wq, enc.run_windows(Wq)[0])
    qi, li = np.where(spk == "theo")[0], np.where(np.isin(spk, ["theo", "nicolas"]))[0]
    excl = np.searchsorted(li, qi)
    print("| h2 bits | fingerprint bits | mAP | tau | " + " | ".join(f"R {c}" for c in TEST_CPOS)
          + " | queries with a false match |")
    print("|---" * (5 + len(TEST_CPOS)) + "|")
    for kc in (384, 256, 192, 128, 0, "two codes"):
        two = kc == "two codes"
        kf = 384 if two else 384 - kc
        fp = fit_dda(clean, orig, dist, kf) if kf else None

        def code(Wx, Hx, ident):
            parts = [] if (two and ident) or kc == 0 else [codes.hash_bits(Hx)[:, : (384 if two else kc)]]
            if fp is not None and (ident or not two):
                parts.append(fp.bits(Wx))
            return np.concatenate(parts, axis=1).astype(bool)

        B_map = code(W, H, ident=False)
        mAP = mean_ap(_ham(B_map[qi], B_map[li]), lab[qi], lab[li], excl)
        B = code(W, H, ident=True)
        res = {}
        for (s, c), (idx, Wq, Hq) in Q.items():
            D = _ham(code(Wq, Hq, ident=True), B)
            r = np.arange(len(idx))
            t = D[r, idx].copy()
            D[r, idx] = 9
            res[(s, c)] = (t, D.min(1))
        t_n = np.concatenate([res[("nicolas", c)][0] for c in TEST_CPOS])
        i_n = np.concatenate([res[("nicolas", c)][1] for c in TEST_CPOS])
        tau = tau_from_distances(t_n, i_n, B.shape[1])["tau"]
        rec = [np.mean(res[("theo", c)][0] < tau) for c in TEST_CPOS]
        fq = np.mean(np.concatenate([res[("theo", c)][1] for c in TEST_CPOS]) < tau)
        label = ("384 (h2, own code)", "384 (own code)") if two else (kc, kf)
        print(f"| {label[0]} | {label[1]} | {mAP:.4f} | {tau:.4f} | "
              + " | ".join(f"{x:.3f}" for x in rec) + f" | {fq:.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
