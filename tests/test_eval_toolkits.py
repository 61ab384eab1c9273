"""aki inside the evaluation toolkits, run through each toolkit's own entry point, offline.

The toolkits live in a separate environment, ``.venv-toolkits`` (``scripts/setup-toolkits.sh``,
run by ``setup.sh --test``). lmms-eval: its CLI runs a tiny aki model (saved to a temp folder) on a
tiny MME file in lmms-eval's (Hugging Face) layout through lmms-eval's own MME task, and its score
must equal ``aki eval``'s MME score under the same rule on the same predictions. VLMEvalKit: see
:func:`test_vlmevalkit_entry_point` (it needs a torchvision build that matches torch).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLKIT_PY = ROOT / ".venv-toolkits" / "bin" / "python"


def _toolkit_python() -> Path:
    if not TOOLKIT_PY.exists():
        pytest.fail("the toolkit environment is missing: run `bash scripts/setup-toolkits.sh` "
                    "(setup.sh --test runs it)")
    return TOOLKIT_PY


def _offline_env(tmp_path: Path) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_HOME=str(tmp_path / "hf"), WANDB_MODE="disabled", TOKENIZERS_PARALLELISM="false")
    env.pop("OPENAI_API_KEY", None)
    return env


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    from aki.testing import tiny_model

    path = tmp_path_factory.mktemp("aki-tiny")
    model, processor = tiny_model("llama")
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def test_lmms_eval_registers_aki_through_its_entry_point():
    out = subprocess.run([str(_toolkit_python()), "-c",
                          "import lmms_eval.models as m; print(m.AVAILABLE_MODELS['aki'])"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("AkiLmms")


def test_lmms_eval_cli_scores_equal_aki_eval(saved_model, tmp_path):
    py = _toolkit_python()
    env = _offline_env(tmp_path)
    data = tmp_path / "mme.parquet"
    subprocess.run([str(py), str(ROOT / "tests" / "eval_toolkit_mme_parquet.py"), str(data)], check=True,
                   env=env, timeout=300)
    lmms_dir = subprocess.run([str(py), "-c", "import lmms_eval, os; print(os.path.dirname(lmms_eval.__file__))"],
                              capture_output=True, text=True, check=True, env=env, timeout=300).stdout.strip()
    include = tmp_path / "tasks"
    include.mkdir()
    (include / "mme_aki_tiny.yaml").write_text(
        f"include: {lmms_dir}/tasks/mme/mme.yaml\ntask: mme_aki_tiny\ndataset_path: parquet\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        "generation_kwargs:\n  max_new_tokens: 4\n  temperature: 0\n  do_sample: false\n")
    out = tmp_path / "out"
    run = subprocess.run([str(py), "-m", "lmms_eval", "--model", "aki", "--model_args", f"pretrained={saved_model}",
                          "--tasks", "mme_aki_tiny", "--include_path", str(include), "--batch_size", "1",
                          "--output_path", str(out), "--log_samples"],
                         capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads(next(out.rglob("*_results.json")).read_text())["results"]["mme_aki_tiny"]
    samples = [json.loads(x) for x in next(out.rglob("*_samples_*.jsonl")).read_text().splitlines()]
    assert len(samples) == 12

    import pyarrow.parquet as pq

    from aki.eval import mme
    from aki.eval.generation import generate_batch
    from aki.model import AkiForConditionalGeneration
    from aki.processing import AkiProcessor, load_image

    docs = pq.read_table(data).to_pylist()
    rows = []
    for s in samples:
        doc = docs[s["doc_id"]]
        rows.append(mme.prepare({"index": str(s["doc_id"]), "answer": doc["answer"], "category": doc["category"],
                                 "image_path": doc["question_id"], "prediction": s["filtered_resps"], "where": "x"}))
        per_row = s.get("mme_perception_score") or s.get("mme_cognition_score")
        assert per_row["score"] == float(mme_tool_label(s["filtered_resps"]) == doc["answer"].lower())
    ours = mme.score(rows)["mme_tool"]
    assert ours["perception"] == pytest.approx(results["mme_perception_score,none"])
    assert ours["cognition"] == pytest.approx(results["mme_cognition_score,none"])
    # the adapter answers exactly as aki's own generation does for the same prompt and image
    model = AkiForConditionalGeneration.from_pretrained(saved_model).eval()
    processor = AkiProcessor.from_pretrained(saved_model)
    for s in samples[:4]:
        image = load_image(docs[s["doc_id"]]["image"]["bytes"])
        assert generate_batch(model, processor, [s["input"]], [[image]], 4) == [s["filtered_resps"]]


def mme_tool_label(text: str) -> str:
    from aki.eval.yesno import mme_tool_yes_no

    return mme_tool_yes_no(text)


def test_vlmevalkit_entry_point(saved_model, tmp_path):
    """VLMEvalKit's run.py with aki registered, on a tiny MME TSV (custom name, official MME scorer).

    VLMEvalKit imports torchvision unconditionally; the registry's torchvision for torch 2.13 is a
    CUDA build that cannot be imported next to the CPU torch this project pins, so where that is
    the case the test is skipped with that reason (and only that one).
    """
    py = _toolkit_python()
    probe = subprocess.run([str(py), "-c", "import vlmeval.run"], capture_output=True, text=True, timeout=300)
    if probe.returncode != 0:
        known = "torchvision" in probe.stderr
        assert known, probe.stderr[-2000:]
        pytest.skip("VLMEvalKit cannot be imported here: no torchvision build matching torch 2.13 (CPU) on PyPI")
    from eval_files import mme_tsv

    env = _offline_env(tmp_path)
    lmu = tmp_path / "LMUData"
    mme_tsv(lmu / "MME_aki_tiny.tsv")
    env["LMUData"] = str(lmu)
    config = {"model": {"aki": {"class": "AkiVLMEval", "model_path": str(saved_model), "max_new_tokens": 4}},
              "data": {"MME_aki_tiny": {"class": "ImageYORNDataset", "dataset": "MME_aki_tiny"}}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    run = subprocess.run([str(py), "-m", "aki.eval.toolkits.vlmevalkit", "--config", str(tmp_path / "config.json"),
                          "--work-dir", str(tmp_path / "work")], capture_output=True, text=True, env=env,
                         timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    score_csv = next((tmp_path / "work").rglob("*_score.csv"))
    import pandas as pd

    table = pd.read_csv(score_csv)
    from aki.eval.benchmarks import get_benchmark

    bench = get_benchmark("mme")
    rows, _, _ = bench.read([lmu / "MME_aki_tiny.tsv"])
    preds = pd.read_excel(next((tmp_path / "work").rglob("*MME_aki_tiny.xlsx")))
    by_index = {str(i): str(p) for i, p in zip(preds["index"], preds["prediction"], strict=True)}
    ours = bench.module.score([dict(r, prediction=by_index[r["index"]]) for r in rows])
    assert ours["perception"] == pytest.approx(float(table["perception"][0]))
    assert ours["cognition"] == pytest.approx(float(table["reasoning"][0]))
