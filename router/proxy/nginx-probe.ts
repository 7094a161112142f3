import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../errors';

/** What the nginx build needs in its config: dynamic modules to load. */
export interface NginxFlavor {
  version: string;
  openresty: boolean;
  loadModules: string[];
}

/** Pure. Reads `nginx -V` output: OpenResty has Lua and stream built in; Debian loads modules. */
export function parseNginxV(output: string, exists: (p: string) => boolean): NginxFlavor {
  const version = /nginx version: (\S+)/.exec(output)?.[1] ?? 'unknown';
  const modulesPath = /--modules-path=(\S+)/.exec(output)?.[1] ?? '/usr/lib/nginx/modules';
  const builtinLua = /add-module=\S*lua-nginx-module/.test(output) || /openresty/i.test(version);
  const builtinStream = /--with-stream(\s|$)/.test(output);
  const loadModules: string[] = [];
  if (!builtinLua) {
    for (const m of ['ndk_http_module.so', 'ngx_http_lua_module.so']) {
      const p = join(modulesPath, m);
      if (exists(p)) loadModules.push(p);
    }
  }
  if (!builtinStream) {
    const p = join(modulesPath, 'ngx_stream_module.so');
    if (exists(p)) loadModules.push(p);
  }
  return { version, openresty: builtinLua, loadModules };
}

/** Runs `nginx -V` and works out the modules to load; UserError NGINX_NOT_FOUND if it cannot run. */
export function probeNginx(bin: string): Promise<NginxFlavor> {
  return new Promise((resolve, reject) => {
    execFile(bin, ['-V'], { timeout: 10_000 }, (err, stdout, stderr) => {
      if (err && !stderr) {
        reject(new UserError('NGINX_NOT_FOUND', `cannot run ${bin} -V (${err.message}); install nginx with its Lua module (see README) or set NGINX_BIN`));
        return;
      }
      resolve(parseNginxV(`${stdout}${stderr}`, existsSync));
    });
  });
}
