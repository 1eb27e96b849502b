"""The model code that ships to the Hub: configuration, modeling, attention, image-processing and pipeline files.

Each file here is copied flat into every saved model folder (``auto_map``, ``custom_pipelines``) and runs there as
remote code (``trust_remote_code=True``) where this package is absent, so these files import only each other
(``from .attention import ...``), torch and transformers — never the rest of the package
(``tests/project/test_import_graph.py``). The public classes are exported by the package root (``from hf_seq2seq import
RNNSeq2SeqConfig``); this ``__init__`` stays empty and is not shipped.
"""
