"""The emulated control plane: apiservers, watch cache, informers, workqueues,
controllers. Imports ``common``, ``protos``, ``client`` and ``election``."""
