#!/usr/bin/env bash
# A separate virtual environment, .venv-toolkits, with aki + VLMEvalKit (ms-vlmeval) + lmms-eval,
# for the toolkit adapter tests (tests/test_eval_toolkits.py). Run by `setup.sh --test`.
#
# Why separate: the two toolkits pull ~230 packages (opencv, scikit-learn, ...) that the project
# itself does not need, and VLMEvalKit needs torchvision, which means another torch:
# - VLMEvalKit imports torchvision unconditionally. PyPI's only torchvision for torch 2.13 (0.28.0)
#   is a CUDA build that fails to import next to the CPU torch 2.13 ("operator torchvision::nms does
#   not exist"); no CPU build is on PyPI. The matching pair torch 2.14.1 + torchvision 0.29.1 is a
#   CUDA build (~5.5 GB installed) that runs on the CPU; on this project's machines (x86_64,
#   Python 3.11) pip takes both, and the CUDA libraries they need, from the local wheel folders.
# - lmms-eval shares this venv (it runs on torch 2.14.1 too; one venv costs less time and disk than
#   a second one on torch 2.13).
# - aki itself pins torch==2.13.0 (the main .venv keeps it), so here aki is installed with
#   --no-deps and its other requirements are read from pyproject.toml.
# Guard: a dry run first lists where every package would come from. If torch, torchvision or a
# CUDA package would be downloaded (all but the small cuda-bindings lie on the local disk here),
# nothing heavy is fetched: the venv is built as before, on torch 2.13.0 (CPU) without torchvision,
# so lmms-eval runs and VLMEvalKit cannot start; the reason is written to $venv/.aki-no-vlmevalkit
# and the VLMEvalKit test skips with it. Idempotent: a stamp records what was installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
venv=.venv-toolkits
stamp=$venv/.aki-toolkits-installed
no_vlmevalkit=$venv/.aki-no-vlmevalkit
want="$(cat pyproject.toml scripts/setup-toolkits.sh | sha1sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" = "$want" ]; then
  exit 0
fi
quiet_pip() {  # pip -q, without the local index's "is ignored" line for every package not on disk
  $venv/bin/python -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}
# the matching pair (CUDA builds that run on the CPU); nvidia-nvjitlink / cuda-pathfinder pinned to
# the versions on the local disk (PyPI has newer), cuda-bindings to the one torch 2.14.1 resolves to
pins=(torch==2.14.1 torchvision==0.29.1 nvidia-nvjitlink==13.4.92 cuda-pathfinder==1.8.3 cuda-bindings==13.5.0)
[ -x $venv/bin/python ] || "$PY" -m venv $venv
quiet_pip install -q --upgrade pip
reqs=$venv/aki-toolkit-requirements.txt
$venv/bin/python - "$reqs" <<'PY'
import re
import sys
import tomllib

project = tomllib.load(open("pyproject.toml", "rb"))["project"]
extras = project["optional-dependencies"]
deps = [d for d in project["dependencies"] if re.split(r"[ =<>!~\[;]", d, maxsplit=1)[0] != "torch"]
deps += extras["vlmevalkit"] + extras["lmms-eval"]
open(sys.argv[1], "w").write("\n".join(deps) + "\n")
PY
plan=$venv/aki-toolkit-install-plan.json
quiet_pip install -q --dry-run --ignore-installed --report "$plan" "${pins[@]}" -r "$reqs"
reason=$($venv/bin/python - "$plan" <<'PY'
import json
import sys

plan = json.load(open(sys.argv[1]))["install"]
remote = [(p["metadata"]["name"].lower(), p["metadata"]["version"]) for p in plan
          if not p["download_info"]["url"].startswith("file:")]
heavy = [f"{n}=={v}" for n, v in remote
         if n != "cuda-bindings" and n.startswith(("torch", "nvidia", "cuda", "triton"))]
if heavy:
    print(f"no local wheels of torch 2.14.1 + torchvision 0.29.1 (pip would download {len(heavy)} torch/CUDA "
          f"packages: {', '.join(heavy[:3])}, ...), so the toolkit venv has torch 2.13.0 (CPU) and no torchvision")
else:
    print(f"install plan: {len(plan)} packages, {len(plan) - len(remote)} from local wheels, "
          f"{len(remote)} from PyPI (none of them torch or CUDA but cuda-bindings)", file=sys.stderr)
PY
)
if [ -z "$reason" ]; then
  quiet_pip install -q "${pins[@]}" -r "$reqs"
  quiet_pip install -q --no-deps -e .
  rm -f "$no_vlmevalkit"
  $venv/bin/python - <<'PY'
import torch
import torchvision
from torchvision.ops import nms

versions = (torch.__version__.split("+")[0], torchvision.__version__.split("+")[0])
assert versions == ("2.14.1", "0.29.1"), f"setup-toolkits.sh: error: torch/torchvision {versions}, want 2.14.1/0.29.1"
keep = nms(torch.tensor([[0.0, 0, 2, 2], [0, 0, 2, 2.1]]), torch.tensor([0.9, 0.8]), 0.5)
assert keep.tolist() == [0], f"setup-toolkits.sh: error: torchvision's nms gave {keep.tolist()}"
import lmms_eval  # noqa: F401
import PIL
import transformers
import vlmeval.run  # noqa: F401

import aki  # noqa: F401

print(f"toolkit venv: torch {torch.__version__} + torchvision {torchvision.__version__} (on the CPU), "
      f"transformers {transformers.__version__}, pillow {PIL.__version__}")
PY
else
  echo "setup-toolkits.sh: warning: $reason; VLMEvalKit cannot start there (its test skips)" >&2
  quiet_pip install -q "torch==2.13.0" -r "$reqs"
  quiet_pip install -q --no-deps -e .
  $venv/bin/python -m pip uninstall -q -y torchvision || true
  echo "$reason" > "$no_vlmevalkit"
  $venv/bin/python - <<'PY'
import torch
assert torch.version.cuda is None, f"setup-toolkits.sh: error: a CUDA torch was installed ({torch.__version__})"
import lmms_eval  # noqa: F401
import PIL

import aki  # noqa: F401

print(f"toolkit venv: torch {torch.__version__}, pillow {PIL.__version__} (lmms-eval only)")
PY
fi
echo "$want" > "$stamp"
