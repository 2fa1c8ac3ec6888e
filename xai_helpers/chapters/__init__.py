"""The book's support wing: the study tables as the chapters read them, kept results, the build's log and
the single-photo sweeps. Imports ``classifier``, ``methods`` and ``study``."""
