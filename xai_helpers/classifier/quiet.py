"""Native libraries' start-up chatter kept out of notebooks: the process's stderr (file descriptor 2) closed
for the duration of a block (TensorFlow's import, LiteRT's interpreter), Python's own errors unaffected."""
from __future__ import annotations

import os


class StderrClosed:
    """Context manager: the process's stderr (fd 2) goes to /dev/null inside, and is restored after."""

    def __enter__(self):
        try:
            self.saved = os.dup(2)
        except OSError:  # no usable fd 2 (e.g. some embedded interpreters): leave it alone
            self.saved = None
            return self
        self.devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(self.devnull, 2)
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            os.dup2(self.saved, 2)
            os.close(self.saved)
            os.close(self.devnull)
        return False


__all__ = ["StderrClosed"]
