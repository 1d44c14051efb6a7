#!/bin/sh
# /usr/bin/tray-agent: starts the bundle in /opt/tray-agent.
# A tray-agent:// link given alone (the .desktop file's %u) means "open that conversation".
case "${1:-}" in
  tray-agent:*) set -- open "$@" ;;
esac
exec /opt/tray-agent/tray-agent "$@"
