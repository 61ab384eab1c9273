"""``aki data check CONFIG`` (is the data where the config says, and what will the model read?)
and ``aki data kale`` (BLIP3-KALE downloads to pre-training shards). Registered under ``aki data``
by :mod:`aki.cli.data`."""

from __future__ import annotations

from pathlib import Path

import typer


def check(
    config: Path = typer.Argument(..., help="YAML training config"),
    set_: list[str] = typer.Option(None, "--set", help="override a config key, as in aki train"),
    sample: int = typer.Option(200, "--sample", min=1, help="records per source checked for missing images"),
    full: bool = typer.Option(False, "--full", help="check every record's images (slower)"),
) -> None:
    """Per data source: records found, images missing (a seeded sample, or --full), and one sample
    rendered as the model will read it. Exits 1 when a source is unreadable, empty or missing images."""
    from aki.training import load_config
    from aki.training.pipeline import check_data

    cfg = load_config(config, set_ or [])  # a ConfigError is one line and exit status 2 (aki.cli.errors)
    if cfg.data.synth_dir and not (Path(cfg.data.synth_dir) / "metadata.json").exists():
        typer.echo(f"note: data.synth_dir {cfg.data.synth_dir} does not exist yet: aki train generates it first "
                   f"(or run `aki data synth --out {cfg.data.synth_dir}` to check it now)")
    reports, why = check_data(cfg, None if full else sample)
    if why:
        typer.echo(f"note: samples are rendered in the paper's phi3 template, not the model's: {why}")
    for r in reports:
        typer.echo("\n".join(r.lines()))
    bad = [r.name for r in reports if not r.ok]
    if bad:
        typer.secho(f"aki data check: {len(bad)} of {len(reports)} sources have problems: {', '.join(bad)}",
                    fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    typer.echo(f"all {len(reports)} sources OK")


def kale(
    inputs: list[Path] = typer.Argument(..., help="img2dataset output: .tar shards, or folders of them / of files"),
    out: Path = typer.Option(..., "--out", help="output folder for kale-NNNNNN.tar shards"),
    captions: list[Path] = typer.Option(None, "--captions", help="KALE parquet file(s): take captions from them by URL"),
    url_column: str = typer.Option("url", help="URL column of the parquet files"),
    caption_column: str = typer.Option("caption", help="caption column of the parquet files"),
    shard_size: int = typer.Option(10000, "--shard-size", min=1, help="samples per output shard"),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="decode every image and skip broken ones"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing --out folder"),
) -> None:
    """Turn BLIP3-KALE (images fetched with img2dataset, captions from its .txt or KALE's parquet
    files) into webdataset shards for `format: pt_shards` (docs/data.md)."""
    from aki.data.kale import KaleInputError, convert_kale

    try:
        stats = convert_kale(inputs, out, captions=captions or (), url_column=url_column,
                             caption_column=caption_column, shard_size=shard_size, verify=verify, overwrite=overwrite)
    except (KaleInputError, OSError) as err:  # one line and exit status 2 (aki.cli.errors)
        raise typer.BadParameter(str(err)) from None
    skipped = ", ".join(f"{k}: {v}" for k, v in sorted(stats["skipped"].items())) or "none"
    typer.echo(f"wrote {stats['written']} samples in {len(stats['shards'])} shards to {out} (skipped: {skipped})")
