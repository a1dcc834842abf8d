"""Triton Python-backend model written by hrnet-deploy's ``export.triton --graph-backend python``.

Runs the DecodeGraph file beside it (``model.onnx``) in ONNX Runtime on the CPU: for a Triton built
without the onnxruntime backend (PyTriton's bundled server is one). Same inputs and outputs as the
``onnxruntime_onnx`` model it replaces. A request that fails gets its own error.
"""
import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils  # exists inside tritonserver only

OUTPUTS = ("candidates", "heatmap", "tags", "tiles")


class TritonPythonModel:
    def initialize(self, args):
        import onnxruntime as ort

        config = json.loads(args["model_config"])
        self.inputs = [item["name"] for item in config["input"]]
        options = ort.SessionOptions()
        options.log_severity_level = 3
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model.onnx")
        self.session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])

    def _run(self, request):
        feed = {name: np.ascontiguousarray(pb_utils.get_input_tensor_by_name(request, name).as_numpy())
                for name in self.inputs}
        outputs = self.session.run(list(OUTPUTS), feed)
        return pb_utils.InferenceResponse([pb_utils.Tensor(name, value) for name, value in zip(OUTPUTS, outputs)])

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                responses.append(self._run(request))
            except Exception as exc:  # noqa: BLE001 - this request's error; the server keeps serving
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"graph failed: {exc}")))
        return responses
