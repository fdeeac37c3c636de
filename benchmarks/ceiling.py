"""The ceilings keycask is measured against: a handler that answers ``{}``
without doing anything, on the same server stack.

    python benchmarks/ceiling.py --stack starlette --port 9700
    python benchmarks/ceiling.py --stack asgi --port 9701
    python benchmarks/ceiling.py --stack keycask-http --port 9702
"""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn


async def bare_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/x-amz-json-1.1"),
                (b"content-length", b"2"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"{}"})


def starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def handler(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({})

    return Starlette(routes=[Route("/", handler, methods=["POST"])])


def keycask_http(port: int) -> None:
    """The same bare handler on keycask's own HTTP server: the ceiling of the
    server layer keycask actually runs on."""
    import asyncio
    import signal

    import uvloop

    from keycask.http.messages import Request, Response
    from keycask.http.server import HttpServer

    empty = Response(200, b"{}", ((b"content-type", b"application/x-amz-json-1.1"),))

    async def handler(request: Request) -> Response:
        return empty

    async def serve() -> None:
        server = HttpServer(handler, handler)
        await server.start("127.0.0.1", port)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await server.shutdown(1.0)

    uvloop.run(serve())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stack", choices=["starlette", "asgi", "keycask-http"], required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    if args.stack == "keycask-http":
        keycask_http(args.port)
        return
    app = starlette_app() if args.stack == "starlette" else bare_asgi
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        lifespan="off",
    )


if __name__ == "__main__":
    main()
