"""Production scoring: exported model packages, batch scoring of files and the HTTP scoring service.

Nothing here imports torch for an ONNX package: scoring runs on ONNX Runtime and numpy/pyarrow only.
"""
