"""Exports of the network for other runtimes: ONNX, OpenVINO IR and TorchScript (Nuke's CatFileCreator).

Nothing here imports torch or onnx at import time: `cli` registers the `export` subcommand of
`python -m emavfi`, `graphs` holds the traceable wrappers, `writers` writes the files.
"""
