"""The Triton client backend: ``triton://HOST:PORT/MODEL`` is one more backend of the runtime.

The model behind the URL is one of:

* a pose model that groups on the server (``python -m runtime.serve``, or the ensemble of a
  repository written by ``python -m export.triton``): outputs ``persons``, ``scores``, ``count``
  (``runtime.serving``); ``PoseEstimator`` reads the people as they come;
* a graph model (``export.triton --grouping-on client``): outputs ``candidates``, ``heatmap``,
  ``tags``, ``tiles``; ``PoseEstimator`` groups and refines here, as for a local file.

Either way the client sends the network input(s) that ``runtime.preprocess.prepare`` makes, and
maps people back to image pixels itself, so a served run writes what a local run of the same file
writes. The model's metadata comes from its config's ``hrnet_deploy.metadata`` parameter, or from
the ``MODEL_metadata`` companion model that ``runtime.serve`` binds.

HTTP through ``tritonclient[http]`` (the ``serve`` extra); ``?timeout=SECONDS`` at the end of the URL
sets the network timeout (default 120). A server that is down, a model that is not ready, a timeout
or a server that goes away mid-run each give one line naming the URL and what to do.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np

from runtime.backends.base import Backend, TensorSpec, io_specs
from runtime.errors import ModelFault, UserError, require
from runtime.serving import GRAPH_OUTPUTS, METADATA_KEY, METADATA_MODEL_SUFFIX, PEOPLE_OUTPUTS, parse_metadata_json

SCHEME = "triton://"
DEFAULT_TIMEOUT_S = 120.0
_URL = re.compile(r"triton://(?P<host>\[[^\]]+\]|[^:/?#]+):(?P<port>\d{1,5})/(?P<model>[A-Za-z0-9_.-]+)"
                  r"(?:\?timeout=(?P<timeout>\d+(?:\.\d+)?))?")


def is_triton_url(text) -> bool:
    return str(text).startswith(SCHEME)


@dataclass(frozen=True)
class TritonUrl:
    """``triton://HOST:PORT/MODEL[?timeout=SECONDS]``, parsed."""

    host: str
    port: int
    model: str
    timeout: float = DEFAULT_TIMEOUT_S

    @classmethod
    def parse(cls, text: str) -> "TritonUrl":
        match = _URL.fullmatch(str(text))
        if not match or not 0 < int(match["port"]) < 65536:
            raise UserError(f"{text}: not a Triton model address; write triton://HOST:PORT/MODEL, e.g. "
                            f"triton://127.0.0.1:8000/hrnet (HTTP port; optional ?timeout=SECONDS)")
        timeout = float(match["timeout"]) if match["timeout"] else DEFAULT_TIMEOUT_S
        return cls(match["host"], int(match["port"]), match["model"], timeout)

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{SCHEME}{self.endpoint}/{self.model}"


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    # A server-side failure arrives with the server's traceback inside; its last line says what happened.
    if "Traceback" in text:
        text = text.rsplit("Error: ", 1)[-1] if "Error: " in text else text[-200:]
    return text[:300]


