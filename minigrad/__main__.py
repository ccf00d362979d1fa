"""`python -m minigrad` runs the `minigrad` command."""
import sys

from .app.cli import main

sys.exit(main())
