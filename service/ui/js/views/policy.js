// The active policy, and the what-if: POST a candidate policy to /v1/policy/simulate.
import { api } from "../api.js";
import { amount, balance, customerLink, el, head, loading, number, pillarName, problemBox, signClass, statusBadge } from "../dom.js";
import { activePolicy } from "../policy-cache.js";

export async function policyView({ main, token }) {
  document.title = "Policy · relbank";
  const body = el("div", null, loading());
  main.append(
    el("h1", { tabindex: -1 }, "Weighting policy"),
    el("p", { class: "lede" },
      "How each moment that matters is weighed, how fast old moments fade, and where a relationship counts as at risk."),
    body,
  );
  const policy = await activePolicy({ refresh: true });
  if (!token.active) return;
  body.replaceChildren(overview(policy), whatIf(policy), moments(policy), segments(policy));
}

function overview(p) {
  const item = (label, value) => el("div", { class: "figure" }, el("dt", null, label), el("dd", null, value));
  return el("section", { class: "card", "aria-labelledby": "policy-overview" },
    el("h2", { id: "policy-overview" }, "Active policy ", el("code", { class: "version" }, p.version)),
    el("dl", { class: "figures" },
      item("Half-life", p.half_life_days ? `${number(p.half_life_days)} days` : "none (no decay)"),
      item("Opening balance", balance(p.opening_balance)),
      item("At risk below", balance(p.thresholds.at_risk_below)),
      item("Recovers at or above", balance(p.thresholds.recover_at_or_above)),
      item("Moments", number(Object.keys(p.moments).length)),
      item("Segments", number(Object.keys(p.segments || {}).length))));
}

function weightOf(m) {
  if (m.weight !== null && m.weight !== undefined) {
    return el("span", { class: `strong ${signClass(m.weight)}` }, amount(m.weight));
  }
  return el("span", null,
    el("span", { class: "note" }, `by `, el("code", null, m.field)),
    el("ul", { class: "bands" }, (m.bands || []).map((b) =>
      el("li", null, `${number(b.min)}–${number(b.max)}: `, el("span", { class: `strong ${signClass(b.weight)}` }, amount(b.weight))))));
}

function moments(p) {
  const names = Object.keys(p.moments).sort((a, b) =>
    p.moments[a].pillar.localeCompare(p.moments[b].pillar) || a.localeCompare(b));
  const described = names.some((name) => p.moments[name].description);
  return el("section", { class: "card", "aria-labelledby": "policy-moments" },
    el("h2", { id: "policy-moments" }, "Moments that matter"),
    el("div", { class: "table-wrap" },
      el("table", { id: "moments-table" },
        el("caption", { class: "visually-hidden" }, "Moment types and their weights"),
        head(
          "Moment type",
          "Pillar",
          "Weight",
          described ? "Description" : null),
        el("tbody", null, names.map((name) => {
          const m = p.moments[name];
          return el("tr", null,
            el("th", { scope: "row" }, el("code", null, name)),
            el("td", null, pillarName(m.pillar)),
            el("td", null, weightOf(m)),
            described ? el("td", { class: "muted" }, m.description || "") : null);
        })))));
}

function segments(p) {
  const names = Object.keys(p.segments || {}).sort();
  const content = names.length
    ? el("div", { class: "table-wrap" },
      el("table", null,
        el("caption", { class: "visually-hidden" }, "Segments and their overrides"),
        head(
          "Segment",
          { num: "Weight multiplier" },
          { num: "At risk below" },
          { num: "Recovers at" },
          "Description"),
        el("tbody", null, names.map((name) => {
          const s = p.segments[name];
          const t = s.thresholds || p.thresholds;
          return el("tr", null,
            el("th", { scope: "row" }, name),
            el("td", { class: "num" }, `× ${number(s.weight_multiplier)}`),
            el("td", { class: "num" }, balance(t.at_risk_below)),
            el("td", { class: "num" }, balance(t.recover_at_or_above)),
            el("td", { class: "muted" }, s.description || (s.thresholds ? "" : "policy thresholds")));
        }))))
    : el("p", { class: "muted" }, "This policy has no segments: every account uses the thresholds above.");
  return el("section", { class: "card", "aria-labelledby": "policy-segments" },
    el("h2", { id: "policy-segments" }, "Segments"), content);
}

