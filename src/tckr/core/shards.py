"""The project's one convention for splitting work over processes or machines: ``--shard k/n``
(1 ≤ k ≤ n) takes the items ``i`` with ``i mod n == k - 1`` (synthesis shards, LiRA shadows,
shadow pipelines). Shards ``1/n`` … ``n/n`` together cover every item exactly once."""

from __future__ import annotations

from typing import Iterable

_FORM = "shard must look like 'k/n' with 1 <= k <= n (e.g. '2/4')"


def parse_shard(shard: str | None) -> tuple[int, int]:
    """``"k/n"`` -> ``(k, n)``; ``None`` or ``""`` (the whole job) -> ``(1, 1)``."""
    if shard is None or shard == "":
        return 1, 1
    try:
        k, n = (int(x) for x in str(shard).split("/"))
    except ValueError:
        raise ValueError(f"{_FORM}, got {shard!r}") from None
    if not 1 <= k <= n:
        raise ValueError(f"{_FORM}, got {shard!r}")
    return k, n


def mine(indices: Iterable[int], shard: str | None) -> list[int]:
    """The items of ``indices`` that shard ``k/n`` owns: ``i mod n == k - 1``."""
    k, n = parse_shard(shard)
    return [int(i) for i in indices if int(i) % n == k - 1]
