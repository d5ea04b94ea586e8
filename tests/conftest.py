"""Suite-wide: one detector tuning for the whole run.

Every daemon a test starts has a fresh data dir, and ``detector.instances: auto`` measures the
candidates there on its first start (a few seconds). The suite shares one tuning file instead, the way a
fleet of identical boxes can (``EDGEINFER_TUNING_CACHE``); the tests of the tuning itself point it
elsewhere. Subprocesses inherit it through the environment.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from edgeinfer.detect.tuning import CACHE_ENV


@pytest.fixture(scope="session", autouse=True)
def shared_tuning_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    previous = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("tuning") / "tuning.json")
    yield
    if previous is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = previous
