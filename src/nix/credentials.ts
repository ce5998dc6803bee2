// Credentials of a git URL (`https://user:token@host/repo.git`) never go on a command line: any
// user of the machine can read a process's arguments (`ps`, /proc/*/cmdline), while its
// environment is readable only by its own user. git gets the URL without them and the
// credentials as an `Authorization` header for that host through git's environment-borne config
// (GIT_CONFIG_COUNT/KEY/VALUE, git ≥ 2.31); Nix passes its environment on to the git it runs
// for `builtins.fetchGit`, so the same environment serves both.

/** A URL as git may be told it, and the environment that carries its credentials (if any). */
export interface GitAuth {
  url: string;
  env: Record<string, string>;
}

/**
 * Splits the credentials off an http(s) URL. A URL without any (or of another scheme: ssh's
 * `user@` names an account, not a secret) comes back unchanged with an empty environment.
 * `base` is the environment the variables are added to (an existing GIT_CONFIG_COUNT is kept).
 */
export function gitAuth(url: string, base: NodeJS.ProcessEnv = process.env): GitAuth {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return { url, env: {} };
  }
  if ((parsed.protocol !== 'http:' && parsed.protocol !== 'https:') || (parsed.username === '' && parsed.password === '')) return { url, env: {} };
  const user = decodeURIComponent(parsed.username);
  const password = decodeURIComponent(parsed.password);
  parsed.username = '';
  parsed.password = '';
  const index = Number.parseInt(base.GIT_CONFIG_COUNT ?? '0', 10) || 0;
  return {
    url: parsed.toString(),
    env: {
      GIT_CONFIG_COUNT: String(index + 1),
      // Scoped to the host, so a redirect or submodule elsewhere never receives it.
      [`GIT_CONFIG_KEY_${index}`]: `http.${parsed.protocol}//${parsed.host}/.extraHeader`,
      [`GIT_CONFIG_VALUE_${index}`]: `Authorization: Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`,
    },
  };
}
