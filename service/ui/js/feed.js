// The live alert feed: polls GET /v1/alerts?after=<last alert_id> every 2 s, newest shown first.
import { api } from "./api.js";
import { balance, customerLink, el, kindBadge, when } from "./dom.js";

const EVERY_MS = 2000;
const MAX_BACKOFF_MS = 15000;
const KEEP = 60;
const PAGE = 200;

// The feed is oldest first. Its newest id is found with O(log n) probes of one item each,
// rather than by reading every alert ever raised: has(after) is true iff some id > after.
async function lastAlertId() {
  const has = async (after) => (await api("v1/alerts", { params: { after, limit: 1 } })).items.length > 0;
  if (!(await has(0))) return 0;
  let low = 0;
  let high = 1;
  while (await has(high)) {
    low = high;
    high *= 2;
  }
  while (high - low > 1) {
    const mid = Math.floor((low + high) / 2);
    if (await has(mid)) low = mid;
    else high = mid;
  }
  return high;
}

function item(alert, fresh) {
  const cause = alert.cause === "decay"
    ? "by decay, with no new moment"
    : `after ${alert.cause.source} · ${alert.cause.id}`;
  return el("li", { class: `feed-item ${fresh ? "fresh" : ""}`, dataset: { alertId: alert.alert_id, customerId: alert.customer_id } },
    el("div", { class: "feed-line" }, kindBadge(alert.kind), customerLink(alert.customer_id)),
    el("div", { class: "feed-detail" },
      `balance ${balance(alert.balance)}, threshold ${balance(alert.threshold)}`),
    el("div", { class: "feed-detail muted" }, when(alert.at, { stacked: false })),
    el("div", { class: "feed-cause muted" }, cause));
}

export function startFeed(list, state) {
  let after = null;
  let failures = 0;
  let waitingForKey = false;

  const show = (alerts, fresh) => {
    for (const alert of alerts) list.prepend(item(alert, fresh));
    while (list.children.length > KEEP) list.lastElementChild.remove();
    if (!list.children.length) {
      list.replaceChildren(el("li", { class: "feed-empty muted" }, "No alerts yet. They appear here as they happen."));
    } else {
      list.querySelector(".feed-empty")?.remove();
    }
  };

  const tick = async () => {
    try {
      if (after === null) {
        const last = await lastAlertId();
        const page = await api("v1/alerts", { params: { after: Math.max(0, last - KEEP), limit: KEEP } });
        show(page.items, false);
        after = page.items.length ? page.items[page.items.length - 1].alert_id : last;
        // Announce new alerts from now on, not the ones already there.
        list.setAttribute("aria-live", "polite");
      }
      for (;;) {
        const page = await api("v1/alerts", { params: { after, limit: PAGE } });
        if (page.items.length) {
          show(page.items, true);
          after = page.items[page.items.length - 1].alert_id;
        }
        if (!page.next_cursor) break;
      }
      failures = 0;
      state.textContent = "Live";
      state.className = "feed-state live";
      list.dataset.after = String(after);
    } catch (error) {
      if (error.status === 401) {
        waitingForKey = true;
        state.textContent = "Paused: needs an API key";
        state.className = "feed-state paused";
        return;
      }
      failures += 1;
      state.textContent = "Reconnecting…";
      state.className = "feed-state paused";
    }
    const delay = Math.min(EVERY_MS * 2 ** Math.max(0, failures - 1), MAX_BACKOFF_MS);
    setTimeout(tick, failures ? delay : EVERY_MS);
  };

  document.addEventListener("relbank:key", () => {
    if (waitingForKey) {
      waitingForKey = false;
      tick();
    }
  });
  tick();
}
