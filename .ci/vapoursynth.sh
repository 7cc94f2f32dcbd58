#!/usr/bin/env bash
# VapourSynth tests (tests/test_vapoursynth*.py) in their own Python 3.12 venv: PyPI's vapoursynth wheel needs
# CPython >= 3.12 while the main suite runs on the system's Python. The venv is cached like ComfyUI's; on a
# fresh machine the install downloads PyPI's torch for 3.12 (the CUDA build, about 4.5 GB installed).
# Usage: bash .ci/vapoursynth.sh   (from .ci/run; exits non-zero when a test fails)
set -euo pipefail
cd "$(dirname "$0")/.."
VS_VENV="${VS_VENV:-$HOME/.cache/emavfi-vs-venv}"

# A working interpreter >= 3.12: pyenv's shims answer `command -v` even where that version is not selected.
python312=""
for candidate in "$(command -v python3.12 || true)" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python \
                 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[3-9]*/bin/python; do
  if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" -c 'import sys; assert sys.version_info >= (3, 12)' \
      >/dev/null 2>&1; then
    python312="$candidate"
    break
  fi
done
if [ -z "$python312" ]; then
  echo "VapourSynth tests skipped: no Python >= 3.12 on this machine (python3.12 or pyenv)"
  exit 0
fi

if ! "$VS_VENV/bin/python" -c "import vapoursynth, torch, OpenImageIO, skimage, pytest" >/dev/null 2>&1; then
  rm -rf "$VS_VENV"
  start=$(date +%s)
  "$python312" -m venv "$VS_VENV"
  "$VS_VENV/bin/pip" install -q torch==2.13.0 -r requirements.txt -r requirements-cli.txt -r requirements-dev.txt \
    -r requirements-vapoursynth.txt
  echo "VapourSynth venv installed in $(( $(date +%s) - start )) s"
fi
# vspipe embeds Python: tell it which one (writes the user's VapourSynth configuration).
"$VS_VENV/bin/vapoursynth" config >/dev/null
PATH="$VS_VENV/bin:$PATH" "$VS_VENV/bin/python" -m pytest tests/test_vapoursynth.py tests/test_vapoursynth_protect.py -q
