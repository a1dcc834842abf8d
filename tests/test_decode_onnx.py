"""export/decode_onnx.py: the decode-only ONNX file against the torch ``DecodeOnly``.

No weights, small maps: the whole module takes seconds. The full mini set through this file (rendered
outputs, people and metrics) is tests/test_parity.py's rendered run.
"""
from __future__ import annotations

import contextlib
import io

import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("torch")

from export import decode_onnx
from export import onnx as exporter
from export import verify
from runtime.errors import UserError
from runtime.metadata import DecodeConfig
from tests.tiles import tiles_of


def _write(folder, *extra: str):
    path = folder / "decode.onnx"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = decode_onnx.main(["-o", str(path), *extra])
    assert code == 0, out.getvalue() + err.getvalue()
    return path, out.getvalue()


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("decode"))


def test_file_inputs_outputs_and_metadata(single):
    path, printed = single
    assert "identical sets for every joint" in printed and f"wrote {path}" in printed
    assert sorted(p.name for p in path.parent.iterdir()) == ["decode.onnx"], "temporary files left behind"
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path))
    assert [i.name for i in model.graph.input] == ["y0", "y1"]
    assert [o.name for o in model.graph.output] == list(exporter.OUTPUT_NAMES)
    assert path.stat().st_size < 1024**2, "a decode has no weights"
    props = {p.key: p.value for p in model.metadata_props}
    assert decode_onnx.from_props(props) == DecodeConfig()
    assert props["export.opset"] == str(exporter.OPSET)
    assert not any(key.startswith("hrnet_deploy.") for key in props)


@pytest.mark.parametrize("size", [(640, 425, 256, 1), (425, 640, 320, 3)], ids=["landscape-batch1", "portrait-batch3"])
def test_onnx_runtime_against_torch(single, size):
    """Dynamic batch and sizes: dense outputs within the exporter's tolerance, candidate sets equal."""
    config = DecodeConfig()
    raw = decode_onnx.sample_outputs(config, *size, seed=7)
    with decode_onnx.DecodeOnlySession(single[0]) as session:
        got = session.run(raw)
    want = decode_onnx.torch_outputs(config, raw)
    width, height = raw[0].shape[3] * 4, raw[0].shape[2] * 4
    assert got["heatmap"].shape == (size[3], 17, height, width) and got["tags"].shape == (size[3], 17, height, width, 2)
    # the exported tile summary is that of the file's own maps, bit for bit (ONNX Runtime's reductions)
    assert got["tiles"].tobytes() == tiles_of(got["heatmap"], got["tags"]).tobytes()
    comparison = verify.compare_outputs(want, got)
    assert comparison.ok(), comparison.lines()


def test_multi_scale_file(tmp_path):
    """--scales 2,1,0.5: three (y0, y1) pairs, largest first; the base size comes from scale 1."""
    path, _ = _write(tmp_path, "--scales", "2,1,0.5")
    config = DecodeConfig(scales=(2, 1, 0.5))
    raw = decode_onnx.sample_outputs(config, 640, 425, 256, 1, seed=3)
    with decode_onnx.DecodeOnlySession(path) as session:
        assert session.input_names == ["y0_0", "y1_0", "y0_1", "y1_1", "y0_2", "y1_2"]
        assert session.config == config
        got = session.run(raw)
    assert got["heatmap"].shape[2:] == (raw[2].shape[2] * 4, raw[2].shape[3] * 4)
    comparison = verify.compare_outputs(decode_onnx.torch_outputs(config, raw), got)
    assert comparison.ok(), comparison.lines()


def test_failed_verification_writes_nothing(tmp_path, monkeypatch):
    failing = verify.Comparison([], ["image 0 joint 0 (1, 1) reference only: injected"], [])
    monkeypatch.setattr(decode_onnx, "verify", lambda path, config: failing)
    target = tmp_path / "decode.onnx"
    with pytest.raises(RuntimeError, match="was not written.*injected"):
        decode_onnx.write_decode_file(target, DecodeConfig())
    assert list(tmp_path.iterdir()) == []


def test_the_two_kinds_of_file_are_not_mixed_up(single, tmp_path):
    """A decode-only file is no DecodeGraph (runtime.run refuses it), and the other way round."""
    from onnx import TensorProto, helper

    from runtime.backends import open_backend

    with pytest.raises(UserError, match="not an hrnet-deploy export"):
        open_backend(single[0])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "tiny",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    path = tmp_path / "tiny.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(UserError, match="not a decode-only export"):
        decode_onnx.DecodeOnlySession(path)
    with decode_onnx.DecodeOnlySession(single[0]) as session, pytest.raises(UserError, match="takes"):
        session.run(decode_onnx.sample_outputs(DecodeConfig(), 640, 425, 256, 1)[:1])
