"""Each benchmark's scorer on hand-worked cases (numbers worked out by hand in the comments)."""

from __future__ import annotations

import pytest

from aki.eval import cvbench, mathvista, mmbench, mme, mmmu, pope, realworldqa, seedbench
from aki.eval.choices import match_option
from aki.eval.yesno import mme_tool_yes_no, vlmevalkit_yes_no

OPTS = {"A": "red", "B": "green", "C": "blue", "D": "yellow"}

# ----------------------------------------------------------------------------------- MME


def _mme_row(i, cat, pair, answer, pred):
    return {"index": str(i), "category": cat, "pair": pair, "answer": answer, "prediction": pred}


def test_mme_acc_plus_pairs_hand_worked():
    rows = [
        # existence: image 1 both right, image 2 one right -> acc 3/4 = 75, acc+ 1/2 = 50 -> 125
        _mme_row(0, "existence", "e1", "yes", "Yes"), _mme_row(1, "existence", "e1", "no", "No."),
        _mme_row(2, "existence", "e2", "yes", "Yes, there is."), _mme_row(3, "existence", "e2", "no", "Yes"),
        # OCR: both images wrong on one question -> acc 2/4 = 50, acc+ 0 -> 50
        _mme_row(4, "OCR", "o1", "yes", "yes"), _mme_row(5, "OCR", "o1", "no", "yes"),
        _mme_row(6, "OCR", "o2", "yes", "no"), _mme_row(7, "OCR", "o2", "no", "no"),
        # code_reasoning: all right -> 200; an empty answer elsewhere would be Unknown, never "no"
        _mme_row(8, "code_reasoning", "c1", "yes", "Yes"), _mme_row(9, "code_reasoning", "c1", "no", "No"),
    ]
    s = mme.score(rows)
    assert s["per_subtask"]["existence"]["acc"] == 75.0 and s["per_subtask"]["existence"]["acc_plus"] == 50.0
    assert s["per_subtask"]["OCR"]["score"] == 50.0
    assert s["perception"] == pytest.approx(175.0)
    assert s["cognition"] == pytest.approx(200.0)
    assert s["unparsed"] == 0
    assert mme.headline(s) == {"MME-P": 175.0, "MME-C": 200.0}


def test_mme_empty_answer_is_wrong_not_no():
    rows = [_mme_row(0, "existence", "e", "no", ""), _mme_row(1, "existence", "e", "yes", "Yes")]
    s = mme.score(rows)
    assert s["per_subtask"]["existence"]["acc"] == 50.0 and s["unparsed"] == 1
    assert s["mme_tool"]["per_subtask"]["existence"]["acc"] == 50.0


@pytest.mark.parametrize(("text", "vlm", "tool"), [
    ("Yes", "Yes", "yes"), ("No.", "No", "no"), ("yes, no", "Unknown", "yes"), ("", "Unknown", "other"),
    ("Not sure", "Unknown", "no"), ("y", "Unknown", "yes"), ("The answer is no", "No", "other"),
    ("N.o", "No", "no"),  # a lone period is deleted by the VQA punctuation step
])  # fmt: skip
def test_yes_no_rules(text, vlm, tool):
    assert vlmevalkit_yes_no(text) == vlm
    assert mme_tool_yes_no(text) == tool


# -------------------------------------------------------------------------------- MMBench


def test_option_matching_rule():
    assert match_option("B", OPTS) == "B"
    assert match_option("(C) blue", OPTS) == "C"
    assert match_option("The answer is D.", OPTS) == "D"
    assert match_option("green", OPTS) == "B"  # by option text
    assert match_option("red or green", OPTS) is None  # two texts
    assert match_option("A B", OPTS) is None  # two letters
    assert match_option("", OPTS) is None
    assert match_option("Cannot determine the answer", OPTS) == "Z"
    # the letter must be among the last five words
    assert match_option("A is what I would pick here if asked", OPTS) is None


def test_mmbench_circular_one_wrong_rotation_fails_the_question():
    base = {"question": "q", "category": "colour", "l2-category": "perception", "where": "f:1"}
    q0 = [dict(base, index="0", options=OPTS, answer="A")]
    q1 = [dict(base, index="1", options=OPTS, answer="B", category="shape")]
    rows, notes = mmbench.expand(q0 + q1)
    assert len(rows) == 8 and notes  # 4 rotations each
    for r in rows:  # answer every rotation right ...
        r["prediction"] = r["answer"]
    wrong = next(r for r in rows if r["index"] == "2000001")  # ... except question 1's 3rd rotation
    wrong["prediction"] = next(k for k in OPTS if k != wrong["answer"])
    s = mmbench.score(rows)
    assert s["overall"] == 50.0  # question 0 right, question 1 wrong
    assert s["vanilla"] == 100.0  # both unrotated rows are right
    assert s["per_category"] == {"colour": 100.0, "shape": 0.0}
    assert s["questions"] == 2 and s["unparsed"] == 0


