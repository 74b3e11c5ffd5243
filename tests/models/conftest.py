import pytest


@pytest.fixture(autouse=True)
def _tiny_nets_on_one_thread(one_thread):
    """Every test here runs tiny networks: one thread is faster (see ``one_thread``)."""
