#!/usr/bin/env bash
# Synthesises spoken digits with espeak-ng in many voices, speeds and pitches: extra training
# speech for the category stage of the "identify" recipe (issue 7, model_export/identify.py).
# The audio is NOT committed; it goes to a cache folder in the folder-per-category layout of
# model_export.dataset, file names {digit}_esp-{voice tag}_{take}.wav (speaker = esp-{tag}).
#
#   tools/make_espeak_digits.sh                      # -> /work/cache/sv7_espeak/{0..9}/
#   tools/make_espeak_digits.sh OUT_DIR
#
# Per voice: 3 speeds (wpm) x 3 pitches (0-99) = 9 takes per digit; 17 voices -> 1,530 clips.
# Every clip: espeak-ng (22.05 kHz) -> sox: 16 kHz mono 16-bit, silence trimmed, 50 ms pad,
# peak-normalised to -3 dBFS (same post-processing as tools/make_examples.sh). Deterministic.
set -euo pipefail

out="${1:-/work/cache/sv7_espeak}"
command -v espeak-ng >/dev/null || { echo "error: espeak-ng not found" >&2; exit 1; }
command -v sox >/dev/null || { echo "error: sox not found" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

words=(zero one two three four five six seven eight nine)
# espeak-ng voice | file tag (no underscores: the tag is the "speaker" of the file name)
voices=(
  "en|en" "en-us|enus" "en-gb|engb"
  "en+m1|enm1" "en+m2|enm2" "en+m3|enm3" "en+m4|enm4" "en+m5|enm5" "en+m6|enm6" "en+m7|enm7"
  "en+f1|enf1" "en+f2|enf2" "en+f3|enf3" "en+f4|enf4" "en+f5|enf5"
  "en+croak|encroak" "en+whisper|enwhisper"
)
speeds=(115 150 185)
pitches=(25 50 75)

for d in 0 1 2 3 4 5 6 7 8 9; do mkdir -p "$out/$d"; done
n=0
for v in "${voices[@]}"; do
  IFS='|' read -r voice tag <<< "$v"
  for d in 0 1 2 3 4 5 6 7 8 9; do
    take=0
    for s in "${speeds[@]}"; do
      for p in "${pitches[@]}"; do
        f="$out/$d/${d}_esp-${tag}_${take}.wav"
        espeak-ng -v "$voice" -s "$s" -p "$p" -w "$tmp/raw.wav" "${words[$d]}"
        sox -D -R "$tmp/raw.wav" -r 16000 -c 1 -b 16 -e signed-integer "$f" \
          silence 1 0.02 0.3% reverse silence 1 0.02 0.3% reverse pad 0.05 0.05 norm -3
        take=$((take + 1)); n=$((n + 1))
      done
    done
  done
done
echo "wrote $n clips to $out"
