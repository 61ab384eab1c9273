"""What ``aki data check`` reports about one data source before any training starts: the
records found, the annotations already unusable, the images missing (a seeded sample of the
records, or all of them), and one sample rendered the way the model will read it."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from aki.data.readers import RecordSource
from aki.data.records import BadRecord, Sample


@dataclass
class SourceReport:
    """The findings for one configured source (``error`` when it could not be read at all)."""

    name: str
    format: str
    path: str
    weight: float = 1.0
    records: int = 0
    malformed: int = 0
    checked: int = 0
    sampled: bool = False
    missing: int = 0
    missing_examples: list[str] = field(default_factory=list)
    prompt: str | None = None
    prompt_note: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.records > self.malformed and self.missing == 0

    def lines(self) -> list[str]:
        head = f"[{self.name}] format={self.format} path={self.path} weight={self.weight:g}"
        if self.error:
            return [head, f"  ERROR: {self.error}"]
        how = (f"{self.checked} sampled of {self.records} records (--full checks all)" if self.sampled
               else f"all {self.checked} records")
        out = [head, f"  records: {self.records} ({self.malformed} with unusable annotations)",
               f"  images: {how}: {self.missing} missing"]
        out += [f"    missing: {m}" for m in self.missing_examples]
        if self.prompt is not None:
            out.append(f"  sample{self.prompt_note}:")
            out += ["    " + line for line in self.prompt.splitlines()]
        else:
            out.append(f"  sample: none could be built{self.prompt_note}")
        return out


def check_source(source: RecordSource, report: SourceReport, *, sample: int | None = 200, seed: int = 0,
                 render: Callable[[Sample], tuple[str, str]], examples: int = 3) -> SourceReport:
    """Fill ``report`` for ``source``: ``sample`` records (None = all) are checked for missing
    images; ``render(sample) -> (text, note)`` shows the first record that builds."""
    n = len(source)
    report.records, report.malformed = n, source.n_malformed
    if sample is None or sample >= n:
        idx = list(range(n))
    else:
        idx = sorted(random.Random(seed).sample(range(n), sample))
        report.sampled = True
    report.checked = len(idx)
    for i in idx:
        gone = source.missing_images(i)
        if gone:
            report.missing += 1
            if len(report.missing_examples) < examples:
                report.missing_examples.append(gone[0])
    last_error = ""
    for i in idx[:50]:
        try:
            text, note = render(source[i])
        except BadRecord as err:
            last_error = f" (last error: {err})"
            continue
        report.prompt, report.prompt_note = text, note
        break
    else:
        report.prompt_note = last_error
    return report
