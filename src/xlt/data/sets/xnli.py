"""Task ``xnli``: natural language inference, 15 languages parallel by row index.

Reads ``<data_dir>/xnli/{dev,test}-<lang>.tsv`` (premise<TAB>hypothesis<TAB>label, no header).
XNLI has no train split, so for every target language (English included):

- ``train`` / ``valid``: the target dev set (2,490 rows) split 80/20 by :func:`heldout_split` with
  ``SPLIT_SEED`` (1,992 / 498 rows). The split depends only on row indices, so it is the same for
  all runs and all languages (train rows of ``sw`` are translations of train rows of ``en``).
- ``test``: the target test set (5,010 rows).

``source`` is the source language's row with the same index (English by default).
"""

from __future__ import annotations

from pathlib import Path

from xlt.data.examples import Example, TaskData, heldout_split
from xlt.errors import XltError
from xlt.languages import canonical_code, dataset_name

LABELS = ("entailment", "neutral", "contradiction")
VALID_FRACTION = 0.2
SPLIT_SEED = 2018


def read_tsv(path: Path) -> list[tuple[str, str, int]]:
    """Rows of one XNLI file as (premise, hypothesis, label id)."""
    if not path.is_file():
        raise XltError(f"file not found: {path}")
    rows = []
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) != 3:
                raise XltError(f"{path}: line {line_no} has {len(fields)} fields, expected 3")
            premise, hypothesis, label = fields
            if label not in LABELS:
                raise XltError(f"{path}: line {line_no} has label {label!r}, expected one of {LABELS}")
            rows.append((premise, hypothesis, LABELS.index(label)))
    return rows


def _paired(root: Path, split: str, target: str, source: str) -> list[Example]:
    """Target rows of one file, each with the source row of the same index."""
    t_path = root / "xnli" / f"{split}-{dataset_name('xnli', target)}.tsv"
    s_path = root / "xnli" / f"{split}-{dataset_name('xnli', source)}.tsv"
    t_rows = read_tsv(t_path)
    s_rows = t_rows if s_path == t_path else read_tsv(s_path)
    if len(t_rows) != len(s_rows):
        raise XltError(
            f"misaligned xnli rows: {t_path} has {len(t_rows)} rows but {s_path} has {len(s_rows)}"
        )
    examples = []
    for i, ((p, h, label), (sp, sh, s_label)) in enumerate(zip(t_rows, s_rows)):
        if label != s_label:
            raise XltError(f"misaligned xnli rows: line {i + 1} is {LABELS[label]} in {t_path} "
                           f"but {LABELS[s_label]} in {s_path}")
        examples.append(Example((p, h), (sp, sh), label, f"{split}-{i}"))
    return examples


def load(root: Path, target_lang: str, source_lang: str = "en") -> TaskData:
    """Load XNLI for ``target_lang`` with the documented dev split."""
    for lang in (target_lang, source_lang):
        dataset_name("xnli", lang)  # unknown language -> XltError listing XNLI's
    target, source = canonical_code(target_lang), canonical_code(source_lang)
    dev = _paired(root, "dev", target, source)
    keep, held = heldout_split(len(dev), VALID_FRACTION, SPLIT_SEED)
    return TaskData(
        "xnli", LABELS, source, target,
        train=[dev[i] for i in keep], valid=[dev[i] for i in held],
        test=_paired(root, "test", target, source),
    )
