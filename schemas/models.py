"""The wire contract of borderwatch: pydantic models for every topic and feed.

The JSON Schema files beside this module are exported from these models
(``borderwatch schemas export``); a test fails when the two differ.

Events carry counts, places, times and sources -- never an identifier of a
person. Unknown fields are rejected, and attribute keys that name personal data
are refused with an explanation.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

SCHEMA_VERSION = 1

SectionId = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Z]{2}-[A-Z0-9]{2,10}$"),
    Field(description="Border section id from the catalogue, e.g. `LV-KRA`.", examples=["LV-KRA"]),
]
CountryCode = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Z]{2}$"),
    Field(description="ISO 3166-1 alpha-2 country code.", examples=["LV"]),
]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class Kind(StrEnum):
    """What a field event reports."""

    detection = "detection"
    crossing_attempt = "crossing_attempt"
    apprehension = "apprehension"
    incident = "incident"
    military_activity = "military_activity"
    humanitarian = "humanitarian"


KINDS: tuple[str, ...] = tuple(k.value for k in Kind)


class SourceType(StrEnum):
    thermal_camera = "thermal_camera"
    drone = "drone"
    fence_sensor = "fence_sensor"
    ground_sensor = "ground_sensor"
    radar = "radar"
    patrol = "patrol"
    border_post = "border_post"
    other = "other"


class Confidence(StrEnum):
    """How sure the reporting unit is (EUROSUR reports carry a confidence level)."""

    low = "low"
    medium = "medium"
    high = "high"


class Severity(StrEnum):
    """EUROSUR impact levels, also used as alert severities."""

    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


SEVERITY_ORDER: dict[str, int] = {s.value: i for i, s in enumerate(Severity)}

# Attribute keys that would carry the identity of a person. Matched on the
# normalised key (lower case, separators removed) as a whole word part.
PERSONAL_DATA_KEYS = (
    "name",
    "firstname",
    "lastname",
    "surname",
    "passport",
    "document",
    "idnumber",
    "nationalid",
    "phone",
    "msisdn",
    "imei",
    "imsi",
    "email",
    "face",
    "photo",
    "biometric",
    "fingerprint",
    "birth",
    "dob",
    "address",
    "licenseplate",
    "plate",
)
_WORD_SPLIT = re.compile(r"[^a-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def personal_data_reason(key: str) -> str | None:
    """Why an attribute key is refused as personal data, or None when it is fine."""
    # camelCase counts as separate words too: faceImage -> face_image
    lowered = _CAMEL.sub("_", key).lower()
    squashed = _WORD_SPLIT.sub("", lowered)
    parts = [p for p in _WORD_SPLIT.split(lowered) if p]
    for bad in PERSONAL_DATA_KEYS:
        if bad in parts or squashed == bad or (len(bad) >= 6 and bad in squashed):
            return (
                f"attribute key {key!r} looks like personal data ({bad}); borderwatch carries "
                "counts, places, times and sources, never a person's identity"
            )
    return None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Strict):
    """The sensor or unit that made the observation (never a person)."""

    type: SourceType
    id: Annotated[
        str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")
    ]


class Location(_Strict):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


AttributeValue = Annotated[str, StringConstraints(max_length=256)] | int | float | bool


def _no_personal_data(value: dict[str, Any]) -> dict[str, Any]:
    for key in value:
        reason = personal_data_reason(key)
        if reason:
            raise ValueError(reason)
    return value


# Bounded free-form extras whose keys may never name personal data.
Attributes = Annotated[
    dict[Annotated[str, StringConstraints(min_length=1, max_length=64)], AttributeValue],
    AfterValidator(_no_personal_data),
]


class FieldEvent(_Strict):
    """One observation from the field: a detection, crossing attempt, apprehension,
    incident, military activity or humanitarian case, with a count of persons or
    objects."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "schema_version": 1,
                    "event_id": "7f1d2c3e-8a4b-4c5d-9e6f-0a1b2c3d4e5f",
                    "kind": "crossing_attempt",
                    "section_id": "LV-KRA",
                    "observed_at": "2026-11-22T03:12:00+02:00",
                    "count": 12,
                    "source": {"type": "thermal_camera", "id": "LV-KRA-TC-04"},
                    "confidence": "high",
                    "location": {"lat": 55.86, "lon": 27.17},
                }
            ]
        },
    )

    schema_version: Literal[1] = 1
    event_id: UUID = Field(description="Idempotency key chosen by the sender (UUID).")
    kind: Kind
    section_id: SectionId
    observed_at: AwareDatetime = Field(
        description="Event time, RFC 3339 with an offset. Windows use this, not arrival time."
    )
    count: int = Field(ge=1, le=10_000, description="Persons or objects observed.")
    source: Source
    confidence: Confidence
    location: Location | None = None
    attributes: Attributes = Field(
        default_factory=dict, max_length=32, description="Bounded free-form extras."
    )


