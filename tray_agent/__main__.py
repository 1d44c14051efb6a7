"""`python -m tray_agent` runs the command line."""

from tray_agent.cli import main

raise SystemExit(main())
