// The page: hash routes (#/, #/customers/<percent-encoded id>, #/policy) and the live feed.
import { el, problemBox, relative } from "./dom.js";
import { startFeed } from "./feed.js";
import { atRiskView } from "./views/at-risk.js";
import { customerView } from "./views/customer.js";
import { policyView } from "./views/policy.js";

const ROUTES = [
  { pattern: /^\/?$/, view: atRiskView, nav: "at-risk" },
  { pattern: /^\/at-risk$/, view: atRiskView, nav: "at-risk" },
  { pattern: /^\/customers\/([^/]+)$/, view: customerView, nav: null },
  { pattern: /^\/policy$/, view: policyView, nav: "policy" },
];

const main = document.getElementById("main");
let current = null;
let firstRender = true;

function notFound({ main: target, path }) {
  document.title = "Not found · relbank";
  target.append(
    el("h1", { tabindex: -1 }, "Nothing here"),
    el("p", null, `There is no page at “${path}”. `, el("a", { href: "#/" }, "See the customers at risk"), "."),
  );
}

async function render() {
  if (current) current.close();
  const raw = location.hash.replace(/^#/, "");
  const [path, query = ""] = raw.split("?");
  const token = {
    active: true,
    cleanups: [],
    onClose(fn) {
      this.cleanups.push(fn);
    },
    close() {
      this.active = false;
      for (const fn of this.cleanups.splice(0)) fn();
    },
  };
  current = token;
  let route = ROUTES.find((r) => r.pattern.test(path));
  let params = {};
  if (route) {
    const match = path.match(route.pattern);
    if (match[1] !== undefined) {
      try {
        params = { id: decodeURIComponent(match[1]) };
      } catch {
        route = null;
      }
    }
  }
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (route && link.dataset.nav === route.nav) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  main.replaceChildren();
  main.setAttribute("aria-busy", "true");
  const view = route ? route.view : notFound;
  const done = view({ main, params, query: new URLSearchParams(query), token, path });
  // The heading exists once the view's synchronous part ran: move focus there on navigation,
  // so keyboard and screen-reader users land on the new content.
  if (!firstRender) (main.querySelector("h1") || main).focus();
  firstRender = false;
  try {
    await done;
  } catch (error) {
    if (token.active) main.append(problemBox(error));
  } finally {
    if (token.active) main.removeAttribute("aria-busy");
  }
}

document.querySelector("[data-skip]").addEventListener("click", (event) => {
  event.preventDefault();
  (main.querySelector("h1") || main).focus();
});

document.getElementById("open-customer").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = event.target.elements.customer;
  const id = input.value.trim();
  if (!id) return;
  input.value = "";
  location.hash = `#/customers/${encodeURIComponent(id)}`;
});

// Keep "3 minutes ago" true while the page stays open.
setInterval(() => {
  for (const time of document.querySelectorAll("time[datetime]")) {
    time.textContent = relative(time.getAttribute("datetime"));
  }
}, 30000);

window.addEventListener("hashchange", render);
render();
startFeed(document.getElementById("feed-list"), document.getElementById("feed-state"));
