"""A local application under test that answers every POST after a fixed delay: `python bench/slow_app.py PORT DELAY [STATUS]`.

An asyncio protocol speaking just enough HTTP/1.1 (keep-alive, Content-Length bodies):
about 30 µs of CPU per request, so that with thousands of requests a second it stays
far from being the bottleneck of the engine it measures (bench/run.py reports its CPU).
A thread per connection (http.server) cost ~10× that. STATUS 202 answers "accepted".
"""

import asyncio
import json
import sys

BODY = json.dumps({"output": "ok", "passed": True, "metrics": {"latency_ms": 500}}).encode()


def response(status):
    reason = {200: "OK", 202: "Accepted"}.get(status, "Status")
    body = BODY if status == 200 else b"{}"
    head = f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    return head.encode() + body


class Stub(asyncio.Protocol):
    delay = 0.5
    answer = response(200)

    def connection_made(self, transport):
        self.transport = transport
        self.buffer = bytearray()

    def data_received(self, data):
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            del self.buffer[:total]
            if self.delay:
                asyncio.get_running_loop().call_later(self.delay, self.reply)
            else:
                self.reply()

    def reply(self):
        if not self.transport.is_closing():
            self.transport.write(self.answer)


async def serve(port):
    server = await asyncio.get_running_loop().create_server(Stub, "127.0.0.1", port, backlog=2048)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    Stub.delay = float(sys.argv[2])
    if len(sys.argv) > 3:
        Stub.answer = response(int(sys.argv[3]))
    asyncio.run(serve(int(sys.argv[1])))
