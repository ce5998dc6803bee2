// What a request was admitted as, for the services it reaches: who the client is, and the
// checks that guard starting a build. The registry's access gate (registry/access.ts) makes them.

export interface Admission {
  /** The authenticated user (or token subject); null for an anonymous client. */
  user: string | null;
  /** Whom per-client limits count against: `user:<name>` or `ip:<address>`. */
  client: string;
  /** Called right before this request starts a build; throws when it may not. */
  beforeBuild(): void;
  /**
   * For a request that asks for a build of `name` without naming it in its path (POST
   * /api/v1/builds): what a pull of `name` is checked for (the token's grants, the package
   * policy and count), and that this client may build at all. Throws when it may not; the
   * returned admission guards the build's start as a pull's does.
   */
  mayBuild(name: string): Admission;
  /** Whether the client may pull repository `name` (what lists and statuses show it). */
  mayPull(name: string): boolean;
  /**
   * True when the client may pull only some repositories (a bearer token's grants): what it asks
   * for by digest must then belong to the image the name resolves to.
   */
  readonly restricted: boolean;
}
