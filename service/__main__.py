"""``python -m service [--host H] [--port P] [--workers N]``: run the HTTP API with uvicorn."""

from __future__ import annotations

import argparse
import os

KEEP_ALIVE_S = 5
MAX_HEADER_BYTES = 64 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m service", description="ragfirst HTTP API")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1, help="processes; they share nothing but the store")
    parser.add_argument("--log-level", default=None, help="overrides RAG_LOG_LEVEL (default info)")
    args = parser.parse_args()
    if args.log_level:
        # Through the environment, so that every worker process's create_app() sees it too.
        os.environ["RAG_LOG_LEVEL"] = args.log_level
    import uvicorn

    uvicorn.run(
        "service.api.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        # create_app() configures logging (JSON with request ids) and writes its own access lines.
        log_config=None,
        access_log=False,
        # An idle keep-alive connection is closed after this many seconds; a request body that
        # trickles in is timed by the app itself (RAG_REQUEST_BODY_TIMEOUT_S, service/api/middleware.py).
        timeout_keep_alive=KEEP_ALIVE_S,
        # Request headers over this many bytes are refused before the app sees them.
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        log_level=(args.log_level or os.environ.get("RAG_LOG_LEVEL") or "info").lower(),
    )


if __name__ == "__main__":
    main()
