#!/usr/bin/env bash
# Build dist/tray-agent_<version>_<arch>.deb from a PyInstaller one-folder bundle.
# usage: packaging/linux/build-deb.sh BUNDLE_DIR VERSION OUT_DIR
set -euo pipefail
bundle=$(cd "$1" && pwd); version=$2; out=$3
here=$(cd "$(dirname "$0")" && pwd); root=$(cd "$here/../.." && pwd)
arch=$(dpkg --print-architecture)

stage=$(mktemp -d "${TMPDIR:-/tmp}/tray-agent-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
pkg=$stage/pkg
install -d "$pkg/DEBIAN" "$pkg/opt" "$pkg/usr/bin" "$pkg/usr/share/applications" \
  "$pkg/usr/share/icons/hicolor/scalable/apps" "$pkg/etc/xdg/tray-agent" "$pkg/usr/share/doc/tray-agent"
cp -a "$bundle" "$pkg/opt/tray-agent"
install -m 755 "$here/tray-agent.sh" "$pkg/usr/bin/tray-agent"
install -m 644 "$here/tray-agent.desktop" "$pkg/usr/share/applications/tray-agent.desktop"
install -m 644 "$root/resources/icons/tray-agent.svg" "$pkg/usr/share/icons/hicolor/scalable/apps/tray-agent.svg"
install -m 644 "$here/policy.toml.example" "$pkg/etc/xdg/tray-agent/policy.toml.example"
install -m 644 "$here/copyright" "$pkg/usr/share/doc/tray-agent/copyright"
install -m 755 "$here/postinst" "$here/postrm" "$pkg/DEBIAN/"
# Everything readable by all, nothing writable by others (dpkg-deb --root-owner-group sets root:root).
chmod -R u+rwX,go+rX,go-w "$pkg"

# The newest glibc symbol version the bundle uses is the libc6 it needs.
glibc=$(find "$pkg/opt/tray-agent" -type f \( -name '*.so*' -o -name tray-agent \) -print0 \
  | xargs -0 objdump -T 2>/dev/null | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@INSTALLED_SIZE@/$size/" \
    -e "s/@GLIBC@/${glibc:-2.31}/" "$here/control.in" > "$pkg/DEBIAN/control"

# Warn when a system library the bundle links is not covered by Depends (names differ per distro).
if command -v ldd >/dev/null && command -v dpkg-query >/dev/null; then
  depends=$(sed -n 's/^Depends: //p' "$pkg/DEBIAN/control")
  libdirs="$pkg/opt/tray-agent/_internal:$pkg/opt/tray-agent/_internal/PySide6/Qt/lib"
  find "$pkg/opt/tray-agent" -type f -name '*.so*' -print0 \
    | xargs -0 env LD_LIBRARY_PATH="$libdirs" ldd 2>/dev/null | awk '/=> \// {print $3}' \
    | grep -v "^$pkg" | sort -u | while read -r lib; do
      owner=$(dpkg-query -S "$(readlink -f "$lib")" 2>/dev/null | head -1 | cut -d: -f1) || true
      # libc6 comes from @GLIBC@; the others are dependencies of libgl1 and libxcb1.
      case "$owner" in ""|libc6|libglx0|libglvnd0|libxau6|libxdmcp6|libbsd0|libmd0) continue ;; esac
      case ", $depends," in *", $owner,"*|*", $owner "*) ;; *) echo "build-deb: warning: $lib ($owner) is not in Depends" >&2 ;; esac
    done
fi

mkdir -p "$out"
deb="$out/tray-agent_${version}_${arch}.deb"
dpkg-deb --build --root-owner-group -Zzstd "$pkg" "$deb" >/dev/null
echo "$deb"
