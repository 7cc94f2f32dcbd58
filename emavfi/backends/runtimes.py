"""Adapters for the runtimes: build their files from exported ONNX graphs, load them, run them on torch tensors.

Each adapter: `files` (what one compiled graph part leaves in the cache), `version()`, `target(device)`,
`build(onnx_path, out_dir, part, precision)` and `load(folder, part, device, precision)` -> a Session. An
adapter may also have `load_lanes(...)` -> (a Session that runs several feeds at once, how many at once).
"""
from __future__ import annotations

import importlib
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

Session = Callable[[Sequence[dict[str, torch.Tensor]], float], list[list[torch.Tensor]]]
"""session(feeds, limit): each feed ({input name: tensor}) run once -> its output tensors, in order; raises
Stalled where the runtime can wait with a limit (OpenVINO) and a run has no result after `limit` seconds."""
# OpenVINO's inference precision hint per precision setting: f32 unless bf16 is asked for (fp16 compresses the
# IR's weights only). Without a hint, CPUs with AMX compute in bf16 and leave parity with the torch path.
OPENVINO_HINTS = {"fp32": "f32", "fp16": "f32", "bf16": "bf16"}


class Stalled(RuntimeError):
    """A runtime run gave no result within the limit it was given (seconds)."""

    def __init__(self, seconds: float):
        super().__init__(f"no result after {seconds:g} s")
        self.seconds = seconds


def sequential(run_one: Callable[[dict[str, torch.Tensor]], list[torch.Tensor]]) -> Session:
    """A Session over a runtime that runs one feed at a time synchronously (no limit: it cannot be waited on)."""
    return lambda feeds, limit: [run_one(feed) for feed in feeds]


class OpenVinoRuntime:
    """OpenVINO on the CPU: IR (.xml + .bin) converted from the ONNX graph; f32 inference unless bf16 is asked for.

    Runs go through OpenVINO's asynchronous API (start_async, wait_for), all started from the calling thread:
    Python threads calling `infer` at once could deadlock inside OpenVINO's Python binding (issue 23).
    """

    name = "openvino"

    @staticmethod
    def files(part: str) -> list[str]:
        return [f"{part}.xml", f"{part}.bin"]

    @staticmethod
    def version() -> str:
        import openvino

        return openvino.get_version()

    @staticmethod
    def target(device: torch.device) -> str:
        return "CPU"

    @staticmethod
    def build(onnx_path: Path, out: Path, part: str, precision: str) -> None:
        import openvino as ov

        model = ov.convert_model(str(onnx_path))
        model.set_rt_info(OPENVINO_HINTS[precision], ["runtime_options", "INFERENCE_PRECISION_HINT"])
        ov.save_model(model, str(out / f"{part}.xml"), compress_to_fp16=precision == "fp16")

    @staticmethod
    def load(folder: Path, part: str, device: torch.device, precision: str) -> Session:
        import openvino as ov

        compiled = ov.Core().compile_model(str(folder / f"{part}.xml"), "CPU", OpenVinoRuntime.config(precision))
        return OpenVinoRuntime._session(compiled, 1)

    @staticmethod
    def load_lanes(folder: Path, part: str, device: torch.device, precision: str) -> tuple[Session, int]:
        """The graph compiled with OpenVINO's throughput hint, one request per stream, and the streams' count:
        independent pairs and timesteps in flight at once share the cores better than one run at a time can."""
        import openvino as ov

        config = {**OpenVinoRuntime.config(precision), "PERFORMANCE_HINT": "THROUGHPUT"}
        compiled = ov.Core().compile_model(str(folder / f"{part}.xml"), "CPU", config)
        lanes = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        return OpenVinoRuntime._session(compiled, lanes), lanes

    @staticmethod
    def config(precision: str) -> dict:
        """Compile settings for every OpenVINO compile of ours: the precision hint always set (OPENVINO_HINTS), and
        torch's thread count (what the process was given: Ray's cpus_per_worker, a render node's limit)."""
        return {"INFERENCE_NUM_THREADS": torch.get_num_threads(), "INFERENCE_PRECISION_HINT": OPENVINO_HINTS[precision]}

    @staticmethod
    def _session(compiled, count: int) -> Session:
        """A Session with `count` requests: feed k waits for feed k - count on its request, so up to `count` run at
        once; a request with no result after the limit cancels them all (new ones take their place) and raises
        Stalled."""
        requests = [compiled.create_infer_request() for _ in range(count)]

        def result(request, limit: float) -> list[torch.Tensor]:
            if not request.wait_for(max(0, int(limit * 1000))):
                for each in requests:
                    each.cancel()
                requests[:] = [compiled.create_infer_request() for _ in range(count)]  # a cancelled one stays so
                raise Stalled(limit)
            return [torch.from_numpy(request.get_output_tensor(i).data.copy()) for i in range(len(compiled.outputs))]

        def run(feeds: Sequence[dict[str, torch.Tensor]], limit: float) -> list[list[torch.Tensor]]:
            done: list[list[torch.Tensor]] = []
            for k, feed in enumerate(feeds):
                if k >= count:
                    done.append(result(requests[k % count], limit))
                requests[k % count].start_async({name: t.numpy() for name, t in feed.items()})
            done.extend(result(requests[k % count], limit) for k in range(len(done), len(feeds)))
            return done

        return run


