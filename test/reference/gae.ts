// Unfused oracle for ops.gae (ALGORITHMS.md §3a): a plain JS reverse loop per row over the VALID
// positions (listed first, so masked gaps are skipped by construction), in float64. Test-only.
export function gaeRef(rewards: number[][], values: number[][], mask: boolean[][], gamma: number, lambda: number): { advantages: number[][]; returns: number[][] } {
  const advantages = rewards.map((row) => row.map(() => 0));
  const returns = rewards.map((row) => row.map(() => 0));
  rewards.forEach((r, b) => {
    const v = values[b];
    const valid = r.map((_, t) => t).filter((t) => mask[b][t]);
    let aNext = 0;
    for (let k = valid.length - 1; k >= 0; k--) {
      const t = valid[k];
      const vNext = k + 1 < valid.length ? v[valid[k + 1]] : 0;
      const a = r[t] + gamma * vNext - v[t] + gamma * lambda * aNext;
      advantages[b][t] = a;
      returns[b][t] = a + v[t];
      aNext = a;
    }
  });
  return { advantages, returns };
}
