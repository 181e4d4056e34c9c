"""``AsyncKube`` against an HTTP/2 server that allows very few streams (the in-test
server of test_h2client.py, which can be told to): a cluster's connections stay bounded
and the requests past them wait for a slot instead of each opening a connection."""

from __future__ import annotations

import asyncio

import pytest

from clusters.connect import build_connection
from clusters.kube import H2_CONNECTIONS, AsyncKube
from clusters.kubeconfig import BearerToken, TLSSettings
from clusters.registry import ClusterCredentials
from tests.clusters.test_cache import CM
from tests.clusters.test_h2client import ROUTES, H2TestServer


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_a_server_allowing_one_stream_gets_a_bounded_number_of_connections() -> None:
    srv = H2TestServer(max_streams=1)
    # every watch is answered and then left open with nothing to say
    srv.routes = {"/c/api/v1/configmaps": ROUTES["/silent"]}
    await srv.start(["h2", "http/1.1"])
    connection = build_connection(
        ClusterCredentials(
            name="few",
            server=f"https://127.0.0.1:{srv.port}/c",
            tls=TLSSettings(ca_data=srv.ca.cert_pem),
            credential=BearerToken(token="t" * 32),
            credential_rev="t",
        )
    )
    client = AsyncKube(connection)
    opened: list[int] = []

    async def watch() -> None:
        async for _ in client.watch(CM, resource_version="1", timeout_s=60):
            pass

    # the first watch open (the server's SETTINGS in: before them a client may assume
    # 100 streams, as Go's does, and a server allowing 1 drops it for the excess)
    tasks = [asyncio.ensure_future(watch())]
    for _ in range(100):
        await asyncio.sleep(0.05)
        if srv.peak_streams:
            break
    tasks += [asyncio.ensure_future(watch()) for _ in range(3 * H2_CONNECTIONS - 1)]
    try:
        for _ in range(100):
            await asyncio.sleep(0.05)
            if len(srv.connections) >= H2_CONNECTIONS:
                break
        await asyncio.sleep(0.5)  # time for any connection too many to be opened
        opened = [client.connections_opened, len(srv.connections), srv.peak_streams]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.aclose()
        await srv.stop()
        connection.close()
    assert client.protocol == "HTTP/2"
    # one stream each, the other watches waiting for a slot (not a connection apiece)
    assert opened == [H2_CONNECTIONS, H2_CONNECTIONS, 1]
