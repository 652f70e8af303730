"""objssl backbones inside other frameworks (optional extras; nothing here is imported by ``objssl``).

* :mod:`objssl.integrations.detectron2` (``pip install objssl[d2]`` + ``bash transfer/install.sh``):
  backbones registered in detectron2's ``BACKBONE_REGISTRY`` (any timm model, FPN, C4 for ResNets),
  ``add_objssl_config(cfg)`` for the ``MODEL.OBJSSL.*`` keys.
* :mod:`objssl.integrations.mmseg` (``objssl[mmseg]``): a backbone registered in
  ``mmseg.registry.MODELS`` as ``objssl.TimmBackbone``, for ``custom_imports`` in mmseg configs.

Both load an objssl checkpoint (teacher or student backbone) directly and log a report of the
loaded, missing, unexpected and dropped keys. Importing this package imports neither framework.
Their framework-free core: :mod:`.dense_features` (the cut-down timm model), :mod:`.weights`
(reading weights safely, with the report) and :mod:`.norms` (BN conversion, freezing).

Layering: this package imports from :mod:`objssl.export` (the checkpoint readers, the pruning rule,
the detectron2 part mappers); :mod:`objssl.export` never imports from here.
"""
