"""Entry point of the frozen (PyInstaller) build: the same command line as ``tray-agent``."""

from tray_agent.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
