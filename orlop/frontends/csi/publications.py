"""Controller publications: which nodes a volume is published to, kept across restarts.

One small JSON file per driver under the state directory, replaced atomically and fsynced:
a ControllerPublish is acknowledged only once its claim is on disk, so after a kill -9 the
controller still refuses a second node for a single-node volume. No secret is ever in it."""

from __future__ import annotations

import json
import os


class Publications:
    def __init__(self, path: str) -> None:
        self.path = path
        self.nodes: dict[str, list[str]] = {}
        if os.path.exists(path):
            with open(path, encoding="utf-8") as file:
                loaded = json.load(file)
            self.nodes = {str(k): [str(n) for n in v] for k, v in loaded.items()}

    def of(self, volume: str) -> list[str]:
        return list(self.nodes.get(volume, []))

    def add(self, volume: str, node: str) -> None:
        if node not in self.nodes.get(volume, []):
            self.nodes.setdefault(volume, []).append(node)
            self._save()

    def drop(self, volume: str, node: str | None = None) -> None:
        """Forget `volume`'s publication to `node` (every node when None)."""
        held = self.nodes.get(volume)
        if not held:
            return
        kept = [n for n in held if node is not None and n != node]
        if kept:
            self.nodes[volume] = kept
        else:
            del self.nodes[volume]
        self._save()

    def _save(self) -> None:
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        temporary = f"{self.path}.tmp"
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump(self.nodes, file, sort_keys=True)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.path)
