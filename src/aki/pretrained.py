"""What a user points at as a pretrained model, checked before anything loads it.

Two kinds of name reach ``from_pretrained``: a local folder and a hub id. Left to themselves,
transformers and ``huggingface_hub`` answer a missing folder with "Repo id must be in the form
'repo_name'...", a truncated ``model.safetensors`` with "incomplete metadata, file not fully
covered" (no file name), and a hub id on a dead network with five retries per file and back-off
(minutes) before a message that names neither the id nor the config key that holds it. Here:

- :func:`resolve_pretrained` turns a hub id into a folder from the HF cache whenever the hub is
  offline, by setting (``HF_HUB_OFFLINE``, ``TRANSFORMERS_OFFLINE``, ``local_files_only=True``)
  or by fact (a three-second connection test, once per process); a miss is one error naming
  the id, the config key and the fix;
- :func:`check_model_folder` checks an aki model folder: that it exists, is not a data folder or
  an unfinished run, has a readable ``config.json`` of model type ``aki`` and complete
  safetensors weights (:func:`check_safetensors` reads only the header, so it is cheap);
- :func:`normal_file_modes` gives files the mode ``open()`` would have given them:
  safetensors >= 0.8 writes through a temporary file created 0600 and renames it into place,
  so ``model.safetensors`` would otherwise be readable by its owner only.
"""

from __future__ import annotations

import functools
import json
import os
import re
import socket
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_TRUE = ("1", "true", "yes", "on")
MAKE_ONE = ("train one (`aki quickstart`, `aki train CONFIG`) or convert the official release "
            "(`aki convert-official SRC DST`)")
WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
_DATA_MARKERS = ("metadata.json", "train", "test", "images", "sft.jsonl", "pt.jsonl", "cvbench.jsonl")


def offline_by_setting(kwargs: Mapping[str, Any] | None = None) -> bool:
    """Offline because the user said so: ``local_files_only`` or an offline environment variable."""
    if kwargs and kwargs.get("local_files_only"):
        return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("TRANSFORMERS_OFFLINE", "").strip().lower() in _TRUE


