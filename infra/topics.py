"""Topic names and layout. Names carry a version: a breaking change gets a new topic, not a new meaning."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.models import HardshipStatusChange, PaymentChange, RegistrationChange, RosterChange, SourceEvent

SOURCE_TOPIC_SUFFIX = {"education": "roster", "insurance": "registrations", "tax": "payments", "hardship": "hardship"}
SOURCE_EVENT: dict[str, type[SourceEvent]] = {
    "education": RosterChange,
    "insurance": RegistrationChange,
    "tax": PaymentChange,
    "hardship": HardshipStatusChange,
}


@dataclass(frozen=True)
class Topics:
    """All topics of one deployment (prefix ``enrollbridge`` unless configured)."""

    prefix: str = "enrollbridge"

    def source(self, source: str) -> str:
        """Per-agency input topic: events of one source, keyed by person_key."""
        return f"{self.prefix}.{SOURCE_TOPIC_SUFFIX[source]}.v1"

    @property
    def sources(self) -> dict[str, str]:
        return {source: self.source(source) for source in SOURCE_TOPIC_SUFFIX}

    @property
    def events(self) -> str:
        """The unified log: every source event and the clock's ticks, keyed by person_key."""
        return f"{self.prefix}.events.v1"

    @property
    def alerts(self) -> str:
        """Alert transitions, keyed by alert_id, in the partition of the log partition that produced them."""
        return f"{self.prefix}.alerts.v1"

    @property
    def coverage(self) -> str:
        """Coverage status changes of roster students, keyed by person_key, partitioned like the log."""
        return f"{self.prefix}.coverage.v1"

    @property
    def dead_letters(self) -> str:
        """Records and messages that could not become events, with their context."""
        return f"{self.prefix}.dlq.v1"

    @property
    def watermarks(self) -> str:
        """Each source's completeness declarations (SourceWatermark), keyed by source: the live clock's input."""
        return f"{self.prefix}.watermarks.v1"

    def all(self) -> list[str]:
        return [*self.sources.values(), self.events, self.alerts, self.coverage, self.dead_letters, self.watermarks]
