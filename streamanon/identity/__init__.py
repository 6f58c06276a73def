"""Identity engine: Ψ (dlib's 128-D ResNet in torch) and IFA (paper sec. 3.1, eqs. 1-5).

Modules (import them directly; this package imports nothing, so it stays cheap to import):
- ``recognizer``: ``Recognizer`` (features / head / forward), ``load_recognizer``
- ``align``: ``align_chip`` / ``align_chips``, dlib's 5-point 150x150 chip and its matrix
- ``embed``: ``embed_chips``, ``embed_faces``, ``reid_embeddings`` (ONNX Runtime), ``export_onnx``
- ``codebook``: ``Codebook`` (identity centroids, scaled cosine logits), ``default_codebook``
- ``ifa``: ``recast_identity`` and the pure functions of eqs. 1-5
- ``convert``: the dlib ``.dat`` -> safetensors converter (by hand: ``python -m streamanon.identity.weights``)
- ``weights``: Ψ's weights, converted from the installed dlib model at first use into the cache

See docs/identity.md.
"""
