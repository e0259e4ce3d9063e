"""Offline, isolated test setup: no hub access, caches in a per-session temp dir."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

from xlt.data.examples import Example  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` (registered in pyproject.toml) need a CUDA GPU: without one they are skipped."""
    if torch.cuda.is_available():
        return
    no_gpu = pytest.mark.skip(reason="no CUDA GPU")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(no_gpu)


@pytest.fixture(scope="session", autouse=True)
def xlt_cache(tmp_path_factory):
    """Tiny models, stage-1 models and e5 conversions go to a fresh cache for the whole session."""
    root = tmp_path_factory.mktemp("xlt-cache")
    old = os.environ.get("XLT_CACHE_DIR")
    os.environ["XLT_CACHE_DIR"] = str(root)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    yield root
    if old is None:
        os.environ.pop("XLT_CACHE_DIR", None)
    else:
        os.environ["XLT_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def data_dir():
    """The data sets' folder (``$XLT_DATA_DIR``, else ../shared/datasets): the tests need it, a missing one fails
    loudly (never a skip)."""
    from xlt.data.paths import resolve_data_dir

    return resolve_data_dir(None)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def parallel_examples() -> list[Example]:
    """A few target/English pairs of different lengths (so padding matters)."""
    return [
        Example(("kulo remen sanget",), ("i like it very much, truly",), 2, "a"),
        Example(("ora",), ("no",), 0, "b"),
        Example(("panganane biasa wae, ora istimewa",), ("the food is ordinary",), 1, "c"),
    ]
