"""AkiProcessor: segments from the template, image expansion, labels, padding, limits, I/O."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from aki.masks import Segment, check_no_leaks, predicts_from_labels
from aki.processing import (
    DEFAULT_SYSTEM_PROMPT,
    AkiImageProcessor,
    AkiProcessor,
    ImageCountError,
    PromptTooLongError,
    TemplateStructureError,
    add_aki_tokens,
    build_tiny_tokenizer,
)

N_IMG = 5
T, I, Q, A = "T", "I", "Q", "A"  # noqa: E741 (segment letters)
LETTER = {int(Segment.TEXT): T, int(Segment.IMAGE): I, int(Segment.QUERY): Q, int(Segment.ANSWER): A}
RED = Image.new("RGB", (40, 30), (255, 0, 0))
BLUE = Image.new("RGB", (20, 50), (0, 0, 255))


@pytest.fixture(scope="module")
def procs() -> dict[str, AkiProcessor]:
    return {
        fam: AkiProcessor(AkiImageProcessor(size=16), build_tiny_tokenizer(fam), num_image_tokens=N_IMG)
        for fam in ("phi3", "llama3", "qwen2", "qwen3")
    }


def user(*items):
    content = [{"type": "image"} if it is None else {"type": "text", "text": it} for it in items]
    return {"role": "user", "content": content}


def assistant(text):
    return {"role": "assistant", "content": text}


def runs(proc: AkiProcessor, batch, row: int = 0) -> list[tuple[str, str]]:
    """(decoded text, segment letter) per maximal run of equal segments, padding skipped."""
    ids, segs = batch["input_ids"][row].tolist(), batch["segments"][row].tolist()
    out: list[tuple[list[int], int]] = []
    for tid, seg in zip(ids, segs, strict=True):
        if seg == Segment.PAD:
            continue
        if out and out[-1][1] == seg:
            out[-1][0].append(tid)
        else:
            out.append(([tid], seg))
    return [(proc.decode(run), LETTER[seg]) for run, seg in out]


def merged(pieces):
    out = []
    for text, letter in pieces:
        if out and out[-1][1] == letter:
            out[-1] = (out[-1][0] + text, letter)
        else:
            out.append((text, letter))
    return out


SINGLE = [user(None, "What is it?"), assistant("A red cube.")]
SINGLE_EXPECTED = {
    "phi3": [
        (f"<s><|system|>\n{DEFAULT_SYSTEM_PROMPT}<|end|>\n<|user|>\n", T),
        ("<image>", I),
        ("\nWhat is it?<|end|>\n<|assistant|>", Q),
        ("\nA red cube.<|endoftext|>", A),
    ],
    "llama3": [
        ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n", T),
        ("<image>", I),
        ("\nWhat is it?<|eot_id|><|start_header_id|>assistant<|end_header_id|>", Q),
        ("\n\nA red cube.<|eot_id|>", A),
    ],
    "qwen2": [
        ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n", T),
        ("<image>", I),
        ("\nWhat is it?<|im_end|>\n<|im_start|>assistant", Q),
        ("\nA red cube.<|im_end|>", A),
        ("\n", T),
    ],
    "qwen3": [
        ("<|im_start|>user\n", T),
        ("<image>", I),
        ("\nWhat is it?<|im_end|>\n<|im_start|>assistant", Q),
        ("\n<think>\n\n</think>\n\nA red cube.<|im_end|>", A),
        ("\n", T),
    ],
}


@pytest.mark.parametrize("family", sorted(SINGLE_EXPECTED))
def test_single_turn_segments(procs, family):
    proc = procs[family]
    batch = proc.encode_conversations([SINGLE], [[RED]])
    assert runs(proc, batch) == merged(SINGLE_EXPECTED[family])


def test_multi_turn_segments_phi3(procs):
    proc = procs["phi3"]
    conv = [*SINGLE, user("And the color?"), assistant("Red."), user(None, "Now?"), assistant("Blue.")]
    batch = proc.encode_conversations([conv], [[RED, BLUE]])
    head = f"<s><|system|>\n{DEFAULT_SYSTEM_PROMPT}<|end|>\n<|user|>\n"
    assert runs(proc, batch) == merged([
        (head, T), ("<image>", I), ("\nWhat is it?<|end|>\n<|assistant|>", Q), ("\nA red cube.<|endoftext|>", A),
        # a later turn without an image: its text and assistant marker are TEXT
        ("<|user|>\nAnd the color?<|end|>\n<|assistant|>", T), ("\nRed.<|endoftext|>", A),
        # a later turn with a new image starts a new prompt block
        ("<|user|>\n", T), ("<image>", I), ("\nNow?<|end|>\n<|assistant|>", Q), ("\nBlue.<|endoftext|>", A),
    ])


def test_multi_turn_segments_llama3(procs):
    proc = procs["llama3"]
    conv = [*SINGLE, user("And the color?"), assistant("Red.")]
    batch = proc.encode_conversations([conv], [[RED]])
    assert runs(proc, batch)[-2:] == [
        ("<|start_header_id|>user<|end_header_id|>\n\nAnd the color?<|eot_id|>"
         "<|start_header_id|>assistant<|end_header_id|>", T),
        ("\n\nRed.<|eot_id|>", A),
    ]


def test_text_then_image_order(procs):
    proc = procs["qwen3"]
    prompt = proc.apply_chat_template([user("Describe this:", None)])
    batch = proc(images=[RED], text=prompt)
    assert runs(proc, batch) == [
        ("<|im_start|>user\nDescribe this:", T),
        ("<image>", I),
        ("\n<|im_end|>\n<|im_start|>assistant", Q),
        ("\n<think>\n\n</think>\n\n", A),  # the template's lead-in: answer side, not labelled
    ]
    assert "labels" not in batch


def test_no_image_prompt_is_text(procs):
    proc = procs["llama3"]
    batch = proc(text=proc.apply_chat_template([{"role": "system", "content": "Be brief."}, user("Hi")]))
    assert runs(proc, batch)[-1] == ("\n\n", A)  # the lead-in after the assistant header
    assert set(batch["segments"][0, :-2].tolist()) == {int(Segment.TEXT)}
    assert "pixel_values" not in batch and "labels" not in batch


def test_several_images_and_pixel_order(procs):
    proc = procs["qwen2"]
    batch = proc(text=[proc.apply_chat_template([user(None, None, "Same?")]), proc.apply_chat_template([user(None, "x")])],
                 images=[[RED, BLUE], [BLUE]])
    assert runs(proc, batch, 0)[1:] == [
        ("<image>", I), ("\n", Q), ("<image>", I), ("\nSame?<|im_end|>\n<|im_start|>assistant", Q), ("\n", A)
    ]
    pv = batch["pixel_values"]
    assert pv.shape == (3, 3, 16, 16)
    direct = proc.image_processor([RED, BLUE, BLUE], return_tensors="pt")["pixel_values"]
    assert torch.equal(pv, direct)  # RGB images: exactly SigLIP's transform


@pytest.mark.parametrize("family", ["phi3", "llama3", "qwen2", "qwen3"])
def test_expansion_labels_and_no_leaks(procs, family):
    proc = procs[family]
    convs = [
        [user(None, "What is it?"), assistant("A red cube."), user("More?"), assistant("No.")],
        [user("Compare", None, None, "please"), assistant("They differ.")],
    ]
    batch = proc.encode_conversations(convs, [[RED], [RED, BLUE]])
    ids, segs, labels = batch["input_ids"], batch["segments"], batch["labels"]
    is_img = segs == Segment.IMAGE
    assert torch.equal(ids == proc.image_token_id, is_img)
    assert is_img.sum(1).tolist() == [N_IMG, 2 * N_IMG]
    is_ans = segs == Segment.ANSWER
    assert torch.equal(labels != -100, is_ans)
    assert torch.equal(labels[is_ans], ids[is_ans])
    # an answer's end-of-turn token carries loss and is a stop token
    assert int(ids[0][is_ans[0]][-1]) in proc.eos_token_ids
    check_no_leaks(segs, predicts_from_labels(labels), "mma")
    # decoding gives back the rendered text
    assert proc.decode(ids[0][batch["attention_mask"][0].bool()]) == proc.apply_chat_template(convs[0], add_generation_prompt=False)


def test_padding_sides(procs):
    proc = procs["phi3"]
    prompts = [proc.apply_chat_template([user(None, "Hi")]), proc.apply_chat_template([user(None, "A much longer question here?")])]
    left = proc(prompts, [RED, BLUE])
    right = proc(prompts, [RED, BLUE], padding_side="right")
    n_pad = int((left["attention_mask"][0] == 0).sum())
    assert n_pad > 0
    assert left["attention_mask"][0, :n_pad].sum() == 0 and left["attention_mask"][0, n_pad:].all()
    assert (left["input_ids"][0, :n_pad] == proc.pad_token_id).all()
    assert (left["segments"][0, :n_pad] == Segment.PAD).all()
    assert right["attention_mask"][0, -n_pad:].sum() == 0 and (right["segments"][0, -n_pad:] == Segment.PAD).all()
    assert torch.equal(left["input_ids"][0, n_pad:], right["input_ids"][0, :-n_pad])
    assert torch.equal(left["input_ids"][1], right["input_ids"][1])
    train = proc.encode_conversations([[user(None, "Hi"), assistant("Yes.")], [user(None, "Longer?"), assistant("No, it is not.")]], [[RED], [BLUE]])
    assert train["attention_mask"][0, -1] == 0 and (train["labels"][0][train["attention_mask"][0] == 0] == -100).all()


def test_image_count_mismatch(procs):
    proc = procs["phi3"]
    two = proc.apply_chat_template([user(None, None, "Same?")])
    with pytest.raises(ImageCountError, match=r"sample 0: the text has 2 <image> marker\(s\) but 1 image") as info:
        proc(two, [RED])
    assert isinstance(info.value, ValueError) and "one <image> marker" in str(info.value)
    one = proc.apply_chat_template([user(None, "x")])
    with pytest.raises(ImageCountError, match="sample 1: the text has 2"):
        proc([one, two], [[RED], [RED]])
    with pytest.raises(ImageCountError, match=r"\[1, 2\]"):
        proc([one, two], [RED, BLUE])
    with pytest.raises(ImageCountError, match="sample 0: the text has 1"):
        proc(one)
    flat = proc([one, two], [RED, BLUE, RED])  # a flat list is split by marker counts
    assert flat["pixel_values"].shape[0] == 3


def test_empty_question(procs):
    proc = procs["phi3"]
    batch = proc(images=[RED], text=proc.apply_chat_template([user(None, "")]))
    assert runs(proc, batch)[-3:] == [("<image>", I), ("\n<|end|>\n<|assistant|>", Q), ("\n", A)]
    batch = proc(images=[RED], text=proc.apply_chat_template([user(None)]))
    assert runs(proc, batch)[-2] == ("\n<|end|>\n<|assistant|>", Q)


def test_prompt_too_long(procs):
    proc = procs["llama3"]
    prompt = proc.apply_chat_template([user(None, "What is in the image?")])
    n = len(proc.tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert proc(prompt, [RED], max_length=n)["input_ids"].shape[1] == n + N_IMG - 1
    with pytest.raises(PromptTooLongError, match=rf"sample 0: the prompt has {n} tokens") as info:
        proc(prompt, [RED], max_length=n - 1)
    assert info.value.sample_index == 0 and info.value.length == n and info.value.max_length == n - 1


def test_training_truncation_only_inside_answers(procs):
    proc = procs["qwen2"]
    conv = [user(None, "What is it?"), assistant("A red cube on a table."), user("And?"), assistant("Nothing else.")]
    full = proc.encode_conversations([conv], [[RED]])
    segs = full["segments"][0].tolist()
    starts = [k for k in range(len(segs)) if segs[k] == Segment.ANSWER and segs[k - 1] != Segment.ANSWER]
    first_answer_end = next(k for k in range(starts[0], len(segs)) if segs[k] != Segment.ANSWER) - 1
    prompt_len = starts[0] - (N_IMG - 1)
    # cut inside the first answer
    cut = proc.encode_conversations([conv], [[RED]], max_length=prompt_len + 2)
    got = cut["segments"][0].tolist()
    assert len(got) - (N_IMG - 1) == prompt_len + 2 and got[-2:] == [int(Segment.ANSWER)] * 2
    assert got[:-2] == segs[: len(got) - 2]
    # a cut inside the second prompt drops that turn whole (ends at the end of answer 1)
    cut = proc.encode_conversations([conv], [[RED]], max_length=starts[1] - (N_IMG - 1) - 1)
    got = cut["segments"][0].tolist()
    assert got[-1] == Segment.ANSWER and got == segs[: first_answer_end + 1]
    assert proc.decode(cut["input_ids"][0]).endswith("A red cube on a table.<|im_end|>")
    # a cut inside the second answer keeps the whole second prompt
    cut = proc.encode_conversations([conv], [[RED]], max_length=starts[1] - (N_IMG - 1) + 1)
    assert cut["segments"][0].tolist() == segs[: starts[1] + 1]
    # no room for any answer token: a catchable error naming the sample
    with pytest.raises(PromptTooLongError, match="sample 1: the prompt before the first answer"):
        proc.encode_conversations([[user(None, "Hi"), assistant("Yes.")], conv], [[RED], [RED]], max_length=prompt_len)


def test_captions(procs):
    proc = procs["phi3"]
    batch = proc.encode_captions(["a red cube", "blue"], [RED, BLUE])
    assert runs(proc, batch) == [("<s>", T), ("<image>", I), ("a red cube<|endofchunk|><|endoftext|>", A)]
    labels, segs = batch["labels"], batch["segments"]
    assert torch.equal(labels != -100, segs == Segment.ANSWER)
    assert batch["pixel_values"].shape[0] == 2 and batch["attention_mask"][1, -1] == 0
    ti = proc.encode_captions("a red cube", [RED], order="T&I")
    assert runs(proc, ti) == [("<s>", T), ("a red cube", A), ("<image>", I), ("<|endofchunk|><|endoftext|>", A)]
    qwen = procs["qwen2"].encode_captions(["a cube"], [RED])
    assert runs(procs["qwen2"], qwen) == [("<image>", I), ("a cube<|endofchunk|><|im_end|>", A)]


def test_caption_truncation(procs):
    proc = procs["phi3"]
    long = " ".join(["red cube"] * 40)
    out = proc.encode_captions([long], [RED], max_length=20)
    assert out["input_ids"].shape[1] == 20 + N_IMG - 1
    assert (out["segments"][0, 1 : 1 + N_IMG] == Segment.IMAGE).all()
    assert proc.decode(out["input_ids"][0][1 + N_IMG :]).strip().startswith("red cube red")
    ti = proc.encode_captions([long], [RED], order="T&I", max_length=20)
    r = runs(proc, ti)
    assert [letter for _, letter in r] == [T, A, I, A] and r[-1][0] == "<|endofchunk|><|endoftext|>"
    assert ti["input_ids"].shape[1] == 20 + N_IMG - 1
    assert proc.encode_captions([long], [RED], max_length=None)["input_ids"].shape[1] > 60
    with pytest.raises(PromptTooLongError, match="caption 0"):
        proc.encode_captions(["a b c"], [RED], max_length=2)


def test_token_ids(procs):
    vocab = {f: p.tokenizer.get_vocab() for f, p in procs.items()}
    assert procs["phi3"].eos_token_ids == [vocab["phi3"]["<|endoftext|>"], vocab["phi3"]["<|end|>"]]
    assert procs["llama3"].eos_token_ids[0] == vocab["llama3"]["<|eot_id|>"]
    assert vocab["llama3"]["<|end_of_text|>"] in procs["llama3"].eos_token_ids
    assert procs["qwen3"].eos_token_ids == [vocab["qwen3"]["<|im_end|>"], vocab["qwen3"]["<|endoftext|>"]]
    for f, p in procs.items():
        assert p.image_token_id == vocab[f]["<image>"] and p.pad_token_id == vocab[f]["<pad>"]
        assert p.family == f


def test_save_load_round_trip(procs, tmp_path):
    proc = procs["phi3"]
    proc.save_pretrained(tmp_path / "p")
    again = AkiProcessor.from_pretrained(tmp_path / "p")
    assert again.to_dict() == proc.to_dict()
    assert again.image_processor.to_dict() == proc.image_processor.to_dict()
    conv = [[user(None, "What is it?"), assistant("A red cube.")], [user("Hm", None), assistant("x")]]
    a = proc.encode_conversations(conv, [[RED], [BLUE]])
    b = again.encode_conversations(conv, [[RED], [BLUE]])
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert again.eos_token_ids == proc.eos_token_ids
    assert AkiProcessor.from_pretrained(tmp_path / "p", num_image_tokens=3).num_image_tokens == 3


def test_from_pretrained_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        AkiProcessor.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="aki-test/not-a-real-repo"):
        AkiProcessor.from_pretrained("aki-test/not-a-real-repo")  # conftest sets HF_HUB_OFFLINE


def test_apply_chat_template_batch_and_tokenize(procs):
    proc = procs["llama3"]
    convs = [[user(None, "a")], [user("b")]]
    assert isinstance(proc.apply_chat_template(convs), list)
    conv = [{"role": "user", "content": [{"type": "image", "image": RED}, {"type": "text", "text": "q"}]}]
    batch = proc.apply_chat_template(conv, tokenize=True)
    assert batch["pixel_values"].shape[0] == 1 and (batch["segments"] == Segment.IMAGE).sum() == N_IMG


def test_template_and_tokenizer_checks():
    tok = build_tiny_tokenizer("qwen2")
    with pytest.raises(TemplateStructureError, match="generation prompt"):
        AkiProcessor(tokenizer=tok, chat_template="{% for m in messages %}{{ m['content'] }}{% endfor %}")
    with pytest.raises(ValueError, match="answer"):
        AkiProcessor(tokenizer=tok, family="qwen2", num_image_tokens=2)("<|im_start|>assistant\nx<image><|im_end|>", [RED])
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.add_special_tokens(["<|im_start|>", "<|im_end|>", "<|endoftext|>"])
    bare = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|im_end|>")
    with pytest.raises(ValueError, match="add_aki_tokens"):
        AkiProcessor(tokenizer=bare)
    assert add_aki_tokens(bare) == 3 and add_aki_tokens(bare) == 0
    proc = AkiProcessor(tokenizer=bare, num_image_tokens=2)
    assert proc.family == "qwen2"
    assert (proc("<image>hi", [RED])["segments"] == Segment.IMAGE).sum() == 2
