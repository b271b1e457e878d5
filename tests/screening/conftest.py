"""Pipeline fixtures: a tiny real Keras artifact registered as the active model."""

from __future__ import annotations

import pytest

from screening.ai import actions as ai_actions
from tests.ml.conftest import (  # noqa: F401  (session fixtures shared with ml tests)
    external_artifact,
    tiny_artifact,
)


@pytest.fixture
def active_model(db, tiny_artifact):  # noqa: F811
    return ai_actions.register_model_version(None, str(tiny_artifact), activate=True)
