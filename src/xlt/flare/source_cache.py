"""A cache of frozen source states, so each example's source pass runs once per run, not once per epoch.

The states never change in stage 2 (the base model is frozen and the pass runs in eval mode),
so they are keyed by the content of the example's source inputs (its real tokens, which is
what the example id stands for) inside one model's tuner. Rows live in memory up to
``max_bytes`` and spill beyond it into a file read back through a memory map.

One device rule: rows are stored on the CPU (host memory or the spill file, whatever device computed
them), and :meth:`SourceStateCache.get` returns them on the device the caller asks for, the device of
the batch that reads them. No row ever leaves the cache on another device than the batch's.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from xlt.io import process_tag, remove_stale_dirs

Row = tuple[torch.Tensor | None, ...]  # per stack: (states, length, d) of one example
SPILL_PREFIX = "xlt-source-states-"  # + HOST.PID.RANDOM: the spill folders of killed runs are found and removed


def precision_tag(device: torch.device, weights: torch.dtype) -> str:
    """What a frozen pass's numbers depend on besides the text: the device type, the autocast dtype in force
    there (None: autocast off) and the weights' dtype. Part of every cache key, so states cached under
    bf16 autocast are never read by an fp32 evaluation (or the other way round)."""
    autocast = torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else None
    return f"{device.type}|{autocast}|{weights}"


def row_keys(inputs: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]) -> list[str]:
    """One key per example: a digest of every input's real positions (padding-free, so the same text
    in batches of other widths or padding sides gets the same key)."""
    rows = len(next(iter(inputs.values())))
    digests = [hashlib.sha1() for _ in range(rows)]
    for name in sorted(inputs):
        values, mask = inputs[name].cpu(), masks[name].bool().cpu()
        for b in range(rows):
            digests[b].update(name.encode())
            digests[b].update(values[b][mask[b]].numpy().tobytes())
    return [d.hexdigest() for d in digests]


class SourceStateCache:
    """Rows of source states by key: ``max_bytes`` in memory, the rest in a memory-mapped spill file."""

    def __init__(self, max_bytes: int, spill_dir: str | Path | None = None):
        self.max_bytes = max_bytes
        self.memory: dict[str, Row] = {}
        self.memory_bytes = 0
        self.spilled: dict[str, tuple] = {}  # key → per stack (offset, shape, dtype) or None
        self.spilled_bytes = 0
        self._spill_dir = spill_dir
        self._file: Path | None = None
        self._map: np.memmap | None = None
        remove_stale_dirs(spill_dir or tempfile.gettempdir(), SPILL_PREFIX)

    def __len__(self) -> int:
        return len(self.memory) + len(self.spilled)

    def get(self, key: str, device: torch.device | str) -> Row | None:
        """The row of ``key`` on ``device`` (the batch's), or None when it is not cached."""
        if key in self.memory:
            row = self.memory[key]
        elif key in self.spilled:
            row = tuple(None if part is None else self._read(*part) for part in self.spilled[key])
        else:
            return None
        return tuple(None if t is None else t.to(device) for t in row)

    def put(self, key: str, row: Row) -> None:
        """Store ``row`` on the CPU (a row computed on a GPU is copied off it)."""
        row = tuple(None if t is None else t.detach().to("cpu") for t in row)
        size = sum(t.numel() * t.element_size() for t in row if t is not None)
        if self.memory_bytes + size <= self.max_bytes:
            self.memory[key] = row
            self.memory_bytes += size
        else:
            self.spilled[key] = tuple(None if t is None else self._write(t) for t in row)
            self.spilled_bytes += size

    def _write(self, tensor: torch.Tensor) -> tuple:
        if self._file is None:
            folder = Path(tempfile.mkdtemp(prefix=f"{SPILL_PREFIX}{process_tag()}.", dir=self._spill_dir))
            weakref.finalize(self, shutil.rmtree, folder, True)
            self._file = folder / "states.bin"
        raw = tensor.contiguous().view(torch.uint8).numpy().tobytes()
        with open(self._file, "ab") as f:
            offset = f.tell()
            f.write(raw)
        return offset, tuple(tensor.shape), tensor.dtype

    def _read(self, offset: int, shape: tuple, dtype: torch.dtype) -> torch.Tensor:
        nbytes = int(np.prod(shape)) * torch.empty(0, dtype=dtype).element_size()
        if self._map is None or len(self._map) < offset + nbytes:  # the file grew since it was mapped
            self._map = np.memmap(self._file, dtype=np.uint8, mode="r")
        raw = torch.from_numpy(np.array(self._map[offset : offset + nbytes]))
        return raw.view(dtype).reshape(shape)