class FieldEventBatch(_Strict):
    """The value of one record on ``bw.field-events``: the events of one section
    that arrived together (the record key is ``section_id``; the record timestamp
    is the newest ``observed_at``). One record per batch keeps the per-record cost
    of the stream processor per batch, not per event."""

    schema_version: Literal[1] = 1
    section_id: SectionId
    events: list[FieldEvent] = Field(min_length=1)


class WindowCounts(_Strict):
    """Counts per kind in one window; every kind is present."""

    detection: int = 0
    crossing_attempt: int = 0
    apprehension: int = 0
    incident: int = 0
    military_activity: int = 0
    humanitarian: int = 0


class HourlyPoint(_Strict):
    start: AwareDatetime
    counts: WindowCounts


class SectionState(_Strict):
    """The live state of one section, on the compacted ``bw.section-state`` topic
    (key = ``section_id``)."""

    schema_version: Literal[1] = 1
    section_id: SectionId
    name: str
    country: CountryCode
    level: Severity = Field(description="Impact level: highest severity of the firing alerts.")
    counts_1h: WindowCounts = Field(description="The current 1-hour event-time bucket.")
    counts_24h: WindowCounts = Field(description="Rolling 24 h: the last 24 hourly buckets.")
    counts_7d: WindowCounts = Field(description="Rolling 7 d: the last 168 hourly buckets.")
    hourly: list[HourlyPoint] = Field(description="The last 24 hourly buckets, oldest first.")
    last_event_at: AwareDatetime | None = None
    firing_alerts: list[str] = Field(default_factory=list)
    version: int = Field(ge=1, description="Grows with every published change.")
    updated_at: AwareDatetime


class SectionHour(_Strict):
    """The counts of one section in one clock hour older than the 24 its state
    carries, on ``bw.section-hours`` (key = ``key``: compacted, so the topic keeps
    the latest counts of every hour; deleted 15 d after the hour). With the states,
    the history API rebuilds the picture of any hour of the last 7 days from it."""

    schema_version: Literal[1] = 1
    key: str = Field(
        pattern=r"^[A-Z]{2}-[A-Z0-9]{2,10}\|[0-9]{1,12}$",
        description="The Kafka key: `{section_id}|{start as epoch seconds}`.",
    )
    section_id: SectionId
    start: AwareDatetime = Field(description="Start of the hour (UTC, on the hour).")
    counts: WindowCounts = Field(description="Events counted in that hour, per kind.")
    version: int = Field(
        ge=0,
        description="The section's state version when these counts were published; "
        "readers keep the highest per key.",
    )


class AlertStatus(StrEnum):
    firing = "firing"
    resolved = "resolved"


