"""A local model server on 127.0.0.1 speaking the Anthropic Messages API and the OpenAI
chat-completions API, answering from a script, so that the real SDKs are tested end to end.

A script is a list of steps, one per request (the last repeats): a string is the reply's
text; ("status", code) an error response; ("sleep", s) a reply that comes too late;
("raw", body) a 200 whose body is not the API's JSON.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ERRORS = {429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}


class Server:
    def __init__(self, script: list, input_tokens: int = 1200, output_tokens: int = 800):
        self.script, self.requests = list(script), []
        self.tokens = (input_tokens, output_tokens)
        handler = type("Handler", (_Handler,), {"server_state": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def next_step(self):
        n = len(self.requests) - 1
        return self.script[min(n, len(self.script) - 1)]

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    server_state: Server

    def log_message(self, *args) -> None:  # keep pytest's output clean
        pass

    def _send(self, code: int, body: bytes, headers: dict | None = None) -> None:
        try:
            self.send_response(code)
            self.send_header("content-type", "application/json")
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
            pass

    def do_POST(self) -> None:
        state = self.server_state
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        state.requests.append({"path": self.path, "body": body,
                               "headers": {k.lower(): v for k, v in self.headers.items()}})
        step = state.next_step()
        anthropic = self.path.endswith("/messages")
        if isinstance(step, tuple) and step[0] == "status":
            code = step[1]
            err = ({"type": "error", "error": {"type": ERRORS.get(code, "api_error"),
                                               "message": "scripted"}}
                   if anthropic else {"error": {"message": "scripted", "type": "server_error"}})
            self._send(code, json.dumps(err).encode(), {"retry-after-ms": "20"})
            return
        if isinstance(step, tuple) and step[0] == "raw":
            self._send(200, step[1].encode())
            return
        if isinstance(step, tuple) and step[0] == "sleep":
            time.sleep(step[1])
            step = "too late"
        text = step(body) if callable(step) else step
        n_in, n_out = state.tokens
        if anthropic:
            reply = {"id": f"msg_{len(state.requests)}", "type": "message", "role": "assistant",
                     "model": body["model"], "content": [{"type": "text", "text": text}],
                     "stop_reason": "end_turn", "stop_sequence": None,
                     "usage": {"input_tokens": n_in, "output_tokens": n_out}}
        else:
            reply = {"id": f"cmpl-{len(state.requests)}", "object": "chat.completion",
                     "created": 0, "model": body["model"],
                     "choices": [{"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": text}}],
                     "usage": {"prompt_tokens": n_in, "completion_tokens": n_out,
                               "total_tokens": n_in + n_out}}
        self._send(200, json.dumps(reply).encode())
