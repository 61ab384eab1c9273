"""Readers of the generic on-disk formats: PT webdataset shards, PT JSONL, SFT JSONL (LLaVA).

Every reader returns a :class:`RecordSource`: a random-access list of *light* entries (paths,
strings, offsets) plus a function that turns one entry into a :class:`Sample`, opening images
only then. Random access is what makes the weighted mixture deterministic and resumable, and
lazy loading is what lets a corrupt image become one counted skip instead of a crash.
"""

from __future__ import annotations

import glob
import json
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aki.data.records import BadRecord, Sample, assistant_turn, load_image

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
TURN_MODES = ("split", "whole")


@dataclass
class RecordSource:
    """A named, random-access collection of records; ``source[i]`` builds a Sample or raises
    :class:`BadRecord`. ``image_files(entry)`` lists an entry's image files without opening
    them (for ``aki data check``); None where images are not files (webdataset shards)."""

    name: str
    entries: Sequence[Any]
    build: Callable[[Any], Sample]
    image_files: Callable[[Any], list[Path]] | None = None
    missing_members: Callable[[Any], list[str]] | None = None

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def n_malformed(self) -> int:
        """Entries already known to be unusable from their annotation alone."""
        return sum(isinstance(e, BadRecord) for e in self.entries)

    def missing_images(self, i: int) -> list[str]:
        """The images of record ``i`` that are not there (paths, or shard members)."""
        entry = self.entries[i]
        if isinstance(entry, BadRecord):
            return []
        if self.missing_members is not None:
            return self.missing_members(entry)
        if self.image_files is None:
            return []
        try:
            files = self.image_files(entry)
        except (BadRecord, KeyError, TypeError, ValueError):
            return []  # a malformed record: reported when drawn
        return [str(p) for p in files if not Path(p).is_file()]

    def __getitem__(self, i: int) -> Sample:
        entry = self.entries[i]
        if isinstance(entry, BadRecord):
            raise entry
        sample = self.build(entry)
        sample.source = self.name
        return sample


