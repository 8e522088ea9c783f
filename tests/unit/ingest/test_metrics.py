"""Ingest's metrics: every label value the code can use has a series from the start."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import REGISTRY

from schemas.models import KINDS
from services.ingest import metrics
from services.ingest.validation import Problem

SOURCES = Path(metrics.__file__).parent


def test_every_rejection_reason_the_code_gives_is_pre_registered() -> None:
    cases = [
        Problem(0, "attributes.name", "personal data is not accepted"),
        Problem(0, "section_id", "unknown section 'XX-NOPE'"),
        Problem(0, "observed_at", "is in the future by 3 h"),
        Problem(0, "observed_at", "older than the topic's retention"),
        Problem(0, "count", "Input should be greater than or equal to 1"),
    ]
    given = {metrics.rejection_reason([p]) for p in cases}
    assert given == set(metrics.REJECTION_REASONS) - {"body"}
    # The one reason set outside rejection_reason: a body that could not be read.
    literal = set(
        re.findall(r'rejected\.labels\("([a-z_]+)"\)', (SOURCES / "routes.py").read_text())
    )
    assert literal == {"body"}


def test_series_exist_before_the_first_event() -> None:
    for kind in KINDS:
        assert (
            REGISTRY.get_sample_value("bw_ingest_events_accepted_total", {"kind": kind}) is not None
        )
    for reason in metrics.REJECTION_REASONS:
        assert (
            REGISTRY.get_sample_value("bw_ingest_events_rejected_total", {"reason": reason})
            is not None
        )
