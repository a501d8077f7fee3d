"""A small OpenAI-compatible HTTP server for the faults a real one cannot be made to show
on demand: a hang past the timeout, a 500, a malformed reply, and slowness on purpose (to
kill a worker mid-job). Everything else is tested against the real llama.cpp server."""

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# A body a server might leak (an internal stack trace): Chosen must never repeat it.
INTERNAL_BODY = "Traceback: db at 10.0.0.7:5432 password=hunter2"


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # a client that hung up (timed out, or its worker was killed) is the point here


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing and answers with ``_send``."""

    def log_message(self, *args):
        pass

    def _send(self, status, body: bytes, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class LocalServer:
    """A real HTTP server on a free port of 127.0.0.1, in a thread; ``url`` is its /v1."""

    def serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = _Server(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class FakeLLM(LocalServer):
    """``mode``: "ok", "timeout" (sleeps ``hang`` seconds), "500", "malformed" (broken
    JSON), "shapeless" (JSON of another shape), "empty" (a blank completion); ``delay``
    slows every answer. ``requests`` counts chat completions received."""

    def __init__(self, mode: str = "ok", delay: float = 0.0, hang: float = 5.0):
        self.mode, self.delay, self.hang = mode, delay, hang
        self.requests = 0
        self.lock = threading.Lock()
        fake = self

        class Handler(QuietHandler):
            def do_GET(self):
                if self.path.rstrip("/").endswith("/models"):
                    body = {"object": "list", "data": [{"id": "fake-model", "object": "model"}]}
                    return self._send(200, json.dumps(body).encode())
                return self._send(404, b"{}")

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                request = json.loads(self.rfile.read(length))
                with fake.lock:
                    fake.requests += 1
                if fake.mode == "timeout":
                    time.sleep(fake.hang)
                    return self._send(200, b"{}")
                if fake.mode == "500":
                    return self._send(500, INTERNAL_BODY.encode(), "text/plain")
                if fake.mode == "malformed":
                    return self._send(200, b'{"choices": [ {"message": ', "application/json")
                if fake.mode == "shapeless":  # JSON, but not a completion's shape
                    return self._send(200, b'{"choices": ["x"], "model": 7}')
                if fake.mode == "empty":
                    request["seed"] = None
                time.sleep(fake.delay)
                said = json.dumps(request["messages"], sort_keys=True) + str(request.get("seed"))
                text = f"Answer {hashlib.sha256(said.encode()).hexdigest()[:12]}."
                if fake.mode == "empty":
                    text = "  "
                body = {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": request["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }
                return self._send(200, json.dumps(body).encode())

        self.serve(Handler)


class FakeStreamingLLM(LocalServer):
    """A streaming chat-completions server (``stream=True``: server-sent events, as OpenAI's
    and llama.cpp's): ``tokens`` pieces per reply, one every ``interval`` seconds after a
    ``first_delay``. ``break_after`` (or ``broken`` set later) drops the connection after
    that many pieces, as a server that stops mid-reply; ``down`` refuses every request
    (closes the connection at once). ``requests`` counts completions asked for."""

    def __init__(self, tokens: int = 20, interval: float = 0.01, first_delay: float = 0.0):
        self.tokens, self.interval, self.first_delay = tokens, interval, first_delay
        self.break_after: int | None = None
        self.down = False
        # A conversation that mentions ``slow_word`` waits ``slow_seconds`` before its first
        # piece (one expert's slow generation beside another's quick one).
        self.slow_word, self.slow_seconds = "SLOW", 0.0
        self.requests = 0
        self.streaming = self.peak = 0  # replies being streamed now, and at most
        self.lock = threading.Lock()
        fake = self

        class Handler(QuietHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                request = json.loads(self.rfile.read(length))
                with fake.lock:
                    fake.requests += 1
                if fake.down:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                said = json.dumps(request["messages"], sort_keys=True) + str(request.get("seed"))
                tag = hashlib.sha256(said.encode()).hexdigest()[:8]
                if not request.get("stream"):
                    body = {
                        "id": "chatcmpl-1",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": request["model"],
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": f"Reply {tag}."},
                                "finish_reason": "stop",
                            }
                        ],
                    }
                    return self._send(200, json.dumps(body).encode())
                with fake.lock:
                    fake.streaming += 1
                    fake.peak = max(fake.peak, fake.streaming)
                try:
                    self._stream(request, tag)
                finally:
                    with fake.lock:
                        fake.streaming -= 1

            def _stream(self, request, tag):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                time.sleep(fake.first_delay)
                if fake.slow_word in json.dumps(request["messages"]):
                    time.sleep(fake.slow_seconds)
                for n in range(fake.tokens):
                    if fake.break_after is not None and n >= fake.break_after:
                        self.connection.shutdown(2)  # the server went away mid-reply
                        return
                    piece = f"Reply {tag} " if n == 0 else f"word{n} "
                    self._event(request, {"role": "assistant", "content": piece}, None)
                    time.sleep(fake.interval)
                self._event(request, {}, "stop")
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

            def _event(self, request, delta, finish):
                chunk = {
                    "id": "chatcmpl-1",
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": request["model"],
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()

        self.serve(Handler)
