"""The training and prediction loops, on ``accelerate`` so multi-process training needs no rewrite.

A batch is the keyword arguments of one model call (a FLARE model's source text included) and
its labels; the loops know nothing about any method.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from functools import partial
from typing import Callable, Sequence

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from xlt.data.examples import Example, GenQAExample, QAExample, TagExample
from xlt.processes import cpu_processes
from xlt.training.batches import Batch
from xlt.training.limits import check_steps


@dataclass
class TrainSettings:
    epochs: int
    lr: float
    batch_size: int = 32
    weight_decay: float = 0.0
    warmup_ratio: float = 0.1
    bf16: bool = False
    fp16: bool = False
    max_grad_norm: float = 0.0  # clip the global gradient norm before each step; 0: off (RunConfig's default: 1.0)
    show_progress: bool = True


def bf16_is_native() -> bool:
    """Whether this machine runs bf16 in hardware: a CUDA GPU with bf16, or a CPU with AVX512-BF16/AMX.
    Elsewhere PyTorch emulates it: on an AVX2 CPU a bf16-autocast e5-small training step took 60 s
    against 2 s in fp32, so defaults that favour bf16 must ask this first."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a private op; absent means no known support
        return False


def resolve_bf16(choice: bool | None) -> bool:
    """A bf16 flag left unset (None) follows the hardware (:func:`bf16_is_native`)."""
    return bf16_is_native() if choice is None else choice


def make_accelerator(bf16: bool, fp16: bool = False, **tracking) -> Accelerator:
    """The accelerator of a training loop, or (``tracking``: ``log_with``, ``project_dir``) of a run's trackers
    (xlt.training.tracking), with the same precision: accelerate refuses a second one in the same process."""
    # several processes: parameters a step does not reach (BERT's unused pooler in stage 1) must not stall DDP
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    return Accelerator(mixed_precision="bf16" if bf16 else "fp16" if fp16 else "no", kwargs_handlers=[ddp],
                       cpu=cpu_processes(), **tracking)


def shard(step: list[int], rank: int, world: int) -> tuple[list[int], float]:
    """This process's rows of one batch and the weight of its mean loss, so that the average DDP takes
    over processes is the mean over the whole batch (shards differ by one row at most). A process
    without rows runs one with weight 0: every process must take part in each step."""
    mine = step[rank::world]
    if not mine:
        return step[:1], 0.0
    return mine, len(mine) * world / len(step)


def enable_checkpointing(model: torch.nn.Module) -> None:
    """Non-reentrant activation checkpointing (frozen inputs need no ``requires_grad`` trick)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x name
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def text_length(ex) -> int:
    """A cheap length proxy (characters of both languages) for grouping similar lengths."""
    if isinstance(ex, Example):
        return sum(map(len, ex.target)) + sum(map(len, ex.source or ()))
    if isinstance(ex, TagExample):
        return sum(map(len, ex.tokens)) + sum(map(len, ex.source_tokens or ()))
    if isinstance(ex, QAExample):
        return len(ex.question) + len(ex.context) + len(ex.source_question or "") + len(ex.source_context or "")
    if isinstance(ex, GenQAExample):  # the paragraphs, however much of them the prompts keep
        return len(ex.prompt_target) + len(ex.passage_target) + len(ex.passage_source or "")
    return len(ex.prompt_target) + len(ex.answer) + len(ex.prompt_source or "")  # GenExample


def length_grouped_batches(examples: Sequence[Example], batch_size: int, generator: torch.Generator,
                           window: int = 16) -> list[list[int]]:
    """Shuffled batches of similar length: less padding, same randomness across epochs.

    Shuffle, sort each window of ``window`` batches by length, cut into batches, shuffle the batches.
    """
    order = torch.randperm(len(examples), generator=generator).tolist()
    batches = []
    for start in range(0, len(order), batch_size * window):
        chunk = sorted(order[start : start + batch_size * window], key=lambda i: -text_length(examples[i]))
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


StepLog = Callable[[dict, int], None]
"""What the loop calls after each optimizer step when a run is tracked: the step's values and its number."""
Pass = Callable[[], torch.Tensor]
"""One forward pass of a step: computes its share of the step's loss (already weighted)."""
Step = Callable[[torch.nn.Module, Accelerator], list[Pass]]
"""One optimizer step: given the (prepared) model and the accelerator, this process's forward passes. The
loop runs and backpropagates them one at a time, so only one pass's activations are held at once."""


@dataclass
class TaskStep:
    """One batch of task examples; each process takes its rows and weights its mean loss so that DDP's
    average over processes is the mean over the whole batch. A batch with more than ``max_rows`` rows
    (QA windows) is run in several passes (``Batch.passes``)."""

    rows: list[int]
    examples: Sequence
    to_batch: Callable[[list], Batch]
    max_rows: int | None = None

    def __call__(self, model: torch.nn.Module, accelerator: Accelerator) -> list[Pass]:
        rows, weight = shard(self.rows, accelerator.process_index, accelerator.num_processes)
        batch = self.to_batch([self.examples[i] for i in rows]).to(accelerator.device)
        return [partial(_weighted_loss, model, part, share * weight) for part, share in batch.passes(self.max_rows)]


def _weighted_loss(model: torch.nn.Module, batch: Batch, weight: float) -> torch.Tensor:
    return model(**batch.inputs, **batch.targets()).loss * weight


