"""Lab experiment (docs/quickstart-lab.md, item 22): how fast can a small transformer learn one
lookup, "colour of the <shape>", from aki's frozen image features, outside aki's decoder?

It answers whether the quickstart's image tokens hold the answer and how much the decoder's set-up
(Llama with RoPE, its initial scale, the distance between image and question) slows learning. The
question is given as two ids (shape, size or none), the answer comes from a 5-way head on a final
query token. Questions come from the synthetic training split (``aki data synth``); the last
``--n-test`` of them (other scenes) are held out.

    .venv/bin/python scripts/lab_lookup_upper_bound.py --data runs/quickstart/data \\
        --features resampler --model runs/quickstart/seed0/pt-IT-causal/final --arch llama --init-std 0.08
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import nn


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="an `aki data synth` folder")
    p.add_argument("--features", choices=["patches", "resampler"], default="patches",
                   help="the tower's patch features, or the resampler outputs of --model")
    p.add_argument("--tower", type=Path, default=None, help="tower folder (default: the one shipped with aki)")
    p.add_argument("--model", type=Path, default=None, help="an AKI model folder (for --features resampler)")
    p.add_argument("--arch", choices=["encoder", "llama"], default="llama",
                   help="PyTorch encoder (bidirectional, learned positions) or transformers' Llama (causal, RoPE)")
    p.add_argument("--init-std", type=float, default=0.02, help="Llama initializer_range")
    p.add_argument("--rope-theta", type=float, default=10000.0)
    p.add_argument("--filler", type=int, default=0, help="learned filler tokens between image and question")
    p.add_argument("--n-items", type=int, default=4000)
    p.add_argument("--n-test", type=int, default=500)
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--every", type=int, default=200, help="print held-out accuracy every N steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch compute threads (1: steady on a shared machine)")
    return p.parse_args(argv)


class LookupNet(nn.Module):
    """[image tokens, filler, shape id, size id, query] -> colour of the named object."""

    def __init__(self, feat_dim: int, n_image: int, n_ids: int, n_out: int, args: argparse.Namespace,
                 width: int = 128, layers: int = 4, heads: int = 4, ffn: int = 384):
        super().__init__()
        self.proj = nn.Linear(feat_dim, width)
        self.ids = nn.Embedding(n_ids, width)
        self.query = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        self.filler = nn.Parameter(torch.randn(1, args.filler, width) * 0.08)
        self.arch = args.arch
        if args.arch == "llama":
            from transformers import LlamaConfig, LlamaModel

            self.body = LlamaModel(LlamaConfig(
                vocab_size=8, hidden_size=width, intermediate_size=ffn, num_hidden_layers=layers,
                num_attention_heads=heads, num_key_value_heads=heads // 2, max_position_embeddings=512,
                initializer_range=args.init_std, rope_theta=args.rope_theta))
        else:
            self.pos = nn.Parameter(torch.randn(1, n_image + args.filler + 3, width) * 0.02)
            layer = nn.TransformerEncoderLayer(width, heads, ffn, 0.0, batch_first=True, norm_first=True)
            self.body = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(width, n_out)

    def forward(self, feats: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        n = feats.shape[0]
        x = torch.cat([self.proj(feats), self.filler.expand(n, -1, -1), self.ids(ids),
                       self.query.expand(n, -1, -1)], dim=1)
        if self.arch == "llama":
            h = self.body(inputs_embeds=x).last_hidden_state
        else:
            h = self.body(x + self.pos)
        return self.head(h[:, -1])


@torch.no_grad()
def image_features(items: list[dict], args: argparse.Namespace) -> torch.Tensor:
    from aki.experiments.tiny_vlm import load_tower, tower_image_processor
    from aki.processing import load_image
    from aki.vision import PRETRAINED_TOWER

    tower_dir = args.tower or PRETRAINED_TOWER
    processor = tower_image_processor(tower_dir)
    if args.features == "resampler":
        from aki.model import AkiForConditionalGeneration

        if args.model is None:
            raise SystemExit("--features resampler needs --model (an AKI model folder, e.g. a PT run's final/)")
        model = AkiForConditionalGeneration.from_pretrained(args.model).eval()
        encode = model.get_image_features
    else:
        tower = load_tower(tower_dir)

        def encode(pixels: torch.Tensor) -> torch.Tensor:
            return tower(pixel_values=pixels).last_hidden_state
    out = []
    for i in range(0, len(items), 64):
        images = [load_image(args.data / "train" / r["image"]).convert("RGB") for r in items[i:i + 64]]
        out.append(encode(processor(images, return_tensors="pt")["pixel_values"]))
    return torch.cat(out)


def main(argv: list[str] | None = None) -> dict[int, float]:
    from aki.data.synth.scenes import COLOURS, SHAPES, SIZES

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    with open(args.data / "train" / "sft.jsonl", encoding="utf-8") as f:
        items = [r for r in map(json.loads, f) if r["task"] == "Attribute/colour"][: args.n_items]
    if len(items) <= args.n_test:
        raise SystemExit(f"{args.data} has {len(items)} colour questions; need more than --n-test {args.n_test}")
    words = {w: i for i, w in enumerate([*SHAPES, *SIZES, "-"])}
    colours = {c: i for i, c in enumerate(COLOURS)}
    ids = torch.tensor([[words[r["meta"]["object"]["shape"]], words[r["meta"]["object"].get("size", "-")]]
                        for r in items])
    answers = torch.tensor([colours[r["meta"]["answer"]] for r in items])
    feats = image_features(items, args)
    k = len(items) - args.n_test
    net = LookupNet(feats.shape[-1], feats.shape[1], len(words), len(colours), args)
    opt = torch.optim.AdamW(net.parameters(), args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    scores = {}
    for step in range(1, args.steps + 1):
        idx = torch.randint(k, (args.batch_size,), generator=gen)
        loss = nn.functional.cross_entropy(net(feats[idx], ids[idx]), answers[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % args.every == 0 or step == args.steps:
            with torch.no_grad():
                acc = (net(feats[k:], ids[k:]).argmax(-1) == answers[k:]).float().mean().item()
            scores[step] = round(100 * acc, 1)
            print(f"step {step}: train loss {loss.item():.3f}, held-out accuracy {scores[step]:.1f} %", flush=True)
    return scores


if __name__ == "__main__":
    main()
