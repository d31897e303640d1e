"""A loopback stand-in for an OpenAI-compatible server, for the fault shapes a real vLLM server
cannot be made to produce on demand: 429 with Retry-After, 5xx, a 400 naming response_format, and
replies whose content is malformed JSON. Every other behaviour is tested against vLLM's own server
(tests/test_api_vllm.py).

A scenario function maps (request body, how many requests came before) to (status, headers,
reply body); the server records every request with its headers and arrival time."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = tuple[int, dict[str, str], Any]


def completion(content: str, *, model: str = "stub", prompt_tokens: int = 7) -> dict[str, Any]:
    """A chat.completion body the way OpenAI's API and vLLM write it."""
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(content.split()),
            "total_tokens": prompt_tokens + len(content.split()),
        },
    }


def error(status: int, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "stub_error", "code": status}}


class StubServer:
    """ThreadingHTTPServer on 127.0.0.1 answering POST /v1/chat/completions by a scenario."""

    def __init__(self, scenario: Callable[[dict[str, Any], int], Reply]) -> None:
        self.scenario = scenario
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with stub._lock:
                    count = len(stub.requests)
                    stub.requests.append(
                        {
                            "body": body,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "t": time.monotonic(),
                        }
                    )
                status, headers, reply = stub.scenario(body, count)
                data = reply if isinstance(reply, bytes) else json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
