"""Resolving a name to a local folder: a path, or a hub id that never waits on a dead network.

``huggingface_hub`` retries every file five times with back-off when the network is down (over
two minutes for one processor), and only then says it could not connect, without naming the
id. Here a hub id is looked up in the HF cache whenever the hub is offline, by setting
(``HF_HUB_OFFLINE``, ``TRANSFORMERS_OFFLINE``, ``local_files_only=True``) or by fact (a
three-second connection test to the hub, done once per process), and a miss is one error naming
the id and the fix.
"""

from __future__ import annotations

import functools
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_TRUE = ("1", "true", "yes", "on")


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


def resolve_pretrained(name: str | os.PathLike, what: str, kwargs: Mapping[str, Any] | None = None,
                       *, fix: str = "") -> str:
    """A local folder for ``name``, or ``name`` itself when it is a hub id that can be fetched.

    ``what`` names the thing being loaded ("processor", "model") in errors; ``fix`` is the
    sentence that tells the user what to pass instead. Raises ``FileNotFoundError`` /
    ``NotADirectoryError`` with one clear message.
    """
    kwargs = kwargs or {}
    path = Path(name).expanduser()
    text = os.fspath(name)
    if path.is_dir():
        return str(path)
    if path.exists():
        raise NotADirectoryError(f"{text!r} is a file; {fix or f'pass the folder that holds the {what}.'}")
    if not HUB_ID.fullmatch(text) or text.startswith((".", "/", "~")):
        raise FileNotFoundError(
            f"no {what} folder at {text!r} (resolved to {str(path.resolve())!r}); "
            f"{fix or 'pass a local folder, or a hub id like owner/name.'}"
        )
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
            f"{text!r} is not a local folder, {why}, and the HF cache holds no copy of it; "
            f"{fix or 'pass a local folder'} (or download the repo where the hub is reachable)."
        ) from err


__all__ = ["HUB_ID", "hub_reachable", "offline_by_setting", "resolve_pretrained"]
