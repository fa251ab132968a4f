"""Ready-made targets for implementations nobody here wrote (e.g. ``--impl conformance.targets.torch_compile``)."""
