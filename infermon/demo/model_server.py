"""The demo's model server, in the demo's own process: KServe's v1 and v2 inference routes
over the wine classifier, served by uvicorn in a thread.

- v1: `POST /v1/models/{name}:predict` with `{"instances": [{feature: value, ...}, ...]}`
  (or lists of the numeric features in order) answers `{"predictions": [class, ...]}`.
- v2: `POST /v2/models/{name}/infer` with one tensor per feature (`shape [n]`) answers one
  output, `prediction`, so both protocols give the monitor the same columns.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from infermon.demo.data import MODEL_NAME, WineData

READY_TIMEOUT_S = 10.0


class BadInput(ValueError):
    """A request that is not what the route takes: answered 400 with the reason."""


def create_app(data: WineData) -> FastAPI:
    app = FastAPI(title="infermon demo model", docs_url=None, redoc_url=None)

    def known(name: str) -> JSONResponse | None:
        if name != MODEL_NAME:
            return JSONResponse({"error": f"no model {name[:100]!r}"}, status_code=404)
        return None

    @app.get("/v1/models/{name}")
    def v1_status(name: str) -> Any:
        return known(name) or {"name": name, "ready": True}

    @app.get("/v2/models/{name}/ready")
    def v2_ready(name: str) -> Any:
        return known(name) or {"name": name, "ready": True}

    @app.post("/v1/models/{name}:predict")
    async def v1_predict(name: str, request: Request) -> Any:
        if missing := known(name):
            return missing
        try:
            rows = v1_rows(await _json(request), data.features)
        except BadInput as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        return {"predictions": data.predict(rows)}

    @app.post("/v2/models/{name}/infer")
    async def v2_infer(name: str, request: Request) -> Any:
        if missing := known(name):
            return missing
        try:
            body = await _json(request)
            predictions = data.predict(_checked(v2_rows(body), data.features))
        except BadInput as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        output = {"name": "prediction", "shape": [len(predictions)], "datatype": "INT64",
                  "data": predictions}  # fmt: skip
        return {"model_name": name, "id": body.get("id", ""), "outputs": [output]}

    return app


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise BadInput("the body is not JSON") from None
    if not isinstance(body, dict):
        raise BadInput("the body must be a JSON object")
    return body


def v1_rows(body: dict[str, Any], features: tuple[str, ...]) -> list[dict[str, Any]]:
    instances = body.get("instances")
    if not isinstance(instances, list):
        raise BadInput('give {"instances": [...]}')
    rows = []
    for instance in instances:
        if isinstance(instance, list) and len(instance) == len(features):
            instance = dict(zip(features, instance, strict=True))
        if not isinstance(instance, dict):
            raise BadInput(f"an instance is an object or a list of {len(features)} numbers")
        rows.append(instance)
    return _checked(rows, features)


def v2_rows(body: dict[str, Any]) -> list[dict[str, Any]]:
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadInput('give {"inputs": [{"name", "shape", "datatype", "data"}, ...]}')
    columns: dict[str, list[Any]] = {}
    for tensor in inputs:
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise BadInput("each input is an object with a name")
        values = tensor.get("data")
        if not isinstance(values, list):
            raise BadInput(f"input {tensor['name'][:100]!r} has no data list")
        columns[tensor["name"]] = values
    sizes = {len(values) for values in columns.values()}
    if len(sizes) != 1:
        raise BadInput("every input must hold one value per instance")
    return [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def _checked(rows: list[dict[str, Any]], features: tuple[str, ...]) -> list[dict[str, Any]]:
    for row in rows:
        for name in features:
            value = row.get(name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise BadInput(f"feature {name!r} must be a number, not {value!r}"[:200])
    return rows


class ModelServer:
    """uvicorn on a socket bound before anything started, in a thread of the demo."""

    def __init__(self, data: WineData, listener: socket.socket) -> None:
        config = uvicorn.Config(
            create_app(data), log_level="warning", access_log=False, server_header=False
        )
        self._server = uvicorn.Server(config)
        self._listener = listener
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [listener]}, name="model", daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        ready = threading.Event()
        for _ in range(int(READY_TIMEOUT_S / 0.05)):
            if self._server.started or not self._thread.is_alive():
                break
            ready.wait(0.05)
        if not self._server.started:
            raise SystemExit("infermon demo: the model server did not start")

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(READY_TIMEOUT_S)
        self._listener.close()
