"""What a Triton-served HigherHRNet looks like from outside: the tensors, the people bound, the metadata.

Shared by the three places that speak it — ``runtime.serve`` (PyTriton), the Python-backend models
that ``export.triton`` writes, and the client backend (``runtime.backends.triton_backend``) — so the
names and shapes are said once.

A served pose model takes the network input(s) that ``runtime.preprocess.prepare`` makes (uint8
``[H, W, 3]`` per scale, the batch dimension being Triton's) and returns, per image:

* ``persons`` float32 ``[MAX_PEOPLE, 17, 5]``: x, y (base-size map coordinates), joint score, tag0,
  tag1 — ``runtime.grouping.decode_people``'s persons, zero-padded;
* ``scores`` float32 ``[MAX_PEOPLE]``: person scores, zero-padded;
* ``count`` int32 ``[1]``: how many rows of the two are people.

``MAX_PEOPLE`` is ``17 × top_k``: every person holds at least one of the 17 × k candidates and each
candidate joins one person, so the grouping can never find more and nothing is ever cut off.
The client maps persons back to image pixels with its own geometry (SPEC §9), exactly as a local run.
"""
from __future__ import annotations

import json
import os
import sysconfig

import numpy as np

from runtime.metadata import NUM_JOINTS, OUTPUT_NAMES, ModelMetadata

PEOPLE_OUTPUTS = ("persons", "scores", "count")
GRAPH_OUTPUTS = OUTPUT_NAMES
# Model-config parameter (and companion-model output) that carries the ModelMetadata as JSON.
METADATA_KEY = "hrnet_deploy.metadata"
# PyTriton cannot put parameters into a model config, so runtime.serve answers with the metadata
# from a second, tiny model of this name beside the pose model.
METADATA_MODEL_SUFFIX = "_metadata"


def max_people(metadata: ModelMetadata) -> int:
    """The most persons one image can give: one per candidate (17 joints × top_k)."""
    return NUM_JOINTS * metadata.decode.top_k


def pad_people(found: list[tuple[np.ndarray, np.ndarray]], limit: int) -> dict[str, np.ndarray]:
    """``[(persons [P, 17, 5], scores [P]), ...]`` of a batch → the fixed-shape ``PEOPLE_OUTPUTS``."""
    batch = len(found)
    persons = np.zeros((batch, limit, NUM_JOINTS, 5), np.float32)
    scores = np.zeros((batch, limit), np.float32)
    count = np.zeros((batch, 1), np.int32)
    for index, (people, people_scores) in enumerate(found):
        if people.shape[0] > limit:
            raise ValueError(f"{people.shape[0]} persons found, more than the {limit} the output holds")
        persons[index, :people.shape[0]] = people
        scores[index, :people.shape[0]] = people_scores
        count[index, 0] = people.shape[0]
    return {"persons": persons, "scores": scores, "count": count}


def unpad_people(outputs: dict[str, np.ndarray], index: int) -> tuple[np.ndarray, np.ndarray]:
    """Image ``index`` of a ``PEOPLE_OUTPUTS`` batch → ``(persons [P, 17, 5], scores [P])``."""
    count = int(np.asarray(outputs["count"][index]).reshape(-1)[0])
    return (np.ascontiguousarray(outputs["persons"][index][:count], dtype=np.float32),
            np.ascontiguousarray(outputs["scores"][index][:count], dtype=np.float32))


def metadata_json(metadata: ModelMetadata, input_multiple: int) -> str:
    """The metadata as one JSON string: ``ModelMetadata.to_props()`` plus the input multiple."""
    return json.dumps({"props": metadata.to_props(), "input_multiple": int(input_multiple)}, sort_keys=True)


def parse_metadata_json(text: str) -> tuple[ModelMetadata, int]:
    """Inverse of ``metadata_json``; KeyError/ValueError/TypeError on anything else."""
    value = json.loads(text)
    return ModelMetadata.from_props(dict(value["props"])), int(value["input_multiple"])


def python_backend_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """An environment for a tritonserver process whose Python backend stub must use this interpreter.

    The stub is linked against ``libpython3.X.so``; where the system has its own copy of that library
    (Debian's, of another patch release), the loader finds that one first, and the stub dies on the
    first lock it takes (``'_thread.RLock' object has no attribute '_recursion_count'``). Putting this
    interpreter's ``LIBDIR`` first on ``LD_LIBRARY_PATH`` makes the stub load the library of the
    Python that runs the toolkit.
    """
    env = dict(os.environ if environ is None else environ)
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir:
        parts = [part for part in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if part and part != libdir]
        env["LD_LIBRARY_PATH"] = os.pathsep.join([libdir, *parts])
    return env
