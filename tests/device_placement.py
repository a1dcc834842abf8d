"""Where ONNX Runtime's CUDA EP would need copy nodes in an exported graph (a static check)."""
from __future__ import annotations

# Inputs that ONNX Runtime's CUDA kernels read from host memory (shapes, indices, sizes; from the
# kernels' InputMemoryType registrations). Everything else a CUDA kernel reads lives on the device.
HOST_INPUTS = {"Reshape": {1}, "Slice": {1, 2, 3, 4}, "Unsqueeze": {1}, "Squeeze": {1}, "Resize": {1, 2, 3},
               "TopK": {1}, "Split": {1}, "Expand": {1}, "ConstantOfShape": {0}, "Tile": {1}, "ReduceSum": {1}}


def host_values_into_device_ops(model) -> list[str]:
    """Nodes on the image's data path that read a shape-derived (host) value through a device input.

    ONNX Runtime keeps ``Shape`` outputs and the small integer arithmetic on them on the host. A node
    of the data path that reads such a value gets a host-to-device copy node in front of it, and a
    graph with copy nodes cannot be captured as a CUDA graph. Every CUDA kernel the DecodeGraph uses
    exists for its types (ONNX Runtime's OperatorKernels table), so these copies are the one thing
    that can keep the session from using CUDA graphs.
    """
    graph = model.graph
    constant = {i.name for i in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    on_host, on_device, found = set(), {i.name for i in graph.input}, []
    for node in graph.node:
        host_ports = HOST_INPUTS.get(node.op_type, set())
        if node.op_type == "Shape":
            on_host.update(node.output)
        elif node.op_type == "ConstantOfShape" or any(
                name in on_device and port not in host_ports for port, name in enumerate(node.input)):
            on_device.update(node.output)
            found += [f"{node.name} ({node.op_type}) input {port}" for port, name in enumerate(node.input)
                      if name in on_host and port not in host_ports]
        elif any(name in on_host for name in node.input) and all(
                name in on_host or name in constant for name in node.input if name):
            on_host.update(node.output)
    return found
