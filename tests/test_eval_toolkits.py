"""aki inside the evaluation toolkits, run through each toolkit's own entry point, offline.

The toolkits live in a separate environment, ``.venv-toolkits`` (``scripts/setup-toolkits.sh``,
run by ``setup.sh --test``). lmms-eval: its CLI runs a tiny aki model (saved to a temp folder) on a
tiny MME file in lmms-eval's (Hugging Face) layout through lmms-eval's own MME task, and its score
must equal ``aki eval``'s MME score under the same rule on the same predictions. VLMEvalKit: its
``run.py`` (through ``python -m aki.eval.toolkits.vlmevalkit``) runs a tiny aki model on a tiny MME
TSV; its predictions and scores must equal ``aki eval``'s on the same file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLKIT_PY = ROOT / ".venv-toolkits" / "bin" / "python"


def _toolkit_python() -> Path:
    if not TOOLKIT_PY.exists():
        pytest.fail("the toolkit environment is missing: run `bash scripts/setup-toolkits.sh` "
                    "(setup.sh --test runs it)")
    return TOOLKIT_PY


def _vlmevalkit_python() -> Path:
    """The toolkit venv's python, or a skip with the reason setup-toolkits.sh recorded for building it
    without VLMEvalKit's torchvision (no local torch 2.14.1 + torchvision 0.29.1 wheels)."""
    py = _toolkit_python()
    reason = ROOT / ".venv-toolkits" / ".aki-no-vlmevalkit"
    if reason.exists():
        pytest.skip(f"VLMEvalKit cannot start in .venv-toolkits: {reason.read_text().strip()}")
    return py


def _offline_env(tmp_path: Path) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_HOME=str(tmp_path / "hf"), WANDB_MODE="disabled", TOKENIZERS_PARALLELISM="false")
    env.pop("OPENAI_API_KEY", None)
    return env


