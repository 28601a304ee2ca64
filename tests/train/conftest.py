"""Fixtures for train tests: a contract snapshot and the overrides that point a run at it."""

from __future__ import annotations

import pytest

from tests.train.snapshot_fixtures import write_snapshot


@pytest.fixture(scope="session")
def snapshot_dir(tmp_path_factory):
    return write_snapshot(tmp_path_factory.mktemp("snapshots"))


@pytest.fixture
def run_overrides(tmp_path, snapshot_dir, tiny_model_dir):
    """Hydra overrides for a fast, isolated CPU run: tiny model, fixture snapshot, tmp outputs."""
    return [f"model.name_or_path={tiny_model_dir}", f"snapshot={snapshot_dir}",
            f"output_root={tmp_path / 'runs'}", "stages=[build,train]",
            "tracking.report_to=[tensorboard]"]
