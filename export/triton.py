"""python -m export.triton — a Triton Inference Server model repository from an exported .onnx or .plan.

Writes, for the NGC tritonserver container (everything the models need is read from the file):

  NAME_graph/   the DecodeGraph: platform onnxruntime_onnx (1/model.onnx) or tensorrt_plan
                (1/model.plan), uint8 image input(s) with -1 H/W, dynamic batching, instance_group;
                --graph-backend python: a Python-backend model running the .onnx in ONNX Runtime
                (for a Triton without the onnxruntime backend, such as PyTriton's bundled server)
  NAME_people/  Python backend: grouping + refine (runtime.grouping, copied beside model.py) on the
                graph's outputs; persons [P, 17, 5], scores [P], count, P ≤ 17 × top_k
  NAME/         platform ensemble: network input in, people out
  README.md     the docker run line and the versions the repository is made for

With --grouping-on client only the graph model is written, as NAME, and the client groups
(python -m runtime.run --engine triton://HOST:PORT/NAME does either).

Examples:
  python -m export.triton --engine w32.onnx -o model_repository/
  python -m export.triton --engine w32.plan --max-batch 4 --instances 2 -o model_repository/
  python -m export.triton --engine w32.onnx --graph-backend python --device cpu -o repo/   # PyTriton's server
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from runtime.cli import run_cli
from runtime.errors import UserError
from runtime.metadata import NUM_JOINTS, ModelMetadata
from runtime.serving import GRAPH_OUTPUTS, METADATA_KEY, PEOPLE_OUTPUTS, max_people, metadata_json

# The Triton release the Python-backend models are tested with here (PyTriton 0.7.0 bundles its server).
TESTED_TRITON = "2.51.0"
DEFAULT_RELEASE = "24.10"  # the NGC container of Triton 2.51.0
MODELS_DIR = Path(__file__).with_name("triton_models")
# runtime modules the Python-backend people model imports; copied into the repository beside it.
PEOPLE_MODULES = ("__init__.py", "errors.py", "grouping.py", "metadata.py", "serving.py")


class Enum(str):
    """A protobuf enum value in text format (written bare, not quoted)."""


def _scalar(value) -> str:
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    data = str(value).encode()
    escaped = "".join(chr(b) if 32 <= b < 127 and b not in (34, 92) else f"\\{b:03o}" for b in data)
    return f'"{escaped}"'


def pbtxt(message: dict, indent: int = 0) -> str:
    """A protobuf text-format rendering of nested dicts (messages), lists (repeated) and scalars."""
    pad = "  " * indent
    lines = []
    for key, value in message.items():
        if isinstance(value, dict):
            lines.append(f"{pad}{key} {{\n{pbtxt(value, indent + 1)}{pad}}}")
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            items = ",\n".join(f"{pad}  {{\n{pbtxt(item, indent + 2)}{pad}  }}" for item in value)
            lines.append(f"{pad}{key} [\n{items}\n{pad}]")
        elif isinstance(value, list):
            lines.append(f"{pad}{key}: [ {', '.join(_scalar(v) for v in value)} ]")
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}")
    return "".join(line + "\n" for line in lines)


@dataclass(frozen=True)
class Source:
    """The exported file and what it says about itself."""

    path: Path
    kind: str  # "onnx" or "plan"
    metadata: ModelMetadata
    input_multiple: int
    plan_max_batch: int | None = None
    tensorrt_version: str | None = None


def read_source(path: Path) -> Source:
    """Metadata of an .onnx (through ONNX Runtime, which checks its I/O) or a .plan (its sidecar)."""
    if not path.is_file():
        raise UserError(f"{path}: no such model file; export one with python -m export.onnx (or export.trt)")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        from runtime.backends.onnx_backend import OnnxBackend

        with OnnxBackend(path) as backend:
            return Source(path, "onnx", backend.metadata, backend.stride)
    if suffix in (".plan", ".engine"):
        from runtime.backends.trt_backend import read_sidecar, sidecar_metadata

        sidecar = read_sidecar(path)
        metadata = sidecar_metadata(sidecar, path)
        profile = sidecar["profiles"][0]
        low = min(shape["min"][0] for shape in profile.values())
        if low != 1:
            raise UserError(f"{path}: its profile starts at batch {low}; Triton sends batches from 1: rebuild with "
                            f"python -m export.trt --onnx FILE --max-batch N")
        return Source(path, "plan", metadata, int(sidecar["input_multiple"]), int(sidecar["max_batch"]),
                      str(sidecar["tensorrt_version"]))
    raise UserError(f"{path}: unknown model file type {path.suffix!r}; give an exported .onnx or a .plan from "
                    f"python -m export.trt")


def _io(metadata: ModelMetadata) -> tuple[list[dict], list[dict], list[dict]]:
    """Config entries of the image inputs, the graph's outputs and the people outputs (no batch dim)."""
    k = metadata.decode.top_k
    images = [{"name": name, "data_type": Enum("TYPE_UINT8"), "dims": [-1, -1, 3]} for name in metadata.input_names]
    graph = [{"name": "candidates", "data_type": Enum("TYPE_FP32"), "dims": [NUM_JOINTS, k, 5]},
             {"name": "heatmap", "data_type": Enum("TYPE_FP32"), "dims": [NUM_JOINTS, -1, -1]},
             {"name": "tags", "data_type": Enum("TYPE_FP32"), "dims": [NUM_JOINTS, -1, -1, 2]},
             {"name": "tiles", "data_type": Enum("TYPE_FP32"), "dims": [NUM_JOINTS, -1, -1, 5]}]
    limit = max_people(metadata)
    people = [{"name": "persons", "data_type": Enum("TYPE_FP32"), "dims": [limit, NUM_JOINTS, 5]},
              {"name": "scores", "data_type": Enum("TYPE_FP32"), "dims": [limit]},
              {"name": "count", "data_type": Enum("TYPE_INT32"), "dims": [1]}]
    return images, graph, people


