/**
 * keymesh's two lighthouse keys in the wg-quick format: `[Interface] IsLighthouse = true` and
 * `[Peer] Lighthouse = true`; everything else stays stock wg-quick syntax.
 */
import { describe, expect, it } from 'vitest';
import { ConfigError, parseWgQuick, serializeWgQuick } from '../../src/config/wgquick.js';

const PRIV = 'oJpZsEKe9u0U+7wLwRFHKsHpBLhyvUf+yvNWI0KrzGQ=';
const PUB1 = 'YCFs3Vf08Pa2RGKyU++XXiE6rUeVK6++lrhsU9Lk3Ws=';
const PUB2 = 'hjHNlH6mcCucy5JidAs7QbB40mRWsJrGWK74Fhmr7ng=';

function errorOf(text: string): ConfigError {
  try {
    parseWgQuick(text, 'wg9.conf');
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error('expected a ConfigError');
}

describe('lighthouse keys in wg-quick files', () => {
  it('reads IsLighthouse and Lighthouse case-insensitively; both default to false', () => {
    const c = parseWgQuick(
      `[Interface]\nPrivateKey = ${PRIV}\nislighthouse = TRUE\n[Peer]\nPublicKey = ${PUB1}\nEndpoint = 192.0.2.1:51820\nLIGHTHOUSE=true\n[Peer]\nPublicKey = ${PUB2}\nLighthouse = false\n`,
      'wg0.conf',
    );
    expect(c.interface.isLighthouse).toBe(true);
    expect(c.peers.map((p) => p.lighthouse)).toEqual([true, false]);
    const plain = parseWgQuick(`[Interface]\nPrivateKey = ${PRIV}\n[Peer]\nPublicKey = ${PUB1}\n`, 'wg0.conf');
    expect(plain.interface.isLighthouse).toBe(false);
    expect(plain.peers[0].lighthouse).toBe(false);
  });

  it('round-trips through serializeWgQuick, and a file without them serializes without them', () => {
    const text = `[Interface]\nPrivateKey = ${PRIV}\nIsLighthouse = true\n[Peer]\nPublicKey = ${PUB1}\nEndpoint = 192.0.2.1:51820\nLighthouse = true\n`;
    const c = parseWgQuick(text, 'wg0.conf');
    const out = serializeWgQuick(c);
    expect(out).toContain('IsLighthouse = true');
    expect(out).toContain('Lighthouse = true');
    const again = parseWgQuick(out, 'wg0.conf');
    expect(again.interface.isLighthouse).toBe(true);
    expect(again.peers[0].lighthouse).toBe(true);
    const plain = serializeWgQuick(parseWgQuick(`[Interface]\nPrivateKey = ${PRIV}\n[Peer]\nPublicKey = ${PUB1}\n`, 'wg0.conf'));
    expect(plain).not.toMatch(/lighthouse/i);
  });

  const head = `[Interface]\nPrivateKey = ${PRIV}\n`;
  const cases: Array<[string, string, number, string]> = [
    ['IsLighthouse not a boolean', `${head}IsLighthouse = yes\n`, 3, 'IsLighthouse: "yes" is neither true nor false'],
    ['Lighthouse not a boolean', `${head}[Peer]\nPublicKey = ${PUB1}\nEndpoint = 192.0.2.1:1\nLighthouse = 1\n`, 6, 'Lighthouse: "1" is neither true nor false'],
    ['Lighthouse in [Interface]', `${head}Lighthouse = true\n`, 3, 'Lighthouse belongs in a [Peer] section, not [Interface]'],
    ['IsLighthouse in [Peer]', `${head}[Peer]\nPublicKey = ${PUB1}\nIsLighthouse = true\n`, 5, 'IsLighthouse belongs in the [Interface] section, not [Peer]'],
    [
      'a lighthouse peer without an Endpoint',
      `${head}[Peer]\nPublicKey = ${PUB1}\nLighthouse = true\n`,
      3,
      'this [Peer] has Lighthouse = true but no Endpoint (a lighthouse must be reachable at a known address)',
    ],
  ];
  for (const [what, text, line, problem] of cases) {
    it(`rejects ${what} with file:line`, () => {
      const e = errorOf(text);
      expect(e.message).toBe(`wg9.conf:${line}: ${problem}`);
      expect(e.line).toBe(line);
    });
  }
});
