/**
 * The NAT matrix (netns/nat-matrix.ts): for every kind of NAT pair a laptop meets, A pings B the
 * moment all nodes are up, and again in a variant where B comes up while A is already pinging;
 * then, within 10 s, the pair must be on the path its NATs allow (direct, or the relay), and a
 * 10 MB transfer shows the lighthouse's share of the bytes (< 1 % when direct). Each case's figures
 * are printed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canRunNetns, Lab } from '../../netns/lib.js';
import { MATRIX, natMatrix, runMatrixCase, type MatrixResult } from '../../netns/nat-matrix.js';

const skip = canRunNetns();
const ONLY = process.env.NAT_CASES ? new RegExp(process.env.NAT_CASES) : null;

describe.skipIf(skip)('NAT matrix', () => {
  let lab: Lab;
  let t: ReturnType<typeof natMatrix>;
  const results: MatrixResult[] = [];

  beforeAll(() => {
    lab = new Lab();
    t = natMatrix(lab);
  }, 60_000);

  afterAll(async () => {
    for (const r of results) console.log(JSON.stringify(r));
    await lab?.cleanup();
  });

  for (const c of MATRIX) {
    it.skipIf(ONLY !== null && !ONLY.test(c.name))(
      `${c.name}: first answer ≤ 1 s (late peer ≤ 0.5 s), then ${c.expect ?? 'reported'}`,
      async () => {
        const logs: string[] = [];
        const r = await runMatrixCase(lab, t, c, (l) => logs.push(l));
        results.push(r);
        console.log(`${c.name}: ${JSON.stringify(r)}`);
        const why = `${JSON.stringify(r)}\n${logs.join('\n')}\n${lab.logs().slice(-20000)}`;
        expect(r.firstAnswerMs, why).not.toBeNull();
        expect(r.firstAnswerMs!, why).toBeLessThanOrEqual(1000);
        expect(r.lateAnswerMs, why).not.toBeNull();
        expect(r.lateAnswerMs!, why).toBeLessThanOrEqual(500);
        expect(r.transferOk, why).toBe(true);
        if (c.pathPrefix !== undefined) expect(r.activePath?.startsWith(c.pathPrefix), why).toBe(true);
        if (c.openerTtl !== undefined) {
          expect({ ttl: r.openerTtl, confirmed: r.openerTtlConfirmed }, why).toEqual({ ttl: c.openerTtl, confirmed: true });
        }
        if (c.expect === 'direct') {
          expect(r.path, why).toBe('direct');
          expect(r.lighthouseShare!, why).toBeLessThan(0.01);
        } else if (c.expect === 'relay') {
          expect(r.path, why).toBe('relay');
        }
      },
      90_000,
    );
  }
});
