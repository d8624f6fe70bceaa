"""A test double of a rosbridge server (rosbridge v2 JSON over a websocket, on loopback):
it records what clients advertise and publish, and publishes to their subscriptions."""

import asyncio
import json
import threading
import time

import websockets


class RosbridgeDouble:
    """Start with ``with RosbridgeDouble() as server:``; ``server.port`` is where it listens."""

    def __init__(self):
        self.published: dict[str, list[tuple[float, dict]]] = {}
        self.subscribed: set[str] = set()
        self.advertised: set[str] = set()
        self._clients: set = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    def __enter__(self) -> "RosbridgeDouble":
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._server = await websockets.serve(self._handle, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    async def _handle(self, websocket) -> None:
        self._clients.add(websocket)
        try:
            async for raw in websocket:
                message = json.loads(raw)
                op, topic = message.get("op"), message.get("topic", "")
                if op == "subscribe":
                    self.subscribed.add(topic)
                elif op == "advertise":
                    self.advertised.add(topic)
                elif op == "publish":
                    self.published.setdefault(topic, []).append((time.monotonic(),
                                                                 message["msg"]))
        except websockets.ConnectionClosed:
            pass
        finally:
            self._clients.discard(websocket)

    def publish(self, topic: str, msg: dict) -> None:
        """Send ``msg`` on ``topic`` to every client."""
        text = json.dumps({"op": "publish", "topic": topic, "msg": msg})
        for client in list(self._clients):
            asyncio.run_coroutine_threadsafe(client.send(text), self._loop)

    def stop(self) -> None:
        """Close every connection and stop listening (rosbridge going down)."""
        async def close() -> None:
            self._server.close()
            for client in list(self._clients):
                await client.close()
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
