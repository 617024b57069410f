#!/usr/bin/env bash
# What a new user's machine sees: the README's test command (`make test`) in a fresh clone
# of the committed HEAD, with every cache pointed at empty temporary directories.
#
#   bash tools/fresh-check.sh [make target, default: test]      (or: make fresh-check)
#
# Empty: HOME (so ~/.cache, ~/.config, ~/go), MLOPS_CACHE (the built binaries), GOCACHE,
# GOMODCACHE, GOPATH, PIP_CACHE_DIR, XDG_CACHE_HOME. Kept: the machine's toolchains
# (Python under pyenv, Go, make, git) and its global config (/etc/pip.conf, CA bundle),
# which a new machine of this kind has too.
# Reports the wall time, the exit status and the peak disk the run used (sampled every
# 30 s), then removes everything it made (FRESH_KEEP=1 keeps it, for a look).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${1:-test}"
work="$(mktemp -d "${TMPDIR:-/tmp}/mlops-fresh.XXXXXX")"
log() { echo "[fresh-check] $*" >&2; }

git clone -q "$repo" "$work/repo"
mkdir -p "$work/home"
env_vars=(
  HOME="$work/home"
  XDG_CACHE_HOME="$work/home/.cache"
  MLOPS_CACHE="$work/home/.cache/mlops-operator"
  GOCACHE="$work/go-build"
  GOMODCACHE="$work/go-mod"
  GOPATH="$work/go"
  PIP_CACHE_DIR="$work/pip"
  # pyenv's shims find their Pythons under PYENV_ROOT, which defaults to ~/.pyenv.
  PYENV_ROOT="${PYENV_ROOT:-$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")}"
)

# Peak disk: the largest size of $work seen, in a file the sampler rewrites.
peak_file="$work/.peak"
echo 0 >"$peak_file"
(
  while sleep 30; do
    # du exits 1 when a file vanishes mid-walk (a build's temporary files) yet still prints
    # the total: keep that number, and count a sample with none as 0.
    used=$( { du -sxb "$work" 2>/dev/null || true; } | cut -f1)
    [[ "$used" =~ ^[0-9]+$ ]] || used=0
    if (( used > $(cat "$peak_file") )); then echo "$used" >"$peak_file"; fi
  done
) &
sampler=$!

cleanup() {
  kill "$sampler" 2>/dev/null || true
  (cd "$work/repo" && env "${env_vars[@]}" make cluster-down >/dev/null 2>&1) || true
  if [[ "${FRESH_KEEP:-0}" == 1 ]]; then
    log "kept $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

log "fresh clone of $(git -C "$repo" rev-parse --short HEAD) in $work/repo; every cache empty"
log "running: make $target"
start=$SECONDS
status=0
(cd "$work/repo" && env "${env_vars[@]}" make "$target") || status=$?
wall=$(( SECONDS - start ))
final=$( { du -sxb "$work" 2>/dev/null || true; } | cut -f1)
[[ "$final" =~ ^[0-9]+$ ]] || final=0
peak=$(cat "$peak_file")
(( final > peak )) && peak=$final

gib() { awk -v b="$1" 'BEGIN { printf "%.1f GiB", b / 1073741824 }'; }
sizes=""
for d in home/.cache/mlops-operator go-build go-mod pip repo/.venv repo/.venv-mlserver; do
  [[ -e "$work/$d" ]] && sizes+=" $d=$(gib "$(du -sxb "$work/$d" | cut -f1)")"
done
log "$(date -u +%F) make $target: exit $status, wall $(( wall / 60 )) min $(( wall % 60 )) s, peak disk $(gib "$peak")"
log "at the end:$sizes"
exit "$status"
