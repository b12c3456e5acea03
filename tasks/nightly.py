"""Nightly scoring's steps as Prefect tasks, each a short wrapper of ``tasks.tracking.nightly``."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from .tracking import nightly
from .tracking.nightly import Champion, NightlyParams, PartitionResult
from .tracking.register import RegisterParams


@task(retries=2, retry_delay_seconds=[5, 20], cache_policy=NONE, persist_result=False)
def resolve_champion(registry: RegisterParams, name: str, alias: str) -> Champion:
    """The version of `name` that holds `alias` now, with its threshold tag."""
    return nightly.resolve_champion(registry, name, alias)


@task(cache_policy=NONE, persist_result=False)
def list_partitions(incoming: str, model: str) -> list[str]:
    """Partition URIs under <incoming>/<model>/, sorted by name."""
    return nightly.list_partitions(incoming, model)


@task(cache_policy=NONE, persist_result=False)
def score_partition(champion: Champion, partition: str, params: NightlyParams) -> PartitionResult:
    """Score one partition with the champion (skipped when done, quarantined when unreadable)."""
    return nightly.score_partition(champion, partition, params)


@task(retries=2, retry_delay_seconds=[5, 20], cache_policy=NONE, persist_result=False)
def log_night(champion: Champion, results: list[PartitionResult], params: NightlyParams, workdir: Path) -> dict:
    """Log the night's counts and score distribution to MLflow."""
    return nightly.log_night(champion, results, params, workdir)
