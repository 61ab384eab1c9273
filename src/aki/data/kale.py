"""BLIP3-KALE to the webdataset caption shards aki pre-trains on (``pt_shards``).

What BLIP3-KALE publishes (Hugging Face ``Salesforce/blip3-kale``): parquet files of image URLs
and captions (``data_core_set/*.parquet``, ``data_full_set/*.parquet``), no images; the images
are Datacomp-1B web images, fetched with ``img2dataset``. img2dataset writes either webdataset
tars (``--output_format webdataset``: ``KEY.jpg``, ``KEY.txt`` with the ``--caption_col`` text,
``KEY.json`` with the row's metadata, its ``url`` among them) or the same files in numbered
folders (``--output_format files``).

:func:`convert_kale` reads those (tars or folders), takes each sample's caption from its
``.txt`` or, with ``captions=``, from KALE's parquet files joined on the URL, checks that the
image decodes (unless ``verify=False``), and writes ``kale-NNNNNN.tar`` shards of ``KEY.jpg`` /
``KEY.png`` + ``KEY.txt`` (webdataset's ShardWriter) into a temporary folder renamed into place at
the end. Samples without an image, without a caption, or with an undecodable image are counted
by reason, never silently dropped.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

from aki.data.readers import IMAGE_EXTS
from aki.data.records import BadRecord, load_image

TMP_PREFIX = ".tmp-"


class KaleInputError(ValueError):
    """Inputs the converter cannot use (with what to do instead)."""


def _tar_samples(path: Path) -> Iterator[dict]:
    import webdataset as wds

    for sample in wds.WebDataset(str(path), shardshuffle=False, empty_check=False):
        yield {k: v for k, v in sample.items() if not k.startswith("__") or k == "__key__"}


def _folder_samples(folder: Path) -> Iterator[dict]:
    """img2dataset's ``files`` layout: ``SHARD/KEY.jpg``, ``KEY.txt``, ``KEY.json`` (sorted)."""
    groups: dict[tuple[str, str], dict] = {}
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.name.startswith("."):
            continue
        stem, _, ext = p.name.partition(".")
        key = (str(p.parent.relative_to(folder)), stem)
        groups.setdefault(key, {"__key__": stem})[ext.lower()] = p.read_bytes()
    yield from groups.values()


def _inputs(paths: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """(tar shards, ``files``-layout folders) from the given files and folders."""
    tars, folders = [], []
    for p in paths:
        p = Path(p)
        if p.is_file() and p.suffix == ".tar":
            tars.append(p)
        elif p.is_dir():
            found = sorted(p.glob("*.tar"))
            if found:
                tars += found
            elif any(f.suffix.lower().lstrip(".") in IMAGE_EXTS for f in p.rglob("*") if f.is_file()):
                folders.append(p)
            elif any(p.rglob("*.parquet")):
                raise KaleInputError(_parquet_only(p))
            else:
                raise KaleInputError(f"{p} holds no .tar shards and no images; pass img2dataset's output folder")
        elif p.suffix == ".parquet":
            raise KaleInputError(_parquet_only(p))
        else:
            raise KaleInputError(f"{p} is not a .tar shard or a folder; pass img2dataset's output (tars or folders)")
    return tars, folders


def _parquet_only(p: Path) -> str:
    return (f"{p}: BLIP3-KALE's parquet files hold image URLs, not images; download the images first, e.g. "
            "`img2dataset --url_list DIR_OF_PARQUETS --input_format parquet --url_col url --caption_col caption "
            "--output_format webdataset --output_folder kale-images`, then pass kale-images (and the parquet "
            "files with --captions to take captions from them)")


def read_captions(files: Sequence[Path], url_column: str = "url", caption_column: str = "caption") -> dict[str, str]:
    """URL -> caption from KALE's parquet files (only those two columns are read)."""
    import pyarrow.parquet as pq

    out: dict[str, str] = {}
    for f in files:
        names = pq.ParquetFile(f).schema_arrow.names
        missing = [c for c in (url_column, caption_column) if c not in names]
        if missing:
            raise KaleInputError(f"{f} has no column {missing[0]!r}; its columns are {names}: pass "
                                 "--url-column / --caption-column")
        table = pq.read_table(f, columns=[url_column, caption_column])
        for url, cap in zip(table.column(url_column).to_pylist(), table.column(caption_column).to_pylist(),
                            strict=True):
            if url and cap:
                out[str(url)] = str(cap)
    return out


def convert_kale(inputs: Sequence[str | Path], out: str | Path, *, captions: Sequence[str | Path] = (),
                 url_column: str = "url", caption_column: str = "caption", shard_size: int = 10000,
                 verify: bool = True, overwrite: bool = False) -> dict:
    """Convert img2dataset output of BLIP3-KALE into ``out/kale-NNNNNN.tar``; returns the counts
    (``written``, ``skipped`` by reason, ``shards``)."""
    import webdataset as wds

    out = Path(out)
    if out.exists() and not overwrite:
        raise KaleInputError(f"{out} already exists; choose another --out or pass --overwrite")
    if shard_size < 1:
        raise KaleInputError(f"shard size must be >= 1; got {shard_size}")
    tars, folders = _inputs([Path(p) for p in inputs])
    table = read_captions([Path(c) for c in captions], url_column, caption_column) if captions else None
    tmp = out.parent / f"{TMP_PREFIX}{out.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    skipped: Counter[str] = Counter()
    written = 0
    streams = [_tar_samples(t) for t in tars] + [_folder_samples(f) for f in folders]
    with wds.ShardWriter(str(tmp / "kale-%06d.tar"), maxcount=shard_size, verbose=0) as sink:
        for stream in streams:
            for sample in stream:
                ext = next((e for e in IMAGE_EXTS if e in sample), None)
                if ext is None:
                    skipped["no_image"] += 1
                    continue
                caption = _caption(sample, table)
                if not caption:
                    skipped["no_caption"] += 1
                    continue
                if verify:
                    try:
                        load_image(sample[ext])
                    except BadRecord as err:
                        skipped[err.reason] += 1
                        continue
                sink.write({"__key__": f"{written:09d}", "png" if ext == "png" else "jpg": sample[ext],
                            "txt": caption})
                written += 1
    if written == 0:
        shutil.rmtree(tmp)
        raise KaleInputError(f"no usable sample in {[str(p) for p in inputs]} (skipped: {dict(skipped)}); check "
                             "that the images were downloaded and the captions exist")
    if out.exists():
        shutil.rmtree(out)
    os.rename(tmp, out)
    shards = sorted(p.name for p in out.glob("kale-*.tar"))
    (out / "kale.json").write_text(json.dumps({"written": written, "skipped": dict(skipped), "shards": len(shards),
                                               "sources": [str(p) for p in inputs]}, indent=1) + "\n")
    return {"written": written, "skipped": dict(skipped), "shards": shards}


def _caption(sample: dict, table: dict[str, str] | None) -> str:
    if table is not None:
        meta = sample.get("json")
        try:
            url = json.loads(meta).get("url") if meta else None
        except (ValueError, AttributeError):
            url = None
        return table.get(url, "").strip() if url else ""
    txt = sample.get("txt")
    return txt.decode("utf-8", errors="replace").strip() if isinstance(txt, bytes) else str(txt or "").strip()
