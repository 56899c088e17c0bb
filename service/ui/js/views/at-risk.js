// The at-risk list: lowest balance first, filtered by segment, paged with next_cursor.
import { api } from "../api.js";
import { balance, customerLink, el, head, loading, problemBox, segmentBadge, signClass, statusBadge, when } from "../dom.js";
import { activePolicy } from "../policy-cache.js";

const PAGE = 50;

export async function atRiskView({ main, query, token }) {
  const segment = query.get("segment") || "";
  document.title = "Customers at risk · relbank";
  const select = el("select", { id: "segment-filter", name: "segment" }, el("option", { value: "" }, "All segments"));
  select.addEventListener("change", () => {
    location.hash = select.value ? `#/?segment=${encodeURIComponent(select.value)}` : "#/";
  });
  const count = el("p", { class: "muted count-line", role: "status" });
  const body = el("tbody");
  const more = el("button", { type: "button", class: "more", id: "at-risk-more", hidden: true }, "Show more");
  const status = el("div", null, loading());
  main.append(
    el("div", { class: "page-head" },
      el("div", null,
        el("h1", { tabindex: -1 }, "Customers at risk"),
        el("p", { class: "lede" },
          "Relationships whose balance has fallen below their at-risk level, lowest balance first. ",
          "Open one to see how its balance moved and what moved it.")),
      el("form", { class: "filters", onsubmit: (e) => e.preventDefault() },
        el("label", { for: "segment-filter" }, "Segment"), select)),
    status,
  );

  activePolicy()
    .then((policy) => {
      const names = Object.keys(policy.segments || {}).sort();
      if (segment && !names.includes(segment)) names.push(segment);
      for (const name of names) select.append(el("option", { value: name }, name));
      select.value = segment;
    })
    .catch(() => {
      // The list below reports the problem; the filter just stays at "All segments".
    });

  let cursor = null;
  let shown = 0;
  const load = async () => {
    const page = await api("v1/at-risk", { params: { segment, limit: PAGE, cursor } });
    if (!token.active) return null;
    const rows = page.items.map(row);
    body.append(...rows);
    shown += rows.length;
    cursor = page.next_cursor;
    more.hidden = !cursor;
    count.textContent = `${shown} ${shown === 1 ? "customer" : "customers"} shown${cursor ? ", more below" : ""}.`;
    return rows;
  };
  more.addEventListener("click", async () => {
    more.disabled = true;
    try {
      const rows = await load();
      if (rows && rows.length) rows[0].querySelector("a").focus();
    } catch (error) {
      more.after(problemBox(error));
    } finally {
      more.disabled = false;
    }
  });

  const first = await load();
  if (first === null) return;
  if (!shown) {
    status.replaceChildren(
      el("div", { class: "empty" },
        el("p", { class: "empty-title" }, segment ? `No customer in “${segment}” is at risk.` : "No customer is at risk."),
        el("p", { class: "muted" }, "Every relationship is above its at-risk level. New alerts appear in the live feed.")),
    );
    return;
  }
  status.replaceChildren(
    count,
    el("div", { class: "table-wrap" },
      el("table", { id: "at-risk-table" },
        el("caption", { class: "visually-hidden" }, "Customers at risk, lowest balance first"),
        head(
          "Customer",
          "Segment",
          { num: "Balance" },
          "Status",
          "At risk since",
          "Last moment",
          "Recovers by decay"),
        body)),
    more,
  );
}

function row(customer) {
  return el("tr", { dataset: { customerId: customer.customer_id } },
    el("th", { scope: "row" }, customerLink(customer.customer_id)),
    el("td", null, segmentBadge(customer.segment)),
    el("td", { class: `num strong ${signClass(customer.balance)}` }, balance(customer.balance)),
    el("td", null, statusBadge(customer.status)),
    el("td", null, when(customer.status_since)),
    el("td", null, when(customer.last_event_at)),
    el("td", null, customer.next_transition_at ? when(customer.next_transition_at) : el("span", { class: "muted" }, "not by time alone")),
  );
}