@dataclass(frozen=True)
class Options:
    name: str = "hrnet"
    max_batch: int | None = None  # None: the plan's profile limit, or 4
    instances: int = 1
    grouping_on: str = "server"
    graph_backend: str = "native"
    device: str = "gpu"
    max_queue_delay_us: int = 2000
    release: str = DEFAULT_RELEASE


def configs(source: Source, options: Options, max_batch: int) -> dict[str, dict]:
    """Every model's config (as a dict for ``pbtxt``), keyed by model name."""
    images, graph_outputs, people_outputs = _io(source.metadata)
    parameters = [{"key": METADATA_KEY, "value": {"string_value": metadata_json(source.metadata,
                                                                                source.input_multiple)}}]
    graph_name = options.name if options.grouping_on == "client" else f"{options.name}_graph"
    kind = Enum("KIND_GPU" if options.device == "gpu" else "KIND_CPU")
    graph = {"name": graph_name}
    if options.graph_backend == "python":
        graph["backend"] = "python"
    elif source.kind == "plan":
        graph["platform"] = "tensorrt_plan"
    else:
        graph["platform"] = "onnxruntime_onnx"
    graph.update({"max_batch_size": max_batch, "input": images, "output": graph_outputs,
                  "dynamic_batching": {"max_queue_delay_microseconds": options.max_queue_delay_us},
                  "instance_group": [{"count": options.instances, "kind": kind}], "parameters": parameters})
    if options.grouping_on == "client":
        return {graph_name: graph}
    people_name = f"{options.name}_people"
    people = {"name": people_name, "backend": "python", "max_batch_size": max_batch, "input": graph_outputs,
              "output": people_outputs, "instance_group": [{"count": options.instances, "kind": Enum("KIND_CPU")}],
              "parameters": parameters}

    def mapping(names):
        return [{"key": n, "value": n} for n in names]

    ensemble = {"name": options.name, "platform": "ensemble", "max_batch_size": max_batch, "input": images,
                "output": people_outputs,
                "ensemble_scheduling": {"step": [
                    {"model_name": graph_name, "model_version": -1,
                     "input_map": mapping(source.metadata.input_names), "output_map": mapping(GRAPH_OUTPUTS)},
                    {"model_name": people_name, "model_version": -1,
                     "input_map": mapping(GRAPH_OUTPUTS), "output_map": mapping(PEOPLE_OUTPUTS)}]},
                "parameters": parameters}
    return {graph_name: graph, people_name: people, options.name: ensemble}


