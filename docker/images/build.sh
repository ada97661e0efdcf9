#!/usr/bin/env bash
# Builds rebound's demo images without any container registry:
#   1. a Debian base made with debootstrap (mirror read from this machine's apt
#      sources) and imported with `docker import`;
#   2. one image per service, `docker build` FROM that base, with no network step.
# An image whose `rebound.recipe` label matches the current recipe is kept as is.
# Usage: docker/images/build.sh [--force | --check]
#   --check builds nothing: one line per image, "IMAGE current|stale|missing"
#   (`rebound doctor` reads it; the binary images are "present" or "missing").
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
force=${1:-}
SUITE=bookworm
BASE=rebound/base:$SUITE
# docker-compose: `rebound swarm run` tasks bring their shard's stack up on the node's engine.
PACKAGES=postgresql-15,redis-server,nginx-light,busybox,procps,iproute2,ca-certificates,sqlite3,nats-server,openjdk-17-jre-headless,libzookeeper-java,docker-compose

log() { printf '[images] %s\n' "$*" >&2; }

base_recipe() { # the base changes only with its suite, package list and steps below
  printf '%s\n' "$SUITE" "$PACKAGES" "base-steps-v2" | sha256sum | cut -c1-16
}

current_recipe() { docker image inspect --format '{{ index .Config.Labels "rebound.recipe" }}' "$1" 2>/dev/null || true; }

apt_mirror() {
  local m=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    m=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$m" ] && [ -f /etc/apt/sources.list ]; then
    m=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^(http|https|file):/) { print $i; exit } }' /etc/apt/sources.list)
  fi
  [ -n "$m" ] || { echo "no Debian mirror found in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list" >&2; exit 1; }
  echo "$m"
}

build_base() {
  local recipe; recipe=$(base_recipe)
  if [ "$force" != "--force" ] && [ "$(current_recipe "$BASE")" = "$recipe" ]; then
    log "$BASE is up to date"; return
  fi
  command -v debootstrap >/dev/null || { log "installing debootstrap"; DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >&2; }
  local mirror rootfs; mirror=$(apt_mirror)
  rootfs=$(mktemp -d /tmp/rebound-rootfs.XXXXXX)
  trap 'rm -rf "$rootfs"' RETURN
  log "debootstrap $SUITE ($PACKAGES) — a few minutes"
  debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$mirror" >&2
  # Services are started by our own entrypoints, not by init scripts.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  rm -rf "$rootfs"/var/lib/postgresql/15/main "$rootfs"/etc/postgresql/15/main
  log "docker import $BASE"
  tar -C "$rootfs" -c . | docker import --change "LABEL rebound.recipe=$recipe" - "$BASE" >&2
}

image_recipe() { # context dir
  { docker image inspect --format '{{.Id}}' "$BASE"; find "$1" -type f | sort | xargs cat; cat "$here/build.sh"; } | sha256sum | cut -c1-16
}

build_image() { # name, context dir
  local name=$1 ctx=$2 tag="rebound/$1:latest" recipe
  recipe=$(image_recipe "$ctx")
  if [ "$force" != "--force" ] && [ "$(current_recipe "$tag")" = "$recipe" ]; then
    log "$tag is up to date"; return
  fi
  log "docker build $tag"
  docker build -q --label "rebound.recipe=$recipe" --build-arg "BASE=$BASE" -t "$tag" "$ctx" >&2
}

SERVICES="postgres redis nginx zookeeper nats"
if [ "$force" = "--check" ]; then
  state() { # tag, wanted recipe (empty: presence only)
    if ! docker image inspect "$1" >/dev/null 2>&1; then echo "$1 missing"
    elif [ -z "$2" ]; then echo "$1 present"
    elif [ "$(current_recipe "$1")" = "$2" ]; then echo "$1 current"
    else echo "$1 stale"; fi
  }
  state "$BASE" "$(base_recipe)"
  for svc in $SERVICES; do
    if docker image inspect "$BASE" >/dev/null 2>&1; then want=$(image_recipe "$here/$svc"); else want=none; fi
    state "rebound/$svc:latest" "$want"
  done
  for bin in demo-app proxy rebound; do state "rebound/$bin:latest" ""; done
  exit 0
fi

build_base
for svc in $SERVICES; do
  build_image "$svc" "$here/$svc"
done
# demo-app, proxy (rebound's fault proxy) and rebound (a `rebound swarm run` task): release binaries (same Debian release
# as the base, so their glibc matches), built in one cargo call.
log "cargo build --release -p demo-app -p rebound --bins"
(cd "$root" && cargo build --release -q -p demo-app -p rebound --bins)
binary_image() { # name, binary
  local ctx; ctx=$(mktemp -d "/tmp/rebound-$1.XXXXXX")
  cp "$here/$1/Dockerfile" "$ctx/"
  cp "$root/target/release/$2" "$ctx/"
  build_image "$1" "$ctx"
  rm -rf "$ctx"
}
binary_image demo-app demo-app
binary_image proxy rebound
binary_image rebound rebound
log "done: $(docker images --format '{{.Repository}}:{{.Tag}}' 'rebound/*' | tr '\n' ' ')"
