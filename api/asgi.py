"""Small pure-ASGI helpers shared by the API's middlewares."""

from __future__ import annotations

from starlette.types import Message, Send


class TrackedSend:
    """Wraps ``send``; :attr:`started` tells whether the response has begun (too late to
    replace it with an error response)."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)
