"""Ready-made targets for implementations nobody here wrote (e.g. ``--impl xembed_conformance.targets.torch_compile``)."""