def check_options(source: Source, options: Options) -> int:
    """The options as a user might get them wrong; returns the max batch size to write."""
    if not options.name.replace("_", "").replace("-", "").isalnum():
        raise UserError(f"--name {options.name!r}: use letters, digits, '_' and '-' only")
    if options.instances < 1:
        raise UserError(f"--instances {options.instances}: give at least 1")
    if options.max_queue_delay_us < 0:
        raise UserError(f"--max-queue-delay-us {options.max_queue_delay_us}: give 0 or more")
    if options.graph_backend == "python" and source.kind != "onnx":
        raise UserError(f"{source.path}: --graph-backend python runs an .onnx in ONNX Runtime; a .plan needs "
                        f"Triton's tensorrt_plan platform (drop --graph-backend)")
    max_batch = options.max_batch if options.max_batch is not None else (source.plan_max_batch or 4)
    if max_batch < 1:
        raise UserError(f"--max-batch {max_batch}: give at least 1")
    if source.plan_max_batch is not None and max_batch > source.plan_max_batch:
        raise UserError(f"{source.path}: the engine's profile takes batches 1..{source.plan_max_batch}, so Triton's "
                        f"max_batch_size cannot be {max_batch}; pass --max-batch {source.plan_max_batch} or rebuild "
                        f"with python -m export.trt --onnx FILE --max-batch {max_batch}")
    return max_batch


def readme(source: Source, options: Options, max_batch: int, names: list[str]) -> str:
    """The repository's README: layout, the docker run line, the versions it is made for."""
    needs = ["numba>=0.59"] if options.grouping_on == "server" else []
    if options.graph_backend == "python":
        needs.append("onnxruntime>=1.18")
    image = f"nvcr.io/nvidia/tritonserver:{options.release}-py3"
    gpus = "--gpus all " if options.device == "gpu" or source.kind == "plan" else ""
    serve = "tritonserver --model-repository=/models"
    command = (f"docker run --rm {gpus}-p 8000:8000 -p 8001:8001 -p 8002:8002 -v \"$PWD\":/models {image} "
               + (f"bash -c \"pip install {' '.join(repr(n) for n in needs)} && {serve}\"" if needs else serve))
    entry = options.name
    lines = [f"# Triton model repository: HigherHRNet-{source.metadata.arch.upper()} (hrnet-deploy)", "",
             f"Written by `python -m export.triton` from `{source.path.name}` ({source.kind}, input size "
             f"{source.metadata.input_size}, scales {list(source.metadata.decode.scales)}, "
             f"{source.metadata.precision}, weights {source.metadata.checkpoint}).", "",
             "## Models", ""]
    for name in names:
        lines.append(f"- `{name}/`")
    lines += ["", f"max_batch_size {max_batch}, dynamic batching (queue delay {options.max_queue_delay_us} us), "
              f"{options.instances} instance(s) per model. Inputs: the network input(s) "
              f"{source.metadata.input_names} that `runtime.preprocess.prepare` makes (uint8 [H, W, 3], sides "
              f"multiples of {source.input_multiple}). "
              + ("Outputs of the ensemble: persons [P, 17, 5] (x, y in base-size map coordinates, score, tag0, tag1), "
                 f"scores [P], count [1], P = 17 × top_k = {max_people(source.metadata)}: every person holds at least "
                 "one candidate, so the grouping never finds more." if options.grouping_on == "server" else
                 "Outputs: the DecodeGraph's candidates, heatmap, tags, tiles; the client groups."),
              "", "## Run it (from this folder)", "", "```bash", command, "```", "",
              f"Then: `python -m runtime.run --engine triton://127.0.0.1:8000/{entry} --image a.jpg --out people.json`.",
              "", "## Versions", ""]
    if source.kind == "plan":
        lines += [f"- The engine was built with **TensorRT {source.tensorrt_version}**; a `.plan` runs only on the "
                  f"TensorRT (and GPU) it was built for. Use the NGC tritonserver release whose TensorRT is exactly "
                  f"{source.tensorrt_version} (each release's notes list it in their container versions table) and "
                  f"write it into the command above (`--release` of export.triton); `{options.release}` was given."]
    else:
        lines += [f"- ONNX opset of the file runs on every NGC tritonserver release with the onnxruntime backend; "
                  f"the command uses {options.release}."]
    lines += [f"- The Python-backend models were run with Triton {TESTED_TRITON} (NGC {DEFAULT_RELEASE}; the "
              f"server bundled in nvidia-pytriton 0.7.0), with the packages named in the command."]
    return "\n".join(lines) + "\n"


