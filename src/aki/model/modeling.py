"""AKI: vision tower -> Perceiver resampler -> causal LLM that reads the prompt under an attention rule.

The image embeddings are spliced into the LLM's input embeddings where ``input_ids`` holds the
image token (``get_image_features`` then ``masked_scatter``, as transformers' VLMs do). When the
decoder reads a prompt (an empty cache), its attention mask is the configured rule's, built from
per-token ``segments`` by :mod:`aki.model.masking` through transformers' mask interface (MMA:
image tokens also see the later question). A rule that reduces to plain causal attention for the
batch (``causal``, ``mma`` at unlock fraction 0; no packed documents) hands the LLM its 2D mask
instead -- or none when no real token follows padding -- so SDPA takes ``is_causal``: the LLM's
native path. Continuation over a cache (generated answer tokens) is always causal.

Generation is transformers' ``GenerationMixin`` (hooks in :mod:`aki.model.generation`).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, DynamicCache, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPooling, CausalLMOutputWithPast

from aki.masks import Segment, TokenLayout, check_segments, token_layout
from aki.model.configuration import AkiConfig
from aki.model.generation import AkiGenerationMixin, generation_config_for
from aki.model.loss import next_token_loss
from aki.model.masking import key_length, prompt_attention_mask, refuse_flash
from aki.model.resampler import PerceiverResampler


class AkiPreTrainedModel(PreTrainedModel):
    """Weight init and capability flags shared by AKI models."""

    config: AkiConfig
    config_class = AkiConfig
    base_model_prefix = ""
    main_input_name = "input_ids"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    accepts_loss_kwargs = True
    _skip_keys_device_placement = ["past_key_values"]
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_flash_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = False

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, PerceiverResampler):
            std = getattr(self.config.get_text_config(), "initializer_range", 0.02) or 0.02
            with torch.no_grad():
                module.latents.normal_(0.0, std)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """transformers' loading, after :func:`aki.pretrained.check_model_folder`: a missing
        folder, a data folder, an unfinished run, a non-aki or damaged ``config.json``, missing or
        truncated weights and an uncached hub id while offline each fail at once with one message
        naming the path and the fix. A training run's output_dir loads its ``final/``."""
        from aki.pretrained import check_model_folder

        name = pretrained_model_name_or_path
        if name is not None and not kwargs.get("subfolder") and not kwargs.get("gguf_file"):
            name = check_model_folder(name, hub_kwargs=kwargs)
        return super().from_pretrained(name, *model_args, **kwargs)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """transformers' saving; then the weights get the file mode the folder's other files have
        (safetensors >= 0.8 creates them 0600: :func:`aki.pretrained.normal_file_modes`)."""
        from aki.pretrained import normal_file_modes

        result = super().save_pretrained(save_directory, *args, **kwargs)
        if os.path.isdir(save_directory):
            normal_file_modes(save_directory)
        return result


