#!/usr/bin/env bash
# Build the PyInstaller one-folder bundle and, on Linux, the .deb:
#   packaging/build.sh            -> dist/tray-agent/ and dist/tray-agent_<version>_<arch>.deb
#   packaging/build.sh --dist DIR --work DIR [--no-deb]
# Needs the app and PyInstaller in the venv: pip install -e .[package] (offline-safe afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
py=${PYTHON:-$root/.venv/bin/python}
[ -x "$py" ] || py=python3
dist=$root/dist; work=$root/build/pyinstaller; deb=1
while [ $# -gt 0 ]; do
  case "$1" in
    --dist) dist=$(realpath -m "$2"); shift 2 ;;
    --work) work=$(realpath -m "$2"); shift 2 ;;
    --no-deb) deb=0; shift ;;
    *) echo "usage: packaging/build.sh [--dist DIR] [--work DIR] [--no-deb]" >&2; exit 2 ;;
  esac
done

# One version: tray_agent.__version__ must match pyproject.toml's.
version=$("$py" - <<'PY'
import re, sys, tomllib
pyproject = tomllib.load(open("pyproject.toml", "rb"))["project"]["version"]
package = re.search(r'__version__ = "([^"]+)"', open("tray_agent/__init__.py").read()).group(1)
if pyproject != package:
    sys.exit(f"version mismatch: pyproject.toml {pyproject}, tray_agent/__init__.py {package}")
print(package)
PY
)
echo "tray-agent $version: building the bundle in $dist/tray-agent"
# -X no_debug_ranges: the bundle's bytecode without column positions. A frozen traceback shows
# no source lines, so it never uses them; without them the bundle and its idle RSS are smaller.
"$py" -X no_debug_ranges -m PyInstaller --noconfirm --clean --log-level WARN --distpath "$dist" --workpath "$work" \
  packaging/tray-agent.spec
case "$(uname -s)" in
  Linux)
    if [ "$deb" = 1 ]; then packaging/linux/build-deb.sh "$dist/tray-agent" "$version" "$dist"; fi ;;
  *) echo "not Linux: no .deb (see .github/workflows/build.yml for the MSI and the .app)" ;;
esac
