"""The FP32 graph cut into consecutive pieces that each output the measured tensors they produce.

Asking ONNX Runtime for every measured tensor of one run returns them all at once: ~4 GB for one
512×832 W32 image. Cut into pieces of about ``per_piece`` measured tensors, one image is run piece
after piece; a piece's measured outputs are folded into the statistics and dropped before the next
piece runs, and only the tensors later pieces read are kept in between. The network runs once per
image, as in one whole-graph run; the decode after the last measured tensor does not run at all.

A piece is a plain ONNX model: its nodes in graph order, the initializers they read, as inputs
whatever they read from the graph input or from earlier pieces. Its session optimizes it as ONNX
Runtime optimizes the whole file (kernels, layouts): every measured tensor is a piece output, which
no fusion removes, so the values are the FP32 file's own up to float rounding (a relative 1e-6 on the
maxima, measured).
"""
from __future__ import annotations

import ctypes
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

DEFAULT_PER_PIECE = 24  # measured tensors per piece: ~130 MB of outputs for a 512×832 W32 image


@dataclass(frozen=True)
class Piece:
    """One consecutive run of nodes as a serialized ONNX model."""

    model: bytes
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]  # the measured tensors it produces, then the ones later pieces read
    measured: frozenset[str]
    carried: frozenset[str]  # outputs that later pieces read
    released: tuple[str, ...]  # inputs that no later piece reads: dropped after this piece


def _needed_nodes(graph, measured: set[str]) -> list:
    """The nodes the measured tensors depend on, in graph order."""
    producer = {out: node for node in graph.node for out in node.output}
    keep, stack = set(), [producer[name] for name in measured if name in producer]
    while stack:
        node = stack.pop()
        if id(node) in keep:
            continue
        keep.add(id(node))
        stack.extend(producer[name] for name in node.input if name in producer)
    return [node for node in graph.node if id(node) in keep]


def cut(model, measured: list[str], per_piece: int = DEFAULT_PER_PIECE) -> list[Piece]:
    """Pieces that together produce every tensor of ``measured`` (names of float tensors of ``model``)."""
    import onnx
    from onnx import helper

    wanted = set(measured)
    graph = model.graph
    missing = wanted - {out for node in graph.node for out in node.output}
    if missing:
        raise ValueError(f"no node produces {sorted(missing)[:3]}")
    types = {v.name: v.type.tensor_type.elem_type
             for v in [*onnx.shape_inference.infer_shapes(model).graph.value_info, *graph.input, *graph.output]}
    initializers = {t.name: t for t in graph.initializer}

    groups, current, count = [], [], 0
    for node in _needed_nodes(graph, wanted):
        current.append(node)
        count += sum(out in wanted for out in node.output)
        if count >= per_piece:
            groups.append(current)
            current, count = [], 0
    if current:
        groups.append(current)

    reads = [{name for node in nodes for name in node.input if name and name not in initializers} for nodes in groups]
    later: list[set[str]] = [set() for _ in groups]
    for index in range(len(groups) - 2, -1, -1):
        later[index] = later[index + 1] | reads[index + 1]
    pieces = []
    for index, nodes in enumerate(groups):
        produced = [out for node in nodes for out in node.output if out]
        inputs = sorted(reads[index] - set(produced))
        outputs = [out for out in produced if out in wanted or out in later[index]]
        used = sorted({name for node in nodes for name in node.input if name in initializers})
        piece_graph = helper.make_graph(
            nodes, f"piece{index}", [helper.make_tensor_value_info(name, types[name], None) for name in inputs],
            [helper.make_tensor_value_info(name, types[name], None) for name in outputs],
            initializer=[initializers[name] for name in used])
        piece_model = helper.make_model(piece_graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)
        pieces.append(Piece(piece_model.SerializeToString(), tuple(inputs), tuple(outputs),
                            frozenset(out for out in outputs if out in wanted),
                            frozenset(out for out in outputs if out in later[index]),
                            tuple(name for name in inputs if name not in later[index])))
    return pieces


class PieceRunner:
    """ONNX Runtime sessions of the pieces, opened once; ``measure`` runs one image through all of them.

    ``optimize``: ONNX Runtime's full graph optimization (what calibration uses) or none (the nodes'
    reference kernels, for bit-level comparisons)."""

    def __init__(self, pieces: list[Piece], optimize: bool = True):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                            else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
        options.log_severity_level = 3
        options.enable_cpu_mem_arena = False  # each session's arena would keep its peak: 16 of them, ~5 GB
        self.pieces = pieces
        self.sessions = [ort.InferenceSession(piece.model, options, providers=["CPUExecutionProvider"])
                         for piece in pieces]

    def __enter__(self) -> PieceRunner:
        return self

    def __exit__(self, *exc) -> None:
        self.sessions = []
        _return_freed_memory()

    def measure(self, feed: dict[str, np.ndarray], fold: Callable[[str, np.ndarray], None]) -> None:
        """Run one input ``feed`` piece by piece, handing each measured tensor to ``fold(name, values)``.

        A piece's outputs are released before the next piece runs: memory holds one piece's outputs
        and the tensors carried between pieces."""
        live = dict(feed)
        for piece, session in zip(self.pieces, self.sessions):
            values = dict(zip(piece.outputs, session.run(list(piece.outputs), {name: live[name] for name in piece.inputs})))
            for name in piece.released:
                del live[name]
            live.update((name, values[name]) for name in piece.carried)
            for name in piece.outputs:
                if name in piece.measured:
                    fold(name, values.pop(name))
            del values
        _return_freed_memory()


def _return_freed_memory() -> None:
    """Hand the heap that one image's tensors used back to the system (glibc's ``malloc_trim``).

    ONNX Runtime's threads allocate the outputs from glibc arenas of their own; without a trim the
    freed space of one image is not always reused for the next, and the process grew by ~300 MB per
    image (measured: 1.6, 1.9, 2.3 GB after three images; 1.8 GB flat with the trim). Elsewhere (not
    glibc) there is nothing to call and nothing is done."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):
        pass
