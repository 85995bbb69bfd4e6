r"""kerasnets-serve: the exported model behind TensorFlow Serving's REST API, and a page
to draw a digit.

  kerasnets-serve --model_base=savedmodels/mnist [--model_name=mnist] [--port=8501]

  GET  /v1/models/mnist                        version status
  GET  /v1/models/mnist/metadata               the signature (its SignatureDef)
  POST /v1/models/mnist:predict                {"instances": [...]} or {"inputs": ...}
  POST /v1/models/mnist/versions/1:predict     the same, naming the version
  GET  /                                       a page to draw a digit
  POST /draw                                   a PNG of a drawing -> the digit

The API is TensorFlow Serving's (the same paths, request and response formats,
errors as {"error": "..."} with a 4xx status), so a client written against this
server works unchanged against TensorFlow Serving. Like TensorFlow Serving it
polls --model_base and switches to a newly exported version; a request in flight
finishes on the version it started with. Inference runs in a worker thread, off
the event loop; with --batching (default), requests that arrive while the model
is busy are run together as one batch. A drawing is prepared exactly as
kerasnets-predict prepares an image file (kerasnets.predict).

Safe defaults: it binds 127.0.0.1 unless --host says otherwise, refuses bodies
over --max_request_bytes with 413, and serves only its own page and API.
Built on Starlette (ASGI) and uvicorn.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib.resources
import json
import os
import re
import socket
import sys
from typing import Sequence

import numpy as np
from absl import app, flags

from kerasnets import export, predict, serving


class Batcher:
    """Runs predictions in one worker thread; requests that queue up while it is busy are
    concatenated into one call (the signature does ~45,000 images/s at batch 256 and
    ~1,300 at batch 1) and their results split again."""

    def __init__(self, enabled: bool = True, max_batch: int = 256):
        self.enabled, self.max_batch = enabled, max_batch
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="inference")
        self.queue: asyncio.Queue | None = None
        self.task: asyncio.Task | None = None

    async def predict(self, model: serving.ServedModel, images: np.ndarray) -> dict:
        loop = asyncio.get_running_loop()
        if not self.enabled:
            return await loop.run_in_executor(self.executor, model.predict, images)
        if self.task is None:
            self.queue = asyncio.Queue()
            self.task = asyncio.create_task(self._run())
        future = loop.create_future()
        await self.queue.put((model, images, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            pending = [await self.queue.get()]
            size = len(pending[0][1])
            while not self.queue.empty() and size < self.max_batch:
                pending.append(self.queue.get_nowait())
                size += len(pending[-1][1])
            for model in {id(item[0]): item[0] for item in pending}.values():
                group = [item for item in pending if item[0] is model]
                try:
                    outputs = await loop.run_in_executor(
                        self.executor, model.predict, np.concatenate([g[1] for g in group]))
                except Exception as e:  # noqa: BLE001 -- delivered to each waiting request
                    for _, _, future in group:
                        future.set_exception(e)
                    continue
                start = 0
                for _, images, future in group:
                    end = start + len(images)
                    future.set_result({k: v[start:end] for k, v in outputs.items()})
                    start = end

    def close(self) -> None:
        if self.task:
            self.task.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)


def create_app(watcher: serving.ModelWatcher, model_name: str = "mnist",
               max_request_bytes: int = 4 << 20, batching: bool = True):
    """The Starlette application: TensorFlow Serving's REST API, the page and /draw."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.convertors import Convertor, register_url_convertor
    from starlette.routing import Route

    class Segment(Convertor):
        """A model name or version: one path segment without ':' (":predict" is a method)."""
        regex = "[^/:]+"

        def convert(self, value: str) -> str:
            return value

        def to_string(self, value: str) -> str:
            return value

    register_url_convertor("segment", Segment())

    batcher = Batcher(enabled=batching)
    page = importlib.resources.files("kerasnets").joinpath("draw.html").read_text("utf-8")
    page = page.replace("{{MODEL_NAME}}", model_name)

    def error(message: str, status: int = 400) -> Response:
        return JSONResponse({"error": message}, status_code=status)

    def served(request: Request) -> serving.ServedModel:
        """The version a request names (or the newest), or a RequestError like TF Serving's."""
        name = request.path_params["name"]
        version = request.path_params.get("version")
        wanted = f"Specific({name}, {version})" if version else f"Latest({name})"
        model = watcher.current
        if name != model_name or model is None or (version and version != str(model.version)):
            raise serving.RequestError(f"Servable not found for request: {wanted}", 404)
        return model

    async def body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_request_bytes:
            raise serving.RequestError(f"request body of {int(declared):,} bytes is over the "
                                       f"limit of {max_request_bytes:,} bytes", 413)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_request_bytes:
                raise serving.RequestError(f"request body is over the limit of "
                                           f"{max_request_bytes:,} bytes", 413)
            chunks.append(chunk)
        return b"".join(chunks)

    async def status(request: Request) -> Response:
        return JSONResponse(serving.version_status(served(request)))

    async def model_metadata(request: Request) -> Response:
        return JSONResponse(serving.metadata(model_name, served(request)))

    async def predict_endpoint(request: Request) -> Response:
        model = served(request)
        images, row = serving.parse_predict_request(await body(request))
        outputs = await batcher.predict(model, images)
        return Response(json.dumps(serving.format_predict_response(outputs, row)),
                        media_type="application/json")

    async def draw(request: Request) -> Response:
        model = watcher.current
        if model is None:
            raise serving.RequestError("no model loaded yet", 503)
        raw = await body(request)
        loop = asyncio.get_running_loop()
        try:
            digit = await loop.run_in_executor(None, lambda: predict.to_mnist(
                predict.decode_image(raw)))
        except predict.ImageError as e:
            raise serving.RequestError(f"drawing: {e}") from None
        outputs = await batcher.predict(model, digit[None])
        return JSONResponse({"digit": int(outputs["classes"][0]),
                             "probabilities": outputs["probabilities"][0].tolist(),
                             "prepared": digit.tolist(), "version": str(model.version)})

    async def index(request: Request) -> Response:
        return HTMLResponse(page)

    async def request_error(request: Request, exc: serving.RequestError) -> Response:
        return error(str(exc), exc.status)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        return error(f"{exc.detail}: {request.method} {request.url.path}", exc.status_code)

    routes = [
        Route("/v1/models/{name:segment}:predict", predict_endpoint, methods=["POST"]),
        Route("/v1/models/{name:segment}/versions/{version:segment}:predict", predict_endpoint,
              methods=["POST"]),
        Route("/v1/models/{name:segment}/metadata", model_metadata, methods=["GET"]),
        Route("/v1/models/{name:segment}/versions/{version:segment}/metadata", model_metadata,
              methods=["GET"]),
        Route("/v1/models/{name:segment}/versions/{version:segment}", status, methods=["GET"]),
        Route("/v1/models/{name:segment}", status, methods=["GET"]),
        Route("/draw", draw, methods=["POST"]),
        Route("/", index, methods=["GET"]),
    ]
    @contextlib.asynccontextmanager
    async def lifespan(_):
        yield
        batcher.close()

    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={
        serving.RequestError: request_error, HTTPException: http_error})


