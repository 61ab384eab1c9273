"""What MMA changes, as pictures: written by ``aki quickstart`` and ``aki pictures``.

:func:`write_mma_pictures` reads a causal and an MMA model fine-tuned from the same checkpoint,
and a synthetic test split (``aki data synth``), and writes into ``OUT/pictures/``:

- ``question_pair.png``: one test image and two questions about different objects. For each
  model and question: where on the image the image tokens that read the question's object words
  come from (their attention to those words, spread over the patches by the resampler), and a
  layers x words heatmap of the image tokens' attention to each word of the question; below,
  per layer, how much the image tokens' hidden states differ between the two questions
  (relative L2 difference, :func:`aki.analysis.question_sensitivity_per_layer`). Under causal
  attention the image tokens never see the question: every difference is exactly 0, which is
  checked (an error otherwise).
- ``word_classes_by_task.png``: the paper's Fig. 6 for the MMA model: the image tokens'
  attention to the question's words grouped into six part-of-speech classes
  (:mod:`aki.analysis.word_classes`), per task family, averaged over ``n`` test questions per
  family. Left: the share of an image token's attention that lands on the class (summed over its
  words); right: the mean per word of the class.
- ``pictures.json``: every number drawn, with the image, the questions and the files.

The pair: the first image of ``test/pope.jsonl`` (file order) with two "yes" questions about
different objects, and its first two such questions (POPE questions differ in the object's name
only). Task families: the CV-Bench tasks of ``test/cvbench.jsonl`` (Count, Relation, Depth,
Distance), ``Existence`` (``test/pope.jsonl``, all three negative samplings) and ``Attribute``
(the colour, shape and size questions of ``test/attributes.jsonl``; its count questions are left
to Count). Per family, ``n`` questions evenly spaced through the file. Every prompt is the one
the evaluation asks (:func:`aki.eval.runner.prompt_for`). Words the chat template adds are left
out of the classes; their share is reported beside them (``template_share``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

PICTURES_DIR = "pictures"
PAIR_FILE = "question_pair.png"
CLASSES_FILE = "word_classes_by_task.png"
NUMBERS_FILE = "pictures.json"
FAMILY_ORDER = ("Count", "Relation", "Depth", "Distance", "Existence", "Attribute")


def _test_dir(data_dir: Path) -> Path:
    test = data_dir / "test" if (data_dir / "test").is_dir() else data_dir
    if not (test / "pope.jsonl").is_file() and not (test / "cvbench.jsonl").is_file():
        raise FileNotFoundError(f"{str(data_dir)!r} holds no synthetic test split (test/pope.jsonl, "
                                "test/cvbench.jsonl); point it at a folder written by `aki data synth --out DIR`.")
    return test


def _rows(path: Path) -> list[dict]:
    from aki.eval.runner import read_jsonl

    return read_jsonl(path) if path.is_file() else []


def question_pair(test_dir: Path) -> tuple[Path, list[str], list[str]]:
    """``(image, [prompt 1, prompt 2], [object 1, object 2])``: the first image of ``pope.jsonl``
    with two "yes" questions about different objects (module docstring)."""
    from aki.eval.runner import prompt_for

    by_image: dict[str, list[dict]] = {}
    for row in _rows(test_dir / "pope.jsonl"):
        if str(row.get("label", "")).lower() != "yes":
            continue
        seen = by_image.setdefault(row["image"], [])
        if all(r["text"] != row["text"] for r in seen):
            seen.append(row)
        if len(seen) == 2:
            objects = [r.get("object") or r["text"] for r in seen]
            return test_dir / row["image"], [prompt_for(r, "pope") for r in seen], objects
    raise ValueError(f"{str(test_dir / 'pope.jsonl')!r} has no image with two 'yes' questions about different "
                     "objects; write the split again with `aki data synth` (scenes hold several objects).")


def family_items(test_dir: Path, n: int) -> dict[str, list[tuple[Path, str]]]:
    """``{family: [(image, prompt), ...]}``: ``n`` questions per task family, evenly spaced
    through its file (module docstring)."""
    from aki.eval.runner import prompt_for

    found: dict[str, list[tuple[Path, str]]] = {}
    for row in _rows(test_dir / "cvbench.jsonl"):
        found.setdefault(str(row["task"]), []).append((test_dir / row["image"], prompt_for(row, "cvbench")))
    for row in _rows(test_dir / "pope.jsonl"):
        found.setdefault("Existence", []).append((test_dir / row["image"], prompt_for(row, "pope")))
    for row in _rows(test_dir / "attributes.jsonl"):
        if str(row.get("task", "")).lower() != "count":
            found.setdefault("Attribute", []).append((test_dir / row["image"], prompt_for(row, "openqa")))
    order = [f for f in FAMILY_ORDER if f in found] + sorted(set(found) - set(FAMILY_ORDER))
    return {f: [found[f][k * len(found[f]) // min(n, len(found[f]))] for k in range(min(n, len(found[f])))]
            for f in order}


def _differing_words(a, b) -> tuple[list[int], list[int]]:
    """Indices of the user words that differ between two results (the object names)."""
    ua = [k for k, t in enumerate(a.is_template) if not t]
    ub = [k for k, t in enumerate(b.is_template) if not t]
    if len(ua) == len(ub):
        pairs = [(i, j) for i, j in zip(ua, ub, strict=True) if a.words[i] != b.words[j]]
        return [i for i, _ in pairs], [j for _, j in pairs]
    wa, wb = {a.words[k] for k in ua}, {b.words[k] for k in ub}
    return [k for k in ua if a.words[k] not in wb], [k for k in ub if b.words[k] not in wa]


def class_breakdown(model, processor, items: dict[str, list[tuple[Path, str]]]) -> dict[str, Any]:
    """Per family: the image tokens' attention (mean over layers, image tokens and questions) on
    the question words of each class: ``share`` (summed over the class's words) and ``per_word``
    (mean per word), in fractions of an image token's attention."""
    from aki.analysis.question_words import question_word_attention
    from aki.analysis.word_classes import CLASSES, word_classes
    from aki.processing import load_image

    out: dict[str, Any] = {}
    for family, rows in items.items():
        share = dict.fromkeys(CLASSES, 0.0)
        words = dict.fromkeys(CLASSES, 0)
        template = question = 0.0
        for image, prompt in rows:
            result = question_word_attention(model, processor, load_image(image), prompt)
            scores = result.word_scores()
            user = [k for k, t in enumerate(result.is_template) if not t]
            for k, cls in zip(user, word_classes(prompt, [result.words[k] for k in user]), strict=True):
                share[cls] += float(scores[k])
                words[cls] += 1
            question += float(scores.sum())
            template += float(scores.sum() - scores[user].sum())
        m = len(rows)
        out[family] = {
            "n": m,
            "share": {c: share[c] / m for c in CLASSES},
            "per_word": {c: (share[c] / words[c] if words[c] else 0.0) for c in CLASSES},
            "words": words,
            "question_share": question / m,
            "template_share": template / m,
        }
    return out


def _pair_figure(image, prompts: Sequence[str], results: dict, diffs: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    from aki.analysis.question_words import draw_layer_words, overlay_heatmap

    models = list(results)
    n_layers = results[models[0]][0].num_layers
    fig = Figure(figsize=(15, 4.2 * len(models) + 2.6), layout="constrained")
    grid = fig.add_gridspec(len(models) + 1, 4, width_ratios=[1, 2.2, 1, 2.2],
                            height_ratios=[1] * len(models) + [0.6])
    vmax = max(100 * float(np.stack([r.word_scores(layer)[~np.array(r.is_template)] for layer in range(n_layers)]).max())
               for pair in results.values() for r in pair) or 1.0  # one colour scale for the panels' words
    word_axes = []
    for row, name in enumerate(models):
        pair = results[name]
        marked = _differing_words(pair[0], pair[1])
        for q, result in enumerate(pair):
            words = marked[q] or None
            heat = sum(result.image_heatmap(word=k) for k in words) if words else result.image_heatmap()
            ax = fig.add_subplot(grid[row, 2 * q])
            ax.imshow(overlay_heatmap(image, heat))
            ax.set_axis_off()
            named = " ".join(result.words[k] for k in marked[q]) or "the question"
            if result.question_share() > 0:
                ax.set_title(f"{name}: where the image tokens\nreading '{named}' come from", fontsize=9)
            else:
                ax.set_title(f"{name}: no image token reads\n'{named}' (0 by construction)", fontsize=9)
            ax = fig.add_subplot(grid[row, 2 * q + 1])
            im = draw_layer_words(ax, result, user_only=True, vmax=vmax)
            word_axes.append(ax)
            ax.set_title(f"{name}, question {q + 1}: image tokens' attention to each word "
                         f"({100 * result.question_share():.2f}% in all)", fontsize=9)
    fig.colorbar(im, ax=word_axes, label="% of an image token's attention", shrink=0.6)
    ax = fig.add_subplot(grid[len(models), :])
    for name in models:
        ax.plot(range(len(diffs[name])), diffs[name], marker="o", label=name)
    ax.set_xticks(range(n_layers + 1), ["embeddings", *[f"layer {k}" for k in range(n_layers)]], fontsize=8)
    ax.set_ylabel("relative L2 difference", fontsize=9)
    ax.set_title("How much the image tokens' hidden states differ between the two questions "
                 f"(final: {', '.join(f'{m} {diffs[m][-1]:.4g}' for m in models)}; causal is 0 by construction)",
                 fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.suptitle("Q1: " + prompts[0].replace("\n", " ") + "\nQ2: " + prompts[1].replace("\n", " "), fontsize=10)
    fig.savefig(path, dpi=110)


def _classes_figure(breakdown: dict[str, Any], rule: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    from aki.analysis.word_classes import CLASS_LABELS, CLASSES

    families = list(breakdown)
    fig = Figure(figsize=(14, 4.8), layout="constrained")
    width = 0.8 / max(len(families), 1)
    x = np.arange(len(CLASSES))
    for k, (key, label) in enumerate((("share", "% of an image token's attention\n(all words of the class)"),
                                      ("per_word", "% of an image token's attention\n(mean per word of the class)"))):
        ax = fig.add_subplot(1, 2, k + 1)
        for f, family in enumerate(families):
            values = [100 * breakdown[family][key][c] for c in CLASSES]
            ax.bar(x + (f - (len(families) - 1) / 2) * width, values, width,
                   label=f"{family} (n={breakdown[family]['n']})")
        ax.set_xticks(x, [CLASS_LABELS[c].replace(" (", "\n(").replace("/", "/\n") for c in CLASSES], fontsize=8)
        ax.set_ylabel(label, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        if k == 0:
            ax.legend(fontsize=8)
    fig.suptitle(f"Image tokens' attention to question words by part of speech ({rule} model; the paper's Fig. 6)",
                 fontsize=10)
    fig.savefig(path, dpi=110)


def _load(folder: Path, key: str, *, causal: bool):
    from aki.model.loading import load_pretrained

    model, processor = load_pretrained(folder, key=key)
    rule = model.config.attention_rule
    if causal != (rule == "causal"):
        want = "causal" if causal else "a rule that is not causal (e.g. mma)"
        raise ValueError(f"{key} {str(folder)!r} holds a model with attention rule {rule!r}, and {key} needs "
                         f"{want}; pass the folders in the right order.")
    return model, processor


def write_mma_pictures(mma_model_dir: str | Path, causal_model_dir: str | Path, test_data_dir: str | Path,
                       out_dir: str | Path, *, n_per_family: int = 16) -> dict[str, Any]:
    """Write the pictures and numbers into ``out_dir/pictures/`` (module docstring). Returns
    ``{"files": {name: path}, "final_state_difference": {model: value}, ...}``, the content of
    ``pictures.json``. ``test_data_dir``: a folder written by ``aki data synth`` or its ``test/``."""
    import spacy
    import torch

    from aki.analysis.attention import question_sensitivity_per_layer
    from aki.analysis.question_words import question_word_attention
    from aki.analysis.word_classes import CLASS_LABELS, SPACY_MODEL, load_tagger
    from aki.processing import load_image

    if n_per_family < 1:
        raise ValueError(f"n_per_family must be at least 1, got {n_per_family}.")
    test = _test_dir(Path(test_data_dir))
    image_path, prompts, objects = question_pair(test)
    items = family_items(test, n_per_family)
    tagger = load_tagger()  # fail before the models run when the tagger is missing
    pictures = Path(out_dir) / PICTURES_DIR
    pictures.mkdir(parents=True, exist_ok=True)
    image = load_image(image_path)
    models = {"mma": _load(Path(mma_model_dir), "--mma", causal=False),
              "causal": _load(Path(causal_model_dir), "--causal", causal=True)}
    results, diffs = {}, {}
    with torch.no_grad():
        for name, (model, processor) in models.items():
            results[name] = [question_word_attention(model, processor, image, p) for p in prompts]
            diffs[name] = question_sensitivity_per_layer(model, processor, image, prompts)
    if any(d != 0.0 for d in diffs["causal"]):
        raise RuntimeError(f"under causal attention the image tokens cannot see the question, so their states "
                           f"must not differ between two questions, yet they do ({diffs['causal']}): the model "
                           "in --causal does not read its prompt causally; report this as a bug.")
    breakdown = class_breakdown(*models["mma"], items)
    files = {"pair": str(pictures / PAIR_FILE), "word_classes": str(pictures / CLASSES_FILE),
             "numbers": str(pictures / NUMBERS_FILE)}
    _pair_figure(image, prompts, results, diffs, Path(files["pair"]))
    _classes_figure(breakdown, models["mma"][0].config.attention_rule, Path(files["word_classes"]))
    numbers = {
        "image": str(image_path),
        "questions": list(prompts),
        "objects": objects,
        "models": {"mma": str(mma_model_dir), "causal": str(causal_model_dir)},
        "state_difference_per_layer": diffs,
        "final_state_difference": {name: d[-1] for name, d in diffs.items()},
        "question_words": {
            name: [{"words": list(r.words), "is_template": list(r.is_template),
                    "share_per_word": [float(v) for v in r.word_scores()], "question_share": r.question_share()}
                   for r in pair]
            for name, pair in results.items()},
        "word_classes": {"model": "mma", "classes": CLASS_LABELS, "n_per_family": n_per_family,
                         "tagger": f"spaCy {spacy.__version__}, {SPACY_MODEL} {tagger.meta.get('version', '')}",
                         "families": breakdown},
        "files": files,
    }
    Path(files["numbers"]).write_text(json.dumps(numbers, indent=2) + "\n", encoding="utf-8")
    return numbers


__all__ = ["CLASSES_FILE", "NUMBERS_FILE", "PAIR_FILE", "PICTURES_DIR", "class_breakdown", "family_items",
           "question_pair", "write_mma_pictures"]
