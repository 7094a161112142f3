import Docker from 'dockerode';
import type { Logger } from '../log';
import type { ProxyControl } from './control';

/**
 * PROXY_MODE=docker: the proxy is the OpenResty container (compose service
 * task_traffic_webserver). `nginx -t` runs inside it, with the proxy's own build, on the staged
 * generation in the shared volume; a reload is a SIGHUP to the container. The only dockerode
 * import for the proxy.
 */
export class DockerProxy implements ProxyControl {
  private readonly docker: Docker;

  constructor(socketPath: string, private readonly name: string, private readonly log: Logger) {
    this.docker = new Docker({ socketPath });
  }

  async test(confPath: string): Promise<{ ok: boolean; output: string }> {
    try {
      const exec = await this.docker.getContainer(this.name).exec({
        Cmd: ['nginx', '-t', '-q', '-c', confPath],
        AttachStdout: true,
        AttachStderr: true,
      });
      const stream = await exec.start({ hijack: true, stdin: false });
      const output = await new Promise<string>((resolve) => {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => resolve(Buffer.concat(chunks).toString('utf8').replace(/[\x00-\x08]/g, '')));
        stream.on('error', () => resolve(Buffer.concat(chunks).toString('utf8')));
      });
      const info = await exec.inspect();
      return { ok: info.ExitCode === 0, output: output.trim() };
    } catch (e) {
      return { ok: false, output: `cannot run nginx -t in container ${this.name}: ${(e as Error).message}` };
    }
  }

  async reload(): Promise<void> {
    await this.docker.getContainer(this.name).kill({ signal: 'SIGHUP' });
  }

  async running(): Promise<boolean> {
    try {
      const info = await this.docker.getContainer(this.name).inspect();
      return info.State.Running === true;
    } catch (e) {
      this.log.warn('proxy container not found', { component: 'proxy', container: this.name, error: (e as Error).message });
      return false;
    }
  }
}
