"""The simulated Baxter's rosbridge: the rosbridge v2 protocol (JSON over a websocket) that a
real Baxter's ROS master serves through ``rosbridge_websocket``, for the topics a client of
the arm uses. There is no ROS here: this server stands at that boundary for the simulated
arm only.

Clients subscribe, advertise and publish as they would on the robot; the simulation
publishes to their subscriptions and receives what they publish through a callback.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import Any

Handler = Callable[[str, dict[str, Any]], None]


class SimulatedRosbridge:
    """A rosbridge v2 server on ``host:port`` (port 0: any free one, see ``port``).

    ``on_publish(topic, msg)`` is called, on the server's thread, for every message a
    client publishes. ``publish(topic, msg)`` may be called from any thread.
    """

    def __init__(self, host: str, port: int, on_publish: Handler):
        self.host = host
        self.port = port
        self._on_publish = on_publish
        self._subscribers: dict[str, set[Any]] = {}
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="rosbridge", daemon=True)
        self._server: Any = None

    def start(self) -> None:
        """Listen; raises OSError when the address is taken."""
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Drop every client and stop listening."""
        if not self._loop.is_running():
            return

        async def shutdown() -> None:
            self._server.close()
            for clients in self._subscribers.values():
                for client in list(clients):
                    await client.close()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    @property
    def clients(self) -> int:
        """How many clients subscribe to anything."""
        return len(set().union(*self._subscribers.values())) if self._subscribers else 0

    def publish(self, topic: str, msg: dict[str, Any]) -> None:
        """Send ``msg`` to every client subscribed to ``topic`` (no-op without one)."""
        if self._subscribers.get(topic):
            self._loop.call_soon_threadsafe(self._send, topic, msg)

    def _send(self, topic: str, msg: dict[str, Any]) -> None:
        clients = self._subscribers.get(topic)
        if not clients:
            return
        text = json.dumps({"op": "publish", "topic": topic, "msg": msg})
        for client in list(clients):
            self._loop.create_task(self._send_one(client, text))

    async def _send_one(self, client: Any, text: str) -> None:
        import websockets

        try:
            await client.send(text)
        except websockets.ConnectionClosed:
            self._forget(client)

    def _forget(self, client: Any) -> None:
        for clients in self._subscribers.values():
            clients.discard(client)

    def _run(self) -> None:
        import websockets

        asyncio.set_event_loop(self._loop)

        async def listen() -> None:
            self._server = await websockets.serve(self._serve, self.host, self.port)
            self.port = self._server.sockets[0].getsockname()[1]

        try:
            self._loop.run_until_complete(listen())
        except OSError as err:
            self._error = err
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self, client: Any) -> None:
        import websockets

        try:
            async for raw in client:
                try:
                    message = json.loads(raw)
                except ValueError:
                    continue  # rosbridge ignores what it cannot parse, and so does this
                op, topic = message.get("op"), str(message.get("topic", ""))
                if op == "subscribe":
                    self._subscribers.setdefault(topic, set()).add(client)
                elif op == "unsubscribe":
                    self._subscribers.get(topic, set()).discard(client)
                elif op == "publish" and isinstance(message.get("msg"), dict):
                    self._on_publish(topic, message["msg"])
        except websockets.ConnectionClosed:
            pass
        finally:
            self._forget(client)
