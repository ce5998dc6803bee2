// Stand-alone entry for the layering benchmark until the CLI has `nixery layers`:
//   node dist/src/layers/main.js [--strategy NAME] [--budget N] < request.json
import { describeError } from '../errors.js';
import { runLayersCommand } from './command.js';
import { DEFAULT_STRATEGY } from './strategies.js';

async function main(argv: string[]): Promise<number> {
  let strategy = DEFAULT_STRATEGY;
  let budget: number | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--strategy') strategy = argv[++i] ?? '';
    else if (a === '--budget') budget = Number(argv[++i]);
    else {
      process.stderr.write(`unknown argument ${JSON.stringify(a)}; usage: main.js [--strategy NAME] [--budget N] < request.json\n`);
      return 2;
    }
  }
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  try {
    process.stdout.write(runLayersCommand(Buffer.concat(chunks).toString('utf8'), strategy, budget) + '\n');
    return 0;
  } catch (err) {
    process.stderr.write(`nixery layers: ${err instanceof Error ? err.message : describeError(err).message}\n`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
