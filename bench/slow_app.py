"""A local application under test that takes a fixed time per answer: `python bench/slow_app.py PORT DELAY`."""

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BODY = json.dumps({"output": "ok", "metrics": {"latency_ms": 500}}).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    delay = 0.5

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        time.sleep(self.delay)
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)


class Server(ThreadingHTTPServer):
    request_queue_size = 1024
    daemon_threads = True


if __name__ == "__main__":
    port, Handler.delay = int(sys.argv[1]), float(sys.argv[2])
    server = Server(("127.0.0.1", port), Handler)
    print("ready", flush=True)
    server.serve_forever()
