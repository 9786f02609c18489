#!/bin/sh
# Installs the C library: libmorphosde.a, libmorphosde.so (with its SONAME
# link libmorphosde.so.<ABI>), include/morphosde.h and
# lib/pkgconfig/morphosde.pc under PREFIX, from a release build.
#
#   cargo build --release -p morphosde-ffi
#   ffi/install.sh /usr/local            # or any prefix you can write to
#   cc prog.c $(pkg-config --cflags --libs morphosde)
#
# Usage: ffi/install.sh PREFIX [BUILD_DIR]   (BUILD_DIR: target/release)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
prefix=${1:?usage: ffi/install.sh PREFIX [BUILD_DIR]}
build=${2:-$root/target/release}
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)
abi=$(sed -n 's/^pub const MSDE_ABI_VERSION: u32 = \([0-9]*\);$/\1/p' "$root/ffi/src/lib.rs")
for f in libmorphosde.a libmorphosde.so; do
  [ -f "$build/$f" ] || { echo "$build/$f missing: run cargo build --release -p morphosde-ffi" >&2; exit 1; }
done
mkdir -p "$prefix/include" "$prefix/lib/pkgconfig"
cp "$root/include/morphosde.h" "$prefix/include/"
cp "$build/libmorphosde.a" "$prefix/lib/"
cp "$build/libmorphosde.so" "$prefix/lib/libmorphosde.so.$version"
ln -sf "libmorphosde.so.$version" "$prefix/lib/libmorphosde.so.$abi"
ln -sf "libmorphosde.so.$abi" "$prefix/lib/libmorphosde.so"
sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" "$root/ffi/morphosde.pc.in" \
  > "$prefix/lib/pkgconfig/morphosde.pc"
echo "installed morphosde $version (ABI $abi) under $prefix"
