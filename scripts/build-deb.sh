#!/usr/bin/env bash
#
# Build libnginx-mod-http-aigw_<version>_<arch>.deb from debian/, the
# Debian way (dpkg-buildpackage, dh with dh-sequence-nginx from
# nginx-dev), against Debian's nginx tree.
#
#   scripts/build-deb.sh [OUTDIR]     (default build/deb)
#
# dpkg-buildpackage writes into the source tree (debian/.debhelper,
# obj-*/) and puts the package beside it, in its parent folder: the build
# runs on a copy of the repository's files in OUTDIR/src, and the .deb,
# .buildinfo and .changes land in OUTDIR.  Prints the .deb's path last.

set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/build/deb}

die() { echo "build-deb: $*" >&2; exit 1; }

for tool in dpkg-buildpackage dh dh_nginx; do
    command -v "$tool" > /dev/null \
        || die "$tool not found (scripts/install-deps.sh; Debian:" \
               "apt-get install dpkg-dev debhelper nginx-dev)"
done

cd "$root"
name=$(dpkg-parsechangelog -S Source)
version=$(dpkg-parsechangelog -S Version)
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
pkg=libnginx-mod-http-aigw

mkdir -p "$out"
out=$(cd "$out" && pwd)
src="$out/src/$name-$version"
rm -rf "$out/src" "$out/${pkg}"_*.deb "$out/${pkg}"-dbgsym_*
mkdir -p "$src"

# the repository's files, committed or not, but what git ignores
if git -C "$root" rev-parse --git-dir > /dev/null 2>&1; then
    git -C "$root" ls-files -z --cached --others --exclude-standard \
        | (cd "$root" && xargs -0 sh -c 'for f; do
              [ -e "$f" ] && printf "%s\0" "$f"; done' sh) \
        | tar -C "$root" --null -T - -cf - | tar -C "$src" -xf -
else
    tar -C "$root" --exclude=./build --exclude='./t/servroot*' \
        -cf - . | tar -C "$src" -xf -
fi

echo "build-deb: dpkg-buildpackage in $src"
log="$out/build.log"
# dpkg-buildpackage's make must not join a make that runs us
if ! (cd "$src" && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
        dpkg-buildpackage -b -us -uc > "$log" 2>&1); then
    tail -n 60 "$log" >&2
    die "dpkg-buildpackage failed (log: $log)"
fi

# dpkg-buildpackage puts its output beside the source tree
mv -f "$out/src/${pkg}_${version}_$arch.deb" "$out/"
for f in "$out/src/${name}_${version}_$arch".{buildinfo,changes}; do
    [ -f "$f" ] && mv -f "$f" "$out/"
done
for f in "$out/src/${pkg}-dbgsym_${version}_$arch".{deb,ddeb}; do
    [ -f "$f" ] && mv -f "$f" "$out/"
done

echo "build-deb: $out/${pkg}_${version}_$arch.deb"