function looksLikeJson(text) {
  return /^\s*[{[]/.test(text);
}

function whatIf(policy) {
  const textarea = el("textarea", {
    id: "candidate", name: "candidate", rows: 18, spellcheck: "false", required: true,
    "aria-describedby": "candidate-help",
  });
  const { version, ...rest } = policy;
  textarea.value = JSON.stringify({ version: `${version}-what-if`, ...rest }, null, 2);
  const format = el("select", { id: "candidate-format", name: "format" },
    el("option", { value: "json" }, "JSON"),
    el("option", { value: "yaml" }, "YAML"));
  textarea.addEventListener("input", () => {
    format.value = looksLikeJson(textarea.value) ? "json" : "yaml";
  });
  const submit = el("button", { type: "submit", class: "primary" }, "Simulate");
  const result = el("div", { id: "what-if-result", "aria-live": "polite" });
  const form = el("form", { id: "what-if-form", class: "what-if" },
    el("label", { for: "candidate" }, "Candidate policy"),
    el("p", { id: "candidate-help", class: "muted" },
      "Edit the active policy below, or paste another one as JSON or YAML. Change a weight, a threshold, ",
      "the half-life. Nothing is changed: relbank replays every event under the candidate and reports what would move."),
    textarea,
    el("div", { class: "form-row" },
      el("label", { for: "candidate-format" }, "Format"), format, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    result.replaceChildren(loading("Replaying every event under the candidate policy…"));
    try {
      const outcome = await api("v1/policy/simulate", {
        method: "POST",
        body: textarea.value,
        contentType: format.value === "yaml" ? "application/yaml" : "application/json",
      });
      result.replaceChildren(simulation(outcome));
    } catch (error) {
      result.replaceChildren(problemBox(error, "The candidate policy could not be simulated"));
    } finally {
      submit.disabled = false;
    }
  });
  return el("section", { class: "card", "aria-labelledby": "what-if-title" },
    el("h2", { id: "what-if-title" }, "What if…"), form, result);
}

function simulation(s) {
  const stat = (label, value, cls = "") =>
    el("div", { class: "figure" }, el("dt", null, label), el("dd", { class: `big ${cls}` }, value));
  const movers = s.movers || [];
  return el("div", { class: "simulation" },
    el("h3", null, "Under ", el("code", null, s.policy_version)),
    el("dl", { class: "figures" },
      stat("Accounts", number(s.accounts)),
      stat("At risk now", number(s.at_risk_now)),
      stat("At risk under the candidate", number(s.at_risk_simulated)),
      stat("Would become at risk", number(s.to_at_risk), s.to_at_risk ? "debit" : ""),
      stat("Would recover", number(s.to_ok), s.to_ok ? "credit" : "")),
    movers.length
      ? el("div", { class: "table-wrap" },
        el("table", { id: "movers-table" },
          el("caption", null, "Largest balance changes"),
          head(
            "Customer",
            { num: "Balance now" },
            { num: "Under the candidate" },
            { num: "Change" },
            "Status now",
            "Under the candidate"),
          el("tbody", null, movers.map((m) => {
            const change = m.balance_simulated - m.balance_now;
            return el("tr", null,
              el("th", { scope: "row" }, customerLink(m.customer_id)),
              el("td", { class: "num" }, balance(m.balance_now)),
              el("td", { class: "num" }, balance(m.balance_simulated)),
              el("td", { class: `num strong ${signClass(change)}` }, amount(change)),
              el("td", null, statusBadge(m.status_now)),
              el("td", null, statusBadge(m.status_simulated)));
          }))))
      : el("p", { class: "muted" }, "No balance would change."));
}
