// A squarified treemap (Bruls, Huizing and van Wijk): rectangles whose areas are proportional to
// the weights, laid out in rows along the shorter side so they stay close to squares. Pure
// geometry; the explorer draws the result as SVG.

export interface Rect {
  x: number;
  y: number;
  w: number;
  h: number;
}

export interface Placed<T> {
  item: T;
  rect: Rect;
}

/** Lays `items` out in `rect`, largest first; items of weight 0 (or less) are left out. */
export function squarify<T>(items: readonly T[], weight: (item: T) => number, rect: Rect): Placed<T>[] {
  const sized = items.map((item) => ({ item, w: weight(item) })).filter((s) => s.w > 0 && Number.isFinite(s.w));
  sized.sort((a, b) => b.w - a.w);
  const total = sized.reduce((s, x) => s + x.w, 0);
  if (total <= 0 || rect.w <= 0 || rect.h <= 0) return [];
  const scale = (rect.w * rect.h) / total;
  const areas = sized.map((s) => ({ item: s.item, area: s.w * scale }));
  const out: Placed<T>[] = [];
  let free = { ...rect };
  let row: typeof areas = [];
  for (const a of areas) {
    const side = Math.min(free.w, free.h);
    if (row.length === 0 || worst([...row, a], side) <= worst(row, side)) {
      row.push(a);
      continue;
    }
    free = layRow(row, free, out);
    row = [a];
  }
  if (row.length > 0) layRow(row, free, out);
  return out;
}

/** The worst aspect ratio of a row of areas laid along a side of length `side`. */
function worst(row: ReadonlyArray<{ area: number }>, side: number): number {
  let sum = 0;
  let min = Infinity;
  let max = 0;
  for (const r of row) {
    sum += r.area;
    min = Math.min(min, r.area);
    max = Math.max(max, r.area);
  }
  const s2 = side * side;
  const sum2 = sum * sum;
  return Math.max((s2 * max) / sum2, sum2 / (s2 * min));
}

/** Places a row along the shorter side of `free`; returns what is left. */
function layRow<T>(row: ReadonlyArray<{ item: T; area: number }>, free: Rect, out: Placed<T>[]): Rect {
  const sum = row.reduce((s, r) => s + r.area, 0);
  if (free.w >= free.h) {
    // A column on the left, as wide as the row's area needs.
    const width = Math.min(free.w, sum / free.h);
    let y = free.y;
    for (const r of row) {
      const h = r.area / width;
      out.push({ item: r.item, rect: { x: free.x, y, w: width, h } });
      y += h;
    }
    return { x: free.x + width, y: free.y, w: free.w - width, h: free.h };
  }
  const height = Math.min(free.h, sum / free.w);
  let x = free.x;
  for (const r of row) {
    const w = r.area / height;
    out.push({ item: r.item, rect: { x, y: free.y, w, h: height } });
    x += w;
  }
  return { x: free.x, y: free.y + height, w: free.w, h: free.h - height };
}