class TritonBackend(Backend):
    """``TritonBackend("triton://127.0.0.1:8000/hrnet")``: a model served by Triton, over HTTP."""

    name = "triton"

    def __init__(self, url: str) -> None:
        self.url = TritonUrl.parse(url)
        self.name = str(self.url)
        http = require("tritonclient.http", "serve")
        self._http = http
        try:
            self.client = http.InferenceServerClient(self.url.endpoint, connection_timeout=min(self.url.timeout, 10.0),
                                                     network_timeout=self.url.timeout)
        except Exception as exc:  # noqa: BLE001 - tritonclient raises several types for a bad address
            raise UserError(f"{self.url}: cannot open a client ({_reason(exc)}); check HOST:PORT") from None
        self._check_ready()
        self.config = self._call(lambda: self.client.get_model_config(self.url.model), "reading the model config")
        self.metadata, self.stride = self._read_metadata()
        self.inputs, graph_outputs = io_specs(self.metadata)
        names = [output["name"] for output in self.config.get("output", [])]
        if sorted(names) == sorted(PEOPLE_OUTPUTS):
            self.groups_on_server = True
            limit = self.config["output"][names.index("persons")]["dims"][0]
            self.outputs = [TensorSpec("persons", "float32", (None, int(limit), 17, 5)),
                            TensorSpec("scores", "float32", (None, int(limit))),
                            TensorSpec("count", "int32", (None, 1))]
        elif sorted(names) == sorted(GRAPH_OUTPUTS):
            self.groups_on_server = False
            self.outputs = graph_outputs
        else:
            raise UserError(f"{self.url}: the model's outputs {names} are neither people {list(PEOPLE_OUTPUTS)} nor the "
                            f"DecodeGraph's {list(GRAPH_OUTPUTS)}; serve an hrnet-deploy model (python -m runtime.serve "
                            f"or python -m export.triton)")
        expected = [spec.name for spec in self.inputs]
        given = [item["name"] for item in self.config.get("input", [])]
        if sorted(given) != sorted(expected):
            raise UserError(f"{self.url}: the model takes inputs {given}, its metadata says {expected}; rewrite the "
                            f"repository with python -m export.triton")
        self.max_batch = int(self.config.get("max_batch_size", 0)) or None

    # --------------------------------------------------------------------------------------------

    def _call(self, request, what: str):
        """Run one client call; connection failures and timeouts become one line naming the URL.

        An error the server answers for this request (a refused input) is a ``UserError``: that image is
        skipped. A server that is gone, stalls or breaks the connection is a ``ModelFault``: no later
        image can succeed, so the run stops (keeping the images finished)."""
        from tritonclient.utils import InferenceServerException

        try:
            return request()
        except InferenceServerException as exc:
            raise UserError(f"{self.url}: {what} failed: {_reason(exc)}") from None
        except TimeoutError:
            raise ModelFault(f"{self.url}: {what} timed out after {self.url.timeout:g} s; the server is overloaded "
                            f"or the model slow: raise the limit with {self.url}?timeout=SECONDS") from None
        except (ConnectionError, OSError) as exc:
            raise ModelFault(f"{self.url}: no Triton server answers at {self.url.endpoint} ({_reason(exc)}) while "
                            f"{what}; start one (python -m runtime.serve --engine FILE) or check HOST:PORT") from None
        except Exception as exc:  # noqa: BLE001 - gevent's timeouts and socket errors have their own types
            if "timeout" in type(exc).__name__.lower() or "timed out" in str(exc).lower():
                raise ModelFault(f"{self.url}: {what} timed out after {self.url.timeout:g} s; the server is overloaded "
                                f"or the model slow: raise the limit with {self.url}?timeout=SECONDS") from None
            raise ModelFault(f"{self.url}: {what} failed ({_reason(exc)}); check that the server at "
                            f"{self.url.endpoint} is running (python -m runtime.serve --engine FILE)") from None

    def _check_ready(self) -> None:
        live = self._call(lambda: self.client.is_server_live(), "asking whether the server is live")
        if not live:
            raise UserError(f"{self.url}: the server at {self.url.endpoint} is not live; look at its log and restart it")
        if not self._call(lambda: self.client.is_model_ready(self.url.model), "asking whether the model is ready"):
            try:  # the repository index may be restricted (PyTriton guards it with a token)
                index = self._call(lambda: self.client.get_model_repository_index(), "listing the models")
                ready = sorted(item.get("name", "") for item in index if item.get("state") == "READY")
                known = f" (ready: {', '.join(ready) or 'none'})"
            except UserError:
                known = ""
            raise UserError(f"{self.url}: model {self.url.model!r} is not ready on {self.url.endpoint}{known}; wait "
                            f"for it to load, or check the model name")

    def _read_metadata(self):
        parameters = self.config.get("parameters", {})
        text = parameters.get(METADATA_KEY, {}).get("string_value")
        source = f"the {METADATA_KEY} parameter of its config"
        if text is None:
            companion = self.url.model + METADATA_MODEL_SUFFIX
            source = f"model {companion}"
            if not self._call(lambda: self.client.is_model_ready(companion), f"asking whether {companion} is ready"):
                raise UserError(f"{self.url}: the model has no {METADATA_KEY} parameter and no {companion} model "
                                f"answers; serve it with python -m runtime.serve or python -m export.triton")
            request = self._http.InferInput("request", [1], "INT32")
            request.set_data_from_numpy(np.zeros(1, np.int32))
            result = self._call(lambda: self.client.infer(companion, [request]), f"reading {companion}")
            text = result.as_numpy("metadata").reshape(-1)[0]
            text = text.decode() if isinstance(text, bytes) else str(text)
        try:
            return parse_metadata_json(text)
        except (KeyError, ValueError, TypeError, json.JSONDecodeError) as exc:
            raise UserError(f"{self.url}: the model metadata in {source} is damaged ({exc}); rewrite the repository "
                            f"with python -m export.triton or restart python -m runtime.serve") from None

    # --------------------------------------------------------------------------------------------

    def check_feed(self, feed: dict[str, np.ndarray]) -> None:
        try:
            super().check_feed(feed)
        except UserError as error:
            raise UserError(f"{self.url}: {error}") from None

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        inputs = []
        for spec in self.inputs:
            array = np.ascontiguousarray(feed[spec.name])
            item = self._http.InferInput(spec.name, list(array.shape), "UINT8")
            item.set_data_from_numpy(array, binary_data=True)
            inputs.append(item)
        outputs = [self._http.InferRequestedOutput(spec.name, binary_data=True) for spec in self.outputs]
        result = self._call(lambda: self.client.infer(self.url.model, inputs, outputs=outputs), "running the model")
        return {spec.name: result.as_numpy(spec.name) for spec in self.outputs}

    def close(self) -> None:
        client, self.client = getattr(self, "client", None), None
        if client is not None:
            client.close()
