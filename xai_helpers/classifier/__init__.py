"""The classifier wing: loading any Keras classifier and its weights' provenance, forward passes and logits,
labels, photos and input checks. Imports nothing else of the package."""