def test_mmbench_rotation_moves_the_answer():
    rows, _ = mmbench.expand([{"index": "5", "options": {"A": "x", "B": "y", "C": "z"}, "answer": "C"}])
    by_index = {r["index"]: r for r in rows}
    assert by_index["1000005"]["options"] == {"A": "y", "B": "z", "C": "x"}
    assert by_index["1000005"]["answer"] == "B"
    assert by_index["2000005"]["answer"] == "A"


def test_seed_accuracy_by_letter():
    rows = [{"options": OPTS, "answer": "A", "prediction": "A", "category": "scene"},
            {"options": OPTS, "answer": "B", "prediction": "I think it is C", "category": "scene"},
            {"options": OPTS, "answer": "C", "prediction": "", "category": "count"}]
    s = seedbench.score(rows)
    assert s["overall"] == pytest.approx(100 / 3) and s["per_category"] == {"count": 0.0, "scene": 50.0}
    assert s["unparsed"] == 1


def test_realworldqa_options_from_question_and_open_answers():
    q = "Which way?\nA. left\nB. right\nPlease answer directly with only the letter."
    rows = [realworldqa.prepare({"question": q, "answer": "B", "options": {}, "where": "f:1"}),
            realworldqa.prepare({"question": "How many cars?", "answer": "3", "options": {}, "where": "f:2"})]
    assert rows[0]["options"] == {"A": "left", "B": "right"} and realworldqa.prompt(rows[0]) == q
    rows[0]["prediction"], rows[1]["prediction"] = "B.", "3."
    assert realworldqa.score(rows)["overall"] == 100.0
    rows[1]["prediction"] = "three"
    assert realworldqa.score(rows)["overall"] == 50.0


# ----------------------------------------------------------------------------------- MMMU


@pytest.mark.parametrize(("response", "expected"), [
    ("(B)", "B"),
    ("B", "B"),
    ("The answer is C.", "C"),
    ("A.", "A"),
    ("I think (A) at first but then (C)", "C"),  # several bracketed: the last written
    ("the colour of the object in the picture is blue", "C"),  # > 5 words: option text
    ("blue", None),  # short text: no rule applies (MMMU would guess at random)
    ("", None),
])  # fmt: skip
def test_mmmu_multiple_choice_parse(response, expected):
    assert mmmu.parse_choice(response, OPTS) == expected


def test_mmmu_open_parse_and_match():
    assert 24.0 in mmmu.parse_open("So the answer is 24.")
    assert mmmu.open_correct("24", mmmu.parse_open("Therefore, x = 24.0"))
    assert mmmu.open_correct("1,000", mmmu.parse_open("It costs 1000 dollars"))
    assert not mmmu.open_correct("25", mmmu.parse_open("the result is 24"))
    assert mmmu.open_correct("['Paris', 'paris city']", mmmu.parse_open("The capital is Paris"))
    assert not mmmu.open_correct("a", mmmu.parse_open("banana"))  # one letter must stand alone


def test_mmmu_score_validation_is_overall():
    rows = [
        {"question_type": "multiple-choice", "options": OPTS, "answer": "A", "prediction": "A", "split": "validation", "category": "Art"},
        {"question_type": "multiple-choice", "options": OPTS, "answer": "B", "prediction": "no idea", "split": "validation", "category": "Art"},
        {"question_type": "open", "options": {}, "answer": "7", "prediction": "The result is 7", "split": "dev", "category": "Math"},
    ]
    s = mmmu.score(rows)
    assert s["overall"] == 50.0 and s["per_split"] == {"dev": 100.0, "validation": 50.0} and s["unparsed"] == 1


# ------------------------------------------------------------------------------- MathVista


def _mv(qt, at, answer, pred, choices=(), precision=None):
    return {"question_type": qt, "answer_type": at, "answer": answer, "prediction": pred,
            "choices": list(choices), "precision": precision}


