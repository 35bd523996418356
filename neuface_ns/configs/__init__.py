"""Named NeuFace presets, one module per dataset family (installed as `neuface_ns.configs`)."""
