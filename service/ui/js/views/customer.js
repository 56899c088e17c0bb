// One customer: key figures, the balance chart with its thresholds, drivers, the ledger.
import { api } from "../api.js";
import { balanceChart, describe } from "../chart.js";
import {
  amount, balance, el, head, loading, number, pillarName, problemBox, segmentBadge, signClass, statusBadge, when,
} from "../dom.js";

const POINTS = 200;
const LEDGER_PAGE = 25;
const DAY_MS = 86400 * 1000;
const RANGES = [
  { value: "all", label: "Since the account opened", days: null },
  { value: "365", label: "Last 12 months", days: 365 },
  { value: "90", label: "Last 90 days", days: 90 },
  { value: "30", label: "Last 30 days", days: 30 },
];

export async function customerView({ main, params, token }) {
  const id = params.id;
  const path = `v1/customers/${encodeURIComponent(id)}`;
  document.title = `${id} · relbank`;
  const heading = el("h1", { tabindex: -1, class: "customer-title" }, id);
  const badges = el("div", { class: "title-badges" });
  const body = el("div", null, loading());
  main.append(
    el("p", { class: "crumbs" }, el("a", { href: "#/" }, "← Customers at risk")),
    el("div", { class: "customer-head" }, heading, badges),
    body,
  );
  let customer;
  try {
    customer = await api(path);
  } catch (error) {
    if (!token.active) return;
    if (error.status === 404) {
      body.replaceChildren(el("div", { class: "empty" },
        el("p", { class: "empty-title" }, "No such customer"),
        el("p", null, `relbank has never received a moment for “${id}”. Check the id, or post an event for it.`)));
      return;
    }
    throw error;
  }
  if (!token.active) return;
  badges.append(statusBadge(customer.status), segmentBadge(customer.segment));

  const chartSection = section("chart-title", "Balance over time");
  const driversSection = section("drivers-title", "What moved the balance");
  const ledgerSection = section("ledger-title", "Ledger");
  body.replaceChildren(figures(customer), chartSection, driversSection, ledgerSection);

  await Promise.all([
    showChart(chartSection, path, customer, token),
    showDrivers(driversSection, path, token),
    showLedger(ledgerSection, path, token),
  ]);
}

function section(titleId, title) {
  return el("section", { class: "card", "aria-labelledby": titleId }, el("h2", { id: titleId }, title));
}

function figures(c) {
  const t = c.thresholds;
  const figure = (label, value, note) =>
    el("div", { class: "figure" }, el("dt", null, label), el("dd", null, value, note ? el("span", { class: "note" }, note) : null));
  return el("dl", { class: "figures" },
    figure("Balance now", el("span", { class: `big ${signClass(c.balance)}`, id: "balance-now" }, balance(c.balance))),
    figure("Status", statusBadge(c.status), el("span", null, "since ", when(c.status_since, { stacked: false }))),
    figure("Thresholds", el("span", null, `at risk below ${balance(t.at_risk_below)}`),
      `recovers at ${balance(t.recover_at_or_above)} or above`),
    figure("Last moment", when(c.last_event_at)),
    figure("Opened", when(c.opened_at)),
    figure("Ledger entries", number(c.entries),
      c.next_transition_at ? el("span", null, "status changes by decay ", when(c.next_transition_at, { stacked: false })) : null),
  );
}

async function showChart(sectionEl, path, customer, token) {
  const select = el("select", { id: "chart-range" },
    RANGES.map((r) => el("option", { value: r.value }, r.label)));
  const host = el("div", { class: "chart", id: "balance-chart" });
  const caption = el("figcaption", { class: "muted" });
  const status = el("div");
  sectionEl.append(
    el("div", { class: "section-tools" }, el("label", { for: "chart-range" }, "Range"), select),
    el("figure", { class: "chart-figure" }, host, caption),
    status,
  );
  let destroy = null;
  token.onClose(() => destroy && destroy());
  const draw = async () => {
    const range = RANGES.find((r) => r.value === select.value);
    const params = { points: POINTS };
    if (range.days) params.from = new Date(Date.now() - range.days * DAY_MS).toISOString();
    status.replaceChildren();
    host.setAttribute("aria-busy", "true");
    try {
      const history = await api(`${path}/history`, { params });
      if (!token.active) return;
      if (destroy) destroy();
      destroy = balanceChart(host, history.items, customer.thresholds);
      host.setAttribute("role", "img");
      host.setAttribute("aria-label", `Balance of ${customer.customer_id} over time`);
      caption.textContent = describe(history.items, customer.thresholds);
    } catch (error) {
      if (token.active) status.replaceChildren(problemBox(error, "The balance history could not be loaded"));
    } finally {
      host.removeAttribute("aria-busy");
    }
  };
  select.addEventListener("change", draw);
  await draw();
}

