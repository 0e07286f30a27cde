"""The unit tier is pure: no model store, no model, no server. Asking for one fails the test."""

from __future__ import annotations

import pytest


def _not_in_unit(name: str):
    @pytest.fixture(name=name)
    def refuse():
        pytest.fail(f"unit tests are pure: the {name!r} fixture belongs to the component or contract tier")

    return refuse


placeholder_store = _not_in_unit("placeholder_store")
gateway = _not_in_unit("gateway")
client = _not_in_unit("client")
model_store = _not_in_unit("model_store")
