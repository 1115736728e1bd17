"""Targets for tests/test_parallel.py's worker processes (spawned children import them by name)."""

import os

import torch


def report(run, shard: str, progress: bool, tag: str = "") -> list:
    """What a worker sees: its shard, its torch threads, its process and the run folder it opened."""
    return [{"shard": shard, "threads": torch.get_num_threads(), "pid": os.getpid(), "run": str(run.dir), "tag": tag}]


def fail_on_shard_two(run, shard: str, progress: bool) -> list:
    if shard.startswith("2/"):
        raise ValueError("planted failure")
    return [shard]
