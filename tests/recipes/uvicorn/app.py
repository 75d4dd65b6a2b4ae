"""A plain ASGI app, run by uvicorn itself; answers
with its pid (the harness counts the workers by it)."""
import os

BODY = f"uvicorn worker {os.getpid()}\n".encode()


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY})
