"""Runtime assets (icons, sounds, translations) shipped as tray_agent.resources."""
