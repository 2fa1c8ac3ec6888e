"""The study wing: the per-photo analysis, and the many-photo study (settings, photos, rows, table, runner,
Ray, sanity stage, summaries, locks and safe output files). Imports only ``classifier`` and ``methods``."""
