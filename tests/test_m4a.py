"""M4A/AAC voice memos (issue 15, item 7): decoded through PyAV (the ``m4a`` extra), ingested and
searched like any other recording; without PyAV, one line that names the extra.

The memos are made here from a shipped example clip, with the ffmpeg command line if it is
installed, else with PyAV's own encoder; the tests skip, saying why, when neither is there.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.test_cli import EXAMPLES, PASS, ROOT, _env, assert_user_error, digit_clips, run_cli

CLIP = digit_clips()[0]
NO_AV = "import sys; sys.modules['av'] = None\nimport cli\ncli.main()\n"  # PyAV not installed


def _have_av() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


needs_av = pytest.mark.skipif(not _have_av(), reason="PyAV not installed (pip install "
                                                     "'speechvault[m4a]')")


def make_memo(wav: Path, out: Path) -> Path:
    """``out`` (.m4a: AAC in MP4; .aac: raw ADTS) encoded from ``wav``."""
    fmt = ["-f", "adts"] if out.suffix == ".aac" else []
    if shutil.which("ffmpeg"):
        subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-i", str(wav), "-c:a", "aac",
                        "-b:a", "64k", *fmt, str(out)], check=True, timeout=120)
        return out
    if not _have_av():
        pytest.skip("neither ffmpeg nor PyAV is installed: cannot make an M4A memo")
    import av
    import soundfile as sf

    y, sr = sf.read(str(wav), dtype="float32", always_2d=True)
    with av.open(str(out), "w", format="adts" if out.suffix == ".aac" else "mp4") as c:
        s = c.add_stream("aac", rate=sr, layout="mono")
        frame = av.AudioFrame.from_ndarray(y.T.copy(), format="fltp", layout="mono")
        frame.sample_rate = sr
        for packet in s.encode(frame):
            c.mux(packet)
        for packet in s.encode(None):
            c.mux(packet)
    return out


@pytest.fixture(scope="module")
def memos(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("memos")
    return {"m4a": make_memo(CLIP, d / "memo.m4a"), "aac": make_memo(CLIP, d / "memo.aac")}


def test_sniff_tells_mp4_and_adts_from_mp3_and_wav(memos):
    from hashing.av_audio import is_mp4_or_adts

    assert is_mp4_or_adts(memos["m4a"].read_bytes()[:12])
    assert is_mp4_or_adts(memos["aac"].read_bytes()[:12])
    assert not is_mp4_or_adts(CLIP.read_bytes()[:12])
    assert not is_mp4_or_adts(b"\xff\xfb\x90\x64" + b"\0" * 8)  # an MPEG-1 layer III frame
    assert not is_mp4_or_adts(b"ID3\x04\0\0\0\0\0\0\0\0")


@needs_av
@pytest.mark.parametrize("kind", ["m4a", "aac"])
def test_memo_decodes_like_its_wav(memos, kind):
    from hashing.audio import load_audio, read_info

    wav = load_audio(CLIP)
    for source in (memos[kind], memos[kind].read_bytes()):  # a path, and bytes (a stdin query)
        info = read_info(source)
        assert info.sample_rate == 16000 and info.channels == 1
        assert info.format == ("MP4" if kind == "m4a" else "AAC") and info.subtype == "AAC"
        assert abs(info.duration - wav.size / 16000) < 0.1
        y = load_audio(source)
        assert y.dtype == np.float32 and abs(y.size - wav.size) < 0.1 * 16000
        assert _best_correlation(y, wav) > 0.9  # the same waveform, not merely some audio


def _best_correlation(y: np.ndarray, ref: np.ndarray, max_lag: int = 2048) -> float:
    """Correlation of ``y`` with ``ref`` at the best delay (raw AAC keeps its encoder delay)."""
    best = -1.0
    for lag in range(0, max_lag + 1, 16):
        n = min(y.size - lag, ref.size)
        if n > ref.size // 2:
            best = max(best, float(np.corrcoef(y[lag:lag + n], ref[:n])[0, 1]))
    return best


@needs_av
def test_memo_longer_than_the_limit_is_refused(memos):
    from hashing.audio import load_audio
    from speechvault.errors import AudioDecodeError

    with pytest.raises(AudioDecodeError, match="exceeds the limit of 0.2 s|more than 0.2 s"):
        load_audio(memos["m4a"], max_seconds=0.2)


@needs_av
def test_corrupt_memo_is_one_line_error(memos, tmp_path):
    from hashing.audio import load_audio
    from speechvault.errors import AudioDecodeError

    bad = tmp_path / "bad.m4a"
    bad.write_bytes(memos["m4a"].read_bytes()[:40])  # the ftyp box, then nothing
    with pytest.raises(AudioDecodeError) as err:
        load_audio(bad)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


@needs_av
def test_folder_ingest_and_search_with_memos(memos, tmp_path):
    vault = tmp_path / "v.duckdb"
    assert run_cli("init", vault, "--kdf-log2n", "10", passphrase=PASS).returncode == 0
    src = tmp_path / "phone"
    src.mkdir()
    shutil.copy(memos["m4a"], src / "memo1.m4a")
    r = run_cli("ingest", vault, src, "--json", passphrase=PASS)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert [row["name"] for row in rep["added"]] == ["memo1.m4a"]
    assert rep["skipped_unsupported"] == [] and rep["errors"] == []
    rid = rep["added"][0]["id"]
    r = run_cli("search", vault, memos["aac"], "--json")  # the same words, re-encoded as ADTS
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["matched"] and out["hits"][0]["recording_id"] == rid, out["hits"][:2]
    exported = tmp_path / "back.m4a"
    r = run_cli("export", vault, str(rid), "-o", exported, passphrase=PASS)
    assert r.returncode == 0, r.stderr
    assert exported.read_bytes() == (src / "memo1.m4a").read_bytes()  # stored byte-identical


def _run_without_av(*args) -> subprocess.CompletedProcess:
    env = _env({"SPEECHVAULT_PASSPHRASE": PASS})
    return subprocess.run([sys.executable, "-c", NO_AV, *map(str, args)], env=env, cwd=ROOT,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)


def test_without_pyav_one_line_names_the_extra(memos, tmp_path):
    vault = tmp_path / "v.duckdb"
    assert run_cli("init", vault, "--kdf-log2n", "10", passphrase=PASS).returncode == 0
    src = tmp_path / "phone"
    src.mkdir()
    shutil.copy(memos["m4a"], src / "memo1.m4a")
    shutil.copy(CLIP, src / CLIP.name)
    r = _run_without_av("ingest", vault, src, "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert [row["name"] for row in rep["added"]] == [CLIP.name]
    [skipped] = rep["skipped_unsupported"]
    assert Path(skipped["path"]).name == "memo1.m4a"
    assert "pip install 'speechvault[m4a]'" in skipped["reason"]
    for args in (("ingest", vault, src / "memo1.m4a"), ("search", vault, memos["m4a"])):
        r = _run_without_av(*args)
        assert_user_error(r, contains="pip install 'speechvault[m4a]'")
        assert "memo" in r.stderr


def test_examples_dir_exists():
    assert EXAMPLES.is_dir() and CLIP.is_file()
