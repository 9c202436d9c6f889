"""/health latency while the server takes a 15 MB request (issue 17: it once froze /health for 11 s).

Two shapes of 15 MB body, each posted to /v1/compare while another client polls /health:
- "one 15 MB string": one pair whose response is 15 MB (over the context by its characters alone:
  parsed, never tokenized);
- "15 MB of pairs": ordinary pairs (~7.5 kB each) adding up to 15 MB: parsed, rendered and tokenized
  for real, then queued (the client hangs up once its request is admitted, so the model's minutes of
  work on them are not part of the figure).
Reported per shape: /health p50 / p99 / max latency (ms) over the polls made while the big request
was in the server, how many polls that was and how many took over 100 ms.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request

BODY_MB = 15


def health_ms(url: str) -> float:
    t = time.perf_counter()
    with urllib.request.urlopen(url + "/health", timeout=120) as response:
        response.read()
    return 1000 * (time.perf_counter() - t)


def big_bodies(mb: int = BODY_MB) -> dict[str, bytes]:
    size = mb * 1_000_000
    one = {"pairs": [{"instruction": "Write a poem.", "response_1": "rain " * (size // 5), "response_2": "sun"}]}
    pair = {"instruction": "Write a short story about a lighthouse keeper.",
            "response_1": ("The lamp turned over the black water. " * 100)[:3700],
            "response_2": ("Waves broke on the rocks below the tower. " * 100)[:3700]}
    many = {"pairs": [dict(pair, id=i) for i in range(size // len(json.dumps(pair)))]}
    return {"one 15 MB string": json.dumps(one).encode(), "15 MB of pairs": json.dumps(many).encode()}


def send_and_wait(port: int, body: bytes, done: threading.Event, hang_up_when) -> None:
    """POST body; return when the answer arrives, or when hang_up_when() says the request is admitted."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /v1/compare HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        sock.settimeout(0.05)
        while True:
            try:
                if sock.recv(65536):
                    break
            except socket.timeout:
                if hang_up_when():
                    break
    done.set()


def measure(url: str, queued_prompts) -> dict:
    """{shape: {"health_p50_ms", "health_max_ms", "polls", "request_s"}}; queued_prompts() reads the
    server's queue (the many-pairs request counts as taken once its prompts are queued)."""
    port = int(url.rsplit(":", 1)[1])
    rows = {}
    for shape, body in big_bodies().items():
        health_ms(url)
        done = threading.Event()
        t0 = time.perf_counter()
        sender = threading.Thread(target=send_and_wait, args=(port, body, done, lambda: queued_prompts() > 0))
        sender.start()
        polls = []
        while not done.is_set():
            polls.append(health_ms(url))
            time.sleep(0.01)
        sender.join()
        request_s = time.perf_counter() - t0
        polls.sort()
        rows[shape] = {"health_p50_ms": round(polls[len(polls) // 2], 1) if polls else None,
                       "health_p99_ms": round(polls[min(len(polls) - 1, round(0.99 * (len(polls) - 1)))], 1)
                       if polls else None,
                       "health_max_ms": round(polls[-1], 1) if polls else None, "polls": len(polls),
                       "polls_over_100_ms": sum(p > 100 for p in polls),
                       "request_s": round(request_s, 2), "body_mb": round(len(body) / 1e6, 1)}
        # Let the server drop the gone client's queue before the next shape.
        deadline = time.monotonic() + 120
        while queued_prompts() > 0 and time.monotonic() < deadline:
            time.sleep(0.1)
    return rows
