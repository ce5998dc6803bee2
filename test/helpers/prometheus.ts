// A strict parser of the Prometheus text exposition format (version 0.0.4), for tests: it
// throws on anything a Prometheus server would reject or that the format forbids (a sample
// before its family's TYPE, a family split in two, a repeated series, a histogram whose buckets
// are not cumulative or lack +Inf, a bad name, label or value).

export type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';

export interface Sample {
  /** The sample's own name (`x_bucket`, `x_sum` … for histograms). */
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  help: string | undefined;
  type: MetricType;
  samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES: ReadonlySet<string> = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

export function parsePrometheusText(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const finished = new Set<string>();
  const typed = new Set<string>();
  let current: Family | undefined;
  const lines = text.split('\n');
  if (lines.at(-1) !== '') throw new Error('the exposition must end with a newline');
  lines.pop();
  const familyOf = (name: string, lineNo: number): Family => {
    if (!METRIC_NAME.test(name)) throw new Error(`line ${lineNo}: invalid metric name ${JSON.stringify(name)}`);
    if (current?.name === name) return current;
    if (finished.has(name) || families.has(name)) throw new Error(`line ${lineNo}: family ${name} is not contiguous`);
    if (current) finished.add(current.name);
    current = { name, help: undefined, type: 'untyped', samples: [] };
    families.set(name, current);
    return current;
  };
  lines.forEach((line, i) => {
    const lineNo = i + 1;
    if (line.trim() === '') return;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(line);
      if (!m) return; // a plain comment
      const family = familyOf(m[2]!, lineNo);
      if (m[1] === 'HELP') {
        if (family.help !== undefined) throw new Error(`line ${lineNo}: second HELP for ${family.name}`);
        family.help = unescape(m[3] ?? '', false, lineNo);
      } else {
        if (!TYPES.has(m[3] ?? '')) throw new Error(`line ${lineNo}: invalid type ${JSON.stringify(m[3])}`);
        if (family.samples.length > 0) throw new Error(`line ${lineNo}: TYPE of ${family.name} after its samples`);
        if (typed.has(family.name)) throw new Error(`line ${lineNo}: second TYPE for ${family.name}`);
        typed.add(family.name);
        family.type = m[3] as MetricType;
      }
      return;
    }
    const sample = parseSample(line, lineNo);
    const base = baseName(sample.name, current);
    const family = familyOf(base, lineNo);
    family.samples.push(sample);
  });
  for (const family of families.values()) checkFamily(family);
  return families;
}

/** Which family a sample belongs to: histogram and summary samples carry suffixes. */
function baseName(name: string, current: Family | undefined): string {
  if (current && (current.type === 'histogram' || current.type === 'summary')) {
    for (const suffix of ['_bucket', '_sum', '_count']) {
      if (name === `${current.name}${suffix}` && (suffix !== '_bucket' || current.type === 'histogram')) return current.name;
    }
  }
  return name;
}

function parseSample(line: string, lineNo: number): Sample {
  const nameMatch = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
  if (!nameMatch) throw new Error(`line ${lineNo}: invalid sample ${JSON.stringify(line)}`);
  const name = nameMatch[0];
  let at = name.length;
  const labels: Record<string, string> = {};
  if (line[at] === '{') {
    at++;
    while (line[at] !== '}') {
      const labelMatch = /^([a-zA-Z_][a-zA-Z0-9_]*)="/.exec(line.slice(at));
      if (!labelMatch) throw new Error(`line ${lineNo}: invalid label at ${JSON.stringify(line.slice(at))}`);
      const labelName = labelMatch[1]!;
      if (!LABEL_NAME.test(labelName) || labelName.startsWith('__')) throw new Error(`line ${lineNo}: invalid label name ${labelName}`);
      if (labelName in labels) throw new Error(`line ${lineNo}: label ${labelName} twice`);
      at += labelMatch[0].length;
      let raw = '';
      for (;;) {
        const c = line[at];
        if (c === undefined) throw new Error(`line ${lineNo}: unterminated label value`);
        if (c === '"') break;
        if (c === '\\') {
          raw += c + (line[at + 1] ?? '');
          at += 2;
        } else {
          raw += c;
          at++;
        }
      }
      labels[labelName] = unescape(raw, true, lineNo);
      at++; // the closing quote
      if (line[at] === ',') at++;
      else if (line[at] !== '}') throw new Error(`line ${lineNo}: expected , or } after a label`);
    }
    at++;
  }
  const rest = line.slice(at);
  const m = /^ (\S+)(?: (-?\d+))?$/.exec(rest);
  if (!m) throw new Error(`line ${lineNo}: invalid value part ${JSON.stringify(rest)}`);
  return { name, labels, value: parseValue(m[1]!, lineNo) };
}

