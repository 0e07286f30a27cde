"""Component-tier fixtures: real engines and importers, no server."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def model_store(tmp_path_factory):
    """A fresh, empty BentoML model store for one test module, whatever BENTOML_HOME says (the session's
    placeholder store and the developer's store are left alone)."""
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore

    root = tmp_path_factory.mktemp("bentoml-models")
    BentoMLContainer.model_store.set(ModelStore(str(root)))
    yield root
    BentoMLContainer.model_store.reset()
