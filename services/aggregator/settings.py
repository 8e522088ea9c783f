"""Aggregator settings (``BW_`` environment variables)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from services.common.settings import DEFAULT_CONFIG_DIR, CommonSettings, default_data_dir

# The worker producer's batch: below the broker's default message.max.bytes (1 MiB +
# 12), which bounds a batch (app.py says why it is not Faust's 16 KiB). Session 13
# put it and the linger below back to Faust's 16 KiB / 5 ms after one clean-clone
# failure of tests/integration/test_cluster_faults.py (a node killed; no state
# reached the API). Session 15 reproduced failures of that module with a task dump:
# aiokafka's metadata task died on uvloop's RuntimeError (common/aiokafka_mend.py),
# a defect of the clients, not of these values.
PRODUCER_BATCH_BYTES = 512 * 1024


class AggregatorSettings(CommonSettings):
    app_id: str = Field(
        "borderwatch-aggregator",
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Faust app id = consumer group; workers with the same id share partitions.",
    )
    rules_file: Path = Field(DEFAULT_CONFIG_DIR / "rules.yaml", description="Alert rules (YAML).")
    field_partitions: int = Field(6, ge=1, le=256, description="Partitions of bw.field-events.")
    bucket_seconds: int = Field(
        3600, ge=1, description="Width of a count bucket (must divide a day)."
    )
    grace_seconds: int = Field(7200, ge=0, description="How late an event may be and still count.")
    tick_seconds: float = Field(
        10.0, gt=0, description="Wall-clock timer that moves quiet sections' windows on."
    )
    assessment_window_hours: float = Field(
        72.0, gt=0, description="Reports weighed by the closure-criteria assessment (hours)."
    )
    batch_max: int = Field(5000, ge=1, description="Most input records handled in one batch.")
    batch_within: float = Field(0.005, gt=0, description="Longest wait to fill a batch, seconds.")
    fetch_min_bytes: int = Field(
        16_384,
        ge=1,
        description="Bytes the broker gathers for a fetch of the input before answering "
        "(at most fetch_max_wait_ms): fewer, larger fetches when events arrive live, "
        "and at high rates a fetch returns as soon as this much is there.",
    )
    # A trade of feed latency for CPU; the README's configuration table has the
    # measurements behind 50 (session 7 chose 100, which cost p99 on slower hosts).
    fetch_max_wait_ms: int = Field(
        50, ge=0, le=1500, description="Longest the broker holds a fetch to gather bytes."
    )
    # 0: a record goes out once the worker's loop yields, and the sends of one batch
    # are made without yielding, so they still share a produce request. A linger
    # costs a timer and a wake-up per request (README's configuration table).
    producer_linger_ms: float = Field(
        0.0,
        ge=0,
        le=1000,
        description="How long the worker's producer holds a record to gather more into "
        "one produce request.",
    )
    checkpoint_interval: float = Field(
        1.0,
        ge=0,
        description="Seconds between writes of an input partition's checkpoint (where a "
        "successor resumes; one that lags only means more replay, which counts nothing).",
    )
    state_publish_interval: float = Field(
        0.0,
        ge=0,
        le=60,
        description="Publish a section's state at most once per this many seconds (0: "
        "every update); alert transitions are never held back. Bounds the states a "
        "hot section sends the API (and every feed client) in a surge.",
    )
    session_timeout: float = Field(
        6.0, gt=0, description="Consumer group session timeout; the first join waits half of it."
    )
    commit_interval: float = Field(
        1.0, gt=0, description="Seconds between consumer-group offset commits."
    )
    stall_report_seconds: float = Field(
        30.0,
        gt=0,
        description="A rebalance or table recovery lasting longer than this logs what the "
        "worker's consumer is waiting for (then once a minute while it lasts).",
    )
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=1, le=65535, description="Port of /metrics, /healthz, /readyz.")
    data_dir: Path = Field(default_factory=lambda: default_data_dir() / "aggregator")
