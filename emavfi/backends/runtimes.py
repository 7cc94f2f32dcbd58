"""Adapters for the runtimes: build their files from exported ONNX graphs, load them, run them on torch tensors.

Each adapter: `files` (what one compiled graph part leaves in the cache), `version()`, `target(device)`,
`build(onnx_path, out_dir, part, precision)` and `load(folder, part, device, precision)` -> a function
mapping {input name: tensor} to the list of output tensors. An adapter may also have `load_lanes(...)` ->
several such functions that can run at once, one per thread (OpenVINO's streams).
"""
from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import torch

Session = Callable[[dict[str, torch.Tensor]], list[torch.Tensor]]


class OpenVinoRuntime:
    """OpenVINO on the CPU: IR (.xml + .bin) converted from the ONNX graph; fp32 inference precision."""

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

        ov.save_model(ov.convert_model(str(onnx_path)), str(out / f"{part}.xml"), compress_to_fp16=precision == "fp16")

    @staticmethod
    def load(folder: Path, part: str, device: torch.device, precision: str) -> Session:
        import openvino as ov

        compiled = ov.Core().compile_model(str(folder / f"{part}.xml"), "CPU", OpenVinoRuntime._config(precision))
        return OpenVinoRuntime._session(compiled.create_infer_request())

    @staticmethod
    def load_lanes(folder: Path, part: str, device: torch.device, precision: str) -> list[Session]:
        """Sessions of one model compiled with OpenVINO's throughput hint: one per stream, each run by its own
        thread, so independent pairs and timesteps share the cores better than one call at a time can."""
        import openvino as ov

        config = {**OpenVinoRuntime._config(precision), "PERFORMANCE_HINT": "THROUGHPUT"}
        compiled = ov.Core().compile_model(str(folder / f"{part}.xml"), "CPU", config)
        lanes = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        return [OpenVinoRuntime._session(compiled.create_infer_request()) for _ in range(lanes)]

    @staticmethod
    def _config(precision: str) -> dict:
        # without the hint, recent CPUs would run in bf16 and leave parity with the torch path; torch's thread
        # count (what the process was given: Ray's cpus_per_worker, a render node's limit) makes runs repeatable
        config: dict = {"INFERENCE_NUM_THREADS": torch.get_num_threads()}
        if precision == "fp32":
            config["INFERENCE_PRECISION_HINT"] = "f32"
        return config

    @staticmethod
    def _session(request) -> Session:
        def run(inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
            results = request.infer({name: t.numpy() for name, t in inputs.items()})  # outputs are copies
            return [torch.from_numpy(results[out]) for out in request.model_outputs]

        return run


class OnnxRuntime:
    """ONNX Runtime: the exported ONNX graph itself; CUDA provider on a CUDA device where installed."""

    name = "onnxruntime"

    @staticmethod
    def files(part: str) -> list[str]:
        return [f"{part}.onnx"]

    @staticmethod
    def version() -> str:
        import onnxruntime

        return onnxruntime.__version__

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

        return run


class TensorRtRuntime:
    """TensorRT engines built from the ONNX graph (fp16 by default), one per padded size; runs on CUDA tensors."""

    name = "tensorrt"
    WORKSPACE = 4 << 30

    @staticmethod
    def files(part: str) -> list[str]:
        return [f"{part}.engine"]

    @staticmethod
    def version() -> str:
        import tensorrt

        return tensorrt.__version__

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

        return run


ADAPTERS = {"openvino": OpenVinoRuntime, "onnxruntime": OnnxRuntime, "tensorrt": TensorRtRuntime}
