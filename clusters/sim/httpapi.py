"""What the simulator's handlers see of a request and give back, whichever protocol
carried it: aiohttp's ``web.Request`` over HTTP/1.1, ``clusters.sim.http2.H2Request``
over HTTP/2. Both satisfy ``SimRequest``; a handler answers with a ``web.Response``
(sent whole) or streams through ``open_stream`` (watches)."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from aiohttp import web
from multidict import MultiMapping


class SimRequest(Protocol):
    """The parts of a request the simulator reads (a subset of aiohttp's)."""

    @property
    def method(self) -> str: ...

    @property
    def path(self) -> str:
        """Percent-decoded, without the query."""
        ...

    @property
    def query(self) -> MultiMapping[str]: ...

    @property
    def headers(self) -> MultiMapping[str]:
        """Case-insensitive names."""
        ...

    @property
    def transport(self) -> asyncio.Transport | None:
        """The connection's: aborting it drops every stream the connection carries."""
        ...

    @property
    def can_read_body(self) -> bool: ...

    @property
    def content_type(self) -> str: ...

    async def read(self) -> bytes: ...

    async def json(self) -> Any: ...


class ResponseStream(Protocol):
    """An answer whose body is written as it is produced (a watch)."""

    async def write(self, data: bytes) -> None: ...

    async def write_eof(self, data: bytes = b"") -> None: ...


#: What a handler returns: a whole answer, or a stream it already wrote and ended.
Answer = web.StreamResponse | ResponseStream


async def open_stream(request: SimRequest, headers: dict[str, str]) -> ResponseStream:
    """Start a 200 answer whose body follows in ``write`` calls."""
    opener = getattr(request, "open_stream", None)
    if opener is not None:  # HTTP/2: a stream of the connection
        stream: ResponseStream = await opener(200, headers)
        return stream
    assert isinstance(request, web.BaseRequest)
    response = web.StreamResponse(status=200, headers=headers)
    response.enable_chunked_encoding()
    await response.prepare(request)
    return response
