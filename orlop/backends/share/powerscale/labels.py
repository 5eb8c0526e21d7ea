"""How Orlop marks PowerScale volumes: where each is in its life, in its quota's description.

OneFS makes at most one directory quota per path (a second create is 409), so the quota is
the claim: the host whose quota create succeeds owns the create, and every other host
that asked for the same volume at the same moment adopts it. The description says

* `orlop volume=NAME state=creating keep=BOOL token=HEX`: a create is under way on the
  host that holds the token; others wait for it, discovery skips it;
* `orlop volume=NAME state=ready keep=BOOL`: complete; `keep` is keep_on_remove as made;
* `orlop volume=NAME state=kept keep=true`: removed with keep_on_remove=true: the data
  stays, but no host's discovery takes it in again (a Create of the name on purpose does).

A quota without such a description (made before marks, or by hand) counts as ready.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

State = Literal["creating", "ready", "kept"]
_STATES = ("creating", "ready", "kept")


@dataclasses.dataclass(frozen=True)
class Mark:
    volume: str
    state: State
    keep: bool = False
    token: str = ""

    def text(self) -> str:
        words = ["orlop", f"volume={self.volume}", f"state={self.state}"]
        words.append(f"keep={'true' if self.keep else 'false'}")
        if self.token:
            words.append(f"token={self.token}")
        return " ".join(words)

    @classmethod
    def parse(cls, description: str) -> Mark | None:
        """The mark in a quota's description, or None if it holds none (legacy, by hand)."""
        words = description.split()
        if not words or words[0] != "orlop":
            return None
        fields = dict(word.split("=", 1) for word in words[1:] if "=" in word)
        state = fields.get("state", "")
        if "volume" not in fields or state not in _STATES:
            return None
        return cls(
            volume=fields["volume"],
            state=state,  # type: ignore[arg-type]  # checked against _STATES above
            keep=fields.get("keep") == "true",
            token=fields.get("token", ""),
        )


def volume_at(base_path: str, path: str) -> str | None:
    """The volume whose directory `path` is (`<base_path>/<name>`), or None."""
    prefix = base_path + "/"
    name = path[len(prefix) :] if path.startswith(prefix) else ""
    return name if name and "/" not in name else None
