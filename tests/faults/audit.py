"""The after-the-fact audit of a run: where every episode group appended to its stream went (trained
once, dropped with a reason, or still unread when the run ended), and whether every checkpoint on
disk is whole. Built from Redis and the checkpoints' own records (each version's manifest names the
entries its update read), not from what the services say."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis import Redis

from shared.files import sha256_file
from shared.schemas import CheckpointManifest
from shared.streams import GROUP, stream_key


def entry_ms(entry_id: str) -> int:
    return int(entry_id.split("-")[0])


def _after(a: str, b: str) -> bool:
    return tuple(map(int, a.split("-"))) > tuple(map(int, b.split("-")))


@dataclass
class Ledger:
    appended: list[str]
    trained: Counter[str] = field(default_factory=Counter)
    dropped: dict[str, list[str]] = field(default_factory=dict)  # entry -> reasons (one per checkpoint)
    last_delivered: str = "0-0"
    pending: int = 0

    def fate(self, entry: str) -> str:
        if self.trained[entry] + len(self.dropped.get(entry, [])) > 1:
            return "duplicated"
        if self.trained[entry]:
            return "trained"
        if entry in self.dropped:
            return f"dropped:{self.dropped[entry][0]}"
        return "unread" if _after(entry, self.last_delivered) else "lost"


def read_ledger(redis_url: str, run_id: str, checkpoints: list[Path]) -> Ledger:
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        entries: Any = client.xrange(stream_key(run_id), "-", "+")
        groups: Any = client.xinfo_groups(stream_key(run_id))
    finally:
        client.close()
    ledger = Ledger(appended=[entry_id for entry_id, _ in entries])
    info = next(g for g in groups if g["name"] == GROUP)
    ledger.last_delivered, ledger.pending = info["last-delivered-id"], int(info["pending"])
    for folder in checkpoints:  # each version records the entries its update read (a rewind rewrote later ones)
        manifest = CheckpointManifest.model_validate_json((folder / "manifest.json").read_text())
        ledger.trained.update(manifest.consumed)
        for entry, reason in manifest.dropped.items():
            ledger.dropped.setdefault(entry, []).append(reason)
    return ledger


def broken_checkpoints(root: Path) -> list[str]:
    """Every visible version folder has its manifest, and every file matches its recorded sha256."""
    broken = []
    for folder in sorted(root.glob("v*")):
        manifest_path = folder / "manifest.json"
        if not manifest_path.is_file():
            broken.append(f"{folder.name}: no manifest")
            continue
        manifest = CheckpointManifest.model_validate_json(manifest_path.read_text())
        for name, digest in manifest.files.items():
            if not (folder / name).is_file() or sha256_file(folder / name) != digest:
                broken.append(f"{folder.name}/{name}: missing or changed")
    return broken
