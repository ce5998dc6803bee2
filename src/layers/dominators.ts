// Immediate dominators by Cooper, Harvey & Kennedy, "A Simple, Fast Dominance Algorithm"
// (2001): iterate over reverse postorder until the idom map is stable. Any correct algorithm
// gives the same tree; this one is short and fast on the few hundred nodes of a closure.

/**
 * succ[v]: successors of node v (nodes are 0..succ.length-1). Returns idom[v] for every node
 * reachable from `root` (idom[root] = root) and -1 for unreachable nodes.
 */
export function immediateDominators(succ: readonly (readonly number[])[], root: number): Int32Array {
  const n = succ.length;
  // Iterative DFS for the postorder numbering (closures can be deep; no recursion).
  const postNum = new Int32Array(n).fill(-1);
  const order: number[] = [];
  const visited = new Uint8Array(n);
  const stack: Array<[number, number]> = [[root, 0]];
  visited[root] = 1;
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    const [v, next] = top;
    const out = succ[v]!;
    if (next < out.length) {
      top[1] = next + 1;
      const w = out[next]!;
      if (!visited[w]) {
        visited[w] = 1;
        stack.push([w, 0]);
      }
    } else {
      stack.pop();
      postNum[v] = order.length;
      order.push(v);
    }
  }
  const preds: number[][] = Array.from({ length: n }, () => []);
  for (const v of order) for (const w of succ[v]!) preds[w]!.push(v);

  const idom = new Int32Array(n).fill(-1);
  idom[root] = root;
  const intersect = (a: number, b: number): number => {
    while (a !== b) {
      while (postNum[a]! < postNum[b]!) a = idom[a]!;
      while (postNum[b]! < postNum[a]!) b = idom[b]!;
    }
    return a;
  };
  for (let changed = true; changed; ) {
    changed = false;
    for (let i = order.length - 2; i >= 0; i--) {
      const b = order[i]!; // reverse postorder, root (last) excluded
      let newIdom = -1;
      for (const p of preds[b]!) {
        if (idom[p] === -1) continue;
        newIdom = newIdom === -1 ? p : intersect(p, newIdom);
      }
      if (idom[b] !== newIdom) {
        idom[b] = newIdom;
        changed = true;
      }
    }
  }
  return idom;
}
