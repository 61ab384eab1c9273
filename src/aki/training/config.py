"""The typed training configuration: YAML file + ``--set key=value`` overrides.

Unknown keys are errors that name the key (a typo must never silently fall back to a default).
Nested sections are dataclasses too, so ``--set data.packing=true`` and ``--set lr=3e-5``
work the same way as top-level keys.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aki.masks import RULE_NAMES, get_rule

STAGES = ("pt", "sft")
PRECISIONS = ("auto", "fp32", "bf16", "bf16-pure")
"""``auto``: bf16 compute where the device has it (CUDA), else fp32; ``fp32``; ``bf16``: fp32 master
weights with bf16 compute (autocast, and FSDP2 bf16 parameters with fp32 gradient reduction);
``bf16-pure``: bf16 weights (AdamW then drops updates below bf16's resolution; warned)."""
WEIGHT_DTYPES = ("float32", "bfloat16")
PACK_SAMPLES = 4


class ConfigError(ValueError):
    """A config that cannot run (unknown key, bad value, wrong type). The CLI exits with status 2."""

    exit_code = 2


@dataclass
class ModelInit:
    """Where the model comes from: exactly one of ``tiny`` (a preset of aki.testing.tiny_model),
    ``from_dir`` (a previous stage's output dir or any save_pretrained dir), or ``vision`` + ``llm``
    (pretrained component ids or folders). ``dtype`` is the dtype the weights are loaded, trained
    and saved in (every stage): ``float32`` (the default: fp32 master weights, whatever the compute
    precision) or ``bfloat16`` (only with ``precision: bf16-pure``)."""

    tiny: str | None = None
    from_dir: str | None = None
    vision: str | None = None
    llm: str | None = None
    seed: int = 0
    dtype: str | None = None


@dataclass
class DataSource:
    """One data source: ``format`` is a reader (pt_jsonl, pt_shards, sft_llava, or a task format
    of aki.data.FORMATS); ``path`` its file/folder; ``weight`` its share in the mixture; ``options``
    extra reader arguments (e.g. ``{dataset: refcoco+}``, ``{image_root: ...}``)."""

    format: str = "sft_llava"
    path: str = ""
    weight: float = 1.0
    name: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    """Training data: sources (weighted mixture), turns splitting (``split``/``whole``), packing
    (each rank's samples of a step packed into balanced rows of at most ``pack_length`` tokens;
    default ``PACK_SAMPLES`` x (max_length + one image's extra tokens)), label-safe augmentation
    (aki.data.augment), DataLoader workers (``num_workers``: None = one per spare CPU core, at most
    4; 0 = in the training process) and their ``prefetch_factor``, and the synthetic set to generate
    when ``synth_dir`` is missing (offline tiny presets)."""

    sources: list[DataSource] = field(default_factory=list)
    turns: str = "split"
    packing: bool = False
    pack_length: int | None = None
    augment: bool = True
    num_workers: int | None = None
    prefetch_factor: int = 4
    synth_dir: str | None = None
    synth_scenes: int = 200
    synth_seed: int = 0


@dataclass
class TrainConfig:
    """One training stage. Optimisation defaults are the paper's PT values (Table 4): AdamW,
    linear warm-up from ``min_lr`` to ``lr``, then cosine decay to ``min_lr``."""

    output_dir: str = "runs/aki"
    stage: str = "pt"
    max_steps: int = 1000
    seed: int = 0
    init: ModelInit = field(default_factory=ModelInit)
    data: DataConfig = field(default_factory=DataConfig)
    lr: float = 1e-4
    min_lr: float = 1e-5
    warmup_steps: int = 2000
    weight_decay: float = 1e-2
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0
    attention_rule: str | None = None
    rule_options: dict[str, Any] = field(default_factory=dict)
    order: str = "I&T"
    batch_size: int = 192
    micro_batch_size: int | None = None
    grad_accum: int | None = None
    max_length: int = 128
    loss_on: str = "answer"
    caption_segment: str = "answer"
    freeze_vision: bool = True
    precision: str = "auto"
    log_every: int = 10
    save_every: int = 1000
    keep_last_k: int = 3
    max_skip_rate: float = 0.05
    min_records_for_skip_rate: int = 20
    guard_batches: int = 2
    progress: bool = True
    tensorboard: bool = True
    wandb: bool = False
    wandb_project: str = "aki"
    num_threads: int | None = None

    # ------------------------------------------------------------------ derived
    @property
    def weights_dtype(self) -> str:
        """The dtype the weights are loaded, trained and saved in."""
        return self.init.dtype or ("bfloat16" if self.precision == "bf16-pure" else "float32")

    @property
    def rule(self) -> str:
        """The attention rule: the configured one, else causal in PT and MMA in SFT (the paper)."""
        return self.attention_rule or ("causal" if self.stage == "pt" else "mma")

    def accumulation(self, world_size: int) -> tuple[int, int]:
        """(micro batch per rank, accumulation steps) whose product times ``world_size`` is
        ``batch_size`` (the global batch per optimizer step)."""
        per_rank, rest = divmod(self.batch_size, world_size)
        if rest:
            raise ConfigError(f"batch_size={self.batch_size} is not divisible by the {world_size} processes.")
        if self.grad_accum is not None:
            accum = self.grad_accum
            if per_rank % accum:
                raise ConfigError(f"batch_size/world={per_rank} is not divisible by grad_accum={accum}.")
            micro = per_rank // accum
        else:
            micro = min(self.micro_batch_size or per_rank, per_rank)
            if per_rank % micro:
                raise ConfigError(f"batch_size/world={per_rank} is not divisible by micro_batch_size={micro}.")
            accum = per_rank // micro
        return micro, accum

    def validate(self) -> TrainConfig:
        """Check values now, so a bad config fails before any model is built."""
        from aki.data.batching import CAPTION_SEGMENTS, LOSS_ON
        from aki.data.order import ORDERS
        from aki.data.readers import TURN_MODES

        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ConfigError(msg)

        need(self.stage in STAGES, f"stage must be one of {STAGES}; got {self.stage!r}")
        need(self.rule in RULE_NAMES, f"attention_rule must be one of {RULE_NAMES}; got {self.rule!r}")
        if self.rule in RULE_NAMES:
            try:
                get_rule(self.rule).check_options(self.rule_options)
            except (TypeError, ValueError) as err:
                raise ConfigError(f"rule_options: {err}") from None
        need(self.order in ORDERS, f"order must be one of {ORDERS}; got {self.order!r}")
        need(self.data.turns in TURN_MODES, f"data.turns must be one of {TURN_MODES}; got {self.data.turns!r}")
        need(self.loss_on in LOSS_ON, f"loss_on must be one of {LOSS_ON}; got {self.loss_on!r}")
        need(self.caption_segment in CAPTION_SEGMENTS,
             f"caption_segment must be one of {CAPTION_SEGMENTS}; got {self.caption_segment!r}")
        need(self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}; got {self.precision!r}")
        need(self.init.dtype in (None, *WEIGHT_DTYPES),
             f"init.dtype must be one of {WEIGHT_DTYPES} (or left out); got {self.init.dtype!r}")
        need(not (self.init.dtype == "bfloat16" and self.precision != "bf16-pure"),
             "init.dtype=bfloat16 would train pure-bf16 weights, and AdamW updates smaller than bf16's "
             "resolution are lost; use precision: bf16 (fp32 master weights, bf16 compute) and leave init.dtype "
             "out, or set precision: bf16-pure to train bf16 weights on purpose")
        need(not (self.init.dtype == "float32" and self.precision == "bf16-pure"),
             "precision: bf16-pure trains bfloat16 weights but init.dtype is float32; drop init.dtype or use "
             "precision: bf16 (fp32 master weights, bf16 compute)")
        need(self.data.num_workers is None or self.data.num_workers >= 0, "data.num_workers must be >= 0")
        need(self.data.prefetch_factor >= 1, "data.prefetch_factor must be >= 1")
        need(self.data.pack_length is None or self.data.pack_length > 1, "data.pack_length must be > 1")
        need(self.max_steps > 0 and self.batch_size > 0 and self.max_length > 1, "max_steps, batch_size, max_length must be positive")
        need(self.log_every > 0 and self.save_every > 0 and self.keep_last_k >= 1,
             "log_every, save_every must be > 0 and keep_last_k >= 1")
        need(0 <= self.max_skip_rate <= 1, "max_skip_rate must be in [0, 1]")
        need(0 <= self.min_lr <= self.lr, "min_lr must be in [0, lr]")
        need(self.warmup_steps >= 0, "warmup_steps must be >= 0")
        sources = [bool(self.init.tiny), bool(self.init.from_dir), bool(self.init.vision or self.init.llm)]
        need(sum(sources) == 1, "init needs exactly one of: tiny, from_dir, or vision + llm")
        need(not (self.init.vision or self.init.llm) or bool(self.init.vision and self.init.llm),
             "init.vision and init.llm go together")
        need(bool(self.data.sources), "data.sources is empty: list at least one {format, path}")
        for s in self.data.sources:
            need(s.weight >= 0, f"data source {s.name or s.path}: weight must be >= 0")
        return self


# ---------------------------------------------------------------------- loading


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Convert a YAML value to the field's type (nested dataclasses, lists, optionals)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        errors = []
        for a in inner:
            try:
                return _coerce(value, a, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return _build(hint, value, where)
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{where}[{k}]") for k, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, where) for v, a in zip(value, args, strict=True))
    if origin is dict or hint is Any:
        if origin is dict and not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def _build(cls: type, raw: dict, where: str = "") -> Any:
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in raw if k not in names]
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ConfigError(f"unknown config key {key!r}; known keys{' of ' + where if where else ''}: "
                          f"{', '.join(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in raw.items()}
    return cls(**kwargs)


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b=value`` -> (["a", "b"], YAML-parsed value)."""
    if "=" not in item:
        raise ConfigError(f"--set expects key=value; got {item!r}")
    key, _, text = item.partition("=")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {item!r}: the value is not valid YAML ({_yaml_problem(err)}); quote it "
                          "(--set 'key=\"text\"') or fix the brackets") from None
    return key.strip().split("."), value


def _yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML error in one short phrase: what, and where (line and column)."""
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{getattr(err, 'problem', None) or type(err).__name__}{where}"


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Set dotted keys in the raw mapping (missing sections are created; unknown keys are caught
    when the mapping is turned into dataclasses)."""
    for item in overrides:
        path, value = parse_override(item)
        node = raw
        for part in path[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[path[-1]] = value
    return raw


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                raw: dict | None = None) -> TrainConfig:
    """Read a YAML config (and/or a mapping), apply ``key=value`` overrides, type-check, validate.
    Relative data paths and output_dir stay relative to the working directory."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} {'is a folder' if path.is_dir() else 'does not exist'}; "
                              "pass a YAML training config (examples in configs/).")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            why = _yaml_problem(err) if isinstance(err, yaml.YAMLError) else "it is not UTF-8 text"
            raise ConfigError(f"{str(path)!r} is not valid YAML ({why}); fix the file (examples in configs/).") \
                from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the config must be a mapping of keys to values")
        data.update(loaded)
    if raw:
        data.update(raw)
    data = apply_overrides(data, list(overrides or []))
    return _build(TrainConfig, data).validate()


def to_dict(cfg: TrainConfig) -> dict:
    """Plain mapping (for saving next to checkpoints and for logging)."""
    return dataclasses.asdict(cfg)
