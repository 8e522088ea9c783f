"""Alert rules: the shipped file, config errors, severity levels with hysteresis and
alert episodes (firing, severity changes, resolved)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.models import Alert, AlertStatus
from services.aggregator.rules import Episode, ThresholdRule, evaluate, level_for, load_rules
from services.common.catalogue import Catalogue
from services.common.errors import ConfigError
from tests.unit.factories import CONFIG_DIR, NOW, section

KRA = section("LV-KRA")
LADDER = [("low", 20), ("medium", 50), ("high", 100), ("critical", 164)]


def _rule(**overrides: object) -> ThresholdRule:
    data: dict[str, object] = {
        "id": "crossings-24h",
        "type": "threshold",
        "kinds": ["crossing_attempt"],
        "window": "24h",
        "severity": {"low": 10, "medium": 30, "high": 50, "critical": 100},
        "hysteresis": 0.1,
    }
    data.update(overrides)
    return ThresholdRule.model_validate(data)


# --- the rules file -------------------------------------------------------------


def test_the_shipped_rules_load() -> None:
    rules = load_rules(CONFIG_DIR / "rules.yaml")

    by_id = {r.id: r for r in rules}
    assert set(by_id) >= {"crossings-24h", "crossings-1h", "incidents-24h"}
    assert by_id["crossings-24h"].ladder() == LADDER
    assert by_id["crossings-24h"].window_seconds == 86_400
    assert by_id["crossings-1h"].window_seconds == 3600
    for rule in rules:
        thresholds = [t for _, t in rule.ladder()]
        assert thresholds == sorted(set(thresholds)), rule.id


def test_the_shipped_rules_apply_to_every_shipped_section() -> None:
    rules = load_rules(CONFIG_DIR / "rules.yaml")
    catalogue = Catalogue.load(CONFIG_DIR / "sections.yaml")

    for sec in catalogue.values():
        assert all(rule.applies_to(sec) for rule in rules), sec.id


RULE_TEMPLATE = """\
rules:
  - id: ok
    type: threshold
    kinds: [incident]
    severity: {{medium: 3}}
  - id: {ident}
    type: threshold
    kinds: [{kind}]
    window: {window}
    severity: {severity}
