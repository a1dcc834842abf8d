"""Triton Python-backend model written by hrnet-deploy's ``export.triton``: grouping + refine.

Inputs: the DecodeGraph's ``candidates``, ``heatmap``, ``tags``, ``tiles`` of a batch; outputs per image:
``persons [P, 17, 5]``, ``scores [P]``, ``count [1]`` (``runtime/serving.py``, copied beside this
file together with ``runtime/grouping.py``, the same code a local run uses; an hrnet-deploy installed in
the server's Python is preferred, so its numba cache is reused). The decode thresholds
come from the ``hrnet_deploy.metadata`` parameter of the model's config. A request that fails gets
its own error; the others in the same execution are answered.
"""
import json
import os
import sys

sys.path.append(os.path.dirname(os.path.abspath(__file__)))

import triton_python_backend_utils as pb_utils  # noqa: E402  (exists inside tritonserver only)

from runtime.grouping import decode_people  # noqa: E402
from runtime.serving import (GRAPH_OUTPUTS, METADATA_KEY, PEOPLE_OUTPUTS, max_people, pad_people,  # noqa: E402
                             parse_metadata_json)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.metadata, _ = parse_metadata_json(config["parameters"][METADATA_KEY]["string_value"])
        self.limit = max_people(self.metadata)

    def _people(self, request):
        candidates, heatmap, tags, tiles = (pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                                            for name in GRAPH_OUTPUTS)
        decode = self.metadata.decode
        found = [decode_people(candidates[i], heatmap[i], tags[i], tiles[i], decode.detection_threshold,
                               decode.tag_threshold) for i in range(candidates.shape[0])]
        outputs = pad_people(found, self.limit)
        return pb_utils.InferenceResponse([pb_utils.Tensor(name, outputs[name]) for name in PEOPLE_OUTPUTS])

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                responses.append(self._people(request))
            except Exception as exc:  # noqa: BLE001 - this request's error; the server keeps serving
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"grouping failed: {exc}")))
        return responses
