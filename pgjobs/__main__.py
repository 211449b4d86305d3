"""``python -m pgjobs``: the command line."""

from .cli import main

raise SystemExit(main())
