#!/usr/bin/env bash
# A separate virtual environment, .venv-toolkits, with aki + VLMEvalKit (ms-vlmeval) + lmms-eval,
# for the toolkit adapter tests (tests/test_eval_toolkits.py). Run by `setup.sh --test`.
#
# Why separate: the two toolkits pull ~200 packages (opencv, decord, wandb, ...) that the project
# itself does not need; keeping them out of .venv keeps the main environment small and its
# resolution independent of theirs. Both resolve next to torch==2.13.0 (CPU) and pillow 12.3.0
# (lmms-eval would take pillow 13 if unpinned; aki's own pin keeps 12.x, which it accepts).
# torchvision: PyPI's only build for torch 2.13 (0.28.0) is a CUDA build whose import fails next to the
# CPU torch ("operator torchvision::nms does not exist"), and a CPU build is not on PyPI. lmms-eval runs
# without it, so it is removed; VLMEvalKit imports it unconditionally and so cannot run here (its
# adapter works where torch and torchvision match, e.g. a CUDA machine).
# Idempotent: a stamp records what was installed. Uses PyPI only.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
venv=.venv-toolkits
stamp=$venv/.aki-toolkits-installed
want="$(cat pyproject.toml scripts/setup-toolkits.sh | sha1sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" = "$want" ]; then
  exit 0
fi
[ -x $venv/bin/python ] || "$PY" -m venv $venv
$venv/bin/python -m pip install -q --upgrade pip
$venv/bin/python -m pip install -q -e ".[vlmevalkit,lmms-eval]" "torch==2.13.0"
$venv/bin/python -m pip uninstall -q -y torchvision || true
# never a CUDA build of torch here (a newer torch would have downloaded one)
$venv/bin/python - <<'PY'
import torch
assert torch.version.cuda is None, f"setup-toolkits.sh: error: a CUDA torch was installed ({torch.__version__}), pin torch==2.13.0"
import PIL, lmms_eval  # noqa: F401
print(f"toolkit venv: torch {torch.__version__}, pillow {PIL.__version__}")
PY
echo "$want" > "$stamp"
