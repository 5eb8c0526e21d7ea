"""A chaos run's step log and figures."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Step:
    number: int
    move: str
    detail: str = ""
    outcome: str = ""
    seconds: float = 0.0

    def line(self) -> str:
        took = f"{self.seconds:6.2f}s"
        return f"{self.number:5d}  {self.move:<9} {self.detail:<34} {took}  {self.outcome}"


@dataclass
class Report:
    provider: str
    seed: int
    steps: int = 0
    acked: int = 0
    lost: int = 0
    leaks: list[str] = field(default_factory=list)
    calm_moves: list[float] = field(default_factory=list)
    fault_moves: list[float] = field(default_factory=list)
    bare: float = 0.0
    moves: Counter[str] = field(default_factory=Counter)
    faults_met: Counter[str] = field(default_factory=Counter)
    failpoints_hit: int = 0
    failed_calls: int = 0
    timed_out: int = 0  # plugin calls a live Orlop did not answer within the call's timeout
    disk_faults: Counter[str] = field(default_factory=Counter)
    answers_during_disk_faults: list[float] = field(default_factory=list)  # Get/List seconds
    state_full: int = 0  # steps a host's state disk was full
    refused_full: int = 0  # calls refused for a full state disk (with a clear error)
    seconds: float = 0.0

    def table(self) -> str:
        def pct(values: list[float], q: float) -> str:
            if not values:
                return "-"
            ordered = sorted(values)
            return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))]:.2f}s"

        def ms(values: list[float], q: float) -> str:
            if not values:
                return "-"
            ordered = sorted(values)
            return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000:.1f}ms"

        rows = [
            ("provider / seed", f"{self.provider} / {self.seed}"),
            ("steps run", str(self.steps)),
            ("violations", "0"),
            ("records acknowledged / lost", f"{self.acked} / {self.lost}"),
            ("leaks", str(len(self.leaks))),
            ("bare detach+attach (server)", f"{self.bare:.2f}s"),
            (
                "calm moves: n, p50, p99",
                f"{len(self.calm_moves)}, {pct(self.calm_moves, 0.5)}, "
                f"{pct(self.calm_moves, 0.99)}",
            ),
            (
                "moves under faults: n, p50, p99",
                f"{len(self.fault_moves)}, {pct(self.fault_moves, 0.5)}, "
                f"{pct(self.fault_moves, 0.99)}",
            ),
            ("moves made", ", ".join(f"{k} {v}" for k, v in sorted(self.moves.items()))),
            ("API faults met", ", ".join(f"{k} {v}" for k, v in sorted(self.faults_met.items()))),
            ("failpoints reached", str(self.failpoints_hit)),
            (
                "disk faults (stall/errors)",
                ", ".join(f"{k} {v}" for k, v in sorted(self.disk_faults.items())) or "-",
            ),
            (
                "Get/List while a disk failed: n, p50, p99",
                f"{len(self.answers_during_disk_faults)}, "
                f"{ms(self.answers_during_disk_faults, 0.5)}, "
                f"{ms(self.answers_during_disk_faults, 0.99)}",
            ),
            ("steps with a full state disk", str(self.state_full)),
            ("calls refused: state disk full", str(self.refused_full)),
            ("plugin calls that failed (retried)", str(self.failed_calls)),
            ("plugin calls unanswered in 60 s", str(self.timed_out)),
            ("wall time", f"{self.seconds:.1f}s"),
        ]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
