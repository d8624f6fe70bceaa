"""The console's web server (aiohttp, on its own thread): one page, one websocket per open
page. Requests from the page go into a queue the node's loop reads; the page is sent the
newest camera frame (JPEG, at most IMAGE_HZ, stale frames dropped) and the session's state."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from tuina.operators.console import origin_ok, token_ok

PAGE = Path(__file__).resolve().parents[1] / "nodes" / "console.html"
STATE_HZ = 10.0


class ConsoleServer:
    """Serves the page at ``http://bind:port/``; ``requests`` holds what pages asked for
    (dicts with a ``type``), ``frame`` / ``state`` what they are shown."""

    def __init__(self, bind: str, port: int, token: str, image_hz: float) -> None:
        self.bind, self.port, self.token, self.image_hz = bind, port, token, image_hz
        self.requests: queue.Queue[dict[str, Any]] = queue.Queue()
        self._lock = threading.Lock()
        self._frame: tuple[int, np.ndarray] | None = None  # (sequence, RGB image)
        self._state: dict[str, Any] = {}
        self._sockets: set[Any] = set()
        self._said: set[str] = set()  # what went wrong sending to pages, said once each
        self.last_seen = time.monotonic()  # when a page was last connected
        self.ever_connected = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._page = PAGE.read_text()

    # --- the node's side ---------------------------------------------------------------

    def show_frame(self, image: np.ndarray) -> None:
        """The newest camera frame (kept by reference: the caller hands over a copy)."""
        with self._lock:
            seq = 0 if self._frame is None else self._frame[0] + 1
            self._frame = (seq, image)

    def show_state(self, state: dict[str, Any]) -> None:
        with self._lock:
            self._state = state

    @property
    def pages(self) -> int:
        """Pages open now."""
        with self._lock:
            return len(self._sockets)

    def start(self, timeout_s: float = 10.0) -> None:
        """Serve on a daemon thread; OSError (the port taken, a bad address) at once."""
        threading.Thread(target=self._run, daemon=True, name="console-server").start()
        if not self._started.wait(timeout_s):
            raise OSError(f"the console's server did not start within {timeout_s:g} s")
        if self._error is not None:
            raise OSError(str(self._error))

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)

    # --- the server's side -------------------------------------------------------------

    def _run(self) -> None:
        from aiohttp import web

        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/", self._index)
        app.router.add_get("/ws", self._socket)
        runner = web.AppRunner(app, access_log=None)
        try:
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, self.bind, self.port).start())
        except BaseException as err:  # the port taken, an address not on this machine
            self._error = err
            self._started.set()
            return
        self._started.set()
        loop.create_task(self._push())
        loop.run_forever()

    def _allowed(self, request: Any) -> bool:
        given = request.query.get("token") or request.cookies.get("tuina_token")
        return token_ok(self.token, given) and origin_ok(request.headers.get("Origin"),
                                                         request.host)

    @property
    def _guard(self) -> Any:
        from aiohttp import web

        @web.middleware
        async def guard(request: Any, handler: Any) -> Any:
            if not self._allowed(request):
                return web.Response(status=401, text="unauthorized: open the address the "
                                    "console printed (with its ?token=)\n")
            return await handler(request)

        return guard

    async def _index(self, request: Any) -> Any:
        from aiohttp import web

        response = web.Response(text=self._page, content_type="text/html")
        if self.token:  # the page's websocket carries it from here on
            response.set_cookie("tuina_token", self.token, httponly=True, samesite="Strict")
        return response

    async def _socket(self, request: Any) -> Any:
        from aiohttp import WSMsgType, web

        ws = web.WebSocketResponse(heartbeat=2.0)
        await ws.prepare(request)
        with self._lock:
            self._sockets.add(ws)
            self.ever_connected = True
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    request_ = json.loads(msg.data)
                except ValueError:
                    continue
                if isinstance(request_, dict) and isinstance(request_.get("type"), str):
                    request_["received"] = time.monotonic()
                    self.requests.put(request_)
        finally:
            with self._lock:
                self._sockets.discard(ws)
                self.last_seen = time.monotonic()
        return ws

    async def _push(self) -> None:
        """Each page gets the newest frame at most IMAGE_HZ and the state at STATE_HZ; a
        page that cannot keep up is sent nothing until its last send is through, and a page
        that closes as it is sent to changes nothing for the others."""
        sent_seq, jpeg, next_state = -1, b"", 0.0
        busy: set[Any] = set()
        while True:
            await asyncio.sleep(1.0 / self.image_hz)
            try:
                sent_seq, jpeg, next_state = await self._push_once(busy, sent_seq, jpeg,
                                                                   next_state)
            except Exception as err:  # the pages must never stop updating for one fault
                self._say_once(f"a page update failed ({type(err).__name__}: {err}); going on")

    def _say_once(self, line: str) -> None:
        if line not in self._said:
            self._said.add(line)
            print(f"console: {line}", flush=True)

    async def _push_once(self, busy: set[Any], sent_seq: int, jpeg: bytes,
                         next_state: float) -> tuple[int, bytes, float]:
        """One round of sends: the frame if it is new, the state when it is due."""
        import cv2

        with self._lock:
            frame, state, sockets = self._frame, self._state, list(self._sockets)
            if sockets:
                self.last_seen = time.monotonic()
        if not sockets:
            return sent_seq, jpeg, next_state
        if frame is not None and frame[0] != sent_seq:
            try:
                ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame[1], cv2.COLOR_RGB2BGR),
                                       [cv2.IMWRITE_JPEG_QUALITY, 75])
            except cv2.error as err:  # this frame is not shown; the state still goes out
                self._say_once(f"a camera frame could not be encoded ({err}); not shown")
                ok, buf = False, None
            sent_seq, jpeg = frame[0], (buf.tobytes() if ok else b"")
            for ws in sockets:
                if ws not in busy and jpeg:
                    asyncio.ensure_future(self._send(ws, busy, jpeg))
        if time.monotonic() >= next_state:
            next_state = time.monotonic() + 1.0 / STATE_HZ
            text = json.dumps(state)
            for ws in sockets:
                try:
                    if not ws.closed:
                        await ws.send_str(text)
                except ConnectionError:
                    pass  # closed as it was sent to: its handler forgets it
                except Exception as err:  # that page's fault, not the others'
                    self._say_once(f"a page could not be sent the state ({type(err).__name__}:"
                                   f" {err})")
        return sent_seq, jpeg, next_state

    async def _send(self, ws: Any, busy: set[Any], data: bytes) -> None:
        busy.add(ws)
        try:
            if not ws.closed:
                await ws.send_bytes(data)
        except ConnectionError:
            pass
        finally:
            busy.discard(ws)