"""


def _rules_error(tmp_path: Path, **fields: str) -> str:
    values = {
        "ident": "broken",
        "kind": "crossing_attempt",
        "window": "24h",
        "severity": "{low: 20, medium: 50}",
    }
    values.update(fields)
    path = tmp_path / "rules.yaml"
    path.write_text(RULE_TEMPLATE.format(**values), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_rules(path)
    message = str(info.value)
    assert message.startswith(f"{path}:6: entry 2 ({values['ident']}): "), message
    return message


def test_ladder_not_increasing_is_refused(tmp_path: Path) -> None:
    message = _rules_error(tmp_path, severity="{low: 50, medium: 20, high: 100}")

    assert "field 'severity'" in message
    assert "must grow strictly from low to critical, got low=50, medium=20, high=100" in message


def test_ladder_with_equal_thresholds_is_refused(tmp_path: Path) -> None:
    message = _rules_error(tmp_path, severity="{low: 20, medium: 20}")

    assert "field 'severity'" in message


def test_unknown_kind_is_refused(tmp_path: Path) -> None:
    message = _rules_error(tmp_path, kind="sighting")

    assert "field 'kinds.0'" in message
    assert "'crossing_attempt'" in message


@pytest.mark.parametrize("window", ["24x", "0h", "day"])
def test_bad_window_is_refused(tmp_path: Path, window: str) -> None:
    message = _rules_error(tmp_path, window=window)

    assert "field 'window'" in message
    assert "expected a positive duration like 90s, 5m, 24h or 7d" in message


def test_unknown_severity_is_refused(tmp_path: Path) -> None:
    message = _rules_error(tmp_path, severity="{low: 20, extreme: 50}")

    assert "field 'severity.extreme" in message


def test_duplicate_rule_id_is_refused(tmp_path: Path) -> None:
    message = _rules_error(tmp_path, ident="ok")

    assert "field 'id': duplicate id, already used by entry 1" in message


def test_selection_by_glob_and_country() -> None:
    latvia_only = _rule(sections=["LV-*"])
    by_country = _rule(countries=["LT"])

    assert latvia_only.applies_to(KRA)
    assert not latvia_only.applies_to(section("LT-MED"))
    assert by_country.applies_to(section("LT-MED"))
    assert not by_country.applies_to(KRA)
    assert _rule(sections=["LV-KRA", "PL-*"]).applies_to(section("PL-BIA"))


# --- levels ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "current", "expected"),
    [
        (0, None, None),
        (19, None, None),
        (20, None, ("low", 20)),
        (99, None, ("medium", 50)),
        (164, None, ("critical", 164)),
        (18, "low", ("low", 20)),  # 20 * 0.9 = 18: still held
        (17, "low", None),
        (90, "high", ("high", 100)),
        (89, "high", ("medium", 50)),
        (49, "medium", ("medium", 50)),  # 45 <= 49 < 50: held, not re-entered from low
        (44, "medium", ("low", 20)),
        (100, "medium", ("high", 100)),  # entering a higher level needs its full threshold
        (99, "medium", ("medium", 50)),
        (17, "critical", None),
    ],
)
def test_level_for_with_hysteresis(
    value: int, current: str | None, expected: tuple[str, int] | None
) -> None:
    assert level_for(value, LADDER, current, 0.1) == expected


def test_level_for_without_hysteresis_leaves_at_the_threshold() -> None:
    assert level_for(19, LADDER, "low", 0.0) is None
    assert level_for(20, LADDER, "low", 0.0) == ("low", 20)


# --- episodes ---------------------------------------------------------------------


def test_first_crossing_fires_one_alert() -> None:
    episode, alert = evaluate(_rule(), KRA, 57, None, 0, NOW)

    assert alert is not None and episode is not None
    assert alert.alert_id == "crossings-24h.LV-KRA.1"
    assert alert.seq == 1
    assert alert.status is AlertStatus.firing
    assert alert.severity == "high"
    assert (alert.value, alert.threshold, alert.window) == (57, 50, "24h")
    assert (alert.rule, alert.section_id, alert.country) == ("crossings-24h", "LV-KRA", "LV")
    assert alert.summary == "LV-KRA: 57 crossing attempts in 24 h ≥ high threshold 50"
    assert alert.started_at == alert.updated_at == datetime.fromtimestamp(NOW, UTC)
    assert alert.resolved_at is None
    assert episode.alert_id == alert.alert_id


def test_below_every_threshold_nothing_fires() -> None:
    assert evaluate(_rule(), KRA, 9, None, 0, NOW) == (None, None)


def test_summary_uses_the_singular_for_one() -> None:
    _, alert = evaluate(_rule(severity={"low": 1}, window="1h"), KRA, 1, None, 0, NOW)

    assert alert is not None
    assert alert.summary == "LV-KRA: 1 crossing attempt in 1 h ≥ low threshold 1"


def test_same_severity_is_not_a_transition() -> None:
    rule = _rule()
    episode, _ = evaluate(rule, KRA, 57, None, 0, NOW)

    again, alert = evaluate(rule, KRA, 70, episode, 0, NOW + 60)

    assert alert is None
    assert again is not None and again is episode
    assert (again.severity, again.value, again.seq) == ("high", 70, 1)


def test_severity_up_is_one_firing_transition_of_the_same_alert() -> None:
    rule = _rule()
    episode, _ = evaluate(rule, KRA, 57, None, 0, NOW)

    episode, alert = evaluate(rule, KRA, 120, episode, 0, NOW + 60)

    assert alert is not None and episode is not None
    assert (alert.alert_id, alert.seq, alert.status) == (
        "crossings-24h.LV-KRA.1",
        2,
        AlertStatus.firing,
    )
    assert (alert.severity, alert.threshold, alert.value) == ("critical", 100, 120)
    assert alert.started_at == datetime.fromtimestamp(NOW, UTC)
    assert alert.updated_at == datetime.fromtimestamp(NOW + 60, UTC)
    assert alert.summary == "LV-KRA: 120 crossing attempts in 24 h ≥ critical threshold 100"


def test_falling_below_threshold_times_one_minus_hysteresis_resolves() -> None:
    rule = _rule()  # lowest threshold 10, hysteresis 0.1: resolves below 9
    episode, _ = evaluate(rule, KRA, 12, None, 0, NOW)

    held, none = evaluate(rule, KRA, 9, episode, 0, NOW + 60)
    assert none is None and held is episode

    gone, alert = evaluate(rule, KRA, 8, held, 0, NOW + 120)

    assert gone is None
    assert alert is not None
    assert (alert.alert_id, alert.seq, alert.status) == (
        "crossings-24h.LV-KRA.1",
        2,
        AlertStatus.resolved,
    )
    assert alert.severity == "low"
    assert alert.value == 8
    assert alert.resolved_at == datetime.fromtimestamp(NOW + 120, UTC)
    assert alert.summary == (
        "LV-KRA: 8 crossing attempts in 24 h, below 9 (resolve level of 10): resolved"
    )


def test_a_new_episode_gets_the_next_number() -> None:
    rule = _rule()
    episode, _ = evaluate(rule, KRA, 57, None, 0, NOW)
    evaluate(rule, KRA, 0, episode, 0, NOW + 60)

    _, alert = evaluate(rule, KRA, 31, None, 1, NOW + 120)

    assert alert is not None
    assert (alert.alert_id, alert.seq, alert.severity) == ("crossings-24h.LV-KRA.2", 1, "medium")


def test_episode_survives_a_dict_round_trip() -> None:
    episode, _ = evaluate(_rule(), KRA, 57, None, 0, NOW)
    assert episode is not None

    assert Episode.from_dict(episode.to_dict()) == episode


# --- properties -------------------------------------------------------------------

RULES = st.builds(
    lambda thresholds, h: _rule(
        severity=dict(zip(["low", "medium", "high", "critical"], thresholds, strict=False)),
        hysteresis=h,
    ),
    st.lists(st.integers(1, 300), min_size=1, max_size=4, unique=True).map(sorted),
    st.sampled_from([0.0, 0.1, 0.2, 0.5]),
)


def _run(rule: ThresholdRule, values: list[int]) -> list[Alert]:
    """Evaluate ``values`` in turn, as the engine does (one minute apart)."""
    episode: Episode | None = None
    episodes = 0
    out = []
    for i, value in enumerate(values):
        before = episode
        episode, alert = evaluate(rule, KRA, value, episode, episodes, NOW + 60 * i)
        if before is None and episode is not None:
            episodes += 1
        if alert is not None:
            out.append(alert)
    return out


@settings(max_examples=200, deadline=None)
@given(rule=RULES, value=st.integers(0, 400), repeats=st.integers(2, 20))
def test_a_constant_value_never_flaps(rule: ThresholdRule, value: int, repeats: int) -> None:
    first = _run(rule, [value])
    alerts = _run(rule, [value] * repeats)

    assert alerts == first
    assert len(alerts) <= 1
    assert all(a.status is AlertStatus.firing for a in alerts)


@settings(max_examples=200, deadline=None)
@given(rule=RULES, values=st.lists(st.integers(0, 400), max_size=40))
def test_transitions_alternate_correctly(rule: ThresholdRule, values: list[int]) -> None:
    alerts = _run(rule, values)

    last: dict[str, Alert] = {}
    previous: Alert | None = None
    for alert in alerts:
        before = last.get(alert.alert_id)
        if alert.status is AlertStatus.resolved:
            assert previous is not None and previous.status is AlertStatus.firing
            assert previous.alert_id == alert.alert_id
            assert alert.resolved_at is not None
        if before is None:
            assert alert.status is AlertStatus.firing
            assert alert.seq == 1
            assert alert.alert_id == f"crossings-24h.LV-KRA.{len(last) + 1}"
        else:
            assert before.status is AlertStatus.firing, "a resolved alert never comes back"
            assert alert.seq == before.seq + 1
            assert alert.started_at == before.started_at
            if alert.status is AlertStatus.firing:
                assert alert.severity != before.severity, "no transition without a change"
        last[alert.alert_id] = alert
        previous = alert
    # Firing alerts are the ones a reader sees; at most one is open at the end.
    assert sum(a.status is AlertStatus.firing for a in last.values()) <= 1