function netBar(net, max) {
  const width = max > 0 ? Math.max(2, Math.round((Math.abs(net) / max) * 100)) : 0;
  return el("span", { class: "bar-track", "aria-hidden": "true" },
    el("span", { class: `bar ${net < 0 ? "bar-debit" : "bar-credit"}`, style: `width:${width}%` }));
}

function driverTable(caption, firstLabel, rows, label) {
  const max = Math.max(0, ...rows.map((r) => Math.abs(r.net)));
  return el("div", { class: "table-wrap" },
    el("table", { class: "drivers" },
      el("caption", null, caption),
      head(
        firstLabel,
        { num: "Credits" },
        { num: "Debits" },
        { num: "Net" },
        { label: el("span", { class: "visually-hidden" }, "Share of the largest net"), class: "bar-col" },
        { num: "Moments" }),
      el("tbody", null, rows.map((r) => el("tr", null,
        el("th", { scope: "row" }, label(r)),
        el("td", { class: "num credit" }, amount(r.credits)),
        el("td", { class: "num debit" }, amount(r.debits)),
        el("td", { class: `num strong ${signClass(r.net)}` }, amount(r.net)),
        el("td", { class: "bar-col" }, netBar(r.net, max)),
        el("td", { class: "num" }, number(r.entries)))))));
}

async function showDrivers(sectionEl, path, token) {
  sectionEl.append(loading());
  let drivers;
  try {
    drivers = await api(`${path}/drivers`);
  } catch (error) {
    if (token.active) sectionEl.lastChild.replaceWith(problemBox(error, "The drivers could not be loaded"));
    return;
  }
  if (!token.active) return;
  const intro = el("p", { class: "lede" },
    `Since the account opened, moments credited ${amount(drivers.credits)} and debited ${amount(drivers.debits)} `,
    `(net ${amount(drivers.net)}, as booked, before decay) over ${number(drivers.entries)} ledger entries.`);
  sectionEl.lastChild.replaceWith(
    intro,
    el("div", { class: "stack", id: "drivers" },
      driverTable("By pillar", "Pillar", drivers.by_pillar, (r) => pillarName(r.pillar)),
      driverTable("By moment type", "Moment", drivers.by_type, (r) =>
        el("span", null, el("code", null, r.type), el("span", { class: "note" }, pillarName(r.pillar))))),
  );
}

async function showLedger(sectionEl, path, token) {
  const body = el("tbody");
  const more = el("button", { type: "button", class: "more", id: "ledger-more", hidden: true }, "Show older entries");
  const status = el("div", null, loading());
  sectionEl.append(
    el("p", { class: "lede" }, "Every moment posted to this relationship, newest first."),
    status,
  );
  let cursor = null;
  const load = async () => {
    const page = await api(`${path}/ledger`, { params: { limit: LEDGER_PAGE, cursor } });
    if (!token.active) return [];
    const rows = page.items.map(ledgerRow);
    body.append(...rows);
    cursor = page.next_cursor;
    more.hidden = !cursor;
    return rows;
  };
  more.addEventListener("click", async () => {
    more.disabled = true;
    try {
      const rows = await load();
      if (rows.length) rows[0].querySelector("th").focus();
    } catch (error) {
      more.after(problemBox(error));
    } finally {
      more.disabled = false;
    }
  });
  try {
    await load();
  } catch (error) {
    if (token.active) status.replaceChildren(problemBox(error, "The ledger could not be loaded"));
    return;
  }
  if (!token.active) return;
  status.replaceChildren(
    el("div", { class: "table-wrap" },
      el("table", { id: "ledger-table" },
        el("caption", { class: "visually-hidden" }, "Ledger entries, newest first"),
        head(
          "Effective",
          "Moment",
          "Pillar",
          { num: "Amount" },
          "Source and id",
          "Recorded"),
        body)),
    more,
  );
}

function ledgerRow(e) {
  const unweighted = e.outcome === "unweighted";
  return el("tr", { class: unweighted ? "unweighted" : "" },
    el("th", { scope: "row", tabindex: -1 }, when(e.effective_at)),
    el("td", null, el("code", null, e.type),
      unweighted ? el("span", { class: "note" }, `unweighted: ${e.reason || "no weight in the policy"}`) : null),
    el("td", null, pillarName(e.pillar)),
    el("td", { class: `num strong ${signClass(e.amount)}` }, amount(e.amount)),
    el("td", null, el("span", { class: "source" }, e.source), el("code", { class: "event-id" }, e.id)),
    el("td", null, when(e.recorded_at), el("span", { class: "note" }, `policy ${e.policy_version}`)),
  );
}
