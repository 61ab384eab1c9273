"""Which question words the image tokens read, and where on the image those tokens come from.

Under modality-mutual attention the image tokens of a prompt also attend to the question that
follows them (the QUERY span); under causal attention they cannot. For one prompt,
:func:`question_word_attention` measures, per decoder layer and averaged over heads, how much
attention each image token puts on each word of that span, and, through the Perceiver
resampler, which patches of the picture each image token (one resampler latent) was read from.
The result draws three pictures (used by ``aki demo`` and reusable elsewhere):

- :func:`word_heatmap_html`: the question's words shaded by the attention they receive;
- :func:`layer_word_figure`: a layers x words heatmap (matplotlib);
- :func:`overlay_heatmap`: the picture with the image tokens' question attention laid over it.

Attention weights come from the decoder's eager implementation (``output_attentions=True``,
the only one that returns them) on the prompt, read under the model's rule, exactly as
``generate`` reads it. The resampler runs fused SDPA, which returns no weights, so
:func:`perceiver_attention_weights` recomputes them from the layer's own norms and projections
(the tests check that they reproduce the layer's output).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from aki.masks import Segment
from aki.prompts import user_message

ALL_LAYERS = None
"""``layer=None``: the mean over the decoder's layers."""


@dataclass(frozen=True)
class QuestionWordAttention:
    """What the image tokens of one prompt read in its question span.

    - ``words``: the span's words in order (template tokens such as ``<|assistant|>`` are words
      of their own; a lone newline shows as ``↵``);
    - ``is_template``: True for words the chat template wrote, False for the user's text;
    - ``image_to_words`` ``[layers, image_tokens, words]``: attention mass (mean over heads) that
      each image token puts on each word (the sum over the word's tokens);
    - ``patch_weights`` ``[images, latents, patches]`` or None: each image token's resampler
      attention over the tower's patches (mean over resampler layers and heads, rows sum to 1);
    - ``grid``: the patch grid ``(rows, cols)``;
    - ``rule``: the attention rule the prompt was read with.
    """

    words: tuple[str, ...]
    is_template: tuple[bool, ...]
    image_to_words: np.ndarray
    patch_weights: np.ndarray | None
    grid: tuple[int, int]
    rule: str

    @property
    def num_layers(self) -> int:
        return int(self.image_to_words.shape[0])

    @property
    def num_images(self) -> int:
        return 0 if self.patch_weights is None else int(self.patch_weights.shape[0])

    def _layers(self, layer: int | None) -> np.ndarray:
        """``[image_tokens, words]`` of one layer, or the mean over layers (``layer=None``)."""
        if layer is None:
            return self.image_to_words.mean(0)
        if not -self.num_layers <= layer < self.num_layers:
            raise ValueError(f"layer {layer} does not exist; the decoder has {self.num_layers} layers (0..{self.num_layers - 1}).")
        return self.image_to_words[layer]

    def word_scores(self, layer: int | None = ALL_LAYERS) -> np.ndarray:
        """``[words]``: mean share of an image token's attention that lands on each word."""
        return self._layers(layer).mean(0)

    def question_share(self, layer: int | None = ALL_LAYERS) -> float:
        """Mean share of an image token's attention on the whole span (0 under causal)."""
        return float(self.word_scores(layer).sum())

    def token_scores(self, layer: int | None = ALL_LAYERS, word: int | None = None) -> np.ndarray:
        """``[image_tokens]``: each image token's attention on one word (``word``) or on all."""
        per_word = self._layers(layer)
        if word is None:
            return per_word.sum(-1)
        if not 0 <= word < len(self.words):
            raise ValueError(f"word {word} does not exist; the span has {len(self.words)} words.")
        return per_word[:, word]

    def image_heatmap(self, layer: int | None = ALL_LAYERS, word: int | None = None, image: int = 0) -> np.ndarray:
        """``[rows, cols]`` over the patch grid of image ``image``: the question attention of its
        image tokens, spread over the patches each token's resampler latent read."""
        if self.patch_weights is None:
            raise ValueError("this prompt has no image, so there is no image heatmap.")
        if not 0 <= image < self.num_images:
            raise ValueError(f"image {image} does not exist; the prompt has {self.num_images} image(s).")
        n = self.patch_weights.shape[1]
        scores = self.token_scores(layer, word)[image * n : (image + 1) * n]
        return (scores @ self.patch_weights[image]).reshape(self.grid)


