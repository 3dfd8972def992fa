"""uvicorn for this server: its HTTP protocol with the one non-JSON answer made JSON, and the
configuration every server process uses."""

import json
from typing import Any


def _http_protocol() -> Any:
    """The serve extra's HTTP protocol: uvicorn's on httptools' parser where it is installed, else
    on h11's; None without uvicorn."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        return HttpToolsProtocol
    except ImportError:
        pass
    try:
        from uvicorn.protocols.http.h11_impl import H11Protocol

        return H11Protocol
    except ImportError:
        return None


_HttpProtocol = _http_protocol()

if _HttpProtocol is not None:

    class JsonErrorsProtocol(_HttpProtocol):  # type: ignore[misc, valid-type]
        """uvicorn's HTTP protocol with its one non-JSON answer (400 for a request it cannot parse,
        e.g. a Content-Length that is not a number) answered in JSON like every other error."""

        def send_400_response(self, msg: str) -> None:
            body = (json.dumps({"error": f"bad request: {msg}"}) + "\n").encode()
            self.transport.write(
                b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: "
                + str(len(body)).encode()
                + b"\r\nconnection: close\r\n\r\n"
                + body
            )
            self.transport.close()


PROTOCOL = "lenet_ext.serve.protocol:JsonErrorsProtocol"


def uvicorn_config(app, verbose: bool, **extra):
    """uvicorn's settings for this server (one process, or each of --workers): the JSON-error
    protocol, the lifespan (the batcher's start and drain), a 5 s graceful shutdown, no access log
    unless verbose."""
    import uvicorn

    return uvicorn.Config(
        app,
        http=PROTOCOL,
        lifespan="on",
        log_level="info" if verbose else "error",
        access_log=False,
        timeout_graceful_shutdown=5,
        timeout_keep_alive=5,
        server_header=False,
        **extra,
    )
