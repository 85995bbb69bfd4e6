r"""The exported model behind TensorFlow Serving's REST API, and a page to draw a digit.

The routes (kerasnets-serve's help lists them) are TensorFlow Serving's status,
metadata and :predict paths with its request, response and error formats (errors
as {"error": "..."} with a 4xx status), so a client written against this server
works unchanged against TensorFlow Serving; plus `/` (the page), `/draw` (a
drawing, prepared exactly as kerasnets-predict prepares a file: kerasnets.data.images)
and `/inside` (the same, with what the network sees in it: kerasnets.serving.inside).
The served version is the watcher's newest (versions.ModelWatcher); a request in
flight finishes on the version it started with. Inference runs in a worker
thread, or on the event loop for a runtime whose call is shorter than the hop to
the thread; with batching, requests that arrive while the model is busy run
together as one batch. Bodies over `max_request_bytes` are refused
with 413. Built on Starlette (ASGI); `serve()` runs it under uvicorn, on a socket
it binds itself, until the process is stopped (kerasnets-serve is that one call,
so a notebook or another program serves exactly as the command does).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib.resources
import json
import os
import socket
import threading
from typing import Callable

import numpy as np
from starlette.applications import Starlette
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from kerasnets import errors
from kerasnets.data import images
from kerasnets.serving import export, inside, rest_formats, runtimes, versions


class Batcher:
    """Runs predictions in one worker thread, or with `inline` on the event loop itself;
    with `enabled`, requests that queue up while a call runs are concatenated into one
    call (a batch costs little more than one image: see docs/performance.md) and their
    results split again."""

    def __init__(self, enabled: bool = True, max_batch: int = 256, inline: bool = False):
        self.enabled, self.max_batch, self.inline = enabled, max_batch, inline
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="inference")
        self.queue: asyncio.Queue | None = None
        self.task: asyncio.Task | None = None

    async def predict(self, model: versions.ServedModel, pixels: np.ndarray) -> dict:
        loop = asyncio.get_running_loop()
        if not self.enabled:
            return await self._call(model.predict, pixels)
        if self.task is None or self.task.done():
            self.queue = asyncio.Queue()
            self.task = asyncio.create_task(self._run())
        future = loop.create_future()
        await self.queue.put((model, pixels, future))
        return await future

    async def _run(self) -> None:
        while True:
            pending = [await self.queue.get()]
            size = len(pending[0][1])
            while not self.queue.empty() and size < self.max_batch:
                pending.append(self.queue.get_nowait())
                size += len(pending[-1][1])
            for model in {id(item[0]): item[0] for item in pending}.values():
                group = [item for item in pending if item[0] is model]
                try:
                    outputs = await self._call(model.predict,
                                               np.concatenate([g[1] for g in group]))
                except Exception as e:  # noqa: BLE001 -- delivered to each waiting request
                    for _, _, future in group:
                        if not future.done():  # a request cancelled meanwhile has gone
                            future.set_exception(e)
                    continue
                start = 0
                for _, pixels, future in group:
                    end = start + len(pixels)
                    if not future.done():
                        future.set_result({k: v[start:end] for k, v in outputs.items()})
                    start = end

    async def _call(self, predict, pixels: np.ndarray) -> dict:
        """predict(pixels) on the event loop itself (`inline`), or in the inference thread."""
        if self.inline:
            return predict(pixels)
        return await asyncio.get_running_loop().run_in_executor(self.executor, predict, pixels)

    def close(self) -> None:
        if self.task:
            self.task.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)


class Segment(Convertor):
    """A model name or version: one path segment without ':' (":predict" is a method)."""

    regex = "[^/:]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


class Endpoints:
    """The request handlers, over one watcher (the versions) and one batcher (inference)."""

    def __init__(self, watcher: versions.ModelWatcher, model_name: str, max_request_bytes: int,
                 batcher: Batcher):
        self.watcher, self.model_name = watcher, model_name
        self.max_request_bytes, self.batcher = max_request_bytes, batcher
        self.inside_for: tuple[str, inside.Inside] | None = None  # (version path, its view)
        self.inside_lock = threading.Lock()
        page = importlib.resources.files(__package__).joinpath("draw.html").read_text("utf-8")
        self.page = page.replace("{{MODEL_NAME}}", model_name)

    def served(self, request: Request) -> versions.ServedModel:
        """The version a request names (or the newest), or a RequestError like TF Serving's."""
        name = request.path_params["name"]
        version = request.path_params.get("version")
        wanted = f"Specific({name}, {version})" if version else f"Latest({name})"
        model = self.watcher.current
        if name != self.model_name or model is None or (version and version != str(model.version)):
            raise rest_formats.RequestError(f"Servable not found for request: {wanted}", 404)
        return model

    async def body(self, request: Request) -> bytes:
        """The request body, refused with 413 once it is over the limit."""
        limit = self.max_request_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise rest_formats.RequestError(f"request body of {int(declared):,} bytes is over the "
                                       f"limit of {limit:,} bytes", 413)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise rest_formats.RequestError(f"request body is over the limit of {limit:,} bytes",
                                           413)
            chunks.append(chunk)
        return b"".join(chunks)

    async def status(self, request: Request) -> Response:
        return JSONResponse(rest_formats.version_status(self.served(request)))

    async def metadata(self, request: Request) -> Response:
        return JSONResponse(rest_formats.metadata(self.model_name, self.served(request)))

    async def predict(self, request: Request) -> Response:
        model = self.served(request)
        images_in, row = rest_formats.parse_predict_request(await self.body(request))
        outputs = await self.batcher.predict(model, images_in)
        return Response(json.dumps(rest_formats.format_predict_response(outputs, row)),
                        media_type="application/json")

    async def drawing(self, request: Request) -> tuple[versions.ServedModel, np.ndarray]:
        """The served version and the request's drawing (a PNG) brought to MNIST's form, as
        kerasnets-predict prepares a file; a 400 for one that is not an image or is blank."""
        model = self.watcher.current
        if model is None:
            raise rest_formats.RequestError("no model loaded yet", 503)
        raw = await self.body(request)
        try:
            digit = await asyncio.get_running_loop().run_in_executor(
                None, lambda: images.to_mnist(images.decode_image(raw)))
        except images.ImageError as e:
            raise rest_formats.RequestError(f"drawing: {e}") from None
        return model, digit

    async def draw(self, request: Request) -> Response:
        model, digit = await self.drawing(request)
        outputs = await self.batcher.predict(model, digit[None])
        return JSONResponse({"digit": int(outputs["classes"][0]),
                             "probabilities": outputs["probabilities"][0].tolist(),
                             "prepared": digit.tolist(), "version": str(model.version)})

    async def inside(self, request: Request) -> Response:
        """What the network sees in a drawing (kerasnets.serving.inside): the float LiteRT file's
        answer, each conv block's feature maps, the occlusion saliency and the layer table;
        computed in a worker thread by interpreters of its own, so serving never waits."""
        model, digit = await self.drawing(request)

        def answer() -> str:
            seen = self.inside_view(model).look(digit)
            return json.dumps({**seen, "prepared": digit.tolist(), "version": str(model.version)})

        try:
            text = await asyncio.get_running_loop().run_in_executor(None, answer)
        except inside.InsideUnavailableError as e:
            raise rest_formats.RequestError(f"inside: {e}", 409) from None
        return Response(text, media_type="application/json")

    def inside_view(self, model: versions.ServedModel) -> inside.Inside:
        """The served version's LiteRT file opened for the inside view (once per version)."""
        with self.inside_lock:
            if self.inside_for is None or self.inside_for[0] != model.path:
                self.inside_for = (model.path, inside.Inside(model.path))
            return self.inside_for[1]

    async def index(self, request: Request) -> Response:
        return HTMLResponse(self.page)

    def routes(self) -> list[Route]:
        model, version = "/v1/models/{name:segment}", "/versions/{version:segment}"
        return [
            Route(f"{model}:predict", self.predict, methods=["POST"]),
            Route(f"{model}{version}:predict", self.predict, methods=["POST"]),
            Route(f"{model}/metadata", self.metadata, methods=["GET"]),
            Route(f"{model}{version}/metadata", self.metadata, methods=["GET"]),
            Route(f"{model}{version}", self.status, methods=["GET"]),
            Route(model, self.status, methods=["GET"]),
            Route("/draw", self.draw, methods=["POST"]),
            Route("/inside", self.inside, methods=["POST"]),
            Route("/", self.index, methods=["GET"]),
        ]


