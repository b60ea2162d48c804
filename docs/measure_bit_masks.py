"""Measure reliable-bit masks for identification (issue 7): at ingest the vault has the clean
audio, so it could encode a few perturbed copies of each recording (noise at 20 and 25 dB SNR
with their own seeds, 8 kHz band limit, MP3 64 kbit/s) and keep a mask of the bits that never
flip; the distance would then be popcount((q xor c) & mask) / popcount(mask), as Haitsma and
Kalker's fingerprints weigh reliable bits. Tau is calibrated on speaker nicolas (best recall
with precision >= 0.999 and no open-set false accept) and applied to speaker theo.

    /work/venv/bin/python docs/measure_bit_masks.py hashing/models/default.tflite

Result (docs/results/identification.md): it does not help against noise; not built.
"""
import sys, time
from pathlib import Path
import numpy as np
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from hashing.audio import load_audio
from hashing.cpo import ALL_TEST_CPOS, add_noise_snr, resample_roundtrip, mp3_roundtrip
from hashing.encoder import Encoder
from model_export import dataset as ds
from model_export.evaluate import encode_items

model = sys.argv[1]
enc = Encoder.from_files(model, num_threads=2); K = enc.meta.K; sr = enc.sample_rate
items, classes = ds.list_items(REPO.parent / "shared" / "data" / "fsdd")
sig = [load_audio(it.path, sr) for it in items]

def bits_of(es):
    b = np.unpackbits(es.words.view(np.uint8), axis=1)
    return b.astype(np.float32)

lib = encode_items(enc, sig)
L = bits_of(lib)
VARIANTS = [lambda y, k: add_noise_snr(y, 20.0, np.random.default_rng(5000 + k)),
            lambda y, k: add_noise_snr(y, 25.0, np.random.default_rng(6000 + k)),
            lambda y, k: resample_roundtrip(y, sr, 8000),
            lambda y, k: mp3_roundtrip(y, sr, 64)]
t0 = time.time()
M = np.ones_like(L)
for v in VARIANTS:
    es = encode_items(enc, [v(y, i) for i, y in enumerate(sig)])
    if len(es.owner) != len(lib.owner) or not np.array_equal(es.owner, lib.owner):
        # align per recording: only where window counts match
        ok = np.zeros(len(lib.owner), bool)
        ls, vs = lib.starts, es.starts
        Vb = bits_of(es)
        for r in range(lib.n):
            a0 = ls[r]; a1 = ls[r + 1] if r + 1 < lib.n else len(lib.owner)
            b0 = vs[r]; b1 = vs[r + 1] if r + 1 < es.n else len(es.owner)
            if a1 - a0 == b1 - b0:
                M[a0:a1] *= (Vb[b0:b1] == L[a0:a1])
    else:
        M *= (bits_of(es) == L)
print("mask variants encoded in %.0f s; mean stable fraction %.3f, min %.3f" % (time.time() - t0, M.mean(), M.sum(1).min() / K))
ML = M * L
mrow = ML.sum(1); msum = M.sum(1)

def dist(qes, masked):
    Q = bits_of(qes)
    if masked:
        mis = Q @ M.T + mrow[None, :] - 2 * Q @ ML.T
        d = mis / msum[None, :]
    else:
        d = (Q @ (1 - L).T + (1 - Q) @ L.T) / K
    d = np.minimum.reduceat(d, lib.starts, axis=1)
    d = np.minimum.reduceat(d, qes.starts, axis=0)
    return d

CPOS = ["-3dB", "+3dB", "MP3", "R.Q", "noise20dB"]
res = {}
for spk in ["nicolas", "theo"]:
    q_idx = np.array([i for i, it in enumerate(items) if it.speaker == spk])
    for name in CPOS:
        qc = encode_items(enc, [ALL_TEST_CPOS[name](sig[i], sr) for i in q_idx])
        for masked in (False, True):
            res[(spk, name, masked)] = (dist(qc, masked), q_idx)
    qo = encode_items(enc, [sig[i] for i in q_idx])
    for masked in (False, True):
        d = dist(qo, masked); d[np.arange(len(q_idx)), q_idx] = np.inf
        res[(spk, "open", masked)] = (d, q_idx)

def stats(D, T, tau):
    hit = D < tau; rows = np.arange(len(D))
    tp = hit[rows, T]; fp = hit.sum(1) - tp
    return tp.mean(), tp.sum() / max(1, tp.sum() + fp.sum())

ts = (np.arange(K // 2) + 0.5) / K
for masked in (False, True):
    # calibrate: best recall over all CPOs on nicolas with P >= 0.999 and open-set FAR 0
    Dc = np.concatenate([res[("nicolas", n, masked)][0] for n in CPOS]); Tc = np.concatenate([res[("nicolas", n, masked)][1] for n in CPOS])
    Do = res[("nicolas", "open", masked)][0]
    best = None
    for t in np.linspace(0.001, 0.2, 400):
        R, P = stats(Dc, Tc, t); far = (Do < t).any(1).mean()
        if P >= 0.999 and far <= 0.002 and (best is None or R > best[1]): best = (t, R, P, far)
    t = best[0]
    print("masked" if masked else "plain ", "calib tau %.4f R %.4f P %.4f openFAR %.4f" % best)
    for n in CPOS:
        D, T = res[("theo", n, masked)]; R, P = stats(D, T, t)
        d_true = D[np.arange(len(D)), T]
        print("   %-10s R %.4f P %.4f   true p95 %.4f" % (n, R, P, np.quantile(d_true, .95)))
    Do = res[("theo", "open", masked)][0]
    print("   open-set FAR %.4f  nearest-impostor p1 %.4f" % ((Do < t).any(1).mean(), np.quantile(Do.min(1), .01)))
