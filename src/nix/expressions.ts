// The Nix expressions we evaluate. They are constants: everything that comes from a user (package
// names, the source's URL, path or revision) reaches them as data, never as code: package names
// as `--argstr`, the source's arguments in the environment (NIXERY_SRC_ARGS), so that a URL never
// sits on a command line (`ps` shows those to every user).
// Builtins only, so any package set that is a function of `system` works, nixpkgs or not.

/** Loads the package set from `srcType` / `srcArgs` (see PinnedSource) for `system`. */
const LOAD_PACKAGE_SET = `
  loadPackageSet = srcType: srcArgs: system:
    let
      args = builtins.fromJSON srcArgs;
      src =
        if srcType == "path" then /. + args.path
        else if srcType == "git" then builtins.fetchGit args
        else if srcType == "channel" then builtins.fetchTarball args.url
        else throw "unknown package source type \${srcType}";
    in import src { inherit system; };
`;

/**
 * Resolves `packages` (JSON list of `{ name, path }`, `path` = the dotted name split on ".").
 * Per path component: the exact attribute, then `_<name>` for a name starting with a digit, then
 * a case-insensitive match when exactly one attribute matches (several → not found, "ambiguous").
 * The result is `{ missing = [ { requested, reason } ]; }` when anything is missing,
 * `{ failed = [ requested ]; }` when a package fails to evaluate (a `throw` or `assert`: a
 * removed or broken package; with `catch = "0"` the evaluation fails instead, so Nix prints why),
 * else `{ resolved = [ { requested, attrPath, packagePath, drvPath, outputs, mainProgram? } ]; denied = …; }`
 * where `packagePath` is the attribute path of the derivation itself (an output such as `.out`
 * dropped), and `meta` = { pname, version, licenses } (packageMeta); `sourceInfo` says when a git
 * source's commit was made and where a fetched source sits. `denied` (JSON list of attribute paths, from the deny policy) comes back as the
 * derivations those paths name (`[ { name, drvPath } ]`, missing ones skipped), so an alias of a
 * denied package is known by its derivation. Nothing is instantiated unless everything resolves.
 * Evaluated with --read-write-mode so reading drvPath writes the .drv files.
 */
