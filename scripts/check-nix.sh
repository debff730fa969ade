#!/usr/bin/env bash
# check-nix.sh: parse every Nix expression of the repository, and every
# ```nix block of docs/*.md, with `nix-instantiate --parse`. Needs only Nix
# (Debian: `apt-get install -y nix-bin`), no nixpkgs and no network: CI runs
# it to catch syntax errors in the flake, the NixOS module, the package and
# the VM test, which nothing else here can build.
#
#   scripts/check-nix.sh        exit 0 when everything parses, 1 otherwise
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

command -v nix-instantiate >/dev/null || {
  echo "check-nix: nix-instantiate not found; install Nix (Debian: apt-get install -y nix-bin)" >&2
  exit 1
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# nix-instantiate wants a writable state directory even for --parse.
export NIX_STATE_DIR=${NIX_STATE_DIR:-$tmp/state}
mkdir -p "$tmp/blocks"

failed=0 checked=0
parse() { # parse FILE LABEL
  if ! out=$(nix-instantiate --parse "$1" 2>&1 >/dev/null); then
    echo "check-nix: $2 does not parse:" >&2
    sed 's/^/  /' <<<"$out" >&2
    failed=1
  fi
  checked=$((checked + 1))
}

# Tracked and untracked-but-not-ignored files (so target/ and result links stay out).
while IFS= read -r -d '' f; do
  parse "$f" "$f"
done < <(git ls-files -z -c -o --exclude-standard -- '*.nix')

# Nix blocks in the documentation: each one is written as a whole expression.
for md in docs/*.md; do
  [[ -f $md ]] || continue
  awk -v dir="$tmp/blocks" -v base="$(basename "$md" .md)" '
    /^```nix[[:space:]]*$/ { out = sprintf("%s/%s@%d.nix", dir, base, NR + 1); inblock = 1; next }
    inblock && /^```/ { inblock = 0; close(out); next }
    inblock { print > out }
  ' "$md"
done
for f in "$tmp"/blocks/*.nix; do
  [[ -e $f ]] || continue
  name=$(basename "$f" .nix)
  parse "$f" "docs/${name%@*}.md, the nix block starting at line ${name##*@}"
done

if ((failed)); then
  exit 1
fi
echo "check-nix: $checked Nix expressions parse"
