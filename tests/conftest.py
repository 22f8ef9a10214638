from __future__ import annotations

import pytest

TEST_SECRET = "enrollbridge-test-secret"


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> str:
    """ENROLLBRIDGE_SECRET set for the test (and its subprocesses)."""
    monkeypatch.setenv("ENROLLBRIDGE_SECRET", TEST_SECRET)
    return TEST_SECRET