def _head_with_bias(head: nn.Linear) -> nn.Linear:
    """A copy of the LLM output head with a (zero) bias, as the official AKI checkpoint has."""
    new = nn.Linear(head.in_features, head.out_features, bias=True, device=head.weight.device,
                    dtype=head.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(head.weight)
        new.bias.zero_()
    return new


@contextmanager
def _cpu_flex_workarounds(text_config, device: torch.device, reads_prompt: bool):
    """Two torch 2.13 CPU limitations of compiled flex attention, worked around exactly.

    - Cached steps run SDPA instead: a single query row against a padded cache fails to build
      (the bare LLM's own ``generate`` fails the same way). Cached steps are causal and the KV
      cache is the same for every implementation, so switching is exact.
    - Prompts are compiled for static shapes: after a recompile for dynamic shapes, inductor's
      CPU flex kernel with a mask that reads tensors fails to build ("cur_kvSplitSize4 was not
      declared"; reproducible with ``torch.compile(flex_attention)`` alone).
    """
    if device.type != "cpu" or text_config._attn_implementation != "flex_attention":
        yield
    elif reads_prompt:
        with torch._dynamo.config.patch(automatic_dynamic_shapes=False):
            yield
    else:
        text_config._attn_implementation = "sdpa"
        try:
            yield
        finally:
            text_config._attn_implementation = "flex_attention"


def _reads_prompt(past_key_values, segments) -> bool:
    """Whether this forward starts the sequence (no cache, or an empty one)."""
    if past_key_values is None or not past_key_values.is_initialized:
        return True
    if past_key_values.is_compileable:
        # A static cache's length is a tensor (reading it syncs): read it only for a prompt
        # (segments given) on a cache initialised ahead of its first update.
        return segments is not None and int(past_key_values.get_seq_length()) == 0
    return past_key_values.get_seq_length() == 0


class AkiForConditionalGeneration(AkiGenerationMixin, AkiPreTrainedModel):
    """The AKI vision-language model (paper: modality-mutual attention for MLLMs)."""

    def __init__(self, config: AkiConfig):
        super().__init__(config)
        # Sub-models in the dtype this model is being built in (from_pretrained / _from_config set
        # it), never the one a sub-config happens to carry: one honest dtype for the whole model.
        dtype = torch.get_default_dtype()
        self.vision_tower = AutoModel.from_config(config.vision_config, dtype=dtype)
        self.resampler = PerceiverResampler(config.resampler_config)
        self.language_model = AutoModelForCausalLM.from_config(config.text_config, dtype=dtype)
        if config.lm_head_bias:
            self.language_model.lm_head = _head_with_bias(self.language_model.lm_head)
        self.post_init()
        if config.freeze_vision:
            self.vision_tower.requires_grad_(False)

    # ------------------------------------------------------------------ plumbing
    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_output_embeddings(value)

    def get_decoder(self) -> nn.Module:
        return self.language_model.get_decoder()

    def train(self, mode: bool = True):
        super().train(mode)
        if self.config.freeze_vision:
            self.vision_tower.eval()  # a frozen tower never trains, dropout included
        return self

    @property
    def num_image_tokens(self) -> int:
        return self.config.num_image_tokens

    @property
    def attn_implementation(self) -> str:
        """The LLM's attention implementation (decides the mask's form)."""
        return self.language_model.config._attn_implementation or "sdpa"

    # ------------------------------------------------------------------ images
    def get_image_features(self, pixel_values: torch.Tensor, return_dict: bool = False, **kwargs):
        """``[N, 3, H, W]`` images -> ``[N, num_image_tokens, llm_hidden]`` LLM input embeddings.

        ``return_dict=True`` wraps them as the ``pooler_output`` of a ``BaseModelOutputWithPooling``
        (how ``generate`` pre-encodes images before the prefill). No images (None): None.
        """
        if pixel_values is None:
            return None
        dtype = next(self.vision_tower.parameters()).dtype
        pixel_values = pixel_values.to(dtype)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_vision):
            layer = self.config.vision_feature_layer
            out = self.vision_tower(pixel_values=pixel_values, output_hidden_states=layer != -1)
            feats = out.last_hidden_state if layer == -1 else out.hidden_states[layer]
        features = self.resampler(feats.to(self.resampler.latents.dtype))
        if return_dict:
            return BaseModelOutputWithPooling(last_hidden_state=feats, pooler_output=features)
        return features

    def embed(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None = None,
              image_features: torch.Tensor | None = None, check: bool = True) -> torch.Tensor:
        """Token embeddings with each image's resampled latents spliced over its image tokens.

        ``check`` compares the number of image tokens with the images given (one read-back);
        skipped for cached decoding steps, which carry no images.
        """
        image_positions = input_ids == self.config.image_token_id
        embed = self.get_input_embeddings()
        inputs_embeds = embed(torch.where(image_positions, 0, input_ids))
        if image_features is None and pixel_values is not None:
            image_features = self.get_image_features(pixel_values)
        # rows of image features: num_image_tokens per image (a chunked prefill passes a chunk's rows)
        n_rows = 0 if image_features is None else image_features.numel() // image_features.shape[-1]
        if check:
            n_tokens = int(image_positions.sum())
            if n_tokens != n_rows:
                n_images = 0 if image_features is None else n_rows / self.num_image_tokens
                raise ValueError(
                    f"input_ids hold {n_tokens} image tokens (id {self.config.image_token_id}) but pixel_values "
                    f"hold {n_images:g} image(s) of {self.num_image_tokens} tokens each (= {n_rows}). Each <image> "
                    f"marker must be expanded to {self.num_image_tokens} image tokens (the processor does this) "
                    "and every image passed once."
                )
        if n_rows == 0:
            return inputs_embeds
        feats = image_features.to(inputs_embeds.dtype)
        return inputs_embeds.masked_scatter(image_positions.unsqueeze(-1), feats.reshape(-1, feats.shape[-1]))

    # ------------------------------------------------------------------ rule
    def _rule(self):
        return self.config.rule, self.config.rule.check_options(self.config.rule_options)

    def prompt_segments(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                        segments: torch.Tensor | None = None) -> torch.Tensor:
        """The segments a prompt is read with; PAD wherever ``attention_mask`` is 0.

        Without segments only a rule that reduces to causal (or an image-free batch) can be
        served: the question span the other rules unlock is not recoverable from token ids.
        """
        if segments is None:
            is_image = input_ids == self.config.image_token_id
            rule, options = self._rule()
            if not rule.is_causal(**options) and bool(is_image.any()):
                raise ValueError(
                    f"attention rule {rule.name!r} needs `segments` (the processor returns them: call "
                    "model(**processor(...))); without them the question span it unlocks for image tokens is "
                    "unknown. Pass segments, or use attention_rule='causal'."
                )
            segments = torch.where(is_image, int(Segment.IMAGE), int(Segment.TEXT))
        segments = check_segments(segments, check_values=False).to(input_ids.device)
        if segments.shape != input_ids.shape:
            raise ValueError(f"segments {tuple(segments.shape)} must match input_ids {tuple(input_ids.shape)}.")
        if attention_mask is not None:
            if attention_mask.shape != input_ids.shape:
                raise ValueError(
                    f"attention_mask {tuple(attention_mask.shape)} must be 2D and match input_ids "
                    f"{tuple(input_ids.shape)} (the 4D mask is built from segments)."
                )
            segments = torch.where(attention_mask.bool(), segments, int(Segment.PAD))
        return segments

    def _layout(self, segments: torch.Tensor, document_ids: torch.Tensor | None, length: int) -> TokenLayout:
        """The token layout over ``length`` keys (a static cache is longer than the prompt: PAD)."""
        extra = length - segments.shape[1]
        if extra > 0:
            segments = nn.functional.pad(segments, (0, extra), value=int(Segment.PAD))
            if document_ids is not None:
                document_ids = nn.functional.pad(document_ids, (0, extra), value=-1)
        return token_layout(segments, document_ids=document_ids, tokens_per_image=self.num_image_tokens,
                            validate=False)

    def prompt_position_ids(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                            segments: torch.Tensor | None = None,
                            document_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Position ids of a prompt under the rule (left padding, packing, CCA's rings)."""
        segs = self.prompt_segments(input_ids, attention_mask, segments)
        rule, options = self._rule()
        return rule.position_ids(self._layout(segs, document_ids, segs.shape[1]), **options)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        segments: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        document_ids: torch.LongTensor | None = None,
        past_key_values=None,
        use_cache: bool | None = None,
        mm_encoder_outputs: dict[str, Any] | None = None,
        num_items_in_batch: int | float | torch.Tensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = True,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """Read the prompt under the configured rule (an empty cache), or continue a cached
        sequence causally.

        With ``labels`` (aligned with ``input_ids``; the shift happens inside), ``loss`` is the
        summed fp32 next-token cross-entropy over labels != -100 divided by ``num_items_in_batch``
        when given (the optimizer step's trained-token count: gradient accumulation), else by
        their count. The head then runs only at those positions, and ``logits`` is None (call
        without labels for logits). ``logits_to_keep`` (int: that many last positions; tensor:
        those positions) limits the logits otherwise. ``attention_mask`` is always 2D (or the 4D
        mask ``generate`` builds for a static cache's decoding steps).
        """
        if input_ids is None:
            raise ValueError("AkiForConditionalGeneration needs input_ids (image positions are read from them).")
        reads_prompt = _reads_prompt(past_key_values, segments)
        image_features = None
        if mm_encoder_outputs and mm_encoder_outputs.get("image") is not None:
            if pixel_values is not None:
                raise ValueError("pass either pixel_values or mm_encoder_outputs['image'], not both.")
            image_features = mm_encoder_outputs["image"].pooler_output
        has_images = image_features is not None or pixel_values is not None
        inputs_embeds = self.embed(input_ids, pixel_values, image_features, check=reads_prompt or has_images)
        text_config = self.language_model.config
        if use_cache and past_key_values is None:
            past_key_values = DynamicCache(config=text_config)
        rule, options = self._rule()

        if reads_prompt:
            mask, position_ids = self._prompt_mask_and_positions(
                input_ids, attention_mask, segments, document_ids, position_ids, past_key_values,
                inputs_embeds.dtype, rule, options,
            )
        else:
            self._check_continuation(segments, rule, options)
            mask = attention_mask
            if position_ids is None:
                position_ids = self._continued_positions(input_ids, attention_mask, past_key_values, rule)

        with _cpu_flex_workarounds(text_config, inputs_embeds.device, reads_prompt):
            out = self.get_decoder()(
                inputs_embeds=inputs_embeds,
                attention_mask=mask,
                position_ids=position_ids,
                past_key_values=past_key_values,
                use_cache=use_cache,
                output_hidden_states=output_hidden_states,
                output_attentions=output_attentions,
                return_dict=True,
                **kwargs,
            )
        hidden = out.last_hidden_state
        head = self.get_output_embeddings()
        softcap = getattr(text_config, "final_logit_softcapping", None)
        loss = logits = None
        if labels is not None:
            loss = next_token_loss(hidden, labels, head, num_items_in_batch=num_items_in_batch, softcap=softcap)
        else:
            keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
            logits = head(hidden[:, keep, :])
            if softcap is not None:
                logits = torch.tanh(logits / softcap) * softcap
        output = CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            past_key_values=out.past_key_values,
            hidden_states=out.hidden_states,
            attentions=out.attentions,
        )
        return output if return_dict is not False else output.to_tuple()

    def _prompt_mask_and_positions(self, input_ids, attention_mask, segments, document_ids, position_ids,
                                   past_key_values, dtype, rule, options):
        """The decoder's mask and position ids for a prompt read under ``rule``."""
        implementation = self.attn_implementation
        refuse_flash(rule, options, implementation)
        if segments is None and attention_mask is None and document_ids is None and rule.is_causal(**options):
            return None, position_ids  # nothing to mask: the LLM's native causal path, no read-back
        segs = self.prompt_segments(input_ids, attention_mask, segments)
        q_length = segs.shape[1]
        if rule.is_causal(**options) and document_ids is None:
            layout = self._layout(segs, None, q_length)
            valid = layout.valid
            # A real token after padding (left padding) needs the padding mask; right padding
            # only shows up in padding rows, which nothing trains or reads: is_causal is exact.
            # One read-back, as transformers' own 2D-mask path makes.
            if bool((valid[:, 1:] & ~valid[:, :-1]).any()):
                if position_ids is None:
                    position_ids = rule.position_ids(layout, **options)
                return valid.long(), position_ids
            return None, position_ids
        layout = self._layout(segs, document_ids, key_length(self.language_model.config, past_key_values, q_length))
        mask = prompt_attention_mask(
            self.language_model.config, rule, options, layout, q_length,
            past_key_values=past_key_values, document_ids=document_ids, dtype=dtype,
        )
        if position_ids is None:  # PAD beyond the prompt (a static cache's slots) moves no position
            position_ids = rule.position_ids(layout, **options)[:, :q_length]
        return mask, position_ids

    def _check_continuation(self, segments, rule, options) -> None:
        """New prompt tokens on top of a cache cannot be read under a non-causal rule."""
        if segments is None or rule.is_causal(**options):
            return
        unlockable = (segments == Segment.IMAGE) | (segments == Segment.QUERY)
        if bool(unlockable.any()):
            raise ValueError(
                f"these tokens continue a non-empty cache, so they are read causally, but they hold image/question "
                f"tokens that rule {rule.name!r} must read together with the whole prompt (chunked prefill or "
                "cache reuse). Pass the whole prompt with an empty cache (prefill_chunk_size=None)."
            )

    def _continued_positions(self, input_ids, attention_mask, past_key_values, rule) -> torch.Tensor:
        """Positions of tokens continuing a cached sequence, from the 2D mask (left padding)."""
        if not rule.has_sequential_positions:
            raise ValueError(
                f"rule {rule.name!r} has its own position ids; pass position_ids when continuing a cached "
                "sequence (generate does)."
            )
        n = input_ids.shape[1]
        if attention_mask is None or attention_mask.dim() != 2:
            past = past_key_values.get_seq_length() if past_key_values is not None else 0
            return (torch.arange(n, device=input_ids.device) + past).unsqueeze(0)
        return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -n:]

    # ------------------------------------------------------------------ building from parts
    @classmethod
    def from_components(
        cls,
        vision: str | os.PathLike,
        llm: str | os.PathLike,
        *,
        tokenizer: str | os.PathLike | None = None,
        resampler_config: dict | None = None,
        attention_rule: str = "mma",
        rule_options: dict | None = None,
        dtype: torch.dtype | str | None = None,
        image_size: int | None = None,
        save_directory: str | os.PathLike | None = None,
        **config_kwargs,
    ):
        """``(model, processor)``: a new AKI model from a pretrained vision tower and LLM (local
        directories or hub ids), and the processor that goes with it.

        The LLM's tokenizer (from ``tokenizer``, default the ``llm`` folder) gains ``<image>``,
        ``<|endofchunk|>`` (and ``<pad>``) as new ids, never reusing one; the LLM's embeddings grow to
        match. The resampler is freshly initialised. Every part is in one ``dtype`` (default
        float32), and the config says so. A full SigLIP/CLIP checkpoint gives its vision model.
        ``save_directory`` writes the model and the processor there.
        """
        from transformers import AutoTokenizer

        from aki.constants import IMAGE_TOKEN
        from aki.processing import AkiProcessor, add_aki_tokens, siglip_image_processor

        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        dtype = dtype or torch.float32
        vision_cfg = _load_or_explain(AutoConfig.from_pretrained, vision, "vision tower")
        full_vision = hasattr(vision_cfg, "vision_config") and vision_cfg.vision_config is not None
        tower = _load_or_explain(AutoModel.from_pretrained, vision, "vision tower", dtype=dtype)
        if full_vision:
            tower = tower.vision_model
            vision_cfg = vision_cfg.vision_config
        lm = _load_or_explain(AutoModelForCausalLM.from_pretrained, llm, "language model", dtype=dtype)
        tok = _load_or_explain(AutoTokenizer.from_pretrained, tokenizer or llm, "tokenizer")
        old_vocab = lm.get_input_embeddings().num_embeddings
        add_aki_tokens(tok)
        if len(tok) > old_vocab:
            lm.resize_token_embeddings(len(tok))
        image_token_id = tok.convert_tokens_to_ids(IMAGE_TOKEN)
        config = AkiConfig(
            vision_config=vision_cfg.to_dict(),
            text_config=lm.config.to_dict(),
            resampler_config=resampler_config or {},
            image_token_id=image_token_id,
            attention_rule=attention_rule,
            rule_options=rule_options,
            **config_kwargs,
        )
        model = cls._from_config(config, dtype=dtype)
        model.vision_tower.load_state_dict(tower.state_dict())
        missing = model.language_model.load_state_dict(lm.state_dict(), strict=False)
        bad = [k for k in missing.missing_keys if not k.endswith("lm_head.bias")] + list(missing.unexpected_keys)
        if bad:
            raise RuntimeError(f"language model weights did not fit the built model: {bad[:5]} ...")
        size = image_size or int(getattr(config.vision_config, "image_size", 384))
        processor = AkiProcessor(image_processor=siglip_image_processor(size), tokenizer=tok,
                                 num_image_tokens=config.num_image_tokens)
        model.generation_config = generation_config_for(processor)
        if save_directory is not None:
            model.save_pretrained(save_directory)
            processor.save_pretrained(save_directory)
        return model, processor


def _load_or_explain(loader, path: str | os.PathLike, what: str, **kwargs):
    """Call a ``from_pretrained`` loader on ``path`` resolved first (:func:`aki.pretrained.
    resolve_pretrained`: a missing folder or an uncached hub id while offline fails at once);
    a failure inside the loader names the path."""
    from aki.pretrained import resolve_pretrained

    source = resolve_pretrained(path, what, fix=f"pass a local folder holding the {what}'s config.json and weights")
    try:
        return loader(source, **kwargs)
    except (OSError, ValueError) as err:
        raise FileNotFoundError(
            f"could not load the {what} from {str(path)!r}: {type(err).__name__}: {err}; pass a folder holding the "
            f"{what}'s config.json and weights (save_pretrained format)."
        ) from err


__all__ = ["AkiForConditionalGeneration", "AkiPreTrainedModel"]