def write_repository(engine: Path, output: Path, options: Options) -> list[str]:
    """Write the repository into ``output`` (a new or empty folder); returns the model names."""
    source = read_source(engine)
    max_batch = check_options(source, options)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise UserError(f"{output}: exists and is not an empty folder; choose a new -o folder (nothing is overwritten)")
    models = configs(source, options, max_batch)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        for name, config in models.items():
            version = staging / name / "1"
            version.mkdir(parents=True)
            (staging / name / "config.pbtxt").write_text(pbtxt(config))
            if config.get("platform") == "ensemble":
                continue
            if name.endswith("_people"):
                shutil.copy(MODELS_DIR / "people.py", version / "model.py")
                package = version / "runtime"
                package.mkdir()
                here = Path(__file__).resolve().parents[1] / "runtime"
                for module in PEOPLE_MODULES:
                    shutil.copy(here / module, package / module)
            elif config.get("backend") == "python":
                shutil.copy(MODELS_DIR / "graph_onnxruntime.py", version / "model.py")
                shutil.copy(source.path, version / "model.onnx")
            else:
                shutil.copy(source.path, version / ("model.plan" if source.kind == "plan" else "model.onnx"))
        (staging / "README.md").write_text(readme(source, options, max_batch, list(models)))
        if output.exists():
            output.rmdir()
        staging.rename(output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return list(models)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m export.triton", description=__doc__.split("\n\n")[0].split(" — ", 1)[1],
        epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", type=Path, required=True, metavar="FILE",
                        help="an exported .onnx (python -m export.onnx) or TensorRT .plan with its sidecar (export.trt)")
    parser.add_argument("-o", "--output", type=Path, default=Path("model_repository"), metavar="DIR",
                        help="repository folder to create; must be new or empty (default: model_repository/)")
    parser.add_argument("--name", default="hrnet", help="name of the model clients address (default: hrnet)")
    parser.add_argument("--max-batch", type=int, metavar="N",
                        help="Triton max_batch_size (default: a .plan's profile limit from its sidecar, else 4)")
    parser.add_argument("--instances", type=int, default=1, metavar="K", help="instances of each model (default: 1)")
    parser.add_argument("--grouping-on", choices=("server", "client"), default="server",
                        help="server: graph + people models + ensemble; client: the graph model only, the client "
                             "groups (default: server)")
    parser.add_argument("--graph-backend", choices=("native", "python"), default="native",
                        help="native: Triton's onnxruntime_onnx / tensorrt_plan platform; python: a Python-backend "
                             "model running the .onnx in ONNX Runtime, for a Triton without the onnxruntime backend "
                             "(default: native)")
    parser.add_argument("--device", choices=("gpu", "cpu"), default="gpu",
                        help="instance kind of the graph model (a .plan is always gpu; default: gpu)")
    parser.add_argument("--max-queue-delay-us", type=int, default=2000, metavar="US",
                        help="dynamic batching queue delay in microseconds (default: 2000)")
    parser.add_argument("--release", default=DEFAULT_RELEASE, metavar="YY.MM",
                        help=f"NGC tritonserver release written into the README's docker line (default: "
                             f"{DEFAULT_RELEASE}); for a .plan, the one whose TensorRT built it")
    return parser


def run(args: argparse.Namespace) -> int:
    device = "gpu" if args.engine.suffix.lower() in (".plan", ".engine") else args.device
    options = Options(name=args.name, max_batch=args.max_batch, instances=args.instances, grouping_on=args.grouping_on,
                      graph_backend=args.graph_backend, device=device, max_queue_delay_us=args.max_queue_delay_us,
                      release=args.release)
    names = write_repository(args.engine, args.output, options)
    print(f"wrote {args.output}/: {', '.join(names)} (see {args.output}/README.md for the docker run line); "
          f"clients: --engine triton://HOST:8000/{args.name}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
