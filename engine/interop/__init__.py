"""Exchange with other tools. onnx_export: a project with its trained weights as an ONNX model
(docs/onnx.md), its fitted input normalisation included; needs the optional `onnx` extra
(pip install 'layerloom[onnx]'), which nothing else imports."""
