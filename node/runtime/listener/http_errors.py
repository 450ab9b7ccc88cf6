"""aiohttp's HTTP protocol, answering its parser's refusals and our failures in the API's shape.

HTTP parser errors (a line too long, too many headers, conflicting
lengths, a bad method or version...) are answered in the API's error shape
``{"error": {"code": "malformed_http", ...}}`` with aiohttp's status, and
logged as one INFO line at most every ``CLIENT_ERROR_LOG_INTERVAL_S`` per
port (a stranger must not be able to fill the log); a server-side failure
is still logged with its traceback.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.http import HttpProcessingError, RawRequestMessage
from aiohttp.web_request import BaseRequest

if TYPE_CHECKING:
    from node.runtime.listener.port import Connection

log = logging.getLogger("provenet.listener")

# At most one log line per port and interval for clients' malformed HTTP.
CLIENT_ERROR_LOG_INTERVAL_S = 10.0
# The Server header, without versions: aiohttp's default names Python's and its
# own, which would tell a scanner which known bugs to try.
SERVER_HEADER = "provenet"
# Longest reason quoted from aiohttp's parser (it may quote the input itself).
MAX_ERROR_MESSAGE_CHARS = 120


class RateLimitedLog:
    """At most one INFO line per interval; the lines in between are counted."""

    def __init__(self, interval_s: float) -> None:
        self._interval_s = interval_s
        self._next_at = 0.0
        self._suppressed = 0

    def info(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now < self._next_at:
            self._suppressed += 1
            return
        if self._suppressed:
            message += f" ({self._suppressed} more since the last such line)"
        log.info(message, *args)
        self._next_at = now + self._interval_s
        self._suppressed = 0


def _error_body(code: str, message: str) -> str:
    return json.dumps({"error": {"code": code, "message": message}}, separators=(",", ":"))


class NodeRequestHandler(web.RequestHandler):
    """aiohttp's HTTP protocol, with errors in the API's shape and bounded logging.

    ``handle_error`` is where aiohttp answers what its own parser refused
    (and a handler's unhandled exception or timeout): it answers
    ``text/plain`` and logs a traceback for each by default.
    """

    def __init__(
        self,
        manager: web.Server,
        *,
        client_errors: RateLimitedLog,
        on_malformed: Callable[[], None],
        **kwargs: Any,
    ) -> None:
        super().__init__(manager, **kwargs)
        self.client_errors = client_errors
        self.on_malformed = on_malformed
        self.connection: Connection | None = None

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._fail_body_on_parser_error()

    def _fail_body_on_parser_error(self) -> None:
        """Fail the body a handler is reading when the parser gave up on it.

        aiohttp 3.14's C parser, on a framing error inside a request body
        (an invalid chunk size after the headers), queues a 400 for after
        the request but leaves the body the handler is reading without data,
        end or error, and the request hangs for good (its Python parser
        fails the body with RequestPayloadError: this does the same).
        """
        request = getattr(self, "_current_request", None)
        queued = getattr(self, "_messages", None)
        if request is None or not queued or isinstance(queued[-1][0], RawRequestMessage):
            return
        body = request.content
        if not body.is_eof() and body.exception() is None:
            failure = getattr(queued[-1][0], "exc", None)
            reason = _parser_reason(None, failure if isinstance(failure, Exception) else None)
            body.set_exception(web.RequestPayloadError(reason))

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        """A traceback for our bugs; one rate-limited line for what a client sent."""
        exc = kwargs.get("exc_info")
        if isinstance(exc, _CLIENT_FAULTS):
            self.on_malformed()
            self.client_errors.info(
                "malformed HTTP from %s: %s", self._peer(), _parser_reason(None, exc)
            )
            return
        super().log_exception(*args, **kwargs)

    def _peer(self) -> str:
        peer = self.peername
        return str(peer[0]) if isinstance(peer, tuple) else "unknown"

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            code, text = _server_error(self, request, status, exc)
        else:
            self.on_malformed()
            code = "malformed_http"
            text = f"malformed HTTP request: {_parser_reason(message, exc)}"
            self.client_errors.info("malformed HTTP from %s: %s", request.remote, text)
        if request.writer.output_size > 0:
            # Part of a response went out already: the connection is broken.
            raise ConnectionError("response already started; cannot send an error")
        response = web.Response(
            status=status, text=_error_body(code, text), content_type="application/json"
        )
        # These answers skip the app's on_response_prepare, which sets the
        # same header on all others (node/app.py).
        response.headers["Server"] = SERVER_HEADER
        response.force_close()
        return response


# Exceptions that come from what a client sent, not from the node.
_CLIENT_FAULTS = (web.RequestPayloadError, HttpProcessingError, ConnectionError)


def _parser_reason(message: str | None, exc: BaseException | None) -> str:
    """aiohttp's reason on one short line, without the input it quotes below it."""
    if message is None and isinstance(exc, HttpProcessingError):
        message = exc.message
    text = message or (str(exc) if exc is not None else "") or "bad request"
    text = text.removeprefix("400, message:")
    first_paragraph = text.split("\n\n", 1)[0]
    reason = " ".join(first_paragraph.split()).rstrip(":")
    if len(reason) > MAX_ERROR_MESSAGE_CHARS:
        reason = reason[:MAX_ERROR_MESSAGE_CHARS] + "..."
    return reason


@web.middleware
async def malformed_body_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """A body aiohttp's parser refused half-way (bad chunk framing): 400 ``malformed_http``.

    Innermost, so the app's own error handling sees a response, not an
    exception it would take for the node's bug.
    """
    try:
        return await handler(request)
    except (web.RequestPayloadError, HttpProcessingError) as exc:
        # The C parser's error arrives as RequestPayloadError, the Python
        # parser's as the TransferEncodingError it raised.
        response = web.Response(
            status=400,
            text=_error_body(
                "malformed_http", f"malformed HTTP request body: {_parser_reason(None, exc)}"
            ),
            content_type="application/json",
        )
        response.headers["Server"] = SERVER_HEADER
        response.force_close()
        return response


def _server_error(
    handler: NodeRequestHandler, request: BaseRequest, status: int, exc: BaseException | None
) -> tuple[str, str]:
    if status == 504:
        handler.logger.warning("request handler for %s timed out", request.path)
        return "unavailable", "the request timed out"
    # Our bug, not the client's: the traceback is what fixes it.
    handler.logger.error("error handling request from %s", request.remote, exc_info=exc)
    return "internal", "internal error"