/** A sample value as Prometheus reads it (Go's ParseFloat: NaN and Inf in any case; prom-client writes `Nan`). */
function parseValue(s: string, lineNo: number): number {
  if (/^nan$/i.test(s)) return NaN;
  if (/^\+?inf(inity)?$/i.test(s)) return Infinity;
  if (/^-inf(inity)?$/i.test(s)) return -Infinity;
  if (!/^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/.test(s)) throw new Error(`line ${lineNo}: invalid value ${JSON.stringify(s)}`);
  return Number(s);
}

function unescape(raw: string, quotes: boolean, lineNo: number): string {
  return raw.replace(/\\(.)/g, (_, c: string) => {
    if (c === '\\') return '\\';
    if (c === 'n') return '\n';
    if (c === '"' && quotes) return '"';
    throw new Error(`line ${lineNo}: invalid escape \\${c}`);
  });
}

function checkFamily(family: Family): void {
  const seen = new Set<string>();
  for (const s of family.samples) {
    const key = `${s.name}${JSON.stringify(Object.entries(s.labels).sort())}`;
    if (seen.has(key)) throw new Error(`${family.name}: series ${key} twice`);
    seen.add(key);
    if (family.type === 'counter' && (s.value < 0 || Number.isNaN(s.value))) throw new Error(`${family.name}: counter value ${s.value}`);
    if ((family.type === 'counter' || family.type === 'gauge') && s.name !== family.name) throw new Error(`${family.name}: sample ${s.name} in a ${family.type}`);
  }
  if (family.type !== 'histogram') return;
  // Per series (labels but le): buckets rising in le and cumulative, +Inf equal to _count, a _sum.
  const series = new Map<string, { buckets: Array<[number, number]>; sum?: number; count?: number }>();
  for (const s of family.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    const entry = series.get(key) ?? { buckets: [] };
    series.set(key, entry);
    if (s.name === `${family.name}_bucket`) {
      if (le === undefined) throw new Error(`${family.name}: bucket without le`);
      entry.buckets.push([parseValue(le, 0), s.value]);
    } else if (s.name === `${family.name}_sum`) entry.sum = s.value;
    else if (s.name === `${family.name}_count`) entry.count = s.value;
    else throw new Error(`${family.name}: sample ${s.name} in a histogram`);
  }
  for (const [key, { buckets, sum, count }] of series) {
    if (buckets.length === 0 || buckets.at(-1)![0] !== Infinity) throw new Error(`${family.name}${key}: no +Inf bucket`);
    for (let i = 1; i < buckets.length; i++) {
      if (!(buckets[i]![0] > buckets[i - 1]![0])) throw new Error(`${family.name}${key}: le not increasing`);
      if (buckets[i]![1] < buckets[i - 1]![1]) throw new Error(`${family.name}${key}: buckets not cumulative`);
    }
    if (count === undefined || sum === undefined) throw new Error(`${family.name}${key}: no _sum or _count`);
    if (buckets.at(-1)![1] !== count) throw new Error(`${family.name}${key}: +Inf bucket ${buckets.at(-1)![1]} is not _count ${count}`);
  }
}

/** The value of the one sample named `name` whose labels include `labels` (throws when there is none). */
export function sampleValue(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number {
  let found: number | undefined;
  for (const family of families.values()) {
    for (const s of family.samples) {
      if (s.name !== name || !Object.entries(labels).every(([k, v]) => s.labels[k] === v)) continue;
      if (found !== undefined) throw new Error(`more than one sample ${name} ${JSON.stringify(labels)}`);
      found = s.value;
    }
  }
  if (found === undefined) throw new Error(`no sample ${name} ${JSON.stringify(labels)}`);
  return found;
}

/** The sum of every sample named `name` (all its label sets). */
export function sampleSum(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const family of families.values()) {
    for (const s of family.samples) if (s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)) sum += s.value;
  }
  return sum;
}
