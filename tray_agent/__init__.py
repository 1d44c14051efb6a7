"""tray_agent: a system-tray app for customer-support agents."""

__version__ = "0.1.0"
