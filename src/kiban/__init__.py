"""kiban (基盤): build, govern and deploy your own Japanese foundation model on your own machines."""

__version__ = "0.1.0"
__all__ = ["__version__"]
