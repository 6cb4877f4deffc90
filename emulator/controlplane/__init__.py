"""The emulated control plane: apiservers, watch cache, informers, workqueues,
controllers, reporting through a listener. Imports ``common``, ``protos``, ``client``
and ``election`` only."""