class _OneFile:
    """An adapter whose compiled graph part is the one file `<part><suffix>`, versioned as its package `name`."""

    name = suffix = ""

    @classmethod
    def files(cls, part: str) -> list[str]:
        return [f"{part}{cls.suffix}"]

    @classmethod
    def version(cls) -> str:
        return importlib.import_module(cls.name).__version__


class OnnxRuntime(_OneFile):
    """ONNX Runtime: the exported ONNX graph itself; CUDA provider on a CUDA device where installed."""

    name, suffix = "onnxruntime", ".onnx"

    @staticmethod
    def target(device: torch.device) -> str:
        return "CPU" if device.type == "cpu" else torch.cuda.get_device_name(device)

    @staticmethod
    def build(onnx_path: Path, out: Path, part: str, precision: str) -> None:
        shutil.copyfile(onnx_path, out / f"{part}.onnx")

    @staticmethod
    def load(folder: Path, part: str, device: torch.device, precision: str) -> Session:
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # as for OpenVINO: the process's share of cores
        session = ort.InferenceSession(str(folder / f"{part}.onnx"), options, providers=providers)

        def run(inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
            return [torch.from_numpy(x) for x in session.run(None, {k: t.cpu().numpy() for k, t in inputs.items()})]

        return sequential(run)


class TensorRtRuntime(_OneFile):
    """TensorRT engines built from the ONNX graph (fp16 by default), one per padded size; runs on CUDA tensors."""

    name, suffix = "tensorrt", ".engine"
    WORKSPACE = 4 << 30

    @staticmethod
    def target(device: torch.device) -> str:
        return torch.cuda.get_device_name(device)

    @staticmethod
    def build(onnx_path: Path, out: Path, part: str, precision: str) -> None:
        import tensorrt as trt

        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        major = int(trt.__version__.split(".")[0])  # TensorRT 8 needs explicit batch asked for; 10 has only that
        explicit = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) if major < 10 else 0
        network = builder.create_network(explicit)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"TensorRT could not parse the exported {part} graph: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, TensorRtRuntime.WORKSPACE)
        if precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        engine = builder.build_serialized_network(network, config)
        if engine is None:
            raise RuntimeError(f"TensorRT could not build an engine for the {part} graph (see its log above)")
        (out / f"{part}.engine").write_bytes(bytes(engine))

    @staticmethod
    def load(folder: Path, part: str, device: torch.device, precision: str) -> Session:
        import tensorrt as trt

        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine = runtime.deserialize_cuda_engine((folder / f"{part}.engine").read_bytes())
        if engine is None:
            raise RuntimeError(f"TensorRT could not load {folder / part}.engine")
        context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]

        def run(inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
            with torch.cuda.device(device):
                held = {k: t.to(device=device, dtype=torch.float32).contiguous() for k, t in inputs.items()}
                for name, tensor in held.items():
                    context.set_tensor_address(name, tensor.data_ptr())
                result = [torch.empty(tuple(engine.get_tensor_shape(n)), dtype=torch.float32, device=device)
                          for n in outputs]
                for name, tensor in zip(outputs, result):
                    context.set_tensor_address(name, tensor.data_ptr())
                stream = torch.cuda.current_stream(device)
                if not context.execute_async_v3(stream.cuda_stream):
                    raise RuntimeError("TensorRT execution failed")
                stream.synchronize()
            return result

        return sequential(run)


ADAPTERS = {"openvino": OpenVinoRuntime, "onnxruntime": OnnxRuntime, "tensorrt": TensorRtRuntime}
