"""AKI: vision tower -> Perceiver resampler -> causal LLM that reads the prompt under an attention rule.

The image embeddings are spliced into the LLM's input embeddings where ``input_ids`` holds the
image token. The decoder's attention mask is built from per-token segment labels by
:mod:`aki.masks` (MMA: image tokens also see the later question), in the form the LLM's
attention implementation expects: a bool 4D mask for SDPA, an additive float mask for eager,
a ``BlockMask`` for flex attention. Flash attention cannot take such a mask, so it is refused for
every rule but ``causal`` rather than silently running causal.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from aki.constants import IGNORE_INDEX
from aki.masks import (
    Segment,
    build_additive_mask,
    build_attention_mask,
    build_block_mask,
    build_position_ids,
    check_segments,
)
from aki.model.configuration import AkiConfig
from aki.model.resampler import PerceiverResampler


class AkiPreTrainedModel(PreTrainedModel):
    """Weight init and capability flags shared by AKI models."""

    config: AkiConfig
    config_class = AkiConfig
    base_model_prefix = ""
    main_input_name = "input_ids"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _skip_keys_device_placement = ["past_key_values"]
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_flash_attn = True
    _supports_attention_backend = True

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


class AkiForConditionalGeneration(AkiPreTrainedModel):
    """The AKI vision-language model (paper: modality-mutual attention for MLLMs)."""

    def __init__(self, config: AkiConfig):
        super().__init__(config)
        self.vision_tower = AutoModel.from_config(config.vision_config)
        self.resampler = PerceiverResampler(config.resampler_config)
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
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
    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` images -> ``[N, num_image_tokens, llm_hidden]`` LLM input embeddings."""
        dtype = next(self.vision_tower.parameters()).dtype
        pixel_values = pixel_values.to(dtype)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_vision):
            layer = self.config.vision_feature_layer
            out = self.vision_tower(pixel_values=pixel_values, output_hidden_states=layer != -1)
            feats = out.last_hidden_state if layer == -1 else out.hidden_states[layer]
        return self.resampler(feats.to(self.resampler.latents.dtype))

    def embed(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None = None) -> torch.Tensor:
        """Token embeddings with each image's resampled latents spliced over its image tokens."""
        image_positions = input_ids == self.config.image_token_id
        embed = self.get_input_embeddings()
        inputs_embeds = embed(input_ids.clamp(max=embed.num_embeddings - 1))
        n_tokens = int(image_positions.sum())
        n_images = 0 if pixel_values is None else int(pixel_values.shape[0])
        if n_tokens != n_images * self.num_image_tokens:
            raise ValueError(
                f"input_ids hold {n_tokens} image tokens (id {self.config.image_token_id}) but pixel_values "
                f"hold {n_images} image(s) of {self.num_image_tokens} tokens each "
                f"(= {n_images * self.num_image_tokens}). Each <image> marker must be expanded to "
                f"{self.num_image_tokens} image tokens (the processor does this) and every image passed once."
            )
        if n_images == 0:
            return inputs_embeds
        feats = self.get_image_features(pixel_values).to(inputs_embeds.dtype)
        return inputs_embeds.masked_scatter(image_positions.unsqueeze(-1), feats.reshape(-1, feats.shape[-1]))

    # ------------------------------------------------------------------ masks
    def resolve_segments(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        segments: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The segments the mask is built from; PAD wherever ``attention_mask`` is 0.

        Without segments only the causal rule (or an image-free batch) can be served: the
        question span the other rules unlock is not recoverable from token ids.
        """
        is_image = input_ids == self.config.image_token_id
        if segments is None:
            if self.config.attention_rule != "causal" and bool(is_image.any()):
                raise ValueError(
                    f"attention rule {self.config.attention_rule!r} needs `segments` (the processor returns "
                    "them: call model(**processor(...))); without them the question span it unlocks for "
                    "image tokens is unknown. Pass segments, or use attention_rule='causal'."
                )
            segments = torch.where(is_image, int(Segment.IMAGE), int(Segment.TEXT))
        segments = check_segments(segments).to(input_ids.device)
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

    def _mask_options(self) -> dict[str, Any]:
        return self.config.mask_options()

    def build_prompt_mask(self, segments: torch.Tensor, dtype: torch.dtype, document_ids=None):
        """The configured rule's mask in the form of the LLM's attention implementation."""
        rule, impl, opts = self.config.attention_rule, self.attn_implementation, self._mask_options()
        if "flash" in impl:
            if rule != "causal":
                raise ValueError(
                    f"attn_implementation={impl!r} cannot take the {rule!r} attention mask: it would silently "
                    "run plain causal attention. Use 'sdpa', 'eager' or 'flex_attention' (block-sparse, fast "
                    "on GPU), or attention_rule='causal'."
                )
            return None
        if impl == "eager":
            return build_additive_mask(segments, rule, dtype=dtype, document_ids=document_ids, **opts)
        if impl == "flex_attention":
            return build_block_mask(segments, rule, document_ids=document_ids, **opts)
        return build_attention_mask(segments, rule, document_ids=document_ids, **opts)

    def build_position_ids(self, segments: torch.Tensor, document_ids=None) -> torch.Tensor:
        """Position ids of the rule (left padding, packing and CCA rings handled by aki.masks)."""
        grid = self._mask_options().get("grid")
        return build_position_ids(segments, self.config.attention_rule, document_ids=document_ids, grid=grid)

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
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = True,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """Logits (and loss when ``labels`` are given) of the prompt read under the configured rule.

        With a non-empty ``past_key_values`` the new tokens continue the cached sequence causally
        (as generated answer tokens do); ``attention_mask`` then covers cache + new tokens, and
        ``position_ids`` should be passed (the CCA rule's positions are not recoverable from it).
        """
        if input_ids is None:
            raise ValueError("AkiForConditionalGeneration needs input_ids (image positions are read from them).")
        past_len = past_key_values.get_seq_length() if past_key_values is not None else 0
        inputs_embeds = self.embed(input_ids, pixel_values)

        if past_len > 0:
            # Continuation of a cached prompt: plain causal over cache + new tokens.
            mask = attention_mask
            if position_ids is None:
                full = attention_mask if attention_mask is not None else torch.ones(
                    input_ids.shape[0], past_len + input_ids.shape[1], device=input_ids.device)
                position_ids = (full.long().cumsum(-1) - 1).clamp(min=0)[:, -input_ids.shape[1]:]
        else:
            segs = self.resolve_segments(input_ids, attention_mask, segments)
            mask = self.build_prompt_mask(segs, inputs_embeds.dtype, document_ids)
            if mask is None:  # flash + causal: the backend takes the 2D padding mask
                mask = attention_mask
            if position_ids is None:
                position_ids = self.build_position_ids(segs, document_ids)

        out = self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            use_cache=use_cache,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            logits_to_keep=logits_to_keep,
            return_dict=True,
            **kwargs,
        )
        loss = None
        if labels is not None:
            loss = causal_lm_loss(out.logits, labels)
        return CausalLMOutputWithPast(
            loss=loss,
            logits=out.logits,
            past_key_values=out.past_key_values,
            hidden_states=out.hidden_states,
            attentions=out.attentions,
        )

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None, **kwargs):
        """Prefill the prompt under the rule, then decode causally. See :func:`aki.model.generation.generate`."""
        from aki.model.generation import generate

        return generate(self, input_ids, attention_mask, **kwargs)

    @torch.no_grad()
    def stream_generate(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None, **kwargs):
        """Yield the new token ids step by step (``[B]`` tensors). See :func:`aki.model.generation.decode_steps`."""
        from aki.model.generation import stream_generate

        yield from stream_generate(self, input_ids, attention_mask, **kwargs)

    # ------------------------------------------------------------------ building from parts
    @classmethod
    def from_components(
        cls,
        vision: str | os.PathLike,
        llm: str | os.PathLike,
        *,
        resampler_config: dict | None = None,
        image_token_id: int | None = None,
        vocab_size: int | None = None,
        attention_rule: str = "mma",
        dtype: torch.dtype | None = None,
        **config_kwargs,
    ) -> AkiForConditionalGeneration:
        """A new AKI model from a pretrained vision tower and LLM (local directories or hub ids).

        The resampler is freshly initialised. ``vocab_size`` resizes the LLM embeddings (after adding
        ``<image>`` and friends to the tokenizer). A full SigLIP/CLIP checkpoint gives its vision model.
        """
        vision_cfg = _load_or_explain(AutoConfig.from_pretrained, vision, "vision tower")
        full_vision = hasattr(vision_cfg, "vision_config") and vision_cfg.vision_config is not None
        tower = _load_or_explain(AutoModel.from_pretrained, vision, "vision tower", dtype=dtype)
        if full_vision:
            tower = tower.vision_model
            vision_cfg = vision_cfg.vision_config
        lm = _load_or_explain(AutoModelForCausalLM.from_pretrained, llm, "language model", dtype=dtype)
        if vocab_size is not None and vocab_size != lm.get_input_embeddings().num_embeddings:
            lm.resize_token_embeddings(vocab_size)
        config = AkiConfig(
            vision_config=vision_cfg.to_dict(),
            text_config=lm.config.to_dict(),
            resampler_config=resampler_config or {},
            image_token_id=image_token_id if image_token_id is not None else lm.config.vocab_size - 1,
            attention_rule=attention_rule,
            **config_kwargs,
        )
        model = cls(config)
        model.vision_tower.load_state_dict(tower.state_dict())
        missing = model.language_model.load_state_dict(lm.state_dict(), strict=False)
        bad = [k for k in missing.missing_keys if not k.endswith("lm_head.bias")] + list(missing.unexpected_keys)
        if bad:
            raise RuntimeError(f"language model weights did not fit the built model: {bad[:5]} ...")
        if dtype is not None:
            model = model.to(dtype)
        return model


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the labels that are not -100 (0 when there are none)."""
    shift_logits = logits[:, :-1].float().reshape(-1, logits.shape[-1])
    shift_labels = labels[:, 1:].to(logits.device).reshape(-1)
    total = F.cross_entropy(shift_logits, shift_labels, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (shift_labels != IGNORE_INDEX).sum().clamp(min=1)


def _load_or_explain(loader, path: str | os.PathLike, what: str, **kwargs):
    """Call a ``from_pretrained`` loader; turn a missing path into an error that names it."""
    try:
        return loader(str(path), **kwargs)
    except (OSError, ValueError) as err:
        where = "local directory" if os.path.sep in str(path) or os.path.exists(str(path)) else "hub id"
        raise FileNotFoundError(
            f"could not load the {what} from {str(path)!r} ({where}): {err}. Offline, pass a local directory "
            "holding config.json and the weights (HF_HUB_OFFLINE is "
            f"{os.environ.get('HF_HUB_OFFLINE', 'unset')})."
        ) from err


__all__ = ["AkiForConditionalGeneration", "AkiPreTrainedModel", "causal_lm_loss"]