async def _request_error(request: Request, exc: rest_formats.RequestError) -> Response:
    return JSONResponse({"error": str(exc)}, status_code=exc.status)


async def _internal_error(request: Request, exc: Exception) -> Response:
    """Anything unexpected still answers in the API's JSON (500), never a plain-text page."""
    return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}"},
                        status_code=500)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    return JSONResponse({"error": f"{exc.detail}: {request.method} {request.url.path}"},
                        status_code=exc.status_code)


def create_app(watcher: versions.ModelWatcher, model_name: str = "mnist",
               max_request_bytes: int = 4 << 20, batching: bool = True,
               inline: bool = False) -> Starlette:
    """The Starlette application: TensorFlow Serving's REST API, the page and /draw.
    `inline`: inference on the event loop itself, for runtimes whose call costs less than
    the hop to a worker thread."""
    register_url_convertor("segment", Segment())  # Starlette's registry; the same each time
    batcher = Batcher(enabled=batching, inline=inline)

    @contextlib.asynccontextmanager
    async def lifespan(_):
        yield
        batcher.close()

    endpoints = Endpoints(watcher, model_name, max_request_bytes, batcher)
    return Starlette(routes=endpoints.routes(), lifespan=lifespan, exception_handlers={
        rest_formats.RequestError: _request_error, HTTPException: _http_error,
        Exception: _internal_error})