# --- kerasnets-serve --------------------------------------------------------------------

FLAGS = flags.FLAGS
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def define_flags() -> None:
    flags.DEFINE_string("model_base", "savedmodels/mnist", "The export base: a directory of "
                        "numbered SavedModel versions (kerasnets-export writes them).")
    flags.DEFINE_string("model_name", "mnist", "The model's name in the URLs (/v1/models/NAME).")
    flags.DEFINE_string("host", "127.0.0.1", "Address to listen on (127.0.0.1: this machine "
                        "only; 0.0.0.0 opens it to the network).")
    flags.DEFINE_integer("port", 8501, "Port (0 = any free one; the URL is printed).",
                         lower_bound=0, upper_bound=65535)
    flags.DEFINE_integer("max_request_bytes", 4 << 20, "Largest request body; bigger ones get "
                         "413 (>= 4096).", lower_bound=4096)
    flags.DEFINE_float("poll_seconds", 1.0, "How often --model_base is checked for a new "
                       "version (> 0).", lower_bound=0.01)
    flags.DEFINE_bool("batching", True, "Run requests that arrive together as one batch.")
    flags.register_validator("model_name", lambda v: bool(_MODEL_NAME.match(v or "")),
                             "--model_name must be letters, digits, '_', '.' or '-'")

    @flags.validator("model_base")
    def _has_a_version(value) -> bool:
        if not value or not os.path.isdir(value):
            raise flags.ValidationError(f"--model_base: {value} is not a directory (export a "
                                        "model first: kerasnets-export or make run)")
        if not serving.complete_versions(value):
            raise flags.ValidationError(f"--model_base: {os.path.abspath(value)} holds no "
                                        "numbered SavedModel version (e.g. 1/saved_model.pb)")
        return True


def serve(model_base: str, model_name: str, host: str, port: int, max_request_bytes: int,
          poll_seconds: float, batching: bool) -> int:
    """Loads the newest version, binds host:port, prints the URL and serves until stopped."""
    import uvicorn

    export.tf_logger_quiet()
    log = lambda line: print(line, flush=True)  # noqa: E731
    watcher = serving.ModelWatcher(model_base, poll_seconds, log)
    watcher.poll()
    if watcher.current is None:
        print(f"kerasnets-serve: error: no version under {os.path.abspath(model_base)} could be "
              "loaded (see above)", file=sys.stderr)
        return 1
    try:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)  # connections wait in the backlog until the server accepts them
    except OSError as e:
        print(f"kerasnets-serve: error: cannot listen on {host}:{port}: {e.strerror}",
              file=sys.stderr)
        return 1
    bound = sock.getsockname()[1]
    application = create_app(watcher, model_name, max_request_bytes, batching)
    watcher.start()
    url = f"http://{host if ':' not in host else f'[{host}]'}:{bound}"
    log(f"kerasnets-serve: {model_name} version {watcher.current.version} on {url} "
        f"(REST: {url}/v1/models/{model_name}; draw a digit: {url}/)")
    if host not in ("127.0.0.1", "localhost", "::1"):
        log(f"kerasnets-serve: listening on {host}: reachable from other machines, without "
            "authentication")
    config = uvicorn.Config(application, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=5)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        watcher.stop()
    return 0


def main(argv: Sequence[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    return serve(FLAGS.model_base, FLAGS.model_name, FLAGS.host, FLAGS.port,
                 FLAGS.max_request_bytes, FLAGS.poll_seconds, FLAGS.batching)


def run():
    """Console-script entry point (kerasnets-serve)."""
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
