"""Which excerpts eval-identify misses, and why: each miss with its covered windows' BER.

    python tools/excerpt_misses.py noise_10dB,babble_10dB [EXCERPTS_PER_RECORDING] [SEED] [keys]

Re-draws exactly the held-out queries of ``speechvault eval-identify --excerpts N --seed S``
(same recordings, offsets and noise) for the conditions named, searches them in a vault of the
same recordings with the default model, and prints, for every query whose recording is not
reported first, the nearest candidates: evidence, covered windows, close and near-identical
windows, whether the rule accepts them, and the BER of each covered window in time order at
the candidate's best offset. ``keys``: candidates by 16-bit slices, as a large vault finds
them (``tools/excerpt_eval_keys.py``). A diagnostic (issue 12), not a figure of docs/results.
"""

import collections
import dataclasses
import sys
import tempfile
from pathlib import Path

from hashing.encoder import Encoder
from model_export import excerpt_eval as ee
from model_export.excerpt_calibration import _recording_rows
from store import excerpt as _ex
from store.excerpt import ExcerptRule


def _profile(rows, rid: int, K: int) -> list[float]:
    """BER of the covered windows of ``rid`` at the offset bin where most of them match."""
    by_bin: dict[int, dict[int, int]] = collections.defaultdict(dict)
    for r, ob, s, _qs, d in rows:
        if r == rid:
            by_bin[ob][s] = d
    best = max(by_bin, key=lambda ob: sum(d / K < 0.3 for d in by_bin[ob].values()))
    return [round(by_bin[best][s] / K, 2) for s in sorted(by_bin[best])]


def main(conditions: list[str], per_recording: int, seed: int, keys: bool = False) -> None:
    enc = Encoder.default()
    if keys:
        enc._fp = dataclasses.replace(enc._fp, rule={**enc._fp.rule, "candidates": "keys"})
    rule, K = ExcerptRule.from_dict(enc.excerpt_rule), enc.K
    cfg = dataclasses.replace(ee.EvalConfig.full(), excerpts_per_recording=per_recording)
    stored, _outside, drawn = ee.held_out_excerpts(cfg, ee.default_fsdd_dir(), seed,
                                                   ee.babble_talkers(cfg, seed))
    queries = [q for q in drawn if q.condition in conditions]
    tally = collections.Counter()
    with tempfile.TemporaryDirectory() as tmp:
        vault = ee._build_vault(Path(tmp), stored, enc, "recordings")
        ids = {Path(r.name).stem: r.id for r in vault.list(limit=None)}
        for q in queries:
            sink: list = []
            with _recording_rows(sink):
                res = vault.search(q.make())
            found = [Path(h.name).stem for h in res.hits if h.is_match][:1] == [q.expected]
            tally[(q.length, q.condition, found)] += 1
            if found:
                continue
            rows = sink[-1] if sink else []
            print(f"{q.length:g} s {q.condition} {q.source} at {q.start:.2f} s")
            hits = _ex.decide(rows, K, rule)[:4]
            for h in hits:
                who = "TRUE" if h.recording_id == ids[q.expected] else "other"
                print(f"  {who:5s} ev {h.evidence:+.3f}, {h.windows} windows, {h.close} close, "
                      f"{h.strong:g} near-identical, accepted {rule.accepts(h)}: "
                      f"{_profile(rows, h.recording_id, K)}")
            if not any(h.recording_id == ids[q.expected] for h in hits):
                print("  the true recording is not among the candidates")
        vault.close()
    for (length, cond, ok), n in sorted(tally.items()):
        print(f"{length:g} s {cond}: {'found' if ok else 'missed'} {n}")


if __name__ == "__main__":
    main(sys.argv[1].split(","), int(sys.argv[2]) if len(sys.argv) > 2 else 3,
         int(sys.argv[3]) if len(sys.argv) > 3 else 0, sys.argv[4:5] == ["keys"])