export const RESOLVE_EXPRESSION = `
{ srcType, system, packages, denied ? "[]", catch ? "1" }:
let
  ${LOAD_PACKAGE_SET}
  pkgs = loadPackageSet srcType (builtins.getEnv "NIXERY_SRC_ARGS") system;
  inherit (builtins) attrNames concatStringsSep elem filter head length listToAttrs map substring tail tryEval;

  upperChars = [ "A" "B" "C" "D" "E" "F" "G" "H" "I" "J" "K" "L" "M" "N" "O" "P" "Q" "R" "S" "T" "U" "V" "W" "X" "Y" "Z" ];
  lowerChars = [ "a" "b" "c" "d" "e" "f" "g" "h" "i" "j" "k" "l" "m" "n" "o" "p" "q" "r" "s" "t" "u" "v" "w" "x" "y" "z" ];
  toLower = builtins.replaceStrings upperChars lowerChars;
  digits = [ "0" "1" "2" "3" "4" "5" "6" "7" "8" "9" ];

  # A value that fails to evaluate counts as failed (with catch = "0" the failure is Nix's).
  attempt = v: if catch == "1" then tryEval v else { success = true; value = v; };

  pick = set: name:
    let
      candidates = [ name ] ++ (if elem (substring 0 1 name) digits then [ "_\${name}" ] else [ ]);
      exact = filter (c: set ? \${c}) candidates;
      folded = map toLower candidates;
      loose = filter (n: elem (toLower n) folded) (attrNames set);
    in
    if exact != [ ] then { found = head exact; }
    else if length loose == 1 then { found = head loose; }
    else if loose == [ ] then { reason = "no attribute \${name}"; }
    else { reason = "\${name} is ambiguous (\${concatStringsSep ", " loose})"; };

  isDerivation = v: builtins.isAttrs v && (v.type or null) == "derivation";

  # pkgPath: the path of the first derivation on the way (what an output belongs to).
  walk = value: path: pkgPath: rest:
    let
      forced = attempt (isDerivation value);
      here = if pkgPath == null && forced.value then path else pkgPath;
    in
    if !forced.success then { failed = true; }
    else if rest == [ ] then { inherit value path; pkgPath = here; }
    else if !(builtins.isAttrs value) then { reason = "\${concatStringsSep "." path} is not an attribute set"; }
    else
      let r = pick value (head rest); in
      if r ? found then walk value.\${r.found} (path ++ [ r.found ]) here (tail rest)
      else { reason = if path == [ ] then r.reason else "\${r.reason} in \${concatStringsSep "." path}"; };

  outputsOf = drv:
    let
      all = drv.outputs or [ "out" ];
      default = drv.outputName or "out";
      wanted =
        if drv.outputSpecified or false then [ default ]
        else drv.meta.outputsToInstall or [ default ];
      chosen = filter (o: elem o all) wanted;
      names = if chosen == [ ] then [ default ] else chosen;
    in listToAttrs (map (o: { name = o; value = drv.\${o}.outPath; }) names);

  # meta.mainProgram, as data: a string, or nothing (absent, or failing to evaluate).
  mainProgramOf = drv:
    let m = tryEval (drv.meta.mainProgram or null); in
    if m.success && builtins.isString m.value then { mainProgram = m.value; } else { };

  lookups = map
    (p:
      let r = walk pkgs [ ] null p.path; in
      if r ? failed then { requested = p.name; failed = true; }
      else if r ? reason then { requested = p.name; inherit (r) reason; }
      else if !(isDerivation r.value) then { requested = p.name; reason = "\${concatStringsSep "." r.path} is not a derivation"; }
      else
        let d = attempt (builtins.seq (outputsOf r.value) r.value.drvPath); in
        if !d.success then { requested = p.name; failed = true; }
        else { requested = p.name; attrPath = r.path; packagePath = if r.pkgPath == null then r.path else r.pkgPath; drv = r.value; })
    (builtins.fromJSON packages);
  missing = filter (l: l ? reason) lookups;
  failed = filter (l: l ? failed) lookups;

  # What an SBOM says of a package, as data: pname and version (else parsed from name), and the
  # SPDX ids of meta.license (one license or a list; licenses without spdxId are left out).
  packageMeta = drv:
    let
      str = v: let r = tryEval (if builtins.isString v then v else ""); in if r.success then r.value else "";
      parsed = builtins.parseDrvName (str (drv.name or ""));
      pname = str (drv.pname or "");
      version = str (drv.version or "");
      license = tryEval (drv.meta.license or [ ]);
      licenses = if !license.success then [ ] else if builtins.isList license.value then license.value else [ license.value ];
      spdx = l: let r = tryEval (if builtins.isAttrs l && builtins.isString (l.spdxId or null) then [ l.spdxId ] else [ ]); in if r.success then r.value else [ ];
    in {
      pname = if pname == "" then parsed.name else pname;
      version = if version == "" then parsed.version else version;
      licenses = builtins.sort builtins.lessThan (builtins.concatMap spdx licenses);
    };

  # The fetched source, for SBOMs: a git commit's time, and the store path a source was fetched to.
  sourceInfo =
    let args = builtins.fromJSON (builtins.getEnv "NIXERY_SRC_ARGS"); in
    if srcType == "git" then
      let s = builtins.fetchGit args; in { lastModified = s.lastModified or null; storePath = builtins.unsafeDiscardStringContext s.outPath; }
    else if srcType == "channel" then { lastModified = null; storePath = builtins.unsafeDiscardStringContext (builtins.fetchTarball args.url); }
    else { lastModified = null; storePath = null; };

  # A denied attribute path, exactly as written, to its derivation (if it has one).
  deniedDrv = path:
    let
      v = tryEval (builtins.foldl' (set: n: if builtins.isAttrs set && set ? \${n} then set.\${n} else null) pkgs path);
      d = if v.success && isDerivation v.value then tryEval v.value.drvPath else { success = false; };
    in if d.success then [ { name = concatStringsSep "." path; drvPath = d.value; } ] else [ ];
in
# The set itself is forced outside any tryEval: a set that fails to load is the source's failure,
# not the requested packages'.
builtins.seq (builtins.isAttrs pkgs) (
if missing != [ ] then { missing = map (l: { inherit (l) requested reason; }) missing; }
else if failed != [ ] then { failed = map (l: l.requested) failed; }
else {
  resolved = map
    (l: { inherit (l) requested attrPath packagePath; drvPath = l.drv.drvPath; outputs = outputsOf l.drv; } // mainProgramOf l.drv
      // { meta = packageMeta l.drv; })
    lookups;
  denied = builtins.concatMap deniedDrv (builtins.fromJSON denied);
  inherit sourceInfo;
})
`;

