"""`python -m symbackprop`: the command line (symbackprop/cli.py)."""
from .cli import main

raise SystemExit(main())