def task_steps(examples: Sequence, to_batch: Callable[[list], Batch], batch_size: int, epochs: int,
               seed: int, max_rows: int | None = None) -> list[TaskStep]:
    """``epochs`` passes over ``examples`` in length-grouped shuffled batches, one step per batch, each
    run in model calls of at most ``max_rows`` rows where its batches split (QA windows). A plan beyond
    ``MAX_OPTIMIZER_STEPS`` is refused before it is built (xlt.training.limits)."""
    check_steps(len(examples), batch_size, epochs)
    generator = torch.Generator().manual_seed(seed)
    return [TaskStep(rows, examples, to_batch, max_rows) for _ in range(epochs)
            for rows in length_grouped_batches(examples, batch_size, generator)]


def backward(passes: list[Pass], model: torch.nn.Module, accelerator: Accelerator) -> torch.Tensor:
    """Run and backpropagate each pass in turn (gradients accumulate, DDP syncs them once: on the last
    pass); returns the step's loss, the sum of the passes' weighted losses."""
    loss = torch.zeros(())
    for i, compute in enumerate(passes):
        with contextlib.nullcontext() if i == len(passes) - 1 else accelerator.no_sync(model):
            with accelerator.autocast():
                part = compute()
            accelerator.backward(part)
        loss += part.detach().float().cpu()
    return loss


def batch_loss(loss: torch.Tensor, accelerator: Accelerator) -> float:
    """The step's loss over the whole batch: the mean of the processes' weighted losses (:func:`shard`)."""
    return accelerator.reduce(loss.to(accelerator.device), reduction="mean").item()


@dataclass
class Trained:
    """What training leaves: its wall-clock seconds and the model as the accelerator holds it (a DDP, FSDP or
    DeepSpeed wrapper under ``accelerate launch``). Save from :meth:`state_dict`, never from the module passed in:
    under FSDP or ZeRO-3 that module holds shards, and only accelerate's helper gathers them. It is collective:
    every process calls it, one writes."""

    seconds: float
    model: torch.nn.Module
    accelerator: Accelerator

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.accelerator.get_state_dict(self.model)

    def unwrapped(self) -> torch.nn.Module:
        return self.accelerator.unwrap_model(self.model)


def train(model: torch.nn.Module, plan: Sequence[Step], settings: TrainSettings, desc: str = "train",
          log: StepLog | None = None) -> Trained:
    """Run the steps of ``plan`` (one optimizer step each) on the parameters that require grad; returns the
    seconds and the trained model (:class:`Trained`). The plan decides what a step computes (task batches, alignment batches, ...);
    the loop adds autocast, backward, gradient clipping (``max_grad_norm``), AdamW with transformers' linear
    warm-up and decay, and DDP under ``accelerate launch``. ``log`` (experiment tracking) gets each step's loss
    (the whole batch's, over all processes) and learning rate, with the step's number from 1."""
    accelerator = make_accelerator(settings.bf16, settings.fp16)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    total = max(1, len(plan))
    schedule = get_linear_schedule_with_warmup(optimizer, int(settings.warmup_ratio * total), total)
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    start = time.perf_counter()
    show = settings.show_progress and accelerator.is_main_process
    bar = tqdm(total=total, desc=desc, disable=not show, leave=False)
    for number, step in enumerate(plan, 1):
        loss = backward(step(model, accelerator), model, accelerator)
        if settings.max_grad_norm > 0:  # as transformers' Trainer and the XTREME recipes (1.0)
            accelerator.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
        lr = schedule.get_last_lr()[0]  # the rate this step takes
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if log is not None:  # every process takes part in the mean; only the main one's tracker writes
            log({"loss": batch_loss(loss, accelerator), "lr": lr}, number)
        bar.set_postfix(loss=f"{loss.item():.3f}")
        bar.update()
    bar.close()
    return Trained(time.perf_counter() - start, model, accelerator)


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    examples: Sequence[Example],
    to_batch: Callable[[list[Example]], Batch],
    batch_size: int = 64,
    bf16: bool = False,
    show_progress: bool = True,
    desc: str = "evaluate",
    read: Callable[[Batch, torch.Tensor], list] | None = None,
    max_rows: int | None = None,
) -> list:
    """One prediction per example in eval mode (the model's own mode is restored afterwards): the argmax
    class, or what ``read(batch, logits)`` makes of each example of the batch (tagging: one tag per word;
    QA: the answer text, read from all the windows of the example), in model calls of at most ``max_rows``
    rows where a batch splits (QA windows)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    preds: list = [0] * len(examples)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    by_length = sorted(range(len(examples)), key=lambda i: text_length(examples[i]))  # less padding
    chunks = [by_length[i : i + batch_size] for i in range(0, len(by_length), batch_size)]
    try:
        for indices in tqdm(chunks, desc=desc, disable=not show_progress, leave=False):
            batch = to_batch([examples[i] for i in indices]).to(device)
            with autocast:
                logits = torch.cat([part.logits_of(model(**part.inputs)) for part, _ in batch.passes(max_rows)])
            rows = read(batch, logits) if read is not None else logits.argmax(-1).tolist()
            for i, pred in zip(indices, rows):
                preds[i] = pred
    finally:
        model.train(was_training)
    return preds
