"""The `export` command: the network as ONNX, OpenVINO IR and TorchScript (Nuke's CatFileCreator).

Nothing here imports torch or onnx at import time: `cli` registers the `export` subcommand of
`python -m emavfi`. The traceable graphs and the writers live beside the runtimes that share them
(emavfi.backends.graphs, emavfi.backends.writers).
"""
