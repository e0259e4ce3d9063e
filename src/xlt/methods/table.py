"""The stage-2 method table, torch-free: the CLI and ``RunConfig`` read method names and what each
method does without importing torch (``xlt --help`` stays fast). :mod:`xlt.methods.adapters` attaches them.
"""

from __future__ import annotations

from dataclasses import dataclass

from xlt.errors import XltError


@dataclass(frozen=True)
class Method:
    name: str
    view: str  # which text the task model reads (xlt.training.batches.VIEWS)
    adapter: str | None  # None: evaluate the English model as is; "lora" | "flare" | "x-mixup"
    task_loss: bool = True  # False: the adapter is trained on the alignment loss alone
    align: bool = False  # alternate contrastive middle-layer alignment steps with the task steps
    translated_train: bool = False  # trains on the English training set machine-translated into the target
    mt_encoder: bool = False  # FLARE-MT: fuses an MT encoder's states of the target text, no English text

    @property
    def reads_source(self) -> bool:
        """Whether the method reads or fuses each example's source text (what --source-from changes)."""
        return self.view in ("source", "concat") or self.fuses_source

    @property
    def fuses_source(self) -> bool:
        """Whether each batch carries the example's source text as ``source_*`` inputs (FLARE, X-Mixup; FLARE-MT's
        ``source_*`` inputs are the target text for its MT encoder)."""
        return (self.adapter == "flare" and not self.mt_encoder) or self.adapter == "x-mixup"

    @property
    def trains(self) -> bool:
        return self.adapter is not None

    @property
    def needs_source_pass(self) -> bool:
        return self.adapter == "flare"


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("zero-shot", "target", None),
        Method("translate-test", "source", None),
        Method("lora", "target", "lora"),
        Method("translate-train", "target", "lora", translated_train=True),
        Method("input-fusion", "concat", "lora"),
        Method("flare", "target", "flare"),
        Method("flare-mt", "target", "flare", mt_encoder=True),
        Method("x-mixup", "target", "x-mixup"),
        Method("align", "target", "lora", task_loss=False, align=True),
        Method("lora+align", "target", "lora", align=True),
    )
}


XMIXUP_FAMILIES = ("encoder", "decoder")  # model families with a pooled classification head


def check_xmixup_family(family: str) -> None:
    """Refuse mT5 for x-mixup (before any model loads: xlt.runs.stage1.resolve_defaults knows the family)."""
    if family not in XMIXUP_FAMILIES:
        raise XltError(f"x-mixup mixes the layer states of encoders and decoders with a classification head; "
                       f"{family} models (mT5) are not supported")


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise XltError(f"unknown method {name!r}; choose one of: {', '.join(METHODS)}")
    return METHODS[name]