class ServeError(errors.KerasnetsError, RuntimeError):
    """The server cannot start: no version loads, or the address cannot be had."""


def serve(model_base: str, host: str = "127.0.0.1", port: int = 8501,
          runtime: str = runtimes.SERVE_RUNTIME,
          *, model_name: str = "mnist", max_request_bytes: int = 4 << 20,
          poll_seconds: float = 1.0, batching: bool = True, inference: str = "auto",
          log: Callable[[str], None] = print) -> None:
    """Serves the newest version under `model_base` in `runtime` on host:port until the
    process is stopped (SIGINT or SIGTERM: uvicorn's graceful shutdown).

    The model loads before the port is bound, so a port is never held by a server with
    nothing to serve; once listening it logs one line with the URL (port 0 takes a free
    port, and that line is how a caller learns it). `inference`: auto, thread or
    event_loop (runs_inline). Raises ServeError when no version loads or the address
    cannot be had.
    """
    if runtime == "tensorflow":
        export.tf_logger_quiet()  # loading a SavedModel logs at INFO
    watcher = versions.ModelWatcher(model_base, poll_seconds, log, runtime)
    watcher.load_first()
    if watcher.current is None:
        raise ServeError(f"no version under {os.path.abspath(model_base)} could be loaded "
                         "(see above)")
    sock = _listen_or_fail(host, port)
    application = create_app(watcher, model_name, max_request_bytes, batching,
                             runs_inline(inference, runtime))
    watcher.start()
    _announce(log, model_name, watcher.current.version, runtime, url_of(host, sock), host)
    try:
        _run_uvicorn(application, sock)
    finally:
        watcher.stop()


def runs_inline(inference: str, runtime: str) -> bool:
    """Whether model calls run on the event loop: when asked (event_loop), or by default
    (auto) for the LiteRT runtimes, whose call is shorter than the hop to a worker thread
    (docs/serving.md has both measured)."""
    return inference == "event_loop" or (inference == "auto" and runtime.startswith("litert"))


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port; OSError if it cannot be had. Bound here rather than
    by uvicorn so that the port taken for port 0 is known before serving starts."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)  # connections wait in the backlog until the server accepts them
    except OSError:
        sock.close()
        raise
    return sock


def _listen_or_fail(host: str, port: int) -> socket.socket:
    """listen(), with a busy or unknown address as one ServeError line."""
    try:
        return listen(host, port)
    except OSError as e:
        raise ServeError(f"cannot listen on {host}:{port}: {e.strerror}") from None


def url_of(host: str, sock: socket.socket) -> str:
    """The server's base URL: the port the socket got, an IPv6 address in brackets."""
    return f"http://{host if ':' not in host else f'[{host}]'}:{sock.getsockname()[1]}"


def _announce(log: Callable[[str], None], model_name: str, version: int, runtime: str,
              url: str, host: str) -> None:
    """The start line (callers wait for its URL), and a warning when others can reach it."""
    log(f"kerasnets-serve: {model_name} version {version} ({runtime}) on {url} "
        f"(REST: {url}/v1/models/{model_name}; draw a digit: {url}/)")
    if host not in ("127.0.0.1", "localhost", "::1"):
        log(f"kerasnets-serve: listening on {host}: reachable from other machines, without "
            "authentication")


def _run_uvicorn(application: Starlette, sock: socket.socket) -> None:
    """uvicorn on the bound socket, quiet (errors answer in JSON; no access log), until
    stopped; requests in flight get 5 seconds to finish."""
    import uvicorn

    config = uvicorn.Config(application, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])
