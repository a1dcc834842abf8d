"""The sensitivity pass of ``python -m calib --keep-float N / --target-sqnr DB`` (calib/sensitivity.py).

Checked by hand-made cases: the layer groups of the W32 export (22, listed here from the HRNet
configuration: stem, layer1, three transitions, the branches and the fuse layers of the 1 + 4 + 3
high-resolution modules, the head) and of a multi-scale export's copies; the SQNR arithmetic; the
choice of how many groups stay float; the ranking's order. On the real graph (made-up ranges, so no
calibration runs; a 128 × 192 input keeps each ONNX Runtime run short): the variant with nothing
quantized is the FP32 graph again (bit-equal outputs), the variant of one group quantizes that group
only, and the CLI keeps exactly the groups a cached sensitivity file ranks first, records them and the
calibration images in the metadata, and refuses a target it cannot reach with one line.

Mutations tried, each failing the tests named: ``keep_float_region`` without the FP32 weights
(``float_model`` ignored: test_nothing_quantized_is_the_fp32_graph); ``ranking`` sorted highest SQNR
first (test_ranking_most_sensitive_first_ties_in_graph_order, test_cli_keeps_the_most_sensitive_groups);
``choose`` starting its count at 1 (test_choose_by_hand); ``output_sqnr`` taking the larger of heatmap
and tags (test_output_sqnr_by_hand); the stage-module pattern without the ``_N`` copy suffix
(test_layer_group_names); ``_keep_sensitive_float`` quantizing the kept nodes after all (the file
written from ``model`` instead of the variant: test_cli_keeps_the_most_sensitive_groups).
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tests.conftest import MINI, made_up_statistics, need, run_main

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("torch")

import calib.__main__ as calib_cli
from calib import quantize as q
from calib.dataset import image_list_digest, list_images
from calib.placement import ONNXRUNTIME
from calib.sensitivity import (
    Sensitivity,
    SensitivityPass,
    choose,
    layer_group,
    layer_groups,
    output_sqnr,
    sensitivity_file,
)
from runtime.errors import UserError

W32_GROUPS = ["stem", "layer1", "transition1", "stage2.0.branches", "stage2.0.fuse", "transition2",
              *[f"stage3.{m}.{part}" for m in range(4) for part in ("branches", "fuse")], "transition3",
              *[f"stage4.{m}.{part}" for m in range(3) for part in ("branches", "fuse")], "head"]


@pytest.fixture(scope="module")
def source(w32_fp32_file):
    return q.open_source(w32_fp32_file)


@pytest.fixture(scope="module")
def steps(source):
    return q.plan(source.model)


@pytest.fixture(scope="module")
def quantized_model(source, steps, tmp_path_factory):
    cache = made_up_statistics(tmp_path_factory.mktemp("sensitivity") / "ranges.npz", steps.activations)
    return q.quantize(source, steps, "minmax", cache)


@pytest.fixture(scope="module")
def probe(source, steps, quantized_model, tmp_path_factory):
    feed = {source.metadata.input_names[0]: np.random.default_rng(0).integers(0, 256, (1, 128, 192, 3), np.uint8)}
    return SensitivityPass(source, quantized_model, steps.quantize, [feed],
                           tmp_path_factory.mktemp("probe") / "sensitivity.json")


def test_w32_layer_groups(steps):
    groups = layer_groups(steps.quantize)
    assert list(groups) == W32_GROUPS
    assert sum(len(nodes) for nodes in groups.values()) == len(steps.quantize)
    assert all(node.startswith("/network/keypoint_head/deconv_layers.") for node in groups["head"])


@pytest.mark.parametrize("node, group", [
    ("/network/backbone/conv1/Conv", "stem"),
    ("/network/backbone/relu_1/Relu", "stem"),
    ("/network/backbone/conv2_1/Conv", "stem"),  # the second scale's copy
    ("/network/backbone/layer1/layer1.2/conv3/Conv", "layer1"),
    ("/network/backbone/transition2.2/transition2.2.0/transition2.2.0.0/Conv", "transition2"),
    ("/network/backbone/stage3.1/branches.2/branches.2.3/conv1/Conv", "stage3.1.branches"),
    ("/network/backbone/stage3.1_1/branches.0/branches.0.0/relu/Relu", "stage3.1.branches"),
    ("/network/backbone/stage3.1/fuse_layers.0.1/fuse_layers.0.1.0/Conv", "stage3.1.fuse"),
    ("/network/backbone/stage3.1_1/Add_2", "stage3.1.fuse"),
    ("/network/backbone/stage4.2/relu_1/Relu", "stage4.2.fuse"),
    ("/network/keypoint_head/deconv_layers.0/deconv_layers.0.0/deconv_layers.0.0.0/ConvTranspose", "head"),
])
def test_layer_group_names(node, group):
    assert layer_group(node) == group


def test_layer_group_refuses_other_scopes():
    for node in ("/network/keypoint_head/final_layers.0/Conv", "/decode/Resize", "Conv_12"):
        with pytest.raises(ValueError, match="not a node"):
            layer_group(node)


def test_output_sqnr_by_hand():
    ones = np.ones((2, 3), np.float32)
    exact = {"heatmap": ones, "tags": 2 * ones}
    noisy = {"heatmap": ones + np.float32(0.1), "tags": 2 * ones + np.float32(0.2)}
    # signal 6, noise 6 * 0.01 -> 20 dB for the heatmap; tags: signal 24, noise 6 * 0.04 -> 20 dB
    assert output_sqnr([exact], [noisy]) == pytest.approx(20.0, abs=1e-5)
    worse_tags = {"heatmap": noisy["heatmap"], "tags": 2 * ones + np.float32(2 * math.sqrt(0.1))}
    assert output_sqnr([exact], [worse_tags]) == pytest.approx(10.0, abs=1e-5)  # the lower of the two
    # sums over images: signal 12, noise 0.06 -> 10 log10(200) dB
    assert output_sqnr([exact, exact], [noisy, exact]) == pytest.approx(10 * math.log10(200), abs=1e-5)
    assert output_sqnr([exact], [exact]) == math.inf
    assert output_sqnr([exact], [{"heatmap": ones * np.nan, "tags": 2 * ones}]) == -math.inf


def test_choose_by_hand():
    sensitivity = Sensitivity({"a": 30.0, "b": 40.0, "c": 35.0, "d": 50.0}, {})
    curve = [28.0, 30.5, 32.0, 35.0, 36.0]
    tried = []

    def measure(k):
        tried.append(k)
        return curve[k]

    assert choose(sensitivity, measure, None, 32.0) == 2 and tried == [0, 1, 2]
    assert choose(sensitivity, measure, None, 28.0) == 0
    assert choose(sensitivity, measure, 3, 35.0) == 3
    assert choose(sensitivity, measure, 2, None) == 2
    with pytest.raises(UserError, match="not reached with up to 2 of the 4"):
        choose(sensitivity, measure, 2, 35.0)
    with pytest.raises(UserError, match="--keep-float 5: give 0 to 4"):
        choose(sensitivity, measure, 5, None)


def test_ranking_most_sensitive_first_ties_in_graph_order():
    sensitivity = Sensitivity({"stem": 40.0, "layer1": 33.0, "head": 40.0, "stage2.0.fuse": 31.0}, {0: 29.0})
    assert sensitivity.ranking() == ["stage2.0.fuse", "layer1", "stem", "head"]
    again = Sensitivity.from_json(sensitivity.to_json())
    assert again == sensitivity and list(again.solo_db) == list(sensitivity.solo_db)


def test_nothing_quantized_is_the_fp32_graph(probe):
    variant = probe.variant(set())
    assert not [n.name for n in variant.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert all(t.data_type != onnx.TensorProto.INT8 for t in variant.graph.initializer)
    assert probe.sqnr(set()) == math.inf  # bit-equal outputs


def test_one_group_quantized_alone(probe):
    head = set(probe.groups["head"])
    variant = probe.variant(head)
    producers = {out: node for node in variant.graph.node for out in node.output}
    reads_dq = {node.name for node in variant.graph.node
                if any(producers.get(name) is not None and producers[name].op_type == "DequantizeLinear"
                       for name in node.input)}
    network = {n.name for n in variant.graph.node if n.name.startswith("/network/")}
    assert reads_dq & network <= head
    assert {n for n in head if n.endswith(("/Conv", "/ConvTranspose"))} <= reads_dq
    assert q.float_region_violations(variant, head) == []
    assert math.isfinite(probe.sqnr(head))


def test_kept_nodes_needs_the_solo_pass(probe):
    with pytest.raises(RuntimeError, match="run solo"):
        probe.kept_nodes(1)


def _made_up_sensitivity(source, steps, cache_dir, image_count: int = 1):
    """The statistics and the sensitivity file python -m calib --method minmax --images N looks up."""
    paths = list_images(need(MINI / "images"), image_count)
    key = q.cache_key(source.sha256, image_list_digest(paths), steps.activations, ONNXRUNTIME)
    statistics = made_up_statistics(q.cache_file(cache_dir, source.metadata, key), steps.activations)
    solo = {group: 40.0 + i for i, group in enumerate(W32_GROUPS)}
    solo.update({"stage3.2.fuse": 31.0, "layer1": 33.0})
    sensitivity = Sensitivity(solo, {0: 28.0, 1: 30.5, 2: 32.0})
    sensitivity_file(statistics, "minmax", image_list_digest(paths[:1])).write_text(sensitivity.to_json())
    return paths


def test_cli_keeps_the_most_sensitive_groups(source, steps, tmp_path):
    paths = _made_up_sensitivity(source, steps, tmp_path / "cache")
    target = tmp_path / "w32.keep2.onnx"
    code, out, err = run_main(calib_cli.main, ["--onnx", str(source.path), "--method", "minmax", "--images", "1",
                                               "--sensitivity-images", "1", "--keep-float", "2", "--skip-verify",
                                               "--cache-dir", str(tmp_path / "cache"), "-o", str(target)])
    assert code == 0, out + err
    assert "keeping 2 layer group(s) float32: stage3.2.fuse, layer1 (32.0 dB" in out
    model = onnx.load(str(target))
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["calib.keep_float"]) == {"groups": ["stage3.2.fuse", "layer1"], "sqnr_db": 32.0,
                                                     "target_sqnr_db": None, "images": [paths[0].name]}
    assert json.loads(props["calib.image_names"]) == [paths[0].name]
    assert q.calibration_image_names(props) == {paths[0].name}

    groups = layer_groups(steps.quantize)
    kept = set(groups["stage3.2.fuse"]) | set(groups["layer1"])
    producers = {out: node for node in model.graph.node for out in node.output}
    int8_weight = {node.name for node in model.graph.node if node.op_type in ("Conv", "ConvTranspose")
                   and producers.get(node.input[1]) is not None and producers[node.input[1]].op_type == "DequantizeLinear"}
    convolutions = {n for n in steps.quantize if n.endswith(("/Conv", "/ConvTranspose"))}
    assert int8_weight == convolutions - kept
    assert q.float_region_violations(model, set(steps.quantize) - kept) == []


def test_cli_target_out_of_reach_is_one_line(source, steps, tmp_path):
    _made_up_sensitivity(source, steps, tmp_path / "cache")
    target = tmp_path / "w32.target.onnx"
    code, _, err = run_main(calib_cli.main, ["--onnx", str(source.path), "--method", "minmax", "--images", "1",
                                               "--sensitivity-images", "1", "--target-sqnr", "31", "--keep-float", "1",
                                               "--skip-verify", "--cache-dir", str(tmp_path / "cache"),
                                               "-o", str(target)])
    assert code == 2 and not target.exists()
    errors = [line for line in err.splitlines() if line.startswith("error:")]  # the rest are progress lines
    assert len(errors) == 1 and "--target-sqnr 31: not reached with up to 1 of the 22" in errors[0]
    assert "Traceback" not in err