# ------------------------------------------------------------------------------ resampler


def perceiver_attention_weights(attn: torch.nn.Module, media: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
    """``[N, heads, latents, media + latents]``: the softmax weights of a resampler attention
    layer (:class:`aki.model.resampler.PerceiverAttention`) for these inputs, recomputed from its
    norms and projections (its forward runs fused SDPA, which does not return them). Keys are
    the media tokens followed by the latents (Flamingo)."""
    media_n, latents_n = attn.norm_media(media), attn.norm_latents(latents)
    B = latents_n.shape[0]

    def split(x: torch.Tensor) -> torch.Tensor:
        return x.view(B, x.shape[1], attn.heads, attn.head_dim).transpose(1, 2)

    q = split(attn.to_q(latents_n))
    k, _ = attn.to_kv(torch.cat([media_n, latents_n], dim=1)).chunk(2, dim=-1)
    scores = q.float() @ split(k).float().transpose(-1, -2) / math.sqrt(attn.head_dim)
    return scores.softmax(-1)


def _patch_grid(n_patches: int) -> tuple[tuple[int, int], int]:
    """The patch grid of ``n_patches`` tower tokens and how many leading tokens to skip (a class token)."""
    for skip in (0, 1):
        side = math.isqrt(n_patches - skip)
        if side * side == n_patches - skip and side > 0:
            return (side, side), skip
    return (1, n_patches), 0


class _ResamplerRecorder:
    """Forward hooks on every resampler attention layer: their inputs, to recompute the weights."""

    def __init__(self, model) -> None:
        self.calls: list[tuple[torch.nn.Module, torch.Tensor, torch.Tensor]] = []
        self._handles = [
            layer.attn.register_forward_hook(self._record) for layer in model.resampler.layers
        ]

    def _record(self, module, args, _output) -> None:
        self.calls.append((module, args[0].detach(), args[1].detach()))

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()

    def patch_weights(self) -> tuple[np.ndarray | None, tuple[int, int]]:
        """``[images, latents, patches]`` (mean over layers and heads, renormalised over the
        patches) and the grid; None when no image went through the resampler."""
        if not self.calls:
            return None, (0, 0)
        n_media = self.calls[0][1].shape[1]
        grid, skip = _patch_grid(n_media)
        total = None
        for module, media, latents in self.calls:
            w = perceiver_attention_weights(module, media, latents)[..., skip:n_media].mean(1)  # [N, latents, patches]
            total = w if total is None else total + w
        total = total / total.sum(-1, keepdim=True).clamp(min=1e-12)
        return total.cpu().numpy(), grid


# ------------------------------------------------------------------------------ words


def _word_spans(tokenizer, ids: Sequence[int], question_texts: Sequence[str]) -> tuple[list[str], list[bool], list[int]]:
    """Group the span's tokens into words: ``(words, is_template, word index per token)``.

    A token's text is what it adds to the decoded span (decoding prefixes, so byte-level and
    SentencePiece tokenizers both give their spaces). A word starts at a token whose text starts
    with whitespace, at every added (template/special) token and after one, and where the
    user's text starts or ends; a whitespace-only token is a template word of its own.
    """
    added = set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    pieces, prev = [], ""
    for k in range(len(ids)):
        text = tokenizer.decode(list(ids[: k + 1]), skip_special_tokens=False)
        pieces.append(text[len(prev):] if text.startswith(prev) else "")
        prev = text if text.startswith(prev) else prev
    full = "".join(pieces)
    # characters of the user's own text: its text parts, found in order (the template's text follows)
    user = np.zeros(len(full) + 1, dtype=bool)
    cursor = 0
    for part in question_texts:
        part = part.strip()
        at = full.find(part, cursor) if part else -1
        if at >= 0:
            user[at : at + len(part)] = True
            cursor = at + len(part)
    words: list[str] = []
    template: list[bool] = []
    index: list[int] = []
    pending: list[int] = []  # whitespace tokens inside the user's text: they belong to the next word
    offset = 0
    prev_special = True
    prev_user: bool | None = None
    for k, (tid, piece) in enumerate(zip(ids, pieces, strict=True)):
        special = int(tid) in added
        stripped = piece.strip()
        is_user = bool(user[offset : offset + max(len(piece), 1)].any()) and not special
        offset += len(piece)
        index.append(-1)
        if not stripped and not special and is_user:
            pending.append(k)
            prev_special = True  # the next token starts a word
            continue
        if not stripped:  # template whitespace: a word of its own
            words.append(piece if special else ("↵" if "\n" in piece else "␣"))
            template.append(True)
            index[k] = len(words) - 1
            prev_special, prev_user = True, None
            continue
        if special or prev_special or piece[:1].isspace() or is_user != prev_user:
            words.append(stripped)
            template.append(special or not is_user)
        else:
            words[-1] += piece
        index[k] = len(words) - 1
        for j in pending:
            index[j] = index[k]
        pending.clear()
        prev_special, prev_user = special, is_user
    for j in pending:  # trailing whitespace of the user's text: the last word
        index[j] = max(len(words) - 1, 0)
    if not words:
        words, template = ["␣"], [True]
    return words, template, index


def _texts_of(messages: Sequence[Mapping[str, Any]]) -> list[str]:
    """The text parts of the user messages (to tell the user's words from the template's)."""
    texts = []
    for message in messages:
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif content:
            texts += [item.get("text", "") for item in content if item.get("type") == "text"]
    return texts


# ------------------------------------------------------------------------------ the measurement


@torch.no_grad()
def question_word_attention(model, processor, images: Any, question: str | None = None, *,
                            messages: Sequence[Mapping[str, Any]] | None = None) -> QuestionWordAttention:
    """Measure which question words the image tokens of one prompt attend to.

    ``question`` (one user turn with the image(s) first), or ``messages`` (a whole conversation,
    e.g. several turns; its image items in order). ``images``: one image or a list, anything
    :func:`aki.processing.load_image` reads. The prompt ends with the generation prompt, as
    when the model answers. Under MMA an image token reads the question of its own prompt block
    (later turns come after the block and stay invisible to it); under causal attention it reads
    none, and every score is 0.
    """
    if (question is None) == (messages is None):
        raise ValueError("pass either question= (one turn) or messages= (a conversation), not both.")
    imgs = list(images) if isinstance(images, (list, tuple)) else [images]
    if not imgs:
        raise ValueError("the prompt has no image, so no image token reads the question; pass an image.")
    if messages is None:
        messages = [user_message(question, n_images=len(imgs))]
    prompt = processor.apply_chat_template(list(messages), add_generation_prompt=True)
    batch = processor(text=[prompt], images=[imgs] if imgs else None, return_tensors="pt")
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    impl = model.attn_implementation
    recorder = _ResamplerRecorder(model)
    model.language_model.set_attn_implementation("eager")  # only eager returns attention weights
    try:
        out = model(**batch, output_attentions=True, logits_to_keep=1)
    finally:
        model.language_model.set_attn_implementation(impl)
        recorder.close()
    segments = batch["segments"][0]
    rows = (segments == Segment.IMAGE).nonzero().squeeze(-1)
    if rows.numel() == 0:
        raise ValueError("the prompt has no image, so no image token reads the question; pass an image.")
    cols = (segments == Segment.QUERY).nonzero().squeeze(-1)
    ids = batch["input_ids"][0, cols].tolist()
    words, template, index = _word_spans(processor.tokenizer, ids, _texts_of(messages))
    group = torch.zeros(len(ids), max(len(words), 1), device=device)
    if ids:
        group[torch.arange(len(ids)), torch.tensor(index, device=device)] = 1.0
    per_layer = []
    for att in out.attentions:  # [1, heads, L, L]
        mass = att[0].float().mean(0)[rows][:, cols]  # [image tokens, span tokens]
        per_layer.append((mass @ group)[:, : len(words)])
    patch_weights, grid = recorder.patch_weights()
    return QuestionWordAttention(
        words=tuple(words),
        is_template=tuple(template),
        image_to_words=torch.stack(per_layer).cpu().numpy(),
        patch_weights=patch_weights,
        grid=grid,
        rule=model.config.attention_rule,
    )


# ------------------------------------------------------------------------------ pictures


def word_heatmap_html(result: QuestionWordAttention, layer: int | None = ALL_LAYERS, *, word: int | None = None) -> str:
    """The span's words as HTML, each shaded by its share of the image tokens' attention (the
    strongest word darkest; template words in italics; ``word`` outlined)."""
    scores = result.word_scores(layer)
    top = float(scores.max()) if scores.size else 0.0
    spans = []
    for k, (text, is_template, score) in enumerate(zip(result.words, result.is_template, scores, strict=True)):
        alpha = 0.0 if top <= 0 else float(score) / top
        style = f"background: rgba(230, 85, 13, {alpha:.3f}); color: {'#fff' if alpha > 0.6 else '#111'};"
        style += " padding: 2px 4px; margin: 2px; border-radius: 4px; display: inline-block;"
        if is_template:
            style += " font-style: italic; opacity: 0.8;"
        if word == k:
            style += " outline: 2px solid #1f77b4;"
        spans.append(
            f'<span class="aki-word" title="{100 * float(score):.2f}% of an image token\'s attention" '
            f'style="{style}">{html.escape(text)}</span>'
        )
    which = "mean over layers" if layer is None else f"layer {layer}"
    share = 100 * result.question_share(layer)
    note = (
        f"Image tokens put {share:.2f}% of their attention on these words ({which}, rule {result.rule})."
        if share > 0 else
        f"Image tokens put no attention on these words ({which}, rule {result.rule}): "
        "under causal attention they cannot see the question."
    )
    return (f'<div class="aki-words" style="line-height: 2.2;">{"".join(spans)}</div>'
            f'<p class="aki-words-note" style="font-size: 0.9em;">{html.escape(note)}</p>')


def overlay_heatmap(image, heat: np.ndarray, *, alpha: float = 0.55, cmap: str = "inferno"):
    """``image`` (PIL) with ``heat`` (a 2D grid, any scale) upsampled and laid over it."""
    from matplotlib import colormaps
    from PIL import Image

    base = image.convert("RGB")
    heat = np.asarray(heat, dtype=np.float64)
    span = heat.max() - heat.min()
    norm = (heat - heat.min()) / span if span > 0 else np.zeros_like(heat)
    colored = (colormaps[cmap](norm)[..., :3] * 255).astype(np.uint8)
    layer = Image.fromarray(colored).resize(base.size, Image.Resampling.BILINEAR)
    return Image.blend(base, layer, alpha)


def layer_word_figure(result: QuestionWordAttention, *, title: str | None = None):
    """A matplotlib figure: the words' attention share per decoder layer, plus the mean row."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    rows = [result.word_scores(layer) for layer in range(result.num_layers)] + [result.word_scores()]
    matrix = np.stack(rows) * 100
    fig = Figure(figsize=(max(4.0, 0.45 * len(result.words) + 1.5), 0.4 * len(rows) + 1.6), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(matrix, aspect="auto", cmap="Oranges", vmin=0)
    ax.set_xticks(range(len(result.words)), result.words, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), [f"layer {k}" for k in range(result.num_layers)] + ["mean"], fontsize=8)
    for label, is_template in zip(ax.get_xticklabels(), result.is_template, strict=True):
        if is_template:
            label.set_fontstyle("italic")
            label.set_color("#777777")
    fig.colorbar(im, ax=ax, label="% of image-token attention")
    ax.set_title(title or f"Question words read by the image tokens ({result.rule})", fontsize=9)
    return fig


__all__ = [
    "QuestionWordAttention",
    "layer_word_figure",
    "overlay_heatmap",
    "perceiver_attention_weights",
    "question_word_attention",
    "word_heatmap_html",
]