@functools.cache
def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the hub's endpoint opens within ``timeout`` seconds (checked
    once per process). Behind a proxy the check is left to the hub client (True)."""
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _named(text: str, key: str | None) -> str:
    return f"{text!r} ({key})" if key else repr(text)


def resolve_pretrained(name: str | os.PathLike, what: str, kwargs: Mapping[str, Any] | None = None,
                       *, fix: str = "", key: str | None = None) -> str:
    """A local folder for ``name``, or ``name`` itself when it is a hub id that can be fetched.

    ``what`` names the thing being loaded ("processor", "language model") in errors, ``key`` the
    config key that holds ``name`` (``init.llm``), and ``fix`` is the sentence that tells the user
    what to pass instead. Raises ``FileNotFoundError`` / ``NotADirectoryError`` with one clear
    message, at once (no retries) when the hub is offline.
    """
    kwargs = kwargs or {}
    path = Path(name).expanduser()
    text = os.fspath(name)
    fix = fix or (f"set {key} to a local folder, or a hub id like owner/name" if key
                  else "pass a local folder, or a hub id like owner/name")
    if path.is_dir():
        return str(path)
    if path.exists():
        raise NotADirectoryError(f"{_named(text, key)} is a file, not the folder that holds the {what}; {fix}.")
    if not HUB_ID.fullmatch(text) or text.startswith((".", "/", "~")):
        full = str(path.resolve())
        resolved = f" (resolved to {full!r})" if full != text else ""
        raise FileNotFoundError(f"no {what} folder at {_named(text, key)}{resolved}: it does not exist; {fix}.")
    by_setting = offline_by_setting(kwargs)
    if not by_setting and hub_reachable():
        return text
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(text, local_files_only=True, cache_dir=kwargs.get("cache_dir"),
                                 revision=kwargs.get("revision"))
    except Exception as err:
        why = ("the hub is offline (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE / local_files_only)" if by_setting
               else "the hub cannot be reached from here")
        raise FileNotFoundError(
            f"the {what} {_named(text, key)} is not a local folder, {why}, and the HF cache holds no copy of "
            f"it; {fix} (or download the repo where the hub is reachable)."
        ) from err


# ---------------------------------------------------------------------- model folders


class DamagedFileError(OSError):
    """A file that exists but cannot be what it claims (truncated or corrupt)."""


def check_safetensors(path: str | os.PathLike) -> None:
    """Raise :class:`DamagedFileError` naming ``path`` unless its header parses and the file is
    exactly as long as the header says (a truncated copy or download fails here, not deep inside
    the loader). Reads the header only."""
    path = Path(path)
    again = "copy or export the model again (a save or copy was probably cut short)"
    size = path.stat().st_size
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise ValueError(f"it is only {size} bytes long")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                raise ValueError(f"its header claims {n} bytes but the file holds {size} in all")
            header = json.loads(fh.read(n))
    except (ValueError, UnicodeDecodeError) as err:
        why = err if "bytes" in str(err) else f"its header is not valid JSON ({err})"
        raise DamagedFileError(f"{str(path)!r} is not a complete safetensors file: {why}; {again}.") from None
    ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    expected = 8 + n + max(ends, default=0)
    if size != expected:
        state = "truncated" if size < expected else "longer than its header says"
        raise DamagedFileError(
            f"{str(path)!r} is {state}: {size} bytes on disk, {expected} expected from its header; {again}."
        )


def _describe_non_model(folder: Path) -> str | None:
    """Why ``folder`` is not a model folder, when it is recognisably something else."""
    if (folder / "checkpoints").is_dir() or (folder / "metrics.jsonl").is_file():
        return ("is a training run without a final model (no final/): it has not finished; finish it with "
                "`aki train CONFIG --resume`, or pass a finished run")
    found = [m for m in _DATA_MARKERS if (folder / m).exists()]
    found += [p.name for p in sorted(folder.glob("*.tar"))[:1]]
    if found:
        return (f"is a data folder (it holds {', '.join(found[:3])}), not a saved model; pass the folder a "
                "model was saved to (a training run's final/)")
    return None


def check_model_folder(name: str | os.PathLike, *, key: str | None = None, what: str = "model",
                       hub_kwargs: Mapping[str, Any] | None = None) -> str:
    """The folder of a saved aki model (``save_pretrained`` format), checked; or a hub id.

    A training run's ``output_dir`` stands for its ``final/``. Refused, each with one message that
    names the path (and ``key``, the config key or option that holds it) and the fix: a path
    that does not exist, a file, a data folder, an unfinished run, a folder without
    ``config.json``, an unreadable or non-aki ``config.json``, missing or damaged weights. A hub
    id goes through :func:`resolve_pretrained` (fast offline failure), and its cached folder is
    checked like a local one (``hub_kwargs``: ``local_files_only``, ``cache_dir``, ``revision``).
    """
    fix = f"fix {key}, or {MAKE_ONE}" if key else MAKE_ONE
    resolved = resolve_pretrained(name, what, hub_kwargs, fix=fix, key=key)
    folder = Path(resolved)
    if not folder.is_dir():  # a hub id the hub will serve
        return resolved
    where = _named(str(name), key)
    if not (folder / "config.json").is_file() and (folder / "final" / "config.json").is_file():
        folder = folder / "final"
    config_file = folder / "config.json"
    if not config_file.is_file():
        why = _describe_non_model(folder) or f"holds no saved model (no config.json); {fix}"
        raise FileNotFoundError(f"{where} {why}.")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise DamagedFileError(f"{str(config_file)!r} is not valid JSON ({err}); copy or export the model again.") \
            from None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type != "aki":
        raise ValueError(
            f"{where} holds a {model_type or 'non-transformers'} model, not an aki model (config.json has "
            f"model_type {model_type!r}); {fix}. A vision tower or LLM goes in init.vision / init.llm."
        )
    index = folder / WEIGHTS_INDEX
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (ValueError, KeyError, TypeError) as err:
            raise DamagedFileError(f"{str(index)!r} is not a valid weight index ({err}); copy or export the "
                                   "model again.") from None
        files = [folder / s for s in shards]
    elif (folder / "pytorch_model.bin").is_file() or (folder / "pytorch_model.bin.index.json").is_file():
        files = []  # torch pickles (save_pretrained(safe_serialization=False)): transformers checks them
    else:
        files = [folder / WEIGHTS]
    for file in files:
        if not file.is_file():
            raise FileNotFoundError(f"{where} has a config.json but no weights: {str(file)!r} is missing; copy "
                                    f"the whole folder (or export the model again).")
        check_safetensors(file)
    return str(folder)


# ---------------------------------------------------------------------- written files


def normal_file_modes(folder: str | os.PathLike, pattern: str = "*.safetensors") -> None:
    """Give the files in ``folder`` matching ``pattern`` that safetensors left at 0600 the mode a
    plain ``open()`` gives a new file (0666 less the umask), as the rest of the folder has. Call
    it right after writing the folder."""
    umask = os.umask(0)
    os.umask(umask)
    mode = 0o666 & ~umask
    for p in Path(folder).glob(pattern):
        if p.is_file() and not p.is_symlink() and (p.stat().st_mode & 0o777) == 0o600 and mode != 0o600:
            p.chmod(mode)


__all__ = ["HUB_ID", "DamagedFileError", "check_model_folder", "check_safetensors", "hub_reachable",
           "normal_file_modes", "offline_by_setting", "resolve_pretrained"]
