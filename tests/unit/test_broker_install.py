"""The embedded broker's install step explains what is missing instead of failing obscurely."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.runtime.broker import BrokerError, install


@pytest.mark.parametrize("missing", ["mvn", "java"])
def test_missing_tool_names_what_to_install(
    missing: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    real_which = shutil.which
    monkeypatch.setattr(
        "services.runtime.broker.shutil.which",
        lambda tool: None if tool == missing else real_which(tool) or f"/usr/bin/{tool}",
    )
    with pytest.raises(BrokerError) as err:
        install(tmp_path / "empty-cache")
    message = str(err.value)
    assert f"`{missing}` was not found" in message
    assert ("maven" if missing == "mvn" else "openjdk-17") in message
    assert "BW_KAFKA_BOOTSTRAP" in message