def test_lmms_eval_registers_aki_through_its_entry_point():
    out = subprocess.run([str(_toolkit_python()), "-c",
                          "import lmms_eval.models as m; print(m.AVAILABLE_MODELS['aki'])"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("AkiLmms")


def test_lmms_eval_cli_scores_equal_aki_eval(saved_tiny_model, tmp_path):
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
    run = subprocess.run([str(py), "-m", "lmms_eval", "--model", "aki", "--model_args", f"pretrained={saved_tiny_model}",
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
    model = AkiForConditionalGeneration.from_pretrained(saved_tiny_model).eval()
    processor = AkiProcessor.from_pretrained(saved_tiny_model)
    for s in samples[:4]:
        image = load_image(docs[s["doc_id"]]["image"]["bytes"])
        assert generate_batch(model, processor, [s["input"]], [[image]], 4) == [s["filtered_resps"]]


def mme_tool_label(text: str) -> str:
    from aki.eval.yesno import mme_tool_yes_no

    return mme_tool_yes_no(text)


def _yes_no_model(path: Path, tsv: Path, targets: list[str]) -> None:
    """Save to ``path`` a tiny aki model that answers the rows of ``tsv`` (prompted as ``aki eval``
    prompts them) with exactly ``targets``, one token each.

    A random tiny model answers bytes that no yes/no rule can read, so both toolkits would score 0
    and agree by default. Here the tokenizer has ``Yes``, ``No`` and ``Maybe`` as tokens and the
    output head is fitted (least squares on the model's own last hidden states for these prompts)
    so that the answers are a chosen mix: pairs all right, half right, and unreadable. The test
    then checks that VLMEvalKit, running the saved model, gives the same answers and the same score.
    """
    import torch

    from aki.eval.benchmarks import get_benchmark
    from aki.eval.generation import generate_batch
    from aki.eval.readers.images import Base64Image
    from aki.processing import AkiImageProcessor, AkiProcessor, load_image
    from aki.processing.tiny_tokenizer import BUILTIN_CORPUS, build_tiny_tokenizer
    from aki.testing import (
        TINY_IMAGE_SIZE,
        TINY_NUM_IMAGE_TOKENS,
        build_seeded,
        tiny_config,
        tiny_text_config,
    )

    words = ("Yes", "No", "Maybe")
    tok = build_tiny_tokenizer("llama3", corpus=(*BUILTIN_CORPUS, *words * 3))
    processor = AkiProcessor(image_processor=AkiImageProcessor(size=TINY_IMAGE_SIZE), tokenizer=tok,
                             num_image_tokens=TINY_NUM_IMAGE_TOKENS, family="llama3")
    text = tiny_text_config("llama", len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                            pad_token_id=tok.pad_token_id)
    model = build_seeded(tiny_config("llama", vocab_size=len(tok), image_token_id=processor.image_token_id,
                                     text_config=text))
    ids = tok.convert_tokens_to_ids(list(words))
    assert [tok.decode([i]) for i in ids] == list(words)

    bench = get_benchmark("mme")
    rows, bad, _ = bench.read([tsv])
    assert not bad and len(rows) == len(targets)

    def ask(row):
        images = [load_image(s.to_bytes() if isinstance(s, Base64Image) else s) for s in row["images"]]
        return generate_batch(model, processor, [bench.module.prompt(row)], [images], 1)[0]

    head = model.get_output_embeddings()
    hidden = []
    hook = head.register_forward_hook(lambda _m, inputs, _o: hidden.append(inputs[0][0, -1].detach().clone()))
    for row in rows:
        ask(row)
    hook.remove()
    want = torch.tensor([[1.0 if t == w else -1.0 for w in words] for t in targets])
    fitted = torch.linalg.lstsq(torch.stack(hidden).double(), want.double()).solution.float()
    with torch.no_grad():
        head.weight.zero_()
        head.weight[ids] = fitted.T
    assert [ask(r) for r in rows] == targets
    model.save_pretrained(path)
    processor.save_pretrained(path)


# answers for eval_files.mme_tsv's rows (questions 0/1, 2/3, ... share an image; answers Yes, No):
# existence: one image both right, one half right; code_reasoning: both right, unreadable + right
TARGETS = ["Yes", "No", "Yes", "Yes", "Yes", "No", "Maybe", "No"]


# VLMEvalKit's prompt for each row of MME_aki_tiny, as the adapter reads it: {index: [text, images]}
VLMEVALKIT_PROMPTS = """
import json
from vlmeval.dataset import ImageYORNDataset
from aki.eval.toolkits.vlmevalkit import split_message
data = ImageYORNDataset("MME_aki_tiny")
out = {}
for i in range(len(data)):
    text, images = split_message(data.build_prompt(data.data.iloc[i]))
    out[str(data.data.iloc[i]["index"])] = [text, len(images)]
print(json.dumps(out))
"""


def test_vlmevalkit_entry_point(tmp_path):
    """VLMEvalKit's run.py (through aki's launcher) with aki's model class, offline, on a tiny MME
    TSV under a custom name (VLMEvalKit's MME rule and scorer, no judge): its predictions equal
    ``aki eval``'s on the same file, and its MME scores equal ``aki eval``'s.
    """
    py = _vlmevalkit_python()
    from eval_files import mme_tsv

    env = _offline_env(tmp_path)
    lmu = tmp_path / "LMUData"
    tsv = mme_tsv(lmu / "MME_aki_tiny.tsv")
    model_dir = tmp_path / "model"
    _yes_no_model(model_dir, tsv, TARGETS)
    # LMUData: VLMEvalKit reads <name>.tsv there (no URL and no md5 for a custom name, so nothing is
    # fetched); PRED_FORMAT=tsv: predictions readable without openpyxl; --judge exact_matching: the
    # rule-based yes/no extraction, no judge model is asked
    env.update(LMUData=str(lmu), PRED_FORMAT="tsv", EVAL_FORMAT="csv")
    config = {"model": {"aki": {"class": "AkiVLMEval", "model_path": str(model_dir), "max_new_tokens": 1}},
              "data": {"MME_aki_tiny": {"class": "ImageYORNDataset", "dataset": "MME_aki_tiny"}}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    work = tmp_path / "work"
    run = subprocess.run([str(py), "-m", "aki.eval.toolkits.vlmevalkit", "--config", str(tmp_path / "config.json"),
                          "--work-dir", str(work), "--judge", "exact_matching"],
                         capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    status = json.loads((work / "aki" / "status.json").read_text())["datasets"]["MME_aki_tiny"]
    assert status["status"] == "done" and status["judge_model"] == "exact_matching", status

    import pandas as pd

    preds = pd.read_csv(work / "aki" / "aki_MME_aki_tiny.tsv", sep="\t")
    theirs = {str(i): str(p) for i, p in zip(preds["index"], preds["prediction"], strict=True)}
    table = pd.read_csv(work / "aki" / "aki_MME_aki_tiny_score.csv")

    out = tmp_path / "aki-eval"
    aki = subprocess.run([str(Path(sys.executable).parent / "aki"), "eval", str(model_dir), "--bench", f"mme={tsv}",
                          "--out", str(out), "--batch-size", "1", "--max-new-tokens", "1", "--no-progress"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert aki.returncode == 0, aki.stdout[-3000:] + aki.stderr[-3000:]
    records = [json.loads(line) for line in (out / "mme.predictions.jsonl").open()]
    ours = {str(r["index"]): r["prediction"] for r in records}
    assert theirs == ours == {str(i): t for i, t in enumerate(TARGETS)}
    # the text the adapter gives the model is the prompt aki eval builds, with one image
    prompts = subprocess.run([str(py), "-c", VLMEVALKIT_PROMPTS], capture_output=True, text=True, env=env,
                             timeout=300, cwd=tmp_path)
    assert prompts.returncode == 0, prompts.stderr[-3000:]
    assert json.loads(prompts.stdout.splitlines()[-1]) == {str(r["index"]): [r["prompt"], 1] for r in records}
    scores = json.loads((out / "scores.json").read_text())["mme"]
    assert scores["unparsed"] == 1
    assert float(table["perception"][0]) == pytest.approx(scores["perception"])
    assert float(table["reasoning"][0]) == pytest.approx(scores["cognition"])
    for subtask, mine in scores["per_subtask"].items():
        assert float(table[subtask][0]) == pytest.approx(mine["score"]), subtask
    assert 0 < scores["perception"] < 200 and 0 < scores["cognition"] < 200  # not all right, not all wrong


def test_vlmevalkit_launcher_fails_when_vlmevalkit_skips_a_failure(saved_tiny_model, tmp_path):
    """VLMEvalKit logs a failed model x dataset and exits 0; aki's launcher exits 1 naming it."""
    py = _vlmevalkit_python()
    from eval_files import write_tsv

    env = _offline_env(tmp_path)
    lmu = tmp_path / "LMUData"
    write_tsv(lmu / "MME_aki_tiny.tsv", [{"index": 0, "image": "not an image " * 8, "question": "Is it? Please answer "
                                          "yes or no.", "answer": "Yes", "category": "existence"}])
    env.update(LMUData=str(lmu), PRED_FORMAT="tsv")
    config = {"model": {"aki": {"class": "AkiVLMEval", "model_path": str(saved_tiny_model), "max_new_tokens": 1}},
              "data": {"MME_aki_tiny": {"class": "ImageYORNDataset", "dataset": "MME_aki_tiny"}}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    run = subprocess.run([str(py), "-m", "aki.eval.toolkits.vlmevalkit", "--config", str(tmp_path / "config.json"),
                          "--work-dir", str(tmp_path / "work"), "--judge", "exact_matching"],
                         capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-3000:]
    assert "aki.eval.toolkits.vlmevalkit: error: aki x MME_aki_tiny: " in run.stderr, run.stderr[-3000:]


LMMS_LOGLIKELIHOOD = """
import json, sys
from types import SimpleNamespace
from PIL import Image
from aki.eval.toolkits.lmms_eval import AkiLmms
from aki.eval.generation import continuation_logprob
m = AkiLmms(pretrained=sys.argv[1])
doc = {"q": "What is shown?"}
m.task_dict = {"t": {"test": [doc]}}
image = Image.new("RGB", (64, 64), "red")
reqs = [SimpleNamespace(args=("What is shown?", target, lambda d: [image], 0, "t", "test"))
        for target in ("red circle", lambda d: "a blue square")]
got = m.loglikelihood(reqs)
want = [continuation_logprob(m.model, m.processor, "What is shown?", image, t) for t in ("red circle", "a blue square")]
import warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    ask = SimpleNamespace(args=("What is shown?", {"temperature": 0.7, "max_new_tokens": 2}, lambda d: [image], 0, "t", "test"))
    m.generate_until([ask, ask])
said = [str(w.message) for w in caught if "greedily" in str(w.message)]
calls = []
def next_round(doc, previous_output, round_idx, previous_round_info):
    calls.append((list(previous_output), round_idx, previous_round_info))
    return [image], "And the colour?", round_idx >= 2, previous_output, {"round": round_idx}
multi = SimpleNamespace(args=("What is shown?", {"max_new_tokens": 3}, lambda d: [image], next_round, 0, "t", "test"))
rounds = m.generate_until_multi_round([multi])
single = [SimpleNamespace(args=(c, {"max_new_tokens": 3}, lambda d: [image], 0, "t", "test"))
          for c in ("What is shown?", "And the colour?")]
print(json.dumps({"got": got, "want": want, "said": said, "rounds": rounds, "single": m.generate_until(single),
                  "calls": calls}))
"""


def test_lmms_eval_loglikelihood_scores_the_target_after_the_context(saved_tiny_model):
    """Likelihood requests score the target after the context; a task asking for sampling is told,
    once, that aki answers greedily; multi-round requests follow lmms-eval's round protocol."""
    out = subprocess.run([str(_toolkit_python()), "-c", LMMS_LOGLIKELIHOOD, str(saved_tiny_model)],
                         capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(res["got"]) == 2
    for (logp, greedy), (want_logp, want_greedy) in zip(res["got"], res["want"], strict=True):
        assert logp == pytest.approx(want_logp, abs=1e-5) and logp < 0
        assert greedy == want_greedy
    assert len(res["said"]) == 1 and "temperature" in res["said"][0]
    # multi-round: each round answers the task's next context as a single-turn prompt, until terminal
    assert res["rounds"] == [res["single"]]
    assert res["calls"] == [[res["single"][:1], 1, None], [res["single"], 2, {"round": 1}]]
