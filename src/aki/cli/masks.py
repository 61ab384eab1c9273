"""``aki masks``: print and plot the attention rules on an example layout."""

from __future__ import annotations

from pathlib import Path

import typer

LETTERS = {"P": -1, "T": 0, "I": 1, "Q": 2, "A": 3}
DEFAULT_LAYOUT = "TT IIII QQQ AA T IIII QQ AA"  # 4-token images: CCA on 2 x 2


def parse_layout(layout: str):
    """'TT IIII QQ AA' -> Segment labels (P pad, T text, I image, Q query, A answer; spaces ignored)."""
    import torch

    chars = [c for c in layout.upper() if not c.isspace()]
    bad = sorted({c for c in chars if c not in LETTERS})
    if bad or not chars:
        raise typer.BadParameter(
            f"layout letters must be from P T I Q A (pad, text, image, query, answer); got {bad or 'nothing'}."
        )
    return torch.tensor([[LETTERS[c] for c in chars]])


def parse_options(items: list[str] | None) -> dict:
    """``["unlock_fraction=0.5", "grid=[2, 2]"]`` -> ``{"unlock_fraction": 0.5, "grid": [2, 2]}``."""
    import yaml

    out = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"--option expects KEY=VALUE (e.g. unlock_fraction=0.5); got {item!r}.")
        out[key.strip()] = yaml.safe_load(text)
    return out


def show(
    rule: list[str] = typer.Option(None, "--rule", "-r", help="rule(s) to show; default: all"),
    layout: str = typer.Option(DEFAULT_LAYOUT, help="token layout: P pad, T text, I image, Q query, A answer"),
    option: list[str] = typer.Option(
        None, "--option", "-o",
        help="rule option KEY=VALUE, given to every shown rule that takes it (e.g. unlock_fraction=0.5, grid=[2,2])",
    ),
    plot: Path = typer.Option(None, help="write a PNG with one panel per rule"),
) -> None:
    """Print each rule's mask on a layout (# = may attend) and check it for leaks."""
    from aki.masks import RULE_NAMES, Segment, build_attention_mask, find_leaks, get_rule

    segments = parse_layout(layout)
    rules = rule or list(RULE_NAMES)
    for name in rules:
        try:
            get_rule(name)
        except ValueError as err:
            raise typer.BadParameter(str(err)) from None
    options = parse_options(option)
    takers = {k for name in rules for k in get_rule(name).option_names}
    unused = sorted(set(options) - takers)
    if unused:
        raise typer.BadParameter(f"no shown rule takes option(s) {unused}; "
                                 + "; ".join(f"{n}: {list(get_rule(n).option_names) or 'none'}" for n in rules))
    letters = "".join(k for c in segments[0].tolist() for k, v in LETTERS.items() if v == c)
    masks, leaks, failed = {}, {}, []
    for name in rules:  # every mask first: a rule that cannot be drawn stops the command before any output
        opts = {k: v for k, v in options.items() if k in get_rule(name).option_names}
        try:
            masks[name] = build_attention_mask(segments, name, **opts)
        except ValueError as err:
            failed.append(f"{name}: {err}")
            continue
        leaks[name] = int(find_leaks(masks[name], segments == Segment.ANSWER).sum())
    if failed:
        raise typer.BadParameter(f"cannot draw {len(failed)} rule(s) on the layout {layout!r}: {'; '.join(failed)}")
    for name, mask in masks.items():
        typer.echo(f"\n{name}  (rows = queries, columns = keys; # = may attend, . = masked; leaks: {leaks[name]})")
        typer.echo("   " + letters)
        for i, row in enumerate(mask[0, 0].tolist()):
            typer.echo(f"{letters[i]}  " + "".join("#" if x else "." for x in row))
    if plot is not None:
        fig = plot_masks(masks, leaks, letters)
        plot.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(plot, dpi=120)
        typer.echo(f"\nplot written to {plot}")


def plot_masks(masks: dict, leaks: dict[str, int], letters: str):
    """One panel per rule (black = may attend), with axis titles, the leak count per rule, and a
    legend for the colours and the layout letters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    fig, axes = plt.subplots(1, len(masks), figsize=(3.2 * len(masks), 4.0), squeeze=False)
    for ax, (name, mask) in zip(axes[0], masks.items(), strict=True):
        ax.imshow(mask[0, 0].numpy(), cmap="Greys", vmin=0, vmax=1)
        ax.set_title(f"{name}\nleaks: {leaks[name]}", color="red" if leaks[name] else "black", fontsize=9)
        ax.set_xticks(range(len(letters)), list(letters), fontsize=6)
        ax.set_yticks(range(len(letters)), list(letters), fontsize=6)
        ax.set_xlabel("key (attended to)", fontsize=7)
        ax.set_ylabel("query (attending)", fontsize=7)
    handles = [Patch(facecolor="black", label="may attend"),
               Patch(facecolor="white", edgecolor="grey", label="masked")]
    key = ("T text, I image, Q question, A answer, P pad; leaks = answer positions whose prediction "
           "can see a later token")
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=7, frameon=False, title=key, title_fontsize=7)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    return fig


def register(app: typer.Typer) -> None:
    masks_app = typer.Typer(help="Inspect the attention rules.", no_args_is_help=True)
    masks_app.command("show")(show)
    app.add_typer(masks_app, name="masks")
