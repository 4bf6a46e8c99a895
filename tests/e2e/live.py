"""The whole system over real HTTP for portal tests: the three services and the portal as WSGI servers in
threads on free ports, on a test `Stack`'s own databases and topics (its workers run the events).

The portal is configured exactly as in production, only with these URLs: it reaches the services over HTTP
with the signed-in user's token, never their databases.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

from werkzeug.serving import WSGIRequestHandler, make_server

from shared import infra
from tests.support.stack import SERVICES, Stack

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


class QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):  # the services log their own requests
        pass


class ThreadedServer:
    def __init__(self, app, port: int | None = None):
        self.port = port or infra.free_port()
        self.server = make_server("127.0.0.1", self.port, app, threaded=True, request_handler=QuietHandler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True, name=f"wsgi-{self.port}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ThreadedServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


class LiveStack:
    """`services` answer over HTTP; the portal calls them; `down` services get a port nothing listens on."""

    def __init__(self, stack: Stack, *, services=SERVICES, down=()):
        self.stack = stack
        self.servers: dict[str, ThreadedServer] = {}
        self.services = tuple(services)
        self.down = tuple(down)
        self.portal: ThreadedServer | None = None

    def start(self) -> "LiveStack":
        urls = {}
        for service in self.services:
            if service in self.down:
                urls[service] = f"http://127.0.0.1:{infra.free_port()}"  # nothing listens there
                continue
            self.servers[service] = ThreadedServer(self.stack.app(service)).start()
            urls[service] = self.servers[service].url
        self.portal = ThreadedServer(self.portal_app(urls)).start()
        return self

    def portal_app(self, urls: dict[str, str]):
        from services.portal.app import create_app

        settings = dataclasses.replace(self.stack.settings, registry_url=urls["registry"],
                                       evaluation_url=urls["evaluation"], fund_url=urls["fund"],
                                       portal_timeout_seconds=20.0)
        return create_app(settings)

    @property
    def url(self) -> str:
        return self.portal.url

    def stop(self) -> None:
        for server in [self.portal, *self.servers.values()]:
            if server is not None:
                server.stop()
