"""``python -m xai_helpers [explain] IMAGE ...`` and ``python -m xai_helpers study ...``: see ``cli``."""
import sys

from xai_helpers.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
