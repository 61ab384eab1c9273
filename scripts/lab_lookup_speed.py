"""Lab experiment (docs/quickstart-lab.md, item 45): how fast does the quickstart's decoder learn a
look-up in a scene told in words, and what speeds it up?

Items 43-44 found that the 4-layer decoder learns "where is the <name>?" to only 17.6 % in a 3,000-step
text stage. This driver isolates that skill: a fresh transformers ``LlamaForCausalLM`` with the shipped
decoder's tokenizer, trained on one or a few generated question kinds about a scene written as a
caption ("This image shows a small red circle at x 3 y 5, ..."), loss on the answer tokens only, and
scored on 400 questions per kind drawn from their own random stream, the same for every run (a
scene repeated from training is possible but rare), teacher-forced with every answer token right,
which is what greedy decoding gets right. Its scenes are drawn here, not by ``aki data synth``: six colours and six
shapes on an 8 x 8 grid, so that a run takes minutes, not the text stage's hour.

Question kinds: ``where`` (the cell of a uniquely named colour-shape pair: "x 3 y 5"), ``where1``
(the same, named by a unique shape alone), ``rel`` (left or right of two named objects: two look-ups
and a comparison) and ``relcot`` (the same question, answered with both x values first, as worked
steps, under its own instruction).

    .venv/bin/python scripts/lab_lookup_speed.py --tasks where --nobj 3,7 --curriculum 1000 --steps 2000 --init-std 0.02
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch

TOKENIZER = Path(__file__).resolve().parents[1] / "src" / "aki" / "language" / "pretrained" / "synth-llama-tiny"
COLOURS = ("red", "green", "blue", "yellow", "purple", "orange")
SHAPES = ("circle", "square", "triangle", "diamond", "cross", "star")
TASKS = ("where", "where1", "rel", "relcot")
SHORT = "\nAnswer the question using a single word or phrase."
WORKED = "\nGive each x, then the answer."
SMALL_SCENES = (2, 3)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", default="where,rel", help=f"comma-separated, from {', '.join(TASKS)}")
    p.add_argument("--nobj", default="3,7", help="objects per scene, lowest,highest")
    p.add_argument("--curriculum", type=int, default=0,
                   help="train the first N steps on scenes of 2-3 objects (scoring always uses --nobj)")
    p.add_argument("--first-tasks", default=None,
                   help="comma-separated kinds trained in the first --first-steps steps, before --tasks")
    p.add_argument("--first-steps", type=int, default=0)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--init-std", type=float, default=0.08, help="initializer_range")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--loss-on-all", action="store_true", help="loss on every token, not the answer only")
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--eval-items", type=int, default=400, help="held-out questions per kind")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    tasks = args.tasks.split(",")
    first = args.first_tasks.split(",") if args.first_tasks else tasks
    for option, kinds in (("--tasks", tasks), ("--first-tasks", first)):
        if any(t not in TASKS for t in kinds):
            p.error(f"{option}: {','.join(kinds)!r}; choose from {', '.join(TASKS)}")
    if bool(args.first_tasks) != (args.first_steps > 0):
        p.error("--first-tasks and --first-steps go together: give both or neither")
    try:
        lo, hi = (int(v) for v in args.nobj.split(","))
    except ValueError:
        p.error(f"--nobj {args.nobj}: give two whole numbers, lowest,highest (for example 3,7)")
    if not 2 <= lo <= hi:
        p.error(f"--nobj {args.nobj}: need 2 <= lowest <= highest (a relation names two objects)")
    args.task_list, args.first_list, args.objects = tasks, first, (lo, hi)
    return args


class Questions:
    """Scenes and questions from one ``random.Random``; ``small`` switches to 2-3-object scenes."""

    def __init__(self, objects: tuple[int, int]):
        self.objects, self.small = objects, False

    def scene(self, rng: random.Random) -> list[tuple[str, str, str, int, int]]:
        n = rng.randint(*SMALL_SCENES) if self.small else rng.randint(*self.objects)
        return [(rng.choice(["small", "large"]), rng.choice(COLOURS), rng.choice(SHAPES), rng.randrange(8),
                 rng.randrange(8)) for _ in range(n)]

    def item(self, rng: random.Random, task: str) -> tuple[str, str]:
        """(prompt, answer); scenes without a fitting object are drawn again."""
        while True:
            objs = self.scene(rng)
            names = [(c, s) for _, c, s, _, _ in objs]
            unique = [i for i, name in enumerate(names) if names.count(name) == 1]
            if task == "where" and unique:
                _, c, s, x, y = objs[rng.choice(unique)]
                return _caption(objs) + f"\nWhere is the {c} {s}?" + SHORT, f"x {x} y {y}"
            if task == "where1":
                shapes = [o[2] for o in objs]
                unique_shape = [i for i in range(len(objs)) if shapes.count(shapes[i]) == 1]
                if not unique_shape:
                    continue
                _, c, s, x, y = objs[rng.choice(unique_shape)]
                return _caption(objs) + f"\nWhere is the {s}?" + SHORT, f"x {x} y {y}"
            if task in ("rel", "relcot") and len(unique) >= 2:
                i, j = rng.sample(unique, 2)
                if objs[i][3] == objs[j][3]:
                    continue
                answer = "left" if objs[i][3] < objs[j][3] else "right"
                if task == "relcot":
                    answer = f"x {objs[i][3]} x {objs[j][3]} {answer}"
                question = (f"\nIs the {objs[i][1]} {objs[i][2]} on the left or on the right side of the "
                            f"{objs[j][1]} {objs[j][2]}?")
                return _caption(objs) + question + (WORKED if task == "relcot" else SHORT), answer


def _caption(objs: list[tuple[str, str, str, int, int]]) -> str:
    parts = [f"a {z} {c} {s} at x {x} y {y}" for z, c, s, x, y in objs]
    return "This image shows " + ", ".join(parts[:-1]) + " and " + parts[-1] + "."


def main(argv: list[str] | None = None) -> list[dict]:
    """Train, print one JSON line per scoring (step, smoothed loss, seconds, % per kind); returns them."""
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    a = parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    tok = PreTrainedTokenizerFast.from_pretrained(str(TOKENIZER))
    questions = Questions(a.objects)

    def encode(prompt: str, answer: str) -> tuple[list[int], list[int]]:
        prompt_ids = tok(prompt + "\nAnswer:", add_special_tokens=False).input_ids
        answer_ids = [*tok(" " + answer, add_special_tokens=False).input_ids, tok.eos_token_id]
        ids = [tok.bos_token_id, *prompt_ids, *answer_ids]
        context = [-100, *prompt_ids] if a.loss_on_all else [-100] * (1 + len(prompt_ids))
        return ids, context + answer_ids

    def batch(rng: random.Random, n: int, task: str | None = None, kinds: list[str] | None = None):
        rows = [encode(*questions.item(rng, task or rng.choice(kinds))) for _ in range(n)]
        length = max(len(ids) for ids, _ in rows)
        ids = torch.full((n, length), tok.pad_token_id)
        labels = torch.full((n, length), -100)
        mask = torch.zeros((n, length), dtype=torch.long)
        for k, (i, lab) in enumerate(rows):
            ids[k, :len(i)], labels[k, :len(lab)], mask[k, :len(i)] = torch.tensor(i), torch.tensor(lab), 1
        return ids, labels, mask

    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=a.hidden, intermediate_size=3 * a.hidden,
                      num_hidden_layers=a.layers, num_attention_heads=a.heads, num_key_value_heads=a.kv_heads,
                      initializer_range=a.init_std, max_position_embeddings=1024, rope_theta=10000.0,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model = LlamaForCausalLM(cfg)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    keep = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay}, {"params": keep, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.999))
    held_out_rng = random.Random(12345)  # its own stream: the same held-out questions for every run
    held_out = {t: batch(held_out_rng, a.eval_items, t) for t in dict.fromkeys(a.first_list + a.task_list)}

    def score() -> dict[str, float]:
        model.eval()
        out = {}
        with torch.no_grad():
            for task, (ids, labels, mask) in held_out.items():
                right = 0
                for s in range(0, len(ids), 100):
                    guess = model(input_ids=ids[s:s + 100], attention_mask=mask[s:s + 100]).logits[:, :-1].argmax(-1)
                    gold = labels[s:s + 100, 1:]
                    right += ((guess == gold) | (gold == -100)).all(-1).sum().item()
                out[task] = round(100 * right / len(ids), 1)
        model.train()
        return out

    rng, start, smoothed, rows = random.Random(a.seed), time.time(), None, []
    for step in range(1, a.steps + 1):
        lr = a.lr * min(1.0, step / a.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / a.steps)))
        for group in opt.param_groups:
            group["lr"] = lr
        questions.small = step <= a.curriculum
        kinds = a.first_list if step <= a.first_steps else a.task_list
        ids, labels, mask = batch(rng, a.batch_size, kinds=kinds)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        smoothed = loss.item() if smoothed is None else 0.98 * smoothed + 0.02 * loss.item()
        if step % a.eval_every == 0 or step == a.steps:
            rows.append({"step": step, "loss": round(smoothed, 3), "s": round(time.time() - start), **score()})
            print(json.dumps(rows[-1]), flush=True)
    return rows


if __name__ == "__main__":
    main()