class Alert(_Strict):
    """One transition of an alert, on ``bw.alerts`` (key = ``alert_id``).

    An alert is an episode of one rule on one section: it starts ``firing``,
    may change severity, and ends ``resolved``. Each transition is one message;
    ``seq`` numbers them within the alert, so a consumer can drop a redelivery.
    """

    schema_version: Literal[1] = 1
    alert_id: str = Field(description="Deterministic: `{rule}.{section}.{episode}`.")
    seq: int = Field(ge=1, description="Transition number within this alert.")
    rule: str
    section_id: SectionId = Field(
        description="The border section of the catalogue the alert is about, or the "
        "country-level pseudo-section `{country}-ALL` (e.g. `LV-ALL`) for an alert about "
        "a whole country (rule type `report_discrepancy`: an official figure against the "
        "sum of the country's sections). A `{country}-ALL` alert belongs to `country` "
        "like any other of its alerts: country filters, country-scoped tokens and "
        "Alertmanager's `country` label treat it so.",
        examples=["LV-KRA", "LV-ALL"],
    )
    country: CountryCode
    status: AlertStatus
    severity: Severity
    value: int
    threshold: int
    window: str
    started_at: datetime
    updated_at: datetime
    resolved_at: datetime | None = None
    summary: str


# --- Report events (``bw.report-events``) -------------------------------------


class ReportSourceType(StrEnum):
    """Who published a report."""

    official = "official"
    media = "media"
    ngo = "ngo"
    analysis = "analysis"


class ReportSource(_Strict):
    """The publisher of a report (an organisation or outlet, never a person's identity)."""

    name: ShortText
    type: ReportSourceType
    url: Annotated[str, StringConstraints(max_length=2048, pattern=r"^https?://[^\s]+$")] | None = (
        None
    )


