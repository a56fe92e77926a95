/**
 * A strict reader of Prometheus' text exposition format (0.0.4), for the tests: every line is a
 * `# HELP`, a `# TYPE` or a sample `name{labels} value`; anything else throws, naming the line.
 */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Exposition {
  samples: Sample[];
  types: Map<string, string>;
  help: Map<string, string>;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;

export function parseExposition(text: string): Exposition {
  const out: Exposition = { samples: [], types: new Map(), help: new Map() };
  if (!text.endsWith('\n')) throw new Error('the exposition does not end with a newline');
  const lines = text.slice(0, -1).split('\n');
  lines.forEach((line, i) => {
    const where = `line ${i + 1}: ${JSON.stringify(line)}`;
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (meta) {
      if (meta[1] === 'TYPE') {
        if (!/^(counter|gauge|histogram|summary|untyped)$/.test(meta[3])) throw new Error(`${where}: unknown type`);
        if (out.types.has(meta[2])) throw new Error(`${where}: a second TYPE for ${meta[2]}`);
        if (out.samples.some((s) => s.name === meta[2])) throw new Error(`${where}: TYPE after samples of ${meta[2]}`);
        out.types.set(meta[2], meta[3]);
      } else out.help.set(meta[2], meta[3]);
      return;
    }
    const m = NAME.exec(line);
    if (!m) throw new Error(`${where}: not a sample`);
    const name = m[0];
    let rest = line.slice(name.length);
    const labels: Record<string, string> = {};
    if (rest.startsWith('{')) {
      rest = rest.slice(1);
      while (!rest.startsWith('}')) {
        const l = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,?)/.exec(rest);
        if (!l) throw new Error(`${where}: bad label at ${JSON.stringify(rest)}`);
        if (l[1] in labels) throw new Error(`${where}: label ${l[1]} twice`);
        labels[l[1]] = l[2].replace(/\\(["\\n])/g, (_, c: string) => (c === 'n' ? '\n' : c));
        rest = rest.slice(l[0].length);
        if (!l[3] && !rest.startsWith('}')) throw new Error(`${where}: missing comma`);
      }
      rest = rest.slice(1);
    }
    const v = /^ (\S+)$/.exec(rest);
    if (!v) throw new Error(`${where}: bad value`);
    const value = v[1] === '+Inf' ? Infinity : v[1] === '-Inf' ? -Infinity : Number(v[1]);
    if (Number.isNaN(value) && v[1] !== 'NaN') throw new Error(`${where}: "${v[1]}" is not a number`);
    out.samples.push({ name, labels, value });
  });
  return out;
}

/** The one sample named `name` whose labels include `labels`; throws if there is none or several. */
export function sample(e: Exposition, name: string, labels: Record<string, string> = {}): number {
  const found = e.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (found.length !== 1) throw new Error(`${found.length} samples ${name}${JSON.stringify(labels)}`);
  return found[0].value;
}
