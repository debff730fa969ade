# The `mode` binary as a Nix package, with its units. Built from this
# checkout with the workspace's own Cargo.lock (no vendor hash to keep in
# sync), from a source that holds only what cargo reads, so editing docs or
# Nix files does not rebuild it. The units of pkgs/systemd/ and
# pkgs/systemd-user/ go to lib/systemd/{system,user}, naming this package's
# `mode` and coreutils instead of /usr/bin/mode and /bin/*; the NixOS module
# takes them from there (systemd.packages).
{
  lib,
  stdenv,
  rustPlatform,
  installShellFiles,
  coreutils,
}:

let
  root = ../..;
  cargoToml = lib.importTOML (root + "/Cargo.toml");
in
rustPlatform.buildRustPackage {
  pname = "mode-controller";
  inherit (cargoToml.package) version;

  src = lib.fileset.toSource {
    inherit root;
    fileset = lib.fileset.unions [
      (root + "/Cargo.toml")
      (root + "/Cargo.lock")
      (root + "/src")
      (root + "/guards")
    ];
  };

  cargoLock.lockFile = root + "/Cargo.lock";

  nativeBuildInputs = [ installShellFiles ];

  # Only the unit tests (`--lib --bins`) run here. The integration tests need
  # root, which the Nix build sandbox does not give: tests/*.rs boot a real
  # systemd in a systemd-nspawn container, and guards/tests/*.rs make device
  # nodes with mknod and start processes as other users with setpriv. The
  # NixOS VM test (tests/nixos/mode-switch.nix) exercises the installed
  # binary and units instead.
  cargoTestFlags = [
    "--workspace"
    "--lib"
    "--bins"
  ];

  postInstall = ''
    # Drop-in directories too (mode-.service.d/: the sandbox of every mode-* unit).
    mkdir -p $out/lib/systemd
    cp -r --no-preserve=mode ${../systemd} $out/lib/systemd/system
    cp -r --no-preserve=mode ${../systemd-user} $out/lib/systemd/user
    substituteInPlace $(find $out/lib/systemd -type f) \
      --replace-quiet =/usr/bin/mode =$out/bin/mode \
      --replace-quiet =/bin/ =${coreutils}/bin/
    # A unit naming a program elsewhere would fail on NixOS: stop here instead.
    if grep -rn '^Exec[A-Za-z]*=[-@:+!]*/\(usr\|bin\|sbin\)/' $out/lib/systemd; then
      echo "a unit above names a program outside the store" >&2
      exit 1
    fi
  ''
  # `mode completions bash|zsh|fish` and `mode manpage` are part of the CLI
  # (clap_complete / clap_mangen): completions print to stdout, `mode manpage
  # --dir` writes mode.1 and the page of every command it lists. Running the
  # binary needs a build platform that can execute it, so cross builds skip
  # this.
  + lib.optionalString (stdenv.buildPlatform.canExecute stdenv.hostPlatform) ''
    installShellCompletion --cmd mode \
      --bash <($out/bin/mode completions bash) \
      --fish <($out/bin/mode completions fish) \
      --zsh <($out/bin/mode completions zsh)
    mkdir man
    $out/bin/mode manpage --dir man
    installManPage man/*.1
  '';

  meta = {
    description = "Switch a workstation between desktop, studio and compute modes as verified systemd transitions";
    longDescription = ''
      mode-controller moves a dual-GPU workstation between a graphical
      desktop, a low-latency audio studio and an AI compute node. Each switch
      is a oneshot systemd transition that checks its guards first (who holds
      the GPU, whether audio is playing, memory headroom), refuses with the
      names of the blockers instead of killing them, verifies the result and
      rolls back on failure.
    '';
    license = lib.licenses.mit;
    mainProgram = "mode";
    platforms = lib.platforms.linux;
  };
}