class ReportFigure(_Strict):
    """One figure a report states: a count of one kind, optionally for a section and a period."""

    kind: Kind
    count: int = Field(ge=0, le=1_000_000)
    section_id: SectionId | None = None
    period_start: AwareDatetime | None = None
    period_end: AwareDatetime | None = None
    attributes: Attributes = Field(
        default_factory=dict, max_length=32, description="Bounded free-form extras."
    )

    @field_validator("period_end")
    @classmethod
    def _period_in_order(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        start = info.data.get("period_start")
        if value is not None and isinstance(start, datetime) and value < start:
            raise ValueError("period_end is before period_start")
        return value


REPORT_TEXT_MAX_BYTES = 100_000


class ReportEvent(_Strict):
    """A published report about the border situation (an official statement, a press
    article, an NGO or analysis note), on ``bw.report-events`` (key = ``country``).

    ``text`` is at most 100 kB of UTF-8. ``figures`` carries the numbers the report
    states, if the feed extracts them."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "schema_version": 1,
                    "report_id": "vpd-lv-2026-11-22-01",
                    "source": {
                        "name": "State Border Guard of Latvia",
                        "type": "official",
                        "url": "https://www.rs.gov.lv/",
                    },
                    "country": "LV",
                    "published_at": "2026-11-22T09:00:00+02:00",
                    "title": "Attempts to cross the border in the last 24 hours",
                    "text": "In the last 24 hours 57 attempts to cross the border were prevented.",
                    "language": "en",
                    "figures": [{"kind": "crossing_attempt", "count": 57, "section_id": "LV-KRA"}],
                }
            ]
        },
    )

    schema_version: Literal[1] = 1
    report_id: Annotated[
        str,
        StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$"),
        Field(description="Idempotency key chosen by the feed."),
    ]
    source: ReportSource
    country: CountryCode = Field(description="The country the report is about.")
    published_at: AwareDatetime = Field(description="Publication time, RFC 3339 with an offset.")
    title: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    text: str = Field(
        max_length=REPORT_TEXT_MAX_BYTES,
        description="The report's text, at most 100 kB (100,000 bytes) of UTF-8.",
    )
    language: Annotated[
        str,
        StringConstraints(max_length=35, pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{1,8})*$"),
        Field(description="BCP 47 language tag, e.g. `lv`, `en`, `pl`.", examples=["lv"]),
    ]
    figures: list[ReportFigure] = Field(default_factory=list, max_length=64)

    @field_validator("text")
    @classmethod
    def _text_bytes(cls, value: str) -> str:
        size = len(value.encode("utf-8", "surrogatepass"))
        if size > REPORT_TEXT_MAX_BYTES:
            raise ValueError(f"text is {size} bytes of UTF-8; at most {REPORT_TEXT_MAX_BYTES}")
        return value


# --- Report analysis (``bw.report-analysis``) -------------------------------------


class FigureMetric(StrEnum):
    """What a figure counts: one of the six event kinds, or personnel deployed."""

    detection = "detection"
    crossing_attempt = "crossing_attempt"
    apprehension = "apprehension"
    incident = "incident"
    military_activity = "military_activity"
    humanitarian = "humanitarian"
    personnel_deployed = "personnel_deployed"


class FigureQualifier(StrEnum):
    """How the report qualifies the number; ``none`` is "no attempts recorded" (value 0)."""

    exact = "exact"
    more_than = "more_than"
    about = "about"
    at_most = "at_most"
    none = "none"


class FigureSource(StrEnum):
    """``feed``: supplied in the report event's ``figures`` (wins); ``text``: read from the text."""

    feed = "feed"
    text = "text"


class ReportSignalName(StrEnum):
    """A signal tag read from a report's text."""

    military_activity = "military_activity"
    incident = "incident"
    disinformation = "disinformation"
    intelligence_activity = "intelligence_activity"
    humanitarian_concern = "humanitarian_concern"
    hybrid_threat = "hybrid_threat"
    state_of_emergency = "state_of_emergency"
    closure_considered = "closure_considered"
    closure_declared = "closure_declared"
    reinforcement = "reinforcement"


Area = Annotated[
    str,
    StringConstraints(pattern=r"^(?:[A-Z]{2}|EU-BY)$"),
    Field(description="`LV`, `LT`, `PL`, or `EU-BY` for the whole EU-Belarus border."),
]
Span = Annotated[
    list[Annotated[int, Field(ge=0)]],
    Field(
        min_length=2,
        max_length=2,
        description="Character offsets [start, end) into the report's text (NFC).",
    ),
]


class FigurePeriod(_Strict):
    """The period a figure covers, resolved against ``published_at`` in the country's time
    zone; it never ends after publication. ``start``/``end`` are null when unknown."""

    label: Annotated[
        str,
        StringConstraints(
            pattern=r"^(?:day|weekend|week|month|year|cumulative|unknown|[0-9]{1,3} days)$"
        ),
        Field(
            description="`day`, `weekend`, `week`, `month`, `year`, `N days`, `cumulative`, `unknown`."
        ),
    ]
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None


class AnalysedFigure(_Strict):
    """One figure of a report: who (area), what (metric), how many, over which period, and
    the sentence it came from."""

    area: Area
    metric: FigureMetric
    value: int = Field(ge=0, le=1_000_000)
    qualifier: FigureQualifier
    period: FigurePeriod
    evidence: Annotated[str, StringConstraints(max_length=1000)] = Field(
        description="The sentence the figure was read from; empty for a feed figure."
    )
    span: Span | None = Field(None, description="Where the number stands in the text.")
    source: FigureSource
    not_compared: Annotated[str, StringConstraints(max_length=200)] | None = Field(
        None,
        description="Why this figure is never set against the field counts of its area "
        "(`report_discrepancy`): its metric is not a field count, its period has no known "
        "start and end, or it reaches beyond the 7 days (and 2 h grace) of hourly field "
        "counts the system holds (a month, a year, a cumulative total). Null when its "
        "period can be compared; whether it is depends on the rules and on the hours the "
        "assessor holds (a skip for missing hours is logged by the assessor).",
    )


class AnalysedSignal(_Strict):
    """One signal tag of a report, with its area and evidence sentence."""

    signal: ReportSignalName
    area: Area
    evidence: Annotated[str, StringConstraints(max_length=1000)]
    span: Span | None = None


class ReportAnalysis(_Strict):
    """The analysis of one report, on ``bw.report-analysis`` (key = ``country``): its
    figures and signals, the language it was read in, and the extractor version."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "schema_version": 1,
                    "report_id": "vpd-lv-2026-11-22-01",
                    "country": "LV",
                    "published_at": "2026-11-22T09:00:00+02:00",
                    "source_type": "official",
                    "language": "lv",
                    "extractor": "bw-reports/1.0.0",
                    "analysed_at": "2026-11-22T09:00:01+00:00",
                    "figures": [
                        {
                            "area": "LV",
                            "metric": "crossing_attempt",
                            "value": 57,
                            "qualifier": "exact",
                            "period": {
                                "label": "day",
                                "start": "2026-11-21T09:00:00+02:00",
                                "end": "2026-11-22T09:00:00+02:00",
                            },
                            "evidence": "Pēdējās diennakts laikā atturētas 57 personas.",
                            "span": [34, 36],
                            "source": "text",
                        }
                    ],
                    "signals": [],
                }
            ]
        },
    )

    schema_version: Literal[1] = 1
    report_id: str = Field(min_length=1, max_length=128)
    country: CountryCode
    published_at: AwareDatetime
    source_type: ReportSourceType
    language: str | None = Field(
        description="The language the text was read in (en, pl, lv, lt); null when none applies."
    )
    extractor: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        description="Version of the extractor and its rule packs."
    )
    analysed_at: AwareDatetime
    figures: list[AnalysedFigure] = Field(default_factory=list, max_length=64)
    signals: list[AnalysedSignal] = Field(default_factory=list, max_length=64)


# --- Closure-criteria assessment (``bw.assessment``) -------------------------------


class FactorLevel(StrEnum):
    none = "none"
    low = "low"
    elevated = "elevated"
    high = "high"
    critical = "critical"


class AssessmentFactorName(StrEnum):
    """The criteria governments weigh before restricting or closing a border."""

    military_risk = "military_risk"
    intelligence_activity = "intelligence_activity"
    disinformation = "disinformation"
    border_incidents = "border_incidents"
    migration_pressure = "migration_pressure"
    humanitarian_situation = "humanitarian_situation"


class AssessmentStage(StrEnum):
    """The range of measures the criteria met correspond to (decision support only)."""

    monitoring = "monitoring"
    restrictions = "restrictions"
    crossing_point_closure = "crossing_point_closure"
    full_closure_criteria_met = "full_closure_criteria_met"


class FactorEvidence(_Strict):
    reports: list[str] = Field(default_factory=list, max_length=20, description="Report ids.")
    alerts: list[str] = Field(default_factory=list, max_length=20, description="Alert ids.")
    counts: dict[str, int] = Field(default_factory=dict, description="Field counts used.")


class AssessmentFactor(_Strict):
    factor: AssessmentFactorName
    level: FactorLevel
    score: float = Field(ge=0)
    evidence: FactorEvidence


class CountryAssessment(_Strict):
    """The closure-criteria assessment of one country, on ``bw.assessment`` (key =
    ``country``, compacted): a level per factor with its evidence, and the stage. It
    says which criteria are met; it never says what to decide."""

    schema_version: Literal[1] = 1
    country: CountryCode
    stage: AssessmentStage
    summary: Annotated[str, StringConstraints(max_length=1000)]
    factors: list[AssessmentFactor] = Field(min_length=6, max_length=6)
    measures_reported: list[str] = Field(
        default_factory=list,
        description="Measures the reports mention (state of emergency, closures).",
    )
    assessed_at: AwareDatetime


# --- Dead letters (``bw.dead-letter``) --------------------------------------------


class DeadLetterProblem(_Strict):
    field: str = Field(description="Field path in the item, or `(body)` / `(event)`.")
    reason: str


class DeadLetter(_Strict):
    """A refused item on ``bw.dead-letter`` (key = token id): the original bytes, why
    it was refused, who sent it (the token's id, never the token) and when."""

    schema_version: Literal[1] = 1
    received_at: AwareDatetime
    route: str = Field(description="The HTTP route that refused it, e.g. `/v1/field-events`.")
    token_id: str
    index: int | None = Field(
        None, ge=0, description="Position in the request; null when the whole body was refused."
    )
    item_id: str | None = Field(None, description="The item's event_id / report_id, if readable.")
    problems: list[DeadLetterProblem] = Field(min_length=1)
    content_type: str
    original: str = Field(description="The original bytes: UTF-8 text, or base64 (see below).")
    original_encoding: Literal["utf-8", "base64"]
    original_size: int = Field(ge=0, description="Size of the original in bytes.")
    truncated: bool = Field(description="True when `original` holds only the first bytes.")


_TOKEN_LIKE = re.compile(r"bw_[0-9A-Za-z]{1,32}_[A-Za-z0-9_-]{16,}")


def _no_token(value: str | None) -> str | None:
    # A pasted token would be published to every replica and kept for 30 days.
    if value and _TOKEN_LIKE.search(value):
        raise ValueError("looks like an access token; never paste a token into a message")
    return value


class AckRequest(_Strict):
    """Body of ``POST /api/v1/alerts/{id}/ack``. Who acknowledged is the token's
    identity; ``by`` is only a display name shown beside it."""

    by: Annotated[
        str | None,
        StringConstraints(min_length=1, max_length=64, pattern=r"^[\w .:/@-]+$"),
        AfterValidator(_no_token),
        Field(
            description="Display name: operator role or callsign (e.g. `LV duty officer`), "
            "not a name. Default: the token's label."
        ),
    ] = None
    comment: Annotated[str, StringConstraints(max_length=500), AfterValidator(_no_token)] = ""


class AlertAck(_Strict):
    """An operator's acknowledgement of an alert, on ``bw.alert-acks`` (key = ``alert_id``)."""

    schema_version: Literal[1] = 1
    ack_id: UUID
    alert_id: str
    seq: int = Field(ge=1, description="The alert transition that was acknowledged.")
    by: str = Field(
        description="Display name typed by the operator (or the token's label): shown, "
        "never trusted. Who acknowledged is `token_id` / `token_label`."
    )
    comment: str = ""
    acked_at: datetime
    token_id: str = Field(description="Id of the token used (never the token): the actor.")
    token_label: str = Field(
        "", description="Label of that token when it acknowledged (absent in older records)."
    )


class AuditAction(StrEnum):
    token_create = "token.create"
    token_revoke = "token.revoke"
    token_rotate = "token.rotate"
    dead_letter_read = "dead_letter.read"
    auth_refused = "auth.refused"


class AuditActor(_Strict):
    """Who acted: a token's identity (id and label, never the token), or for the
    ``borderwatch token`` command the operating-system user on the host."""

    token_id: str | None = Field(
        None, description="The token used, or for a refused attempt the id it claimed."
    )
    label: str = ""
    os_user: str | None = Field(None, description="For `borderwatch token …` on a host.")


class AuditRecord(_Strict):
    """One security-relevant action, on the append-only ``bw.audit`` topic (key =
    the action). Never carries a token, a secret or a hash."""

    schema_version: Literal[1] = 1
    audit_id: UUID
    at: AwareDatetime
    action: AuditAction
    outcome: Literal["ok", "refused"]
    service: Literal["ingest", "api", "cli"]
    actor: AuditActor
    target: str | None = Field(
        None, description="What was acted on: a token id, or the route that was called."
    )
    client: str | None = Field(None, description="The client's address, for HTTP requests.")
    detail: dict[str, str | int | bool | None] = Field(
        default_factory=dict,
        description="Action-specific facts: `reason` of a refusal, `suppressed` refusals "
        "not recorded one by one since the last record, `limit`/`returned` of a "
        "dead-letter read, `label`/`scopes`/`expires_at` of a token.",
    )