def _read_json_lines(path: Path) -> list[Any]:
    """JSON Lines, or one JSON array: each item parsed; a malformed line becomes a BadRecord."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json" or text.lstrip().startswith("["):
        data = json.loads(text)
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON array of records.")
        return data
    out: list[Any] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as err:
            out.append(BadRecord(f"{path}:{n}: malformed JSON ({err.msg})", "malformed"))
    return out


def _resolve(root: Path | None, rel: str) -> Path:
    p = Path(rel)
    return p if p.is_absolute() or root is None else root / p


# -- pre-training ----------------------------------------------------------------------------


def pt_jsonl(path: str | Path, image_root: str | Path | None = None, name: str = "pt") -> RecordSource:
    """Caption JSONL: one ``{"image": path, "caption": text}`` per line (``text`` also accepted).
    Relative image paths are taken from ``image_root`` (default: the file's folder)."""
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent

    def build(rec: Any) -> Sample:
        if not isinstance(rec, dict):
            raise BadRecord("caption record is not an object", "malformed")
        caption = rec.get("caption", rec.get("text"))
        image = rec.get("image", rec.get("image_path"))
        if not isinstance(caption, str) or not caption.strip() or not isinstance(image, str):
            raise BadRecord(f"caption record lacks an image path or caption: {sorted(rec)}", "malformed")
        return Sample(images=[load_image(_resolve(root, image))], caption=caption.strip())

    def files(rec: Any) -> list[Path]:
        image = rec.get("image", rec.get("image_path")) if isinstance(rec, dict) else None
        return [_resolve(root, image)] if isinstance(image, str) else []

    return RecordSource(name, _read_json_lines(path), build, image_files=files)


def _index_tar(shard: Path) -> list[dict[str, tuple[int, int]] | BadRecord]:
    """Group a webdataset shard's members by key (path up to the first dot of the basename);
    each entry maps extension -> (data offset, size), so a sample is read with one seek."""
    groups: dict[str, dict[str, tuple[int, int]]] = {}
    try:
        with tarfile.open(shard, "r:") as tar:
            for m in tar:
                if not m.isfile():
                    continue
                folder, _, base = m.name.rpartition("/")
                key, dot, ext = base.partition(".")
                if not dot:
                    continue
                groups.setdefault(f"{folder}/{key}", {})[ext.lower()] = (m.offset_data, m.size)
    except (tarfile.TarError, OSError) as err:
        return [BadRecord(f"unreadable shard {shard}: {err}", "corrupt_shard")]
    return list(groups.values())


def pt_shards(shards: str | Path | Sequence[str | Path], name: str = "pt") -> RecordSource:
    """Webdataset caption shards (``key.jpg``/``key.png`` + ``key.txt``), as BLIP3-Kale ships.

    ``shards``: a glob (``data/pt-*.tar``), a folder, or a list of tar files. The tar headers are
    indexed once (no data read) so samples can be drawn in any order.
    """
    files = _expand_shards(shards)
    entries: list[Any] = []
    for shard in files:
        entries.extend((shard, g) if isinstance(g, dict) else g for g in _index_tar(shard))

    def read(shard: Path, where: tuple[int, int]) -> bytes:
        with open(shard, "rb") as fh:
            fh.seek(where[0])
            return fh.read(where[1])

    def build(entry: tuple[Path, dict[str, tuple[int, int]]]) -> Sample:
        shard, members = entry
        img_ext = next((e for e in IMAGE_EXTS if e in members), None)
        if img_ext is None or "txt" not in members:
            raise BadRecord(f"{shard}: sample without image or txt ({sorted(members)})", "malformed")
        caption = read(shard, members["txt"]).decode("utf-8", errors="replace").strip()
        if not caption:
            raise BadRecord(f"{shard}: empty caption", "malformed")
        return Sample(images=[load_image(read(shard, members[img_ext]))], caption=caption)

    def missing(entry: tuple[Path, dict[str, tuple[int, int]]]) -> list[str]:
        shard, members = entry
        return [] if any(e in members for e in IMAGE_EXTS) else [f"{shard}: a sample without an image ({sorted(members)})"]

    return RecordSource(name, entries, build, missing_members=missing)


def _expand_shards(shards: str | Path | Sequence[str | Path]) -> list[Path]:
    if isinstance(shards, str | Path):
        p = Path(shards)
        if p.is_dir():
            files = sorted(p.glob("*.tar"))
        elif any(c in str(p) for c in "*?["):
            files = sorted(Path(f) for f in glob.glob(str(p)))
        else:
            files = [p]
    else:
        files = [Path(s) for s in shards]
    if not files:
        raise FileNotFoundError(f"no webdataset shards match {shards}")
    return files


# -- LLaVA conversations ------------------------------------------------------------------------

ROLE = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


def _content(text: str, n_images: int) -> list[dict]:
    """Text with ``<image>`` markers -> content items; ``n_images`` images go where the markers
    are (missing markers: images first, the I&T default)."""
    parts = text.split("<image>")
    markers = len(parts) - 1
    items: list[dict] = []
    if markers == 0:
        items = [{"type": "image"} for _ in range(n_images)]
        return [*items, {"type": "text", "text": text.strip()}]
    for k, part in enumerate(parts):
        if part.strip():
            items.append({"type": "text", "text": part.strip()})
        if k < markers:
            items.append({"type": "image"})
    return items


def llava_conversations(rec: Any, turns: str = "split") -> list[list[dict]]:
    """LLaVA ``conversations`` -> chat messages: ``split`` gives one single-turn conversation per
    human/gpt pair (the paper; each keeps the image), ``whole`` one multi-turn conversation."""
    if turns not in TURN_MODES:
        raise ValueError(f"turns must be one of {TURN_MODES}; got {turns!r}")
    if not isinstance(rec, dict) or not isinstance(rec.get("conversations"), list):
        raise BadRecord("record has no 'conversations' list", "malformed")
    image = rec.get("image")
    n_images = 0 if image is None else (len(image) if isinstance(image, list) else 1)
    conv = rec["conversations"]
    pairs: list[tuple[str, str]] = []
    for k in range(0, len(conv) - 1, 2):
        a, b = conv[k], conv[k + 1]
        if not (isinstance(a, dict) and isinstance(b, dict)) or ROLE.get(a.get("from")) != "user" \
                or ROLE.get(b.get("from")) != "assistant" or not isinstance(a.get("value"), str) \
                or not isinstance(b.get("value"), str):
            raise BadRecord("conversation turns must alternate human/gpt with string values", "malformed")
        pairs.append((a["value"], b["value"]))
    if not pairs:
        raise BadRecord("conversation has no human/gpt pair", "malformed")
    if turns == "split":
        return [[{"role": "user", "content": _content(q, n_images)}, assistant_turn(a.strip())] for q, a in pairs]
    messages: list[dict] = []
    for k, (q, a) in enumerate(pairs):
        has_marker = "<image>" in q
        if k == 0 or has_marker:
            content = _content(q, n_images if k == 0 or has_marker else 0)
        else:
            content = [{"type": "text", "text": q.strip()}]
        messages += [{"role": "user", "content": content}, assistant_turn(a.strip())]
    return [messages]


def _image_list(rec: dict) -> list[str]:
    image = rec.get("image")
    if image is None:
        return []
    images = image if isinstance(image, list) else [image]
    if not all(isinstance(i, str) for i in images):
        raise BadRecord("'image' must be a path or a list of paths", "malformed")
    return images


def sft_llava(path: str | Path, image_root: str | Path | None = None, turns: str = "split",
              name: str = "sft") -> RecordSource:
    """LLaVA-format SFT file (JSON array or JSONL of ``{"image", "conversations"}``).

    With ``turns="split"`` every human/gpt pair is its own entry, so the record is parsed here
    (to count its turns); a malformed record stays one entry that raises when drawn.
    """
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    entries: list[Any] = []
    for rec in _read_json_lines(path):
        if isinstance(rec, BadRecord):
            entries.append(rec)
            continue
        try:
            convs = llava_conversations(rec, turns)
            images = _image_list(rec)
        except BadRecord as err:
            entries.append(err)
            continue
        entries.extend((images, messages) for messages in convs)

    def build(entry: tuple[list[str], list[dict]]) -> Sample:
        images, messages = entry
        n_items = sum(1 for m in messages for c in m["content"] if c.get("type") == "image")
        if n_items != len(images):
            raise BadRecord(f"{n_items} image markers for {len(images)} images", "malformed")
        return Sample(images=[load_image(_resolve(root, i)) for i in images], messages=messages)

    return RecordSource(name, entries, build, image_files=lambda e: [_resolve(root, i) for i in e[0]])
