#!/usr/bin/env bash
# Regenerates speechvault/examples/: the small example clips shipped with speechvault and used by
# `speechvault demo` and the tests. Needs espeak-ng (1.51 was used) and sox (14.4.2).
#
#   tools/make_examples.sh            # writes into speechvault/examples/
#   tools/make_examples.sh OUT_DIR    # writes elsewhere (e.g. to diff against the committed set)
#
# Every clip: espeak-ng at 22.05 kHz -> sox: 16 kHz, mono, 16-bit PCM WAV, leading/trailing
# silence trimmed, 50 ms padding, peak-normalised to -3 dBFS. `-D` (no dither) and `-R`
# (repeatable) make sox byte-for-byte reproducible. Output is a flat folder + manifest.json
# (the package data glob is examples/*.wav + examples/*.json).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$here/speechvault/examples}"
mkdir -p "$out"
rm -f "$out"/*.wav "$out"/manifest.json
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

command -v espeak-ng >/dev/null || { echo "error: espeak-ng not found (apt-get install espeak-ng)" >&2; exit 1; }
command -v sox >/dev/null || { echo "error: sox not found (apt-get install sox)" >&2; exit 1; }

words=(zero one two three four five six seven eight nine)
# voice tag (file name) | espeak-ng voice | words per minute
configs=(
  "en|en|160"
  "en-us|en-us|150"
  "en-f3|en+f3|135"
  "en-m3|en+m3|175"
)

render() {  # render VOICE SPEED TEXT OUT
  espeak-ng -v "$1" -s "$2" -w "$tmp/raw.wav" "$3"
  sox -D -R "$tmp/raw.wav" -r 16000 -c 1 -b 16 -e signed-integer "$4" \
    silence 1 0.02 0.3% reverse silence 1 0.02 0.3% reverse pad 0.05 0.05 norm -3
}

manifest="$tmp/manifest.tsv"
: > "$manifest"
# Digits: 3 clips per digit, rotating through the 4 voice configs (each digit gets 3 of the 4).
for d in 0 1 2 3 4 5 6 7 8 9; do
  for n in 1 2 3; do
    IFS='|' read -r tag voice speed <<< "${configs[$(( (d + n - 1) % 4 ))]}"
    f="${d}_${tag}_${n}.wav"
    render "$voice" "$speed" "${words[$d]}" "$out/$f"
    printf '%s\tdigit\t%s\t%s\t%s\t%s\n' "$f" "$d" "$voice" "$speed" "${words[$d]}" >> "$manifest"
  done
done

# Two longer sentences (~8-10 s each).
s1="Please remember that the quarterly budget meeting moves to Thursday at nine thirty, in the small room on the second floor, and bring the printed figures with you."
s2="The weather tomorrow will be cloudy in the morning with light rain in the afternoon, and temperatures falling to about four degrees by late evening."
render en-us 150 "$s1" "$out/sentence_en-us_1.wav"
printf '%s\tsentence\t\t%s\t%s\t%s\n' "sentence_en-us_1.wav" en-us 150 "$s1" >> "$manifest"
render en+f3 145 "$s2" "$out/sentence_en-f3_2.wav"
printf '%s\tsentence\t\t%s\t%s\t%s\n' "sentence_en-f3_2.wav" en+f3 145 "$s2" >> "$manifest"

# manifest.json: one entry per clip, sha256 and duration included so tests can check the set.
python3 - "$manifest" "$out" <<'PY'
import hashlib, json, sys, wave
from pathlib import Path
tsv, out = Path(sys.argv[1]), Path(sys.argv[2])
clips = []
for line in tsv.read_text().splitlines():
    f, kind, label, voice, speed, text = line.split("\t")
    p = out / f
    with wave.open(str(p)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2), f
        dur = w.getnframes() / w.getframerate()
    clips.append({
        "file": f, "kind": kind, "label": label or None, "text": text, "voice": voice,
        "speed_wpm": int(speed), "duration": round(dur, 3),
        "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
    })
doc = {
    "format": "speechvault-examples/1",
    "generator": "tools/make_examples.sh (espeak-ng + sox)",
    "sample_rate": 16000, "channels": 1, "sample_width_bits": 16,
    "demo_query": "7_en-us_3.wav",
    "clips": clips,
}
(out / "manifest.json").write_text(json.dumps(doc, indent=1) + "\n")
PY
echo "wrote $(ls "$out"/*.wav | wc -l) clips to $out ($(du -sh "$out" | cut -f1))"
