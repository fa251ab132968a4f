"""Ready-made targets for implementations nobody here wrote.

``--impl xembed_conformance.targets.torch_compile``, ``--impl xembed_conformance.targets.onnx_runtime``.
"""
