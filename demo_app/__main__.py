import argparse
import logging
import os

from demo_app.server import make_server, secret_file


def main():
    parser = argparse.ArgumentParser(description="The demo application under test.")
    parser.add_argument("--host", default=os.environ.get("DEMO_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("DEMO_PORT", 8100)))
    parser.add_argument("--async-fraction", type=float, default=0.3, help="share of tests answered 202 + callback")
    parser.add_argument("--speed", type=float, default=0.1, help="share of the simulated latency actually slept")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="demo_app %(levelname)s %(message)s")
    server = make_server(args.host, args.port, async_fraction=args.async_fraction, speed=args.speed)
    print(
        f"Demo application listening on http://{args.host}:{args.port}/webhook (secret from $DEMO_WEBHOOK_SECRET or {secret_file()})",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
