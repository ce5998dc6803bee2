# The example package set: a small stand-in for nixpkgs made only of Nix builtins, Debian's static
# busybox (brought in with builtins.path) and the data files next to this one, so that it builds
# offline in seconds. The demo and the tests use it; attribute names matter (see README.md here).
#
# Like nixpkgs it is a function of `system`. Everything is built on this machine, by the host's
# busybox, as cross builds are: for another target system the derivations carry the target as an
# input (so their store paths differ). For aarch64-linux the programs in the outputs are real
# aarch64 binaries: Debian's static busybox and bash for arm64, unpacked by
# scripts/install-deps.sh under `arm64Root`, and a minimal aarch64 `hello`. For any other target
# they are the host's.
{ system ? builtins.currentSystem
, busyboxPath ? /bin/busybox
, arm64Root ? /var/lib/nixery-ts/arm64
, ...
}:

let
  buildSystem = builtins.currentSystem;
  targetAttrs = if system == buildSystem then { } else { targetSystem = system; };
  # Programs for the target come from Debian's arm64 packages when the target is aarch64 and
  # the host is not; otherwise the host's busybox serves both building and running.
  arm64Target = system == "aarch64-linux" && buildSystem != "aarch64-linux";

  inherit (builtins) genList concatStringsSep elemAt length;

  # busybox chooses its applet from argv[0]; Nix runs a builder with argv[0] = the file's base
  # name, and a store file is called `<hash>-name`. So copy the directory around busybox,
  # filtered down to that one file, which keeps the file's own name.
  busyboxName = baseNameOf (toString busyboxPath);
  # builtins.path copies a symlinked directory as a symlink: on merged-/usr systems (/bin ->
  # usr/bin) take the real directory under /usr.
  busyboxDir =
    let
      dir = dirOf busyboxPath;
      kind = (builtins.readDir (dirOf dir)).${baseNameOf dir} or "directory";
    in
    if kind == "symlink" then /usr + "/${baseNameOf dir}" else dir;
  bootstrap = builtins.path {
    name = "busybox-bootstrap";
    path = busyboxDir;
    filter = path: type: baseNameOf path == busyboxName;
  };

  # The host's busybox, with one symlink per applet. Without `attrs` it is the build tool: every
  # builder runs its sh, with its applets on PATH.
  hostBusybox = attrs: derivation ({
    name = "busybox-static";
    system = buildSystem;
    builder = "${bootstrap}/${busyboxName}";
    args = [ "sh" "-e" "-c" ''
      bb=${bootstrap}/${busyboxName}
      $bb mkdir -p $out/bin
      $bb cp $bb $out/bin/busybox
      for applet in $($bb --list); do
        [ "$applet" = busybox ] || $bb ln -s busybox "$out/bin/$applet"
      done
    '' ];
  } // attrs) // {
    pname = "busybox";
    version = "static";
    meta.description = "Debian's static busybox with one symlink per applet";
  };
  buildBusybox = hostBusybox { };

  # A file unpacked by scripts/install-deps.sh from one of Debian's arm64 packages.
  arm64File = package: file:
    let path = "${toString arm64Root}/${package}/${file}"; in
    if builtins.pathExists path
    then builtins.path { name = "${package}-arm64"; path = /. + path; }
    else throw "nixery-example: ${path} is missing (Debian's ${package} for arm64): run scripts/install-deps.sh as root";

  # The busybox the images run: Debian's arm64 build for an aarch64 target. Its applet links are
  # the host busybox's list: both are Debian's build of the same version and configuration.
  busybox =
    if system == buildSystem then buildBusybox
    else if !arm64Target then hostBusybox targetAttrs
    else derivation ({
      name = "busybox-static";
      system = buildSystem;
      builder = "${buildBusybox}/bin/sh";
      args = [ "-e" "-c" ''
        mkdir -p $out/bin
        cp ${arm64File "busybox-static" "bin/busybox"} $out/bin/busybox
        chmod 0555 $out/bin/busybox
        for applet in $(busybox --list); do
          [ "$applet" = busybox ] || ln -s busybox "$out/bin/$applet"
        done
      '' ];
      PATH = "${buildBusybox}/bin";
    } // targetAttrs) // {
      pname = "busybox";
      version = "static";
      meta.description = "Debian's static busybox for arm64 with one symlink per applet";
    };

  # A derivation built by the host busybox's sh running `script` with its applets on PATH.
  # Scripts refer to `busybox` (the target's) for whatever ends up in the output.
  mkPackage = { pname, version, script, outputs ? [ "out" ], meta ? { }, passthru ? { } }:
    let
      drv = derivation ({
        name = "${pname}-${version}";
        inherit outputs;
        system = buildSystem;
        builder = "${buildBusybox}/bin/sh";
        args = [ "-e" "-c" script ];
        PATH = "${buildBusybox}/bin";
      } // targetAttrs);
    in drv // { inherit pname version meta; } // passthru;

  # Shell snippet: writes an executable `$out/bin/<name>` run by busybox's sh.
  # `body` lines are plain shell; the heredoc is quoted, so nothing in it expands at build time.
  writeBin = name: body: ''
    mkdir -p "$out/bin"
    cat > "$out/bin/${name}" <<'NIXERY_EOF'
    #!${busybox}/bin/sh
    ${body}
    NIXERY_EOF
    chmod 0755 "$out/bin/${name}"
  '';

  # Shell snippet: a stand-in shared library that records (and so references) its dependencies.
  writeLib = file: deps: ''
    mkdir -p "$out/lib"
    echo "stand-in shared library $out/lib/${file}" > "$out/lib/${file}"
    ${concatStringsSep "\n" (map (d: ''echo "NEEDED ${d}/lib" >> "$out/lib/${file}"'') deps)}
  '';

  mkLib = { pname, version, deps ? [ ] }: mkPackage {
    inherit pname version;
    script = writeLib "lib${pname}.so" deps;
  };

  pad3 = i: let s = toString i; in if i < 10 then "00${s}" else if i < 100 then "0${s}" else s;
  repeat = n: s: concatStringsSep "" (genList (_: s) n);

  # Shell snippet: writes `$out/bin/hello`, a static aarch64 ELF executable of 166 bytes that
  # writes "Hello, world!\n" and exits 0 (write and exit system calls). One ELF header, one
  # PT_LOAD program header mapping the file at 0x400000, then the code and the text. Octal
  # escapes: busybox printf has no \x.
  aarch64Hello = ''
    mkdir -p $out/bin
    {
      printf '\177ELF\002\001\001\000\000\000\000\000\000\000\000\000'  # 64-bit, little-endian, ELF v1
      printf '\002\000\267\000\001\000\000\000'                # ET_EXEC, EM_AARCH64, EV_CURRENT
      printf '\170\000\100\000\000\000\000\000'                # e_entry 0x400078 (the code)
      printf '\100\000\000\000\000\000\000\000'                # e_phoff 64
      printf '\000\000\000\000\000\000\000\000'                # e_shoff: no sections
      printf '\000\000\000\000\100\000\070\000\001\000\000\000\000\000\000\000'  # flags, ehsize 64, phentsize 56, phnum 1
      printf '\001\000\000\000\005\000\000\000'                # PT_LOAD, read + execute
      printf '\000\000\000\000\000\000\000\000'                # p_offset 0
      printf '\000\000\100\000\000\000\000\000'                # p_vaddr 0x400000
      printf '\000\000\100\000\000\000\000\000'                # p_paddr
      printf '\246\000\000\000\000\000\000\000'                # p_filesz 166
      printf '\246\000\000\000\000\000\000\000'                # p_memsz 166
      printf '\000\000\001\000\000\000\000\000'                # p_align 0x10000
      printf '\040\000\200\322'                                  # mov x0, #1      (stdout)
      printf '\341\000\000\020'                                  # adr x1, text    (28 bytes on)
      printf '\302\001\200\322'                                  # mov x2, #14     (its length)
      printf '\010\010\200\322'                                  # mov x8, #64     (write)
      printf '\001\000\000\324'                                  # svc #0
      printf '\000\000\200\322'                                  # mov x0, #0      (status)
      printf '\250\013\200\322'                                  # mov x8, #93     (exit)
      printf '\001\000\000\324'                                  # svc #0
      printf 'Hello, world!\n'                                     # text
    } > $out/bin/hello
    chmod 0555 $out/bin/hello
  '';

  # --- libraries shared by several packages ---
  zlib = mkLib { pname = "zlib"; version = "1.3.1"; };
  libffi = mkLib { pname = "libffi"; version = "3.4.6"; };
  ncurses = mkLib { pname = "ncurses"; version = "6.4"; };
  oniguruma = mkLib { pname = "oniguruma"; version = "6.9.9"; };
  openssl = mkLib { pname = "openssl"; version = "3.0.14"; deps = [ zlib ]; };

  commonLibs = [ zlib libffi openssl ];
  # 120 small libraries, each using one of the common ones: with them `manylibs` has a runtime
  # closure of more than 94 store paths, more than the default layer budget.
  manyLibs = genList
    (i: mkLib {
      pname = "many-${pad3 i}";
      version = "1.0";
      deps = [ (elemAt commonLibs (i - (i / length commonLibs) * length commonLibs)) ];
    })
    120;

  cacert = mkPackage {
    pname = "nss-cacert";
    version = "3.101";
    script = ''
      mkdir -p $out/etc/ssl/certs
      cp ${./ca-bundle.crt} $out/etc/ssl/certs/ca-bundle.crt
    '';
    meta.description = "Debian's CA certificate bundle";
  };

  python3 = mkPackage {
    pname = "python3";
    version = "3.12.4";
    script = writeBin "python3" ''echo "Python 3.12.4 (nixery example stand-in)"'' + ''
      ln -s python3 $out/bin/python
      mkdir -p $out/lib/python3.12
      echo "runtime libraries: ${zlib} ${openssl} ${libffi}" > $out/lib/python3.12/os.py
    '';
  };

  mkPythonPackage = { pname, version, deps ? [ ], description ? null }: mkPackage {
    pname = "python3.12-${pname}";
    inherit version;
    meta = if description == null then { } else { inherit description; };
    script = ''
      dir=$out/lib/python3.12/site-packages/${pname}
      mkdir -p $dir
      echo "# ${pname} ${version}; interpreter ${python3}" > $dir/__init__.py
      ${concatStringsSep "\n" (map (d: ''echo "# requires ${d}" >> $dir/__init__.py'') deps)}
    '';
  };

  perl = mkPackage {
    pname = "perl";
    version = "5.38.2";
    script = writeBin "perl" ''echo "This is perl 5, version 38 (nixery example stand-in)"'' + ''
      mkdir -p $out/lib/perl5
      echo "1;" > $out/lib/perl5/strict.pm
    '';
  };

  urllib3 = mkPythonPackage { pname = "urllib3"; version = "2.2.2"; description = "HTTP client library with thread-safe connection pooling"; };
  certifi = mkPythonPackage { pname = "certifi"; version = "2024.7.4"; deps = [ cacert ]; description = "Mozilla's CA bundle for Python"; };

  curl = mkPackage {
    pname = "curl";
    version = "8.9.1";
    script = writeBin "curl" ''echo "curl 8.9.1 (nixery example stand-in)"'' + writeLib "libcurl.so.4" [ openssl zlib cacert ];
    meta.description = "A command line tool for transferring files with URL syntax";
  };

  applets = names: concatStringsSep "\n" (map
    (a: ''if [ -e ${busybox}/bin/${a} ]; then ln -s ${busybox}/bin/${a} "$out/bin/${a}"; fi'')
    names);

in
{
  inherit busybox cacert zlib openssl libffi ncurses oniguruma python3 perl curl;

  # Looks like nixpkgs' lib: a top-level attribute that is not a derivation.
  lib = { version = "nixery-example"; };

  bashInteractive = mkPackage {
    pname = "bash-interactive";
    version = "5.2p32";
    # bash is busybox's ash: enough for `bash -c '...'` and interactive use in the demo. For
    # aarch64 it is Debian's static bash for arm64 (busybox has no `bash` applet, and the image's
    # programs are to be aarch64 executables).
    script = (if arm64Target
      then ''
        mkdir -p $out/bin
        cp ${arm64File "bash-static" "bin/bash-static"} $out/bin/bash
        chmod 0555 $out/bin/bash
      ''
      else writeBin "bash" ''exec ${busybox}/bin/sh "$@"'') + ''
      ln -s ${busybox}/bin/sh $out/bin/sh
    '';
  };

  coreutils = mkPackage {
    pname = "coreutils";
    version = "9.5";
    script = ''
      mkdir -p $out/bin
      ${applets [ "[" "base64" "basename" "cat" "chgrp" "chmod" "chown" "chroot" "cp" "cut" "date"
        "dd" "df" "dirname" "du" "echo" "env" "expand" "expr" "factor" "false" "fold" "head" "id"
        "link" "ln" "logname" "ls" "md5sum" "mkdir" "mkfifo" "mknod" "mktemp" "mv" "nl" "nproc" "od"
        "paste" "printf" "pwd" "readlink" "realpath" "rm" "rmdir" "seq" "sha1sum" "sha256sum"
        "sha512sum" "shred" "shuf" "sleep" "sort" "stat" "stty" "sync" "tac" "tail" "tee" "test"
        "timeout" "touch" "tr" "true" "truncate" "tty" "uname" "unexpand" "uniq" "unlink" "wc" "who"
        "whoami" "yes" ]}
      test -e $out/bin/env
    '';
  };

  moreutils = mkPackage {
    pname = "moreutils";
    version = "0.69";
    script = ''
      mkdir -p $out/bin
      ${applets [ "ts" ]}
    '' + writeBin "sponge" ''t=$(mktemp) && cat > "$t" && if [ -n "$1" ]; then cat "$t" > "$1"; else cat "$t"; fi; rm -f "$t"'';
  };

  nano = mkPackage {
    pname = "nano";
    version = "8.1";
    script = writeBin "nano" ''exec ${busybox}/bin/vi "$@"'';
  };

  iana-etc = mkPackage {
    pname = "iana-etc";
    version = "20240318";
    script = ''
      mkdir -p $out/etc
      cp ${./protocols} $out/etc/protocols
      cp ${./services} $out/etc/services
    '';
  };

  hello = mkPackage {
    pname = "hello";
    version = "2.12.1";
    script = if arm64Target then aarch64Hello else writeBin "hello" "echo 'Hello, world!'";
    meta.description = "Prints a known line";
    # As in nixpkgs: an image of hello alone runs /bin/hello by default.
    meta.mainProgram = "hello";
    # One license, as nixpkgs' lib.licenses spells it (SBOMs carry its spdxId).
    meta.license = { spdxId = "GPL-3.0-or-later"; shortName = "gpl3Plus"; fullName = "GNU General Public License v3.0 or later"; };
  };

  # Registry names cannot start with `_`: `1password` is looked up as `_1password`.
  _1password = mkPackage {
    pname = "1password-cli";
    version = "2.29.0";
    script = writeBin "op" ''echo "1Password CLI 2.29.0 (nixery example stand-in)"'';
  };

  # Multi-output, default output `bin`; meta.outputsToInstall picks bin and man (not doc, lib, out).
  jq = mkPackage {
    pname = "jq";
    version = "1.7.1";
    outputs = [ "bin" "man" "doc" "lib" "out" ];
    meta.outputsToInstall = [ "bin" "man" ];
    # A list of licenses, one without an SPDX id (left out of SBOMs).
    meta.license = [ { spdxId = "MIT"; shortName = "mit"; } { shortName = "stand-in"; free = true; } ];
    script = ''
      mkdir -p $bin/bin $man/share/man/man1 $doc/share/doc/jq $lib/lib $out/nix-support
      echo "stand-in libjq; NEEDED ${oniguruma}/lib" > $lib/lib/libjq.so.1
      cat > $bin/bin/jq <<NIXERY_EOF
      #!${busybox}/bin/sh
      # links against $lib/lib/libjq.so.1
      echo "jq-1.7.1 (nixery example stand-in)"
      NIXERY_EOF
      chmod 0755 $bin/bin/jq
      echo ".TH JQ 1" > $man/share/man/man1/jq.1
      echo "jq manual (stand-in)" > $doc/share/doc/jq/README
      echo "$bin $lib" > $out/nix-support/propagated-build-inputs
    '';
  };

  # Multi-output without meta.outputsToInstall: only the default output (out) is installed.
  tree = mkPackage {
    pname = "tree";
    version = "2.1.3";
    outputs = [ "out" "man" ];
    script = writeBin "tree" ''ls -R "$@"'' + ''
      mkdir -p $man/share/man/man1
      echo ".TH TREE 1" > $man/share/man/man1/tree.1
    '';
  };

  git = mkPackage {
    pname = "git";
    version = "2.45.2";
    meta.description = "Distributed version control system";
    script = writeBin "git" ''echo "git version 2.45.2 (nixery example stand-in)"'' + ''
      mkdir -p $out/libexec/git-core
      echo "uses ${curl}/bin/curl ${perl}/bin/perl ${zlib}/lib ${openssl}/lib" > $out/libexec/git-core/git-remote-https
    '';
  };

  htop = mkPackage {
    pname = "htop";
    version = "3.3.0";
    script = writeBin "htop" ''echo "htop 3.3.0 (nixery example stand-in)"'' + writeLib "htop-deps" [ ncurses ];
  };

  python3Packages = {
    recurseForDerivations = true;
    requests = mkPythonPackage { pname = "requests"; version = "2.32.3"; deps = [ urllib3 certifi ]; description = "HTTP library for Python, for humans"; };
    inherit urllib3 certifi;
    # Like nixpkgs' aliases of removed packages: listing the set must skip it, not fail.
    removed = throw "nixery-example: python3Packages.removed was removed (throws on purpose)";
  };

  perlPackages = {
    recurseForDerivations = true;
    JSON = mkPackage {
      pname = "perl5.38.2-JSON";
      version = "4.10";
      script = ''
        mkdir -p $out/lib/perl5/site_perl
        echo "# for ${perl}/bin/perl" > $out/lib/perl5/site_perl/JSON.pm
      '';
    };
  };

  # Two attributes that differ only in case: `xorg.libx11` is ambiguous, `xorg.xeyes` is not.
  xorg = {
    recurseForDerivations = true;
    libX11 = mkLib { pname = "libX11"; version = "1.8.9"; };
    LibX11 = mkLib { pname = "LibX11-compat"; version = "1.0"; };
    xeyes = mkPackage {
      pname = "xeyes";
      version = "1.3.0";
      meta.description = "A follow the mouse X demo";
      script = writeBin "xeyes" ''echo "xeyes (nixery example stand-in)"'';
    };
  };

  manylibs = mkPackage {
    pname = "manylibs";
    version = "1.0";
    script = writeBin "manylibs" ''echo "manylibs: ${toString (length manyLibs)} libraries"'' + ''
      mkdir -p $out/etc
      ${concatStringsSep "\n" (map (l: ''echo "${l}/lib" >> $out/etc/manylibs.conf'') manyLibs)}
    '';
  };

  # File-system edge cases for the archive writer; every case is made by the builder for real.
  edge-cases = mkPackage {
    pname = "edge-cases";
    version = "1.0";
    script = ''
      e=$out/share/edge
      mkdir -p $e/empty-dir $e/dir $out/bin
      echo regular > $e/regular.txt
      echo "in a directory" > $e/dir/file.txt
      ln -s ${busybox}/bin/busybox $e/absolute-link
      ln -s regular.txt $e/relative-link
      ln -s ../edge/dir $e/relative-dir-link
      ln -s does-not-exist $e/dangling-link
      ln $e/regular.txt $e/hard-link.txt
      echo "name of 120 bytes" > "$e/${repeat 120 "n"}"
      deep="$e/deep/${repeat 60 "a"}/${repeat 60 "b"}/${repeat 60 "c"}/${repeat 60 "d"}"
      mkdir -p "$deep"
      echo "path of more than 255 bytes" > "$deep/file-at-the-bottom.txt"
      echo "non-ASCII name" > "$e/grüße-ünïcødé-日本語.txt"
      echo "#!${busybox}/bin/sh" > $out/bin/edge-exec
      chmod 0755 $out/bin/edge-exec
      # Nix canonicalises modes (0444/0555): record what the store actually kept.
      echo setuid > $e/setuid
      chmod 4755 $e/setuid 2> $e/setuid.chmod-error || true
      mkdir $e/sticky-dir
      chmod 1777 $e/sticky-dir 2> $e/sticky.chmod-error || true
    '';
  };

  big-data = mkPackage {
    pname = "big-data";
    version = "1.0";
    script = ''
      mkdir -p $out/share/big-data
      cp ${busybox}/bin/busybox $out/share/big-data/busybox.elf
      awk 'BEGIN { x = 1; for (i = 0; i < 262144; i++) { x = (x * 1103515245 + 12345) % 2147483648; printf "%08x", x } }' > $out/share/big-data/lcg.hex
    '';
  };

  # For failure tests: the builder prints a known line on stderr and exits 1.
  broken = mkPackage {
    pname = "broken";
    version = "1.0";
    script = ''
      echo "nixery-example: this package is broken on purpose" >&2
      exit 1
    '';
  };

  # For timeout tests: sleeps 30 s and then fails, so it never becomes valid (and never fast).
  slow = mkPackage {
    pname = "slow";
    version = "1.0";
    script = ''
      echo "nixery-example: sleeping for 30 seconds" >&2
      sleep 30
      echo "nixery-example: slow package gave up on purpose" >&2
      exit 1
    '';
  };

  # For evaluation-error tests.
  throws = throw "nixery-example: this attribute throws on purpose";
}