def test_mathvista_rule_based_extraction():
    ch = ["3/11", "8/11", "6/11"]
    rows = [
        _mv("multi_choice", "text", "8/11", "(B) 8/11", ch),  # letter in brackets
        _mv("multi_choice", "text", "8/11", "8/11", ch),  # the option text
        _mv("multi_choice", "text", "6/11", "B", ch),  # wrong letter
        _mv("free_form", "integer", "14", "14"),
        _mv("free_form", "float", "1.45", "1.450", precision=2),
        _mv("free_form", "integer", "14", 'The answer is "14".'),
        _mv("free_form", "integer", "14", "It is fourteen"),  # no rule reads it: unparsed
        _mv("free_form", "list", "[2007, 2008]", ""),  # empty: unparsed
    ]
    s = mathvista.score(rows)
    assert s["n"] == 8 and s["unparsed"] == 2
    assert s["overall"] == pytest.approx(100 * 5 / 8)
    assert "no GPT" in s["extraction"]


# ------------------------------------------------------------------------------------ POPE


@pytest.mark.parametrize(("text", "expected"), [
    ("No, there is not.", "no"), ("There is no dog.", "no"), ("Yes, a dog.", "yes"), ("It is not clear.", "no"),
    ("Yes", "yes"), ("yes.", "yes"), ("No", "no"), ("Yes. There is no cat.", "yes"),
    ("Nope", "yes"),  # LLaVA's rule: not one of the words No/not/no
    ("NO", "yes"),  # ... and case-sensitive
    ("", "empty"), ("   ", "empty"),  # an empty answer is never read as yes or no
])  # fmt: skip
def test_pope_parse(text, expected):
    assert pope.parse_yes_no(text) == expected


def test_pope_metrics_hand_worked():
    rows = [
        {"label": "yes", "prediction": "Yes", "category": "random"},
        {"label": "yes", "prediction": "No.", "category": "random"},
        {"label": "no", "prediction": "Yes, there is.", "category": "random"},
        {"label": "no", "prediction": "There is no cat.", "category": "random"},
        {"label": "yes", "prediction": "yes", "category": "popular"},
        {"label": "no", "prediction": "yes", "category": "popular"},
        {"label": "no", "prediction": "yes", "category": "popular"},
        {"label": "no", "prediction": "It is not.", "category": "popular"},
    ]
    s = pope.score(rows)
    r, p, o = s["random"], s["popular"], s["overall"]
    assert (r["accuracy"], r["precision"], r["recall"], r["f1"], r["yes_ratio"]) == (50.0, 50.0, 50.0, 50.0, 50.0)
    assert p["precision"] == pytest.approx(100 / 3) and p["recall"] == 100.0 and p["yes_ratio"] == 75.0
    assert o["accuracy"] == 50.0 and o["precision"] == 40.0 and o["yes_ratio"] == 62.5
    assert s["empty"] == 0


def test_pope_empty_predictions_are_wrong():
    # 4 yes + 4 no, every answer empty: LLaVA's script would read "yes" (F1 66.7); aki: all wrong
    rows = [{"label": lab, "prediction": "", "category": "random"} for lab in ["yes"] * 4 + ["no"] * 4]
    s = pope.score(rows)
    assert s["overall"]["accuracy"] == 0.0 and s["overall"]["f1"] == 0.0 and s["overall"]["yes_ratio"] == 0.0
    assert s["empty"] == 8 and s["unparsed"] == 8
    assert s["vlmevalkit"]["overall_f1"] == 0.0 and s["vlmevalkit"]["unknown"] == 8


# ------------------------------------------------------------------------------- CV-Bench


def test_cvbench_official_exact_match_and_lenient():
    def row(source, pred):
        return {"source": source, "answer": "(A)", "choices": ["x", "y"], "prediction": pred, "task": "Count"}

    rows = [row("ADE20K", "A"), row("ADE20K", "(A)"), row("COCO", " A\n"), row("COCO", "The answer is A"),
            row("Omni3D", "A."), row("Omni3D", "B")]
    s = cvbench.score(rows)
    # official: ADE20K 1/2, COCO 1/2, Omni3D 0/2 -> 2D 50, 3D 0, overall 25
    assert (s["2D"], s["3D"], s["overall"]) == (50.0, 0.0, 25.0)
    assert s["unparsed"] == 3 and "official" in s["scoring"]  # "(A)", "The answer is A", "A."
    # lenient: ADE20K 2/2, COCO 2/2, Omni3D 1/2 -> 2D 100, 3D 50, overall 75
    assert (s["lenient"]["2D"], s["lenient"]["3D"], s["lenient"]["overall"]) == (100.0, 50.0, 75.0)
    assert cvbench.headline(s) == {"CV-Bench2D": 50.0, "CV-Bench3D": 0.0}


def test_cvbench_prompt_is_the_official_one():
    text = cvbench.prompt({"question": "How many?", "choices": ["1", "2"]})
    assert text == "Answer with the option's letter from the given choices directly. How many?\nOptions:\nA. 1\nB. 2\n"
