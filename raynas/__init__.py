"""raynas: one-shot neural architecture search with NNI's classic API, on Ray."""

__version__ = "0.1.0"
