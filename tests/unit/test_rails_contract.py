"""The `Rails` contract on `DisabledRails` (`guardrails.enabled: false`) and on `NemoRails` as `build_rails` makes
it from the default config (shared with test_guard_rails.py through the `nemo_rails` fixture)."""

import pytest

from chimera.guardrails.base import DisabledRails, Rails
from chimera.guardrails.nemo_rails import NemoRails
from tests.contracts.rails import RailsContract


class TestDisabledRails(RailsContract):
    @pytest.fixture
    def rails(self) -> Rails:
        return DisabledRails()


class TestNemoRails(RailsContract):
    @pytest.fixture
    def rails(self, nemo_rails: NemoRails) -> Rails:
        return nemo_rails
