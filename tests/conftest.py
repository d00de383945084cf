"""Shared test setup: deterministic, single-threaded-friendly, never touching ~/.cache."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# under pytest-xdist each worker gets one thread, so two workers don't oversubscribe 2 cores
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path_factory.mktemp("hf-home")
    monkeypatch.setenv("HF_HOME", str(cache))
    monkeypatch.setenv("ZOO_CACHE", str(cache / "zoo"))
    monkeypatch.delenv("ZOO_BACKEND", raising=False)
