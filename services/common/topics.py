"""Topic names and their layout (partitions, cleanup policy)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TopicSpec:
    suffix: str
    partitions: int
    config: dict[str, str]


FIELD_EVENTS = "field-events"
REPORT_EVENTS = "report-events"
DEAD_LETTER = "dead-letter"
SECTION_STATE = "section-state"
SECTION_HOURS = "section-hours"
ALERTS = "alerts"
ALERT_ACKS = "alert-acks"
REPORT_ANALYSIS = "report-analysis"
ASSESSMENT = "assessment"
AUDIT = "audit"

_WEEK_MS = str(7 * 24 * 3600 * 1000)
_MONTH_MS = str(30 * 24 * 3600 * 1000)
_YEAR_MS = str(365 * 24 * 3600 * 1000)
#: How long an hourly bucket of ``section-hours`` is kept after its hour ends: the
#: 7 days of the history API, plus the 7 days a ``counts_7d`` at its oldest hour
#: reaches back, plus a day of grace (late events, a slow cleaner).
SECTION_HOURS_RETENTION_MS = str(15 * 24 * 3600 * 1000)


def topic_specs(field_partitions: int = 6) -> list[TopicSpec]:
    """Every topic borderwatch owns. Field events and section state share the
    partition count so a section's input and output live on matching partitions."""
    return [
        # Input keeps 8 days: the 7 d window plus grace can be rebuilt by replay.
        TopicSpec(FIELD_EVENTS, field_partitions, {"retention.ms": str(8 * 24 * 3600 * 1000)}),
        TopicSpec(REPORT_EVENTS, 3, {"retention.ms": _MONTH_MS}),
        TopicSpec(DEAD_LETTER, 1, {"retention.ms": _WEEK_MS}),
        TopicSpec(SECTION_STATE, field_partitions, {"cleanup.policy": "compact"}),
        # The history of the picture: the latest counts of each (section, hour), kept
        # by compaction and deleted by retention 15 d after the hour (its record
        # timestamp is the hour's end). Why a topic of its own, not a longer
        # min.compaction.lag.ms on section-state: see services/api/history.py.
        TopicSpec(
            SECTION_HOURS,
            field_partitions,
            {"cleanup.policy": "compact,delete", "retention.ms": SECTION_HOURS_RETENTION_MS},
        ),
        TopicSpec(ALERTS, 3, {"retention.ms": _MONTH_MS}),
        TopicSpec(ALERT_ACKS, 1, {"retention.ms": _MONTH_MS}),
        # Keyed by country like the reports; not compacted (one report must not hide another).
        TopicSpec(REPORT_ANALYSIS, 3, {"retention.ms": _MONTH_MS}),
        # The latest assessment per country.
        TopicSpec(ASSESSMENT, 1, {"cleanup.policy": "compact"}),
        # Append-only trail: never compacted, kept a year.
        TopicSpec(AUDIT, 1, {"cleanup.policy": "delete", "retention.ms": _YEAR_MS}),
    ]


class Topics:
    """Resolved topic names for one deployment (``prefix`` + suffix)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.field_events = prefix + FIELD_EVENTS
        self.report_events = prefix + REPORT_EVENTS
        self.dead_letter = prefix + DEAD_LETTER
        self.section_state = prefix + SECTION_STATE
        self.section_hours = prefix + SECTION_HOURS
        self.alerts = prefix + ALERTS
        self.alert_acks = prefix + ALERT_ACKS
        self.report_analysis = prefix + REPORT_ANALYSIS
        self.assessment = prefix + ASSESSMENT
        self.audit = prefix + AUDIT
