"""The stage-2 method table, torch-free: the CLI and ``RunConfig`` read method names and what each
method does without importing torch (``xlt --help`` stays fast). :mod:`xlt.methods.adapters` attaches them.

One row per method says what it reads, what it trains and which options apply to it; code asks the row
(``method.fuses``, ``method.mixes``, ``"mt_model" in method.options``), never the method's name.
"""

from __future__ import annotations

from dataclasses import dataclass

from xlt.errors import XltError

DEFAULT_LORA_R = 64  # the FLARE paper's rank: RunConfig's default, accepted on any model (xlt.runs.preflight)
ALIGN_LORA_R = 8  # the align methods' rank (all-linear LoRA)
FAMILIES = ("encoder", "decoder", "encoder-decoder")  # xlt.models.architectures' families

FLARE_OPTIONS = ("fusion", "source_layer_offset", "zero_source_eval", "source_cache_gb")
MIXUP_OPTIONS = ("mixup_layers", "mixup_lambda", "mixup_schedule")


@dataclass(frozen=True)
class Method:
    name: str
    view: str  # which text the task model reads (xlt.training.batches.VIEWS)
    trains: bool = True  # False: evaluate the English model as is
    fuses: bool = False  # FLARE: the LoRA bottleneck fuses source states (FlareConfig), after a frozen source pass
    mixes: bool = False  # X-Mixup: LoRA plus a mixing module that mixes the source's layer states in
    task_loss: bool = True  # False: the adapter is trained on the alignment loss alone
    align: bool = False  # alternate contrastive middle-layer alignment steps with the task steps
    translated_train: bool = False  # trains on the English training set machine-translated into the target
    translated_test: bool = False  # reads the target text machine-translated into English (translate-test)
    mt_encoder: bool = False  # FLARE-MT: fuses an MT encoder's states of the target text, no English text
    options: tuple[str, ...] = ()  # the RunConfig options that apply to this method only
    families: tuple[str, ...] = FAMILIES  # the model families it runs on
    lora_r: int = DEFAULT_LORA_R  # its default LoRA rank (--lora-r)
    lora_targets: str = "attention"  # its default --lora-targets
    checkpointing: bool = True  # whether --gradient-checkpointing applies (X-Mixup mixes inside the forward)
    description: str = ""  # one line: xlt train --help and docs/tables.md

    @property
    def reads_source(self) -> bool:
        """Whether the method reads or fuses each example's source text (what --source-from changes)."""
        return self.view in ("source", "concat") or self.fuses_source

    @property
    def fuses_source(self) -> bool:
        """Whether each batch carries the example's source text as ``source_*`` inputs (FLARE, X-Mixup; FLARE-MT's
        ``source_*`` inputs are the target text for its MT encoder)."""
        return (self.fuses and not self.mt_encoder) or self.mixes

    @property
    def needs_source_pass(self) -> bool:
        """FLARE's frozen pass over the source (the English model's, or FLARE-MT's MT encoder's)."""
        return self.fuses

    @property
    def attention_only(self) -> bool:
        """FLARE fuses in the attention query/value projections: --lora-targets all-linear is refused."""
        return self.fuses

    @property
    def plain_lora(self) -> bool:
        """A LoRA adapter and nothing else (no fusion, no mixing module): what ``xlt merge`` adds up."""
        return self.trains and not self.fuses and not self.mixes

    def check_family(self, family: str) -> None:
        """Refuse a model family the method does not run on (before any model loads: the recipe knows the family).
        Only X-Mixup leaves one out: mT5, whose classification head pools nothing it could mix."""
        if family not in self.families:
            raise XltError(f"{self.name} mixes the layer states of encoders and decoders with a classification head; "
                           f"{family} models (mT5) are not supported")


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("zero-shot", "target", trains=False,
               description="the English model on the target text as it is"),
        Method("translate-test", "source", trains=False, translated_test=True, options=("translator",),
               description="the English model on each test example's English version (gold, or --translator's)"),
        Method("lora", "target",
               description="LoRA trained on the target-language training set"),
        Method("translate-train", "target", translated_train=True, options=("translator",),
               description="LoRA trained on the English training set machine-translated into the target "
                           "(--translator)"),
        Method("input-fusion", "concat",
               description="LoRA reading 'English <sep> target' at twice the length"),
        Method("flare", "target", fuses=True, options=FLARE_OPTIONS,
               description="LoRA whose bottleneck fuses the English states of the same example (--fusion)"),
        Method("flare-mt", "target", fuses=True, mt_encoder=True, options=(*FLARE_OPTIONS, "mt_model"),
               description="FLARE fusing an MT encoder's states of the target text (--mt-model), no English text"),
        Method("x-mixup", "target", mixes=True, options=MIXUP_OPTIONS, families=("encoder", "decoder"),
               checkpointing=False,
               description="LoRA plus cross-attention mixing the English layer states into the target's"),
        Method("align", "target", task_loss=False, align=True, lora_r=ALIGN_LORA_R, lora_targets="all-linear",
               description="LoRA trained on middle-layer contrastive alignment with English only"),
        Method("lora+align", "target", align=True, lora_r=ALIGN_LORA_R, lora_targets="all-linear",
               description="LoRA alternating task steps with middle-layer alignment steps"),
    )
}


def methods_with(option: str) -> list[str]:
    """The methods an option applies to only (its error message names them), in table order."""
    return [m.name for m in METHODS.values() if option in m.options]


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise XltError(f"unknown method {name!r}; choose one of: {', '.join(METHODS)}")
    return METHODS[name]
