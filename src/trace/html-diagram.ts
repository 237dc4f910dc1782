// The machine diagram of the HTML report: the restore and task machines' top-level states as SVG
// boxes, each with the time the recorded restore spent in it, and arrows for their transitions.
// Shapes come from src/trace/diagram.ts (the machines' own definitions), times from the trace.
import type { MachineDiagram } from './diagram.js';

export interface StateTime {
  /** Total milliseconds in the state (summed over tasks for the task machine). */
  readonly total: number;
  /** How many actors entered it (1 for the restore machine). */
  readonly count: number;
}

const BOX_W = 150;
const BOX_H = 54;
const GAP_X = 40;
const GAP_Y = 56;
const COLUMNS = 6;

export const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const fmt = (msValue: number) => (msValue >= 1000 ? `${(msValue / 1000).toFixed(2)} s` : `${msValue.toFixed(msValue < 10 ? 2 : 1)} ms`);

/** Transitions reduced to the machine's top-level states (a failure in forked.running leaves forked). */
function topEdges(diagram: MachineDiagram): Array<{ from: string; to: string; failure: boolean }> {
  const top = (id: string) => id.split('.').slice(0, 2).join('.');
  const seen = new Set<string>();
  const edges: Array<{ from: string; to: string; failure: boolean }> = [];
  for (const t of diagram.transitions) {
    if (!t.target) continue;
    const from = top(t.source);
    const to = top(t.target);
    if (from === to || seen.has(`${from}>${to}`)) continue;
    seen.add(`${from}>${to}`);
    const failure = /failed|rollback/.test(to);
    edges.push({ from, to, failure });
  }
  return edges;
}

export function machineSvg(diagram: MachineDiagram, times: ReadonlyMap<string, StateTime>, perActor: boolean): string {
  const states = diagram.root.children;
  const position = new Map<string, { x: number; y: number }>();
  states.forEach((state, i) => position.set(state.id, { x: 10 + (i % COLUMNS) * (BOX_W + GAP_X), y: 10 + Math.floor(i / COLUMNS) * (BOX_H + GAP_Y) }));
  const rows = Math.ceil(states.length / COLUMNS);
  const width = 20 + COLUMNS * BOX_W + (COLUMNS - 1) * GAP_X;
  const height = 20 + rows * BOX_H + (rows - 1) * GAP_Y;
  const longest = Math.max(1e-9, ...[...times.values()].map((t) => t.total));
  const parts: string[] = [];
  for (const edge of topEdges(diagram)) {
    const a = position.get(edge.from);
    const b = position.get(edge.to);
    if (!a || !b) continue;
    const [x1, y1, x2, y2] = anchor(a, b);
    const bend = a.y === b.y && Math.abs(a.x - b.x) > BOX_W + GAP_X ? -30 : 0;
    const mx = (x1 + x2) / 2;
    const my = (y1 + y2) / 2 + bend;
    parts.push(
      `<path d="M${x1},${y1} Q${mx},${my} ${x2},${y2}" class="edge${edge.failure ? ' failure' : ''}" marker-end="url(#arrow-${diagram.id})"/>`,
    );
  }
  for (const state of states) {
    const p = position.get(state.id)!;
    const time = times.get(state.key);
    const share = time ? time.total / longest : 0;
    const label = time ? (perActor && time.count > 1 ? `${fmt(time.total / time.count)} mean, ${time.count}×` : fmt(time.total)) : 'not entered';
    const title = state.description ? `<title>${escapeHtml(state.description)}</title>` : '';
    parts.push(
      `<g class="state${state.type === 'final' ? ' final' : ''}">${title}` +
        `<rect x="${p.x}" y="${p.y}" width="${BOX_W}" height="${BOX_H}" rx="8" style="fill: rgba(66,133,244,${(0.08 + share * 0.6).toFixed(3)})"/>` +
        `<text x="${p.x + BOX_W / 2}" y="${p.y + 21}" class="key">${escapeHtml(state.key)}</text>` +
        `<text x="${p.x + BOX_W / 2}" y="${p.y + 40}" class="time">${escapeHtml(label)}</text></g>`,
    );
  }
  const marker =
    `<defs><marker id="arrow-${diagram.id}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">` +
    `<path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>`;
  return `<svg class="machine" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="${escapeHtml(diagram.id)} machine">${marker}${parts.join('')}</svg>`;
}

/** Where an arrow between two boxes leaves and lands: the facing edges' midpoints. */
function anchor(a: { x: number; y: number }, b: { x: number; y: number }): [number, number, number, number] {
  if (a.y === b.y) {
    const right = b.x > a.x;
    return [a.x + (right ? BOX_W : 0), a.y + BOX_H / 2, b.x + (right ? 0 : BOX_W), b.y + BOX_H / 2];
  }
  const down = b.y > a.y;
  return [a.x + BOX_W / 2, a.y + (down ? BOX_H : 0), b.x + BOX_W / 2, b.y + (down ? 0 : BOX_H)];
}
