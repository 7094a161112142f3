/**
 * How the router drives the proxy: check a staged config, signal a reload, know whether it runs.
 * Local mode signals a child nginx; docker mode the proxy container; tests can fake it.
 */
export interface ProxyControl {
  /** Runs `nginx -t` on a staged generation's nginx.conf. Never throws. */
  test(confPath: string): Promise<{ ok: boolean; output: string }>;
  /** Asks the running proxy to reload its configuration. */
  reload(): Promise<void>;
  /** True when a proxy is running that a reload would reach. */
  running(): Promise<boolean>;
}
