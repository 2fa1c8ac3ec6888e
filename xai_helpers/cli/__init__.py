"""The command line (``python -m xai_helpers``, ``xai-explain``): parser, main and the explain report.
Imported by nothing else of the package."""
