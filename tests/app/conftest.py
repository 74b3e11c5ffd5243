"""The ``psal app`` server shared by the server, browser and load tests (see app_helpers)."""

from __future__ import annotations

import pytest
from app_helpers import Server, need


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """The running server; on teardown it must stop cleanly and leave no temporary files."""
    need("gradio")
    tmp = tmp_path_factory.mktemp("app-tmpdir")
    srv = Server(tmp)
    yield srv
    code = srv.stop()
    left = sorted(p.name for p in tmp.iterdir())
    assert code == 0, srv.output[-3000:]
    assert "psal app: stopped" in srv.output
    assert left == [], f"psal app left files in its temporary folder: {left}"


@pytest.fixture(scope="session")
def client(server):
    gradio_client = need("gradio_client")
    return gradio_client.Client(server.url, verbose=False)
