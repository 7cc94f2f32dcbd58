"""`python -m emavfi ...`: see emavfi.cli."""
import sys

from .cli import main

sys.exit(main())
