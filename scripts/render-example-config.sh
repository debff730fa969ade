#!/usr/bin/env bash
# render-example-config.sh: nixos-modules/example-config.json is what the
# NixOS module renders for the complete example of docs/nixos.md. This
# script makes it so: it takes the example's `services.modeController`
# block, evaluates the module with it against real NixOS (nixos-eval, a
# developer tool that needs a nixpkgs snapshot; CI has none, so CI only
# checks that the binary accepts the file, tests/cli.rs), and writes the
# rendered /etc/mode-controller/config.json there. The rest of the example
# (drivers, greetd, k3s) does not reach the file.
#
#   NIXOS_EVAL=.../nixos-eval.sh scripts/render-example-config.sh WORKDIR [--check]
#
# WORKDIR is the one `nixos-eval.sh SETUP` prepared. --check compares
# instead of writing and exits 1 when the file is stale.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
eval_sh=${NIXOS_EVAL:-../shared/tools/nixos-eval/nixos-eval.sh}
workdir=${1:?usage: NIXOS_EVAL=... $0 WORKDIR [--check]}
check=${2:-}
target=nixos-modules/example-config.json

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The block from `  services.modeController = {` to its closing `  };`, in
# the first nix block after the example's heading.
{
  echo '{ config, lib, pkgs, ... }:'
  echo '{'
  awk '/^## A complete example/ { ex = 1 }
       ex && /^  services\.modeController = \{$/ { on = 1 }
       on { print }
       on && /^  \};$/ { exit }' docs/nixos.md
  echo '}'
} >"$tmp/example.nix"
grep -q 'services.modeController' "$tmp/example.nix" || {
  echo "render-example-config: no services.modeController block in docs/nixos.md's example" >&2
  exit 1
}

"$eval_sh" EVAL "$workdir" . "$tmp/out" --no-tests --config "$tmp/example.nix" >"$tmp/eval.log" 2>&1 || {
  cat "$tmp/eval.log" >&2
  exit 1
}
rendered=$tmp/out/etc/mode-controller/config.json
[[ -f $rendered ]] || {
  echo "render-example-config: the evaluation rendered no config.json:" >&2
  cat "$tmp/eval.log" >&2
  exit 1
}

if [[ $check == --check ]]; then
  if diff -u "$target" "$rendered"; then
    echo "render-example-config: $target is what the module renders"
  else
    echo "render-example-config: $target is stale; run without --check" >&2
    exit 1
  fi
else
  cp "$rendered" "$target"
  echo "render-example-config: wrote $target"
fi
