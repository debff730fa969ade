# The `mode` binary as a Nix package. Built from this checkout with the
# workspace's own Cargo.lock (no vendor hash to keep in sync), from a source
# that holds only what cargo reads, so editing docs or Nix files does not
# rebuild it.
{
  lib,
  stdenv,
  rustPlatform,
  installShellFiles,
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

  # `mode completions bash|zsh|fish` and `mode manpage` are part of the CLI
  # (clap_complete / clap_mangen): completions print to stdout, `mode manpage
  # --dir` writes mode.1 and the page of every command it lists. Running the
  # binary needs a build platform that can execute it, so cross builds skip
  # this.
  postInstall = lib.optionalString (stdenv.buildPlatform.canExecute stdenv.hostPlatform) ''
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
