import winston from 'winston';

/** Structured log fields with stable keys. Never put a token, secret or cookie value here. */
export interface LogFields {
  component?: string;
  provider?: string;
  route?: string;
  generation?: string;
  [key: string]: unknown;
}

export interface Logger {
  error(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  debug(msg: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

/** Builds a JSON-lines logger on stderr (the only winston import in the project). */
export function createLogger(level = 'info', base: LogFields = {}): Logger {
  const w = winston.createLogger({
    level,
    format: winston.format.combine(winston.format.timestamp(), winston.format.json()),
    defaultMeta: base,
    transports: [new winston.transports.Console({ stderrLevels: ['error', 'warn', 'info', 'debug'] })],
  });
  return wrap(w);
}

function wrap(w: winston.Logger): Logger {
  return {
    error: (m, f) => void w.error(m, f),
    warn: (m, f) => void w.warn(m, f),
    info: (m, f) => void w.info(m, f),
    debug: (m, f) => void w.debug(m, f),
    child: (f) => wrap(w.child(f)),
  };
}

/** A logger that records lines in memory; for tests. */
export function memoryLogger(): Logger & { lines: Array<{ level: string; msg: string; fields: LogFields }> } {
  const lines: Array<{ level: string; msg: string; fields: LogFields }> = [];
  const make = (base: LogFields): Logger => ({
    error: (msg, f) => void lines.push({ level: 'error', msg, fields: { ...base, ...f } }),
    warn: (msg, f) => void lines.push({ level: 'warn', msg, fields: { ...base, ...f } }),
    info: (msg, f) => void lines.push({ level: 'info', msg, fields: { ...base, ...f } }),
    debug: (msg, f) => void lines.push({ level: 'debug', msg, fields: { ...base, ...f } }),
    child: (f) => make({ ...base, ...f }),
  });
  return Object.assign(make({}), { lines });
}
