"""`python -m popbox` runs the command-line interface."""

from popbox.cli import main

raise SystemExit(main())
