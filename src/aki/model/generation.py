"""Generation through transformers' ``GenerationMixin``: how segments travel through ``generate``.

As PaliGemma's ``token_type_ids`` do, ``segments`` ride along in ``model_kwargs``:

- ``_prepare_position_ids_for_generation``: the prompt's position ids are the rule's (CCA's
  rings, per-document restarts, left padding); ``generate`` then continues them ``last + 1``.
- ``prepare_inputs_for_generation``: ``segments`` reach ``forward`` only when it reads the prompt
  (the prefill, or every step of a ``use_cache=False`` recompute); cached steps decode causally.
  With a static (compileable) cache ``generate`` builds a causal 4D mask; for the prefill it is
  replaced by the 2D mask so ``forward`` builds the rule's mask at the cache's size.
- ``_update_model_kwargs_for_generation``: generated tokens are ANSWER, so a recompute builds
  exactly the mask the cached prefill + causal decode used.
- ``_prepare_generation_config``: ``<image>`` is always suppressed.

Images are encoded once before the prefill by ``generate`` itself (``forward`` takes
``mm_encoder_outputs``), and transformers expands the encoded images *per sample* for beam search
and ``num_return_sequences`` (a sample may hold 0, 1 or several images). Everything else --
greedy, sampling, beams, logits processors, stopping criteria, ``stop_strings``, streamers,
static caches -- is transformers' own code.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import GenerationConfig, GenerationMixin

from aki.masks import Segment


def generation_config_for(processor, **overrides) -> GenerationConfig:
    """Defaults for a model served with ``processor``: stop at the end of the assistant turn (the
    family's EOS ids), pad with ``<pad>``, never generate ``<image>``."""
    tok = processor.tokenizer
    values: dict[str, Any] = {
        "eos_token_id": list(processor.eos_token_ids),
        "pad_token_id": processor.pad_token_id,
        "suppress_tokens": [processor.image_token_id],
    }
    if tok.bos_token_id is not None:
        values["bos_token_id"] = tok.bos_token_id
    values.update(overrides)
    return GenerationConfig(**values)


class AkiGenerationMixin(GenerationMixin):
    """The generation hooks of :class:`~aki.model.AkiForConditionalGeneration`."""

    def _prepare_generation_config(self, generation_config, **kwargs):
        # <image> is never generated, whatever the config says: it has no image behind it.
        generation_config, model_kwargs = super()._prepare_generation_config(generation_config, **kwargs)
        suppress = list(generation_config.suppress_tokens or [])
        if self.config.image_token_id not in suppress:
            generation_config.suppress_tokens = [*suppress, self.config.image_token_id]
        return generation_config, model_kwargs

    def _prepare_position_ids_for_generation(self, inputs_tensor, model_kwargs):
        input_ids = model_kwargs.get("input_ids", inputs_tensor)
        if input_ids is None or input_ids.dim() != 2 or input_ids.shape[1] == 0:
            input_ids = inputs_tensor
        attention_mask = model_kwargs.get("attention_mask")
        if attention_mask is not None and attention_mask.dim() == 2 and not bool(attention_mask[:, -1].all()):
            raise ValueError(
                "generate needs left-padded prompts (the next token is read at the last position), but some rows "
                "end in padding. Encode prompts with processor(..., padding_side='left') (the default)."
            )
        return self.prompt_position_ids(
            input_ids, attention_mask, model_kwargs.get("segments"), model_kwargs.get("document_ids")
        )

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.LongTensor,
        next_sequence_length: int | None = None,
        past_key_values=None,
        attention_mask: torch.Tensor | None = None,
        segments: torch.Tensor | None = None,
        document_ids: torch.Tensor | None = None,
        is_first_iteration: bool | None = False,
        **kwargs,
    ):
        inputs = super().prepare_inputs_for_generation(
            input_ids,
            next_sequence_length=next_sequence_length,
            past_key_values=past_key_values,
            attention_mask=attention_mask,
            is_first_iteration=is_first_iteration,
            **kwargs,
        )
        reads_prompt = bool(is_first_iteration) or not kwargs.get("use_cache", True)
        if reads_prompt:
            n = inputs["input_ids"].shape[-1]
            if segments is not None and segments.shape[-1] != n:
                segments, document_ids = self._prefill_chunk(segments, document_ids, past_key_values, n)
            inputs["segments"] = segments
            inputs["document_ids"] = document_ids
            # The rule's mask is built in forward, from the 2D mask (not the causal 4D one a
            # compileable cache makes generate build).
            inputs["attention_mask"] = attention_mask
        return inputs

    def _prefill_chunk(self, segments, document_ids, past_key_values, n: int):
        """The labels of a chunked prefill's current chunk; only causal reading can be chunked."""
        rule = self.config.rule
        if not rule.is_causal(**rule.check_options(self.config.rule_options)):
            raise ValueError(
                f"attention rule {rule.name!r} reads the whole prompt at once (image tokens see the later question), "
                "so it cannot be prefilled in chunks: generate with prefill_chunk_size=None."
            )
        end = int(past_key_values.get_seq_length()) + n if past_key_values is not None else n
        document_ids = None if document_ids is None else document_ids[:, end - n : end]
        return segments[:, end - n : end], document_ids

    def _update_model_kwargs_for_generation(self, outputs, model_kwargs, is_encoder_decoder=False,
                                            num_new_tokens: int = 1):
        segments = model_kwargs.get("segments")
        document_ids = model_kwargs.get("document_ids")
        model_kwargs = super()._update_model_kwargs_for_generation(
            outputs, model_kwargs, is_encoder_decoder=is_encoder_decoder, num_new_tokens=num_new_tokens
        )
        if segments is not None:
            answer = segments.new_full((segments.shape[0], num_new_tokens), int(Segment.ANSWER))
            model_kwargs["segments"] = torch.cat([segments, answer], dim=-1)
        if document_ids is not None:
            model_kwargs["document_ids"] = torch.cat(
                [document_ids, document_ids[:, -1:].expand(-1, num_new_tokens)], dim=-1
            )
        return model_kwargs


__all__ = ["AkiGenerationMixin", "generation_config_for"]
