// Small DOM and formatting helpers. Text always goes in as text, never as HTML: customer ids
// and event ids come from other systems.

export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else node.append(child instanceof Node ? child : String(child));
  }
}

const balanceFormat = new Intl.NumberFormat(undefined, {
  minimumFractionDigits: 1,
  maximumFractionDigits: 1,
});
const amountFormat = new Intl.NumberFormat(undefined, {
  minimumFractionDigits: 1,
  maximumFractionDigits: 1,
  signDisplay: "exceptZero",
});
const plainFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
const absoluteFormat = new Intl.DateTimeFormat(undefined, {
  dateStyle: "medium",
  timeStyle: "short",
});
const dayFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });
const relativeFormat = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });

// A balance is a plain number; -0.04 shows as 0.0 rather than -0.0.
export function balance(value) {
  if (value === null || value === undefined) return "—";
  return balanceFormat.format(Math.abs(value) < 0.05 ? 0 : value);
}

export function amount(value) {
  if (value === null || value === undefined) return "—";
  return amountFormat.format(Math.abs(value) < 0.05 ? 0 : value);
}

export function number(value) {
  return value === null || value === undefined ? "—" : plainFormat.format(value);
}

export function signClass(value) {
  if (value > 0.05) return "credit";
  if (value < -0.05) return "debit";
  return "neutral";
}

export function absolute(iso) {
  return absoluteFormat.format(new Date(iso));
}

export function day(iso) {
  return dayFormat.format(new Date(iso));
}

const UNITS = [
  ["year", 365 * 86400],
  ["month", 30 * 86400],
  ["week", 7 * 86400],
  ["day", 86400],
  ["hour", 3600],
  ["minute", 60],
];

export function relative(iso, now = Date.now()) {
  const seconds = (new Date(iso).getTime() - now) / 1000;
  for (const [unit, size] of UNITS) {
    if (Math.abs(seconds) >= size) return relativeFormat.format(Math.round(seconds / size), unit);
  }
  return Math.abs(seconds) < 30 ? "just now" : relativeFormat.format(Math.round(seconds), "second");
}

// A time as people read it: relative first, the absolute time beside it and on hover.
export function when(iso, { stacked = true } = {}) {
  if (!iso) return el("span", { class: "muted" }, "—");
  const abs = absolute(iso);
  return el(
    "span",
    { class: stacked ? "when stacked" : "when" },
    el("time", { datetime: iso, title: abs }, relative(iso)),
    el("span", { class: "abs" }, abs),
  );
}

export function pillarName(pillar) {
  if (!pillar) return "No pillar";
  const words = pillar.replace(/_/g, " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

export function statusBadge(status) {
  const atRisk = status === "at_risk";
  return el("span", { class: `badge ${atRisk ? "badge-risk" : "badge-ok"}` }, atRisk ? "At risk" : "OK");
}

export function kindBadge(kind) {
  const atRisk = kind === "at_risk";
  return el("span", { class: `badge ${atRisk ? "badge-risk" : "badge-ok"}` }, atRisk ? "At risk" : "Recovered");
}

export function segmentBadge(segment) {
  return segment
    ? el("span", { class: "badge badge-segment" }, segment)
    : el("span", { class: "muted" }, "no segment");
}

export function customerHref(id) {
  return `#/customers/${encodeURIComponent(id)}`;
}

export function customerLink(id, attrs) {
  return el("a", { href: customerHref(id), class: "customer-link", ...attrs }, id);
}

// An RFC 9457 problem, shown as people read it.
export function problemBox(error, heading) {
  const problem = error.problem || { title: "Something went wrong", detail: String(error.message || error) };
  const items = Array.isArray(problem.errors) ? problem.errors : [];
  return el(
    "div",
    { class: "problem", role: "alert" },
    el("p", { class: "problem-title" }, heading || problem.title || "Something went wrong",
      problem.status ? el("span", { class: "muted" }, ` (${problem.status})`) : null),
    heading && problem.title ? el("p", null, problem.title) : null,
    problem.detail && problem.detail !== problem.title
      ? el("p", { class: "problem-detail" }, problem.detail)
      : null,
    items.length
      ? el("ul", null, items.map((e) => el("li", null, el("code", null, e.location || "—"), ": ", e.message || "")))
      : null,
  );
}

export function loading(text = "Loading…") {
  return el("p", { class: "loading", role: "status" }, text);
}

// A table's head row. A column is its label, or { num: label } for a right-aligned number
// column, or { label, class }; a falsy column is left out.
export function head(...columns) {
  const cell = (c) => {
    if (typeof c === "string") return el("th", { scope: "col" }, c);
    if (c.num !== undefined) return el("th", { scope: "col", class: "num" }, c.num);
    return el("th", { scope: "col", class: c.class }, c.label);
  };
  return el("thead", null, el("tr", null, columns.filter(Boolean).map(cell)));
}
