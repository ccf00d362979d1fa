"""Fixtures shared by the test suite."""
import numpy as np
import pytest


@pytest.fixture
def rng():
    """A seeded generator: every test sees the same random numbers on every run."""
    return np.random.default_rng(0)