/**
 * Every package of the set: top-level derivations, recursing into sets with
 * \`recurseForDerivations = true\`; attributes that fail to evaluate (throw, assert) are skipped.
 * Returns the sorted, de-duplicated list of .drv paths (written, with --read-write-mode).
 */
export const POPCOUNT_EXPRESSION = `
{ srcType, system }:
let
  ${LOAD_PACKAGE_SET}
  pkgs = loadPackageSet srcType (builtins.getEnv "NIXERY_SRC_ARGS") system;
  inherit (builtins) attrNames concatMap filter tryEval;

  drvPathOf = v:
    let r = tryEval (if builtins.isAttrs v && (v.type or null) == "derivation" then v.drvPath else null); in
    if r.success && r.value != null then [ r.value ] else [ ];

  collect = depth: set:
    concatMap
      (name:
        let
          attempt = tryEval set.\${name};
          v = attempt.value;
          isSet = attempt.success && builtins.isAttrs v;
          isDrv = isSet && (tryEval ((v.type or null) == "derivation")).value == true;
          recurse = isSet && !isDrv && depth < 8 && (tryEval (v.recurseForDerivations or false)).value == true;
        in
        if isDrv then drvPathOf v
        else if recurse then collect (depth + 1) v
        else [ ])
      (attrNames set);
in
builtins.sort builtins.lessThan (builtins.attrNames (builtins.listToAttrs
  (map (p: { name = builtins.unsafeDiscardStringContext p; value = null; }) (collect 0 pkgs))))
`;

/**
 * The package list for search: one line per package, a JSON array
 * `[attrPath, name, pname, version, description]`, for top-level derivations and those in sets
 * with \`recurseForDerivations = true\` (as nixpkgs' own tools list them). Attributes and fields
 * that fail to evaluate (throw, assert) are skipped or left empty; a field that is not a string
 * is empty. Run with \`nix eval --raw --impure\`: the source comes as data in the environment
 * (NIXERY_SRC_TYPE, NIXERY_SRC_ARGS, NIXERY_SYSTEM), and the raw output is streamed line by line
 * (a nixpkgs-sized set is tens of MB).
 */
export const PACKAGES_EXPRESSION = `
let
  ${LOAD_PACKAGE_SET}
  inherit (builtins) attrNames concatMap concatStringsSep getEnv isAttrs isString parseDrvName toJSON tryEval;
  pkgs = loadPackageSet (getEnv "NIXERY_SRC_TYPE") (getEnv "NIXERY_SRC_ARGS") (getEnv "NIXERY_SYSTEM");

  # A string field; "" when it is missing, not a string, or fails to evaluate.
  str = v: let r = tryEval (if isString v then v else ""); in if r.success then r.value else "";

  entry = path: drv:
    let
      name = str (drv.name or "");
      parsed = parseDrvName name;
    in
    toJSON [
      (concatStringsSep "." path)
      name
      (str (drv.pname or parsed.name))
      (str (drv.version or parsed.version))
      (str (drv.meta.description or ""))
    ];

  collect = depth: path: set:
    concatMap
      (n:
        let
          attempt = tryEval set.\${n};
          v = attempt.value;
          isSet = attempt.success && isAttrs v;
          isDrv = isSet && (tryEval ((v.type or null) == "derivation")).value == true;
          recurse = isSet && !isDrv && depth < 8 && (tryEval (v.recurseForDerivations or false)).value == true;
        in
        if isDrv then [ (entry (path ++ [ n ]) v) ]
        else if recurse then collect (depth + 1) (path ++ [ n ]) v
        else [ ])
      (attrNames set);
in
builtins.unsafeDiscardStringContext (concatStringsSep "" (map (line: line + "\\n") (collect 0 [ ] pkgs)))
`;
