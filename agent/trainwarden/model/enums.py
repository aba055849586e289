"""The closed sets every layer shares: severities, run states, health colours, verdicts."""

from __future__ import annotations

from enum import Enum


class _Named(str, Enum):
    """A str enum that prints and formats as its value on every Python (3.10's Enum formats as Class.MEMBER)."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class Severity(_Named):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        """0 for the most urgent: sort by it (red first)."""
        return _RANK[self]

    @classmethod
    def of(cls, value: object) -> Severity:
        """A severity from text; anything unknown counts as a warning (an Alertmanager label, say)."""
        try:
            return cls(value)
        except ValueError:
            return cls.WARNING


_RANK = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}


def severity_rank(value: object) -> int:
    """The rank of a severity given as text (3 for an unknown one): one order for every list of messages."""
    try:
        return Severity(value).rank
    except ValueError:
        return 3


class RunState(_Named):
    RUNNING = "running"
    FINISHED = "finished"
    CRASHED = "crashed"
    STALLED = "stalled"
    EARLY_STOPPED = "early_stopped"
    INTERRUPTED = "interrupted"  # a history run (quiet since before the agent first saw it) that did not end
    ENDED = "ended"  # training stopped and the log does not say whether it completed
    UNKNOWN = "unknown"


class Health(_Named):
    GREEN = "green"
    YELLOW = "yellow"
    RED = "red"

    @property
    def level(self) -> int:
        return {Health.GREEN: 0, Health.YELLOW: 1, Health.RED: 2}[self]

    @classmethod
    def of_severities(cls, severities) -> Health:
        found = set(severities)  # Severity members, or their values: a str enum equals its value
        if Severity.CRITICAL in found:
            return cls.RED
        return cls.YELLOW if Severity.WARNING in found else cls.GREEN


VERDICTS = ("in_progress", "success", "stable", "partial", "stagnant", "degraded", "failed")
